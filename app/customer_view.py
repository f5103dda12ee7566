"""The customer 360 (`/api/customers/{key}/view`): one customer's records in the four systems side by
side, with the values that disagree marked, its findings, and the newest steps of its timeline.

Built from the customer's state alone (pure: `customer_view(state, timeline)`), on the worker that owns
the customer. Which values disagree is not judged again here: each finding names the values it compared
(its evidence, `Observation(system, record, field, value)`), and a value is marked when an unresolved
reported finding names it (`findings`), or a finding still inside its grace window (`pending`). So the
view marks what the rules found, no more and no less; a rule's evidence for a field the record does not
hold (the tier a subscription's plan maps to) is shown as a field of that record, and evidence about a
record that does not exist (a missing ERP invoice) as a note of its system.

The shapes are Structs a template renders as they are: systems, records and fields in a fixed order,
values as the state holds them (amounts in minor units of their currency, times in epoch ms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from msgspec import Struct

from concord.connectors.drift_index import IndexedFinding, indexed
from concord.connectors.search_index import display_name
from concord.connectors.timeline import Checkpoint
from concord.core.messages import DriftItem
from concord.tables.state import (
    Account,
    Case,
    CustomerState,
    Entitlement,
    Flags,
    Invoice,
    Opportunity,
    PartyRecord,
    Payment,
    Refund,
    SalesOrder,
    Subscription,
)

SYSTEMS: Final = ("salesforce", "stripe", "zendesk", "netsuite")
#: The customer-master fields, compared across the systems (rule D09), in the rows of `master`.
MASTER_FIELDS: Final = ("name", "country", "currency", "address", "tax_id", "payment_terms", "email")
ACTIVE: Final = frozenset({"open", "commanded", "escalated"})


class Field(Struct, frozen=True, kw_only=True):
    """One value of a record; `findings` and `pending` are the fingerprints of the findings naming it."""

    name: str
    value: Any
    disagrees: bool = False
    findings: tuple[str, ...] = ()  # reported and not resolved: open, commanded, escalated
    pending: tuple[str, ...] = ()  # seen, still inside its grace window


class Record(Struct, frozen=True, kw_only=True):
    """A record as a system holds it."""

    system: str
    kind: str  # account, opportunity, customer, subscription, invoice, payment, refund, organization,
    # entitlement, ticket, flags, credit_memo, sales_order
    id: str
    fields: list[Field]
    deleted: bool = False
    changed_at: int = 0  # when its newest change was made at the source (epoch ms)
    unread_since: int = 0  # changed at the source in ways Concord has not read yet, since (0: read)
    disagrees: bool = False


class Note(Struct, frozen=True, kw_only=True):
    """Evidence of a finding about no record shown here: `missing` when the record does not exist."""

    record: str
    field: str
    value: Any
    missing: bool
    findings: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()


class SystemView(Struct, frozen=True, kw_only=True):
    system: str
    records: list[Record]
    notes: list[Note]
    disagrees: bool = False


class Cell(Struct, frozen=True, kw_only=True):
    """One system's value of a customer-master field (a row of `master`)."""

    system: str
    record: str
    value: Any
    disagrees: bool = False
    findings: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()


class Row(Struct, frozen=True, kw_only=True):
    field: str
    cells: list[Cell]
    disagrees: bool = False


class InvoicePair(Struct, frozen=True, kw_only=True):
    """A billing invoice beside the ERP invoice that books it (either may be missing)."""

    billing_invoice_id: str  # "" for an ERP invoice that names no billing invoice
    billing: Record | None
    erp: Record | None
    disagrees: bool = False


class CustomerView(Struct, frozen=True, kw_only=True):
    """`/api/customers/{key}/view`."""

    key: str
    name: str | None
    merged_into: str | None
    absorbed: list[str]  # accounts merged into this one
    last_event_at: int
    master: list[Row]  # the customer-master fields across the systems
    invoices: list[InvoicePair]  # billing beside ERP, newest first
    systems: list[SystemView]  # salesforce, stripe, zendesk, netsuite
    open_findings: list[IndexedFinding]  # open, commanded, escalated: newest first
    pending_findings: list[IndexedFinding]  # inside their grace windows
    past_findings: list[IndexedFinding]  # resolved (the last few the state keeps), newest first
    timeline: list[Checkpoint]  # the newest checkpoints, newest first
    timeline_url: str  # where the rest of it is
    timeline_detail: str = ""  # why the timeline is missing (Redis unreachable)


# ---------------------------------------------------------------- records, their fields in order

Getter = Callable[[Any], Any]


def _attrs(*names: str) -> list[tuple[str, Getter]]:
    return [(name, _attr(name)) for name in names]


def _attr(name: str) -> Getter:
    return lambda record: getattr(record, name)


_PARTY: Final = _attrs("name", "email", "country", "currency", "tax_id", "address", "payment_terms", "crm_account_id")
_INVOICE: Final = _attrs("number", "status", "total", "tax", "amount_remaining", "currency", "due_at", "paid_at",
                         "subscription_id", "customer_id")
_FIELDS: Final[Mapping[str, list[tuple[str, Getter]]]] = {
    "account": _attrs("name", "country", "currency", "tax_id", "address", "payment_terms"),
    "opportunity": _attrs("stage", "is_won", "is_closed", "amount", "currency", "close_date", "plan", "account_id"),
    "customer": _PARTY,
    "organization": _PARTY,
    "subscription": _attrs("status", "plan", "quantity", "amount", "currency", "current_period_end",
                           "cancel_at_period_end", "canceled_at", "customer_id"),
    "invoice": _INVOICE,
    "erp_invoice": [*_INVOICE, ("billing_invoice_id", _attr("billing_invoice_id"))],
    "payment": _attrs("status", "amount", "currency", "invoice_id"),
    "refund": _attrs("document", "status", "amount", "currency", "invoice_id", "charge_id", "billing_refund_id"),
    "entitlement": [("entitlement_status", _attr("status")), *_attrs("tier", "end_date", "tags")],
    "ticket": _attrs("status", "priority", "subject", "organization_id", "created_at"),
    "flags": _attrs("overdue_balance", "currency", "credit_hold"),
    "sales_order": _attrs("status", "total", "currency", "opportunity_id"),
}


class _Raw(Struct):
    """A record before marking: its system, kind, id and values (field -> value, in order)."""

    system: str
    kind: str
    id: str
    values: dict[str, Any]
    deleted: bool
    changed_at: int
    unread_since: int = 0


def _raw(system: str, kind: str, rid: str, record: Any, fields: str | None = None,
         values: Mapping[str, Any] | None = None) -> _Raw:
    getters = _FIELDS[fields or kind]
    out = {name: get(record) for name, get in getters}
    out.update(values or {})
    return _Raw(system, kind, rid, out, bool(getattr(record, "deleted", False)), record.stamp.ts)


def _newest_first(records: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return sorted(records.items(), key=lambda item: (-item[1].stamp.ts, item[0]))


def _records(state: CustomerState) -> list[_Raw]:
    crm, billing, support, erp = state.crm, state.billing, state.support, state.erp
    out: list[_Raw] = []
    account: Account | None = crm.account
    if account is not None:
        out.append(_raw("salesforce", "account", state.key, account))
    account_currency = account.currency if account is not None else None
    opportunity: Opportunity
    for oid, opportunity in _newest_first(crm.opportunities):
        amount = opportunity.amount_in(opportunity.currency or account_currency)
        out.append(_raw("salesforce", "opportunity", oid, opportunity, values={"amount": amount}))
    for raw in out:  # the CRM's so far
        raw.unread_since = crm.unread.get(raw.id, (0, 0))[0]
    party: PartyRecord
    for cid, party in _newest_first(billing.customers):
        out.append(_raw("stripe", "customer", cid, party))
    sub: Subscription
    for sid, sub in _newest_first(billing.subscriptions):
        out.append(_raw("stripe", "subscription", sid, sub))
    invoice: Invoice
    for iid, invoice in _newest_first(billing.invoices):
        out.append(_raw("stripe", "invoice", iid, invoice))
    payment: Payment
    for pid, payment in _newest_first(billing.payments):
        out.append(_raw("stripe", "payment", pid, payment))
    refund: Refund
    for rid, refund in _newest_first(billing.refunds):
        out.append(_raw("stripe", "refund", rid, refund))
    for oid, party in _newest_first(support.organizations):
        out.append(_raw("zendesk", "organization", oid, party))
    entitlement: Entitlement
    for oid, entitlement in _newest_first(support.entitlements):
        raw = _raw("zendesk", "entitlement", oid, entitlement)
        raw.unread_since = support.unread.get(oid, (0, 0))[0]
        out.append(raw)
    case: Case
    for tid, case in _newest_first(support.cases):
        out.append(_raw("zendesk", "ticket", tid, case))
    for cid, party in _newest_first(erp.customers):
        out.append(_raw("netsuite", "customer", cid, party))
    flags: Flags
    for cid, flags in _newest_first(erp.flags):
        out.append(_raw("netsuite", "flags", cid, flags))
    for iid, invoice in _newest_first(erp.invoices):
        out.append(_raw("netsuite", "invoice", iid, invoice, fields="erp_invoice"))
    for pid, payment in _newest_first(erp.payments):
        out.append(_raw("netsuite", "payment", pid, payment))
    for rid, refund in _newest_first(erp.credit_memos):
        out.append(_raw("netsuite", "credit_memo", rid, refund, fields="refund"))
    order: SalesOrder
    for oid, order in _newest_first(erp.sales_orders):
        out.append(_raw("netsuite", "sales_order", oid, order))
    return out


# ---------------------------------------------------------------- marks from the findings' evidence


class _Mark(Struct):
    findings: list[str]
    pending: list[str]
    value: Any = None


def _marks(items: Iterable[DriftItem]) -> dict[tuple[str, str, str], _Mark]:
    """(system, record, field) -> the fingerprints of the unresolved findings whose evidence names it."""
    marks: dict[tuple[str, str, str], _Mark] = {}
    for item in sorted(items, key=lambda i: i.fingerprint):
        if item.status not in ACTIVE and item.status != "pending":
            continue
        for o in item.evidence:
            mark = marks.setdefault((o.system, o.record, o.field), _Mark([], [], o.value))
            (mark.findings if item.status in ACTIVE else mark.pending).append(item.fingerprint)
    return marks


def _field(name: str, value: Any, mark: _Mark | None) -> Field:
    if mark is None:
        return Field(name=name, value=value)
    return Field(name=name, value=value, disagrees=bool(mark.findings), findings=tuple(mark.findings),
                 pending=tuple(mark.pending))


def _place(raws: list[_Raw], marks: dict[tuple[str, str, str], _Mark]) -> dict[str, list[Note]]:
    """Evidence on a field a record of that id does not show becomes a field of it (the first record of that
    id in the system); evidence about no record shown becomes a note of its system."""
    notes: dict[str, list[Note]] = {system: [] for system in SYSTEMS}
    by_id: dict[tuple[str, str], list[_Raw]] = {}
    for raw in raws:
        by_id.setdefault((raw.system, raw.id), []).append(raw)
    for (system, rid, field), mark in marks.items():
        if system not in notes:
            continue  # Concord's own (a stuck correction): the finding says it
        holders = by_id.get((system, rid), [])
        if any(field in raw.values for raw in holders):
            continue
        if holders:
            holders[0].values[field] = mark.value
        else:
            notes[system].append(Note(record=rid, field=field, value=mark.value, missing=not rid,
                                      findings=tuple(mark.findings), pending=tuple(mark.pending)))
    return notes


def _marked(raw: _Raw, marks: dict[tuple[str, str, str], _Mark]) -> Record:
    fields = [_field(name, value, marks.get((raw.system, raw.id, name))) for name, value in raw.values.items()]
    return Record(system=raw.system, kind=raw.kind, id=raw.id, fields=fields, deleted=raw.deleted,
                  changed_at=raw.changed_at, unread_since=raw.unread_since,
                  disagrees=any(f.disagrees for f in fields))


# ---------------------------------------------------------------- side by side


def _master(records: list[Record]) -> list[Row]:
    holders = [r for r in records if r.kind in ("account", "customer", "organization") and not r.deleted]
    rows = []
    for name in MASTER_FIELDS:
        cells = [Cell(system=r.system, record=r.id, value=f.value, disagrees=f.disagrees, findings=f.findings,
                      pending=f.pending)
                 for r in holders for f in r.fields if f.name == name]
        rows.append(Row(field=name, cells=cells, disagrees=any(c.disagrees for c in cells)))
    return rows


def _invoice_pairs(records: list[Record], state: CustomerState) -> list[InvoicePair]:
    billing = {r.id: r for r in records if r.system == "stripe" and r.kind == "invoice"}
    erp = [r for r in records if r.system == "netsuite" and r.kind == "invoice"]
    booked: dict[str, Record] = {}
    unbooked: list[Record] = []
    for record in erp:
        ref = state.erp.invoices[record.id].billing_invoice_id
        if ref and ref not in booked:
            booked[ref] = record
        else:
            unbooked.append(record)
    pairs = [InvoicePair(billing_invoice_id=bid, billing=billing.get(bid), erp=booked.get(bid),
                         disagrees=any(r is not None and r.disagrees for r in (billing.get(bid), booked.get(bid))))
             for bid in {**billing, **booked}]
    pairs.sort(key=lambda p: -max(r.changed_at for r in (p.billing, p.erp) if r is not None))
    return pairs + [InvoicePair(billing_invoice_id="", billing=None, erp=r, disagrees=r.disagrees) for r in unbooked]


def _findings(key: str, items: Iterable[DriftItem]) -> tuple[list[IndexedFinding], ...]:
    found = [indexed(key, item) for item in items]
    active = sorted((f for f in found if f.status in ACTIVE), key=lambda f: (-f.first_seen, f.fingerprint))
    pending = sorted((f for f in found if f.status == "pending"), key=lambda f: (f.since, f.fingerprint))
    past = sorted((f for f in found if f.status == "resolved"), key=lambda f: (-f.resolved_at, f.fingerprint))
    return active, pending, past


def customer_view(state: CustomerState, timeline: list[Checkpoint], timeline_url: str = "",
                  timeline_detail: str = "") -> CustomerView:
    """The customer 360 of `state`, with `timeline` (its newest checkpoints, newest first)."""
    marks = _marks(state.drift.values())
    raws = _records(state)
    notes = _place(raws, marks)
    records = [_marked(raw, marks) for raw in raws]
    systems = [SystemView(system=system, records=[r for r in records if r.system == system], notes=notes[system],
                          disagrees=any(r.disagrees for r in records if r.system == system)
                          or any(n.findings for n in notes[system]))
               for system in SYSTEMS]
    active, pending, past = _findings(state.key, state.drift.values())
    return CustomerView(
        key=state.key, name=display_name(state), merged_into=state.merged_into,
        absorbed=[loser for loser, _ in state.absorbed], last_event_at=state.last_event_at,
        master=_master(records), invoices=_invoice_pairs(records, state), systems=systems,
        open_findings=active, pending_findings=pending, past_findings=past, timeline=timeline,
        timeline_url=timeline_url, timeline_detail=timeline_detail,
    )
