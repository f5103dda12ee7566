"""What the operator surfaces of the quote-to-cash saga share (issue 17): pure, no I/O.

The API (`/api/v1/sagas`, app/sagas_api.py), `concord saga` (app/saga_cmd.py) and the console's sagas page
(app/console/sagas.py) read the sagas from the saga index in Redis (connectors/saga_index.py) and send a
person's resume as a `ResumeSaga` on the canonical topic, keyed by the customer, to the state agent that owns
the customer (drift/saga.py `advance` continues the saga from the step that stopped it). This module holds
what all three must decide alike: which sagas may be resumed, the message a resume sends, a listing's filters,
the words of each refusal, and the order in which a person sees them (waiting for a person first).

The index is a mirror that the owning worker writes in the background, so it may be a moment behind the
`sagas` table: a resume is refused here when the index shows a saga that does not wait for a person, and a
saga that changed meanwhile is judged again by the state agent, which ignores a resume of a saga that is
not stopped (checkpoint `saga.resume_ignored`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from msgspec import Struct

from concord.connectors.saga_index import LIMIT_MAX, capped, select
from concord.core.messages import ResumeSaga
from concord.drift.saga import COMPENSATING, COMPLETED, FAILED, PAUSED, RESUMABLE, RUNNING, STATES, SagaView

#: The states waiting for a person, in the order the console and `concord saga list` show them.
WAITING: Final = (PAUSED, FAILED)
#: How many sagas a listing returns when not told (at most `LIMIT_MAX`).
DEFAULT_LIMIT: Final = 100
#: The longest note a resume carries.
MAX_NOTE: Final = 2000
#: The longest customer key a listing filters on.
MAX_KEY: Final = 200

E_STATE: Final = "state={state!r} is not a saga state: choose one of {states} (or leave it out for every state)"
E_LIMIT: Final = "limit={limit!r} is not a whole number: ask for 1 to {most} sagas (default {default})"
E_CUSTOMER: Final = ("customer={customer!r} cannot be a customer key (longer than {most} characters, or control "
                     "characters)")
E_NO_SAGA: Final = ("no saga for opportunity {opportunity_id!r} in the saga index (a saga started in the last "
                    "second may not be mirrored yet: try again; the saga list shows every saga)")
E_NOT_RESUMABLE: Final = ("the saga of opportunity {opportunity_id} is {state} (step {step}): only a paused, failed or "
                          "compensated saga can be resumed; {why}")
#: Why a saga in each state that is not resumable does not wait for a person.
_WHY: Final = {
    RUNNING: "it is working on its step: wait for the step's result (a step without one is sent again, then pauses)",
    COMPENSATING: "it is undoing its steps: wait until it ends compensated (or failed)",
    COMPLETED: "the deal is provisioned",
}


class NotResumable(ValueError):
    """The saga is not in a state a person can resume it from; the message says which and why."""


class Listing(Struct, frozen=True, kw_only=True):
    """Which sagas a listing asks for: in a state, of a customer, how many at most."""

    state: str | None = None
    customer: str | None = None
    limit: int = DEFAULT_LIMIT


def listing(query: Mapping[str, str]) -> Listing:
    """The filters of a listing's query (`state`, `customer`, `limit`; empty values count as not given).

    ValueError saying what is wrong with which value: an unknown state, a limit that is not a whole number, a
    customer that cannot be a key. A limit out of range is brought within 1 to `LIMIT_MAX`.
    """
    state = (query.get("state") or "").strip() or None
    if state is not None and state not in STATES:
        raise ValueError(E_STATE.format(state=state, states=", ".join(STATES)))
    customer = (query.get("customer") or "").strip() or None
    if customer is not None and (len(customer) > MAX_KEY or not customer.isprintable()):
        raise ValueError(E_CUSTOMER.format(customer=customer[:MAX_KEY], most=MAX_KEY))
    raw = (query.get("limit") or "").strip()
    try:
        limit = int(raw) if raw else DEFAULT_LIMIT
    except ValueError:
        raise ValueError(E_LIMIT.format(limit=raw[:40], most=LIMIT_MAX, default=DEFAULT_LIMIT)) from None
    return Listing(state=state, customer=customer, limit=capped(limit))


def resumable(saga: SagaView) -> bool:
    return saga.state in RESUMABLE


def resume_of(saga: SagaView, by: str, note: str = "") -> ResumeSaga:
    """The message that resumes `saga` under the name of `by`; NotResumable when its state is not one a person
    can resume from."""
    if not resumable(saga):
        raise NotResumable(E_NOT_RESUMABLE.format(opportunity_id=saga.opportunity_id, state=saga.state,
                                                  step=saga.step, why=_WHY.get(saga.state, "see its state")))
    return ResumeSaga(customer_key=saga.customer_key, opportunity_id=saga.opportunity_id, by=by, note=note)


def ordered(sagas: Iterable[SagaView]) -> list[SagaView]:
    """Waiting for a person first (paused, then failed), then the rest; most recently changed first within each;
    each saga once."""
    unique = {s.opportunity_id: s for s in sagas}
    rank = {state: n for n, state in enumerate(WAITING)}
    return sorted(unique.values(), key=lambda s: (rank.get(s.state, len(WAITING)), -s.updated_at, s.opportunity_id))


def waiting_first(sagas: Sequence[SagaView], state: str | None, customer: str | None, limit: int) -> list[SagaView]:
    """The sagas a person is shown (the console's page, `concord saga list`), at most `limit`, of one read of the
    index: those in `state`; with no state, every saga waiting for a person first (so newer sagas do not crowd
    them out of the limit), then the most recently changed."""
    if state is not None:
        return select(sagas, state, customer, limit)
    return ordered(s for s in sagas if customer is None or s.customer_key == customer)[:capped(limit)]
