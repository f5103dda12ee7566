"""What the sagas page (`/sagas`) and the customer view's sagas show, built from the saga index: pure, no I/O.

The page lists the quote-to-cash sagas (drift/saga.py) of every customer, whichever worker owns them (the
saga index in Redis, connectors/saga_index.py). The sagas waiting for a person come first, paused then
failed, each with why it stopped and what to fix before resuming it; then the others, most recently changed
first. Filters are query parameters, so a filtered page is a link: `state` (one of the saga's states) and
`customer` (a key), and `limit`; a value the page does not know is ignored (the filter shows "any"), as on
the board. An operator gets a resume button on each saga that can be resumed (app/sagas.py `RESUMABLE`),
which posts to `/api/v1/sagas/{opportunity_id}/resume` with the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import urlencode

from msgspec import Struct

from concord.app.sagas import MAX_KEY, RESUMABLE, WAITING, ordered
from concord.core.currency import minor_units
from concord.drift.saga import DEFINITIONS, STATES, SagaView

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
#: Sagas the customer view lists at most (a customer has few).
CUSTOMER_LIMIT: Final = 50


class Filters(Struct, frozen=True, kw_only=True):
    """The page's query: which sagas, how many."""

    state: str = ""
    customer: str = ""
    limit: int = DEFAULT_LIMIT


def parse_filters(query: Mapping[str, str]) -> Filters:
    """The filters of a request's query; unknown values are dropped (shown as "any")."""
    state = query.get("state", "")
    customer = (query.get("customer") or "").strip()
    try:
        limit = max(1, min(MAX_LIMIT, int(query.get("limit") or DEFAULT_LIMIT)))
    except ValueError:
        limit = DEFAULT_LIMIT
    return Filters(state=state if state in STATES else "",
                   customer=customer if len(customer) <= MAX_KEY and customer.isprintable() else "", limit=limit)


def link(state: str = "", customer: str = "") -> str:
    """The page's URL for a state and a customer (either may be empty: any)."""
    query = urlencode([(k, v) for k, v in (("state", state), ("customer", customer)) if v])
    return f"/sagas?{query}" if query else "/sagas"


def words(name: str) -> str:
    """A step, state or reason code as words: `billing_customer` -> "billing customer"."""
    return name.replace("_", " ")


class SagaRow(Struct, frozen=True, kw_only=True):
    """One saga as a row of the page or of the customer view."""

    opportunity_id: str
    customer_key: str
    state: str
    step: str
    progress: str  # "3 of 6 steps done"
    done: str  # the steps done, as words
    undone: str  # the steps compensated, as words
    deal: str  # plan, quantity, amount: what the deal sold
    reason_code: str
    reason: str
    fix: str
    command_id: str
    attempts: int
    started_at: int
    updated_at: int
    waiting: bool  # paused or failed: it waits for a person
    resumable: bool


def _deal(saga: SagaView) -> str:
    parts = [f"plan {saga.plan}" if saga.plan else "no plan"]
    if saga.quantity is not None:
        parts.append(f"× {saga.quantity}")
    if saga.amount is not None and saga.currency:
        digits = minor_units(saga.currency.upper())  # amounts are kept in minor units (cents)
        parts.append(f"{saga.amount / 10 ** digits:,.{digits}f} {saga.currency.upper()}")
    elif saga.amount is not None:
        parts.append(f"{saga.amount} (minor units)")
    return " ".join(parts)


def row(saga: SagaView) -> SagaRow:
    steps = DEFINITIONS.get(saga.version, ())
    done = [s for s in saga.done if s in steps]
    return SagaRow(
        opportunity_id=saga.opportunity_id, customer_key=saga.customer_key, state=saga.state, step=words(saga.step),
        progress=f"{len(done)} of {len(steps)} steps done" if steps else f"{len(saga.done)} steps done",
        done=", ".join(words(s) for s in saga.done), undone=", ".join(words(s) for s in saga.undone),
        deal=_deal(saga), reason_code=saga.reason_code, reason=saga.reason, fix=saga.fix,
        command_id=saga.command_id, attempts=saga.attempts,
        started_at=saga.started_at, updated_at=saga.updated_at, waiting=saga.state in WAITING,
        resumable=saga.state in RESUMABLE)


class StateCount(Struct, frozen=True, kw_only=True):
    state: str
    count: int
    link: str
    waiting: bool


class SagasPage(Struct, frozen=True, kw_only=True):
    filters: Filters
    rows: list[SagaRow]
    counts: list[StateCount]
    total: int  # every saga in the index, any state
    states: tuple[str, ...]


def build_page(filters: Filters, sagas: Sequence[SagaView], counts: Mapping[str, int]) -> SagasPage:
    """The page: `sagas` ordered (waiting first) and cut to the filters' limit, with the counts by state."""
    return SagasPage(
        filters=filters, rows=[row(s) for s in ordered(sagas)[:filters.limit]],
        counts=[StateCount(state=state, count=counts.get(state, 0), link=link(state, filters.customer),
                           waiting=state in WAITING) for state in STATES],
        total=sum(counts.values()), states=STATES)


def customer_rows(sagas: Sequence[SagaView]) -> list[SagaRow]:
    """A customer's sagas as its view lists them: waiting first."""
    return [row(s) for s in ordered(sagas)[:CUSTOMER_LIMIT]]
