"""Pure identity logic: links, parking and merges. No Faust, no I/O: the agents call these.

Two halves, on two partitionings:
* `step` runs on `concord.identity` (keyed by platform-local id): link, resolve or park, within the
  parking bounds (events per id, ids per worker, time parked; see `step`).
* `merge_routing` runs on `concord.canonical` (keyed by customer key), in the state agent: after a
  CRM merge, tell the identity side to re-point the ids the customer state has seen.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgspec
from msgspec import Struct

from concord.codecs.model import (
    UNSET,
    AccountMerged,
    CanonicalEvent,
    CustomerUpserted,
    EntitlementChanged,
    EntityRef,
    FinancialFlagsChanged,
    InvoiceChanged,
    PaymentChanged,
    Platform,
    RefundChanged,
    ResyncRequired,
    SalesOrderChanged,
    SubscriptionChanged,
    SupportCaseChanged,
    Version,
)
from concord.codecs.model import decode as decode_event
from concord.codecs.model import encode as encode_event
from concord.codecs.records import IdentityMessage
from concord.core.messages import ParkSweep, Repoint
from concord.tables.state import ZERO, CustomerState, PartyRecord, Stamp

# Stored queue: MAGIC, count (u32), then one frame per event, oldest first: parked at (epoch ms,
# u64), length (u32), the event's canonical JSON. Parking appends a frame and rewrites the count:
# no event of the queue is decoded or re-encoded (the bytes are copied once). MAGIC is a byte
# msgpack never writes, so a queue stored before (msgpack `{"events": [...]}`) is told apart.
_MAGIC: Final = b"\xc1"
_HEAD: Final = struct.Struct(">I")
_FRAME: Final = struct.Struct(">QI")
_HEAD_END: Final = len(_MAGIC) + _HEAD.size


class _Legacy(Struct, frozen=True):
    events: tuple[bytes, ...] = ()


_legacy_decoder = msgspec.msgpack.Decoder(_Legacy)


class ParkedQueue:
    """Events waiting for their local id's link, oldest first: encoded canonical JSON, each with when it
    was parked. Immutable; held as its stored bytes (`dump()` is free, `append` copies them once)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    @classmethod
    def of(cls, events: tuple[bytes, ...] | list[bytes], parked_at: int = 0) -> ParkedQueue:
        """A queue of `events`, all parked at `parked_at` (epoch ms)."""
        queue = EMPTY_QUEUE
        for raw in events:
            queue = queue.append(raw, parked_at)
        return queue

    @classmethod
    def load(cls, data: bytes | None, now: int = 0) -> ParkedQueue:
        """The stored queue; one stored before parking times were kept counts as parked `now`."""
        if not data:
            return EMPTY_QUEUE
        if data[:1] == _MAGIC:
            return cls(data)
        return cls.of(_legacy_decoder.decode(data).events, now)

    def dump(self) -> bytes:
        return self.data

    def __len__(self) -> int:
        return _HEAD.unpack_from(self.data, 1)[0] if self.data else 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParkedQueue) and self.data == other.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        return f"ParkedQueue({len(self)} events)"

    @property
    def oldest_at(self) -> int | None:
        """When the oldest event was parked (epoch ms); None when empty. Reads one frame header."""
        return _FRAME.unpack_from(self.data, _HEAD_END)[0] if self.data else None

    def entries(self) -> tuple[tuple[int, bytes], ...]:
        """(parked at, event) of every event, oldest first."""
        out: list[tuple[int, bytes]] = []
        offset, data = _HEAD_END, self.data
        for _ in range(len(self)):
            at, size = _FRAME.unpack_from(data, offset)
            offset += _FRAME.size
            out.append((at, data[offset:offset + size]))
            offset += size
        return tuple(out)

    @property
    def events(self) -> tuple[bytes, ...]:
        return tuple(raw for _, raw in self.entries())

    def append(self, raw: bytes, parked_at: int) -> ParkedQueue:
        body = memoryview(self.data)[_HEAD_END:]  # copied once, by the join
        return ParkedQueue(b"".join((_MAGIC, _HEAD.pack(len(self) + 1), body, _FRAME.pack(parked_at, len(raw)), raw)))

    def expire(self, before: int) -> tuple[ParkedQueue, tuple[tuple[int, bytes], ...]]:
        """(the queue without the events parked before `before`, those events with their parking times)."""
        oldest = self.oldest_at
        if oldest is None or oldest >= before:
            return self, ()
        entries = self.entries()
        cut = next((n for n, (at, _) in enumerate(entries) if at >= before), len(entries))
        kept = EMPTY_QUEUE
        for at, raw in entries[cut:]:
            kept = kept.append(raw, at)
        return kept, entries[:cut]


EMPTY_QUEUE: Final = ParkedQueue()


class Outcome(Struct, frozen=True):
    link: str | None
    forward: tuple[CanonicalEvent, ...]
    parked: ParkedQueue
    # Dead letters (never dropped): past the id's `limit`; refused because no room was left for
    # another id (`room`); parked longer than `ttl` (with when each was parked).
    overflow: tuple[bytes, ...] = ()
    refused: tuple[bytes, ...] = ()
    expired: tuple[tuple[int, bytes], ...] = ()

    @property
    def alias_links(self) -> tuple[Repoint, ...]:
        """Links for the aliases of the forwarded events (a charge id -> the charge's customer)."""
        return tuple(
            Repoint(local_id=alias, customer_key=event.customer_key, reason="alias",
                    correlation_id=event.correlation_id)
            for event in self.forward
            if event.customer_key is not None
            for alias in event.aliases
            if alias != event.local_customer
        )


def _resolved(event: CanonicalEvent, customer_key: str) -> CanonicalEvent:
    if event.customer_key == customer_key:
        return event
    return msgspec.structs.replace(event, customer_key=customer_key)


def _release(queue: ParkedQueue, customer_key: str) -> tuple[CanonicalEvent, ...]:
    return tuple(_resolved(decode_event(raw), customer_key) for raw in queue.events)


def step(link: str | None, queue: ParkedQueue, message: IdentityMessage, limit: int, *, now: int = 0,
         ttl: int = 0, room: bool = True) -> Outcome:
    """One identity record for a local id whose current link and parked queue are given.

    * A `Repoint` or an event that names its customer key sets the link and releases what was parked
      (in arrival order, before the event itself), however long it waited: the link is what it
      waited for.
    * Otherwise, events parked more than `ttl` ms before `now` expire first (0: never); a
      `ParkSweep` does nothing else.
    * An event without a customer key is resolved through the link, or parked (at `now`); past
      `limit` parked events it overflows, and when the id has nothing parked yet and `room` is
      False (the worker holds as many parked ids as allowed) it is refused. The caller dead-letters
      overflow, refused and expired events: none is dropped.
    """
    if isinstance(message, Repoint):
        return Outcome(message.customer_key, _release(queue, message.customer_key), EMPTY_QUEUE)
    if not isinstance(message, ParkSweep) and message.customer_key is not None:
        released = _release(queue, message.customer_key)
        return Outcome(message.customer_key, (*released, message), EMPTY_QUEUE)
    had_parked = len(queue) > 0
    expired: tuple[tuple[int, bytes], ...] = ()
    if ttl > 0:
        queue, expired = queue.expire(now - ttl)
    if isinstance(message, ParkSweep):
        return Outcome(link, (), queue, expired=expired)
    if link is not None:
        return Outcome(link, (_resolved(message, link),), queue, expired=expired)
    raw = encode_event(message)
    if len(queue) >= limit:
        return Outcome(None, (), queue, (raw,), expired=expired)
    if not had_parked and not room:
        return Outcome(None, (), queue, refused=(raw,), expired=expired)
    return Outcome(None, (), queue.append(raw, now), expired=expired)


def expired_by(queue: ParkedQueue, now: int, ttl: int) -> bool:
    """Whether some event of `queue` was parked more than `ttl` ms before `now` (reads one header)."""
    oldest = queue.oldest_at
    return ttl > 0 and oldest is not None and oldest < now - ttl


class MergeRouting(Struct, frozen=True):
    """What a CRM merge asks of one canonical event under a customer key."""

    repoints: tuple[Repoint, ...] = ()
    # Events that arrived under a merged-away key, re-addressed to the winner.
    readdressed: tuple[CanonicalEvent, ...] = ()
    # False when the event belongs to another key now (it was re-addressed instead).
    keep: bool = True


_PARTY_KIND: Final = {Platform.STRIPE: "customer", Platform.ZENDESK: "organization", Platform.NETSUITE: "customer"}


def carried(state: CustomerState, merge: AccountMerged) -> tuple[CanonicalEvent, ...]:
    """Every record the loser holds in billing, support and ERP, restated to the winner.

    The re-point only redirects the records' next events. A record that stays silent after the merge
    would never reach the winner: a Stripe customer still naming the merged-away account (D13 judges
    such references), but also its subscription, an ERP customer's financial flags, an open case. The
    rules of the winner would then judge it without them (an active subscription missing makes a paid
    entitlement look unpaid), and whether they do would depend on whether the record's last event came
    before or after the merge was read. So the loser hands over all it knows, and the entitlements it
    could not read as unread. Each record keeps its version (a party record, the latest of its
    fields'), so the winner keeps whichever copy is newer; the event ids derive from the merge's, so a
    redelivered merge restates the same.
    """
    out: list[CanonicalEvent] = []
    for system, records in ((Platform.STRIPE, state.billing.customers), (Platform.ZENDESK, state.support.organizations),
                            (Platform.NETSUITE, state.erp.customers)):
        for record in records.values():
            latest = max((stamp for stamp, _ in record.stamps), default=ZERO)
            if latest == ZERO:
                continue
            out.append(CustomerUpserted(
                event_id=f"{merge.event_id}:carried:{system.value}:{record.id}", source=system,
                entity=EntityRef(_PARTY_KIND[system], record.id), occurred_at=latest.ts,
                version=Version(latest.ts, latest.seq), customer_key=merge.winner_id,
                local_customer=f"{system.value}:{record.id}", correlation_id=merge.correlation_id,
                system=system, customer_id=record.id, deleted=record.deleted, name=_known(record, "name"),
                email=_known(record, "email"), country=_known(record, "country"), currency=_known(record, "currency"),
                tax_id=_known(record, "tax_id"), address=_known(record, "address"),
                payment_terms=_known(record, "payment_terms"), crm_account_id=_known(record, "crm_account_id"),
            ))
    billing, support, erp = state.billing, state.support, state.erp
    for sub in billing.subscriptions.values():
        out.append(SubscriptionChanged(
            **_common(merge, Platform.STRIPE, "subscription", sub.id, sub.stamp, sub.since_lag),
            subscription_id=sub.id, customer_id=sub.customer_id, status=sub.status, plan=sub.plan,
            quantity=sub.quantity, amount=sub.amount, currency=sub.currency,
            current_period_end=sub.current_period_end, cancel_at_period_end=sub.cancel_at_period_end,
            canceled_at=sub.canceled_at, deleted=sub.deleted))
    for system, invoices in ((Platform.STRIPE, billing.invoices), (Platform.NETSUITE, erp.invoices)):
        for inv in invoices.values():
            out.append(InvoiceChanged(
                **_common(merge, system, "invoice", inv.id, inv.stamp, inv.since_lag),
                system=system, invoice_id=inv.id, billing_invoice_id=inv.billing_invoice_id,
                customer_id=inv.customer_id, subscription_id=inv.subscription_id, number=inv.number,
                status=inv.status, total=inv.total, tax=inv.tax, amount_remaining=inv.amount_remaining,
                currency=inv.currency, due_at=inv.due_at, paid_at=inv.paid_at, deleted=inv.deleted))
    for system, payments in ((Platform.STRIPE, billing.payments), (Platform.NETSUITE, erp.payments)):
        for pay in payments.values():
            out.append(PaymentChanged(
                **_common(merge, system, "payment", pay.id, pay.stamp, pay.since_lag),
                system=system, payment_id=pay.id, invoice_id=pay.invoice_id, status=pay.status,
                amount=pay.amount, currency=pay.currency, deleted=pay.deleted))
    for system, refunds in ((Platform.STRIPE, billing.refunds), (Platform.NETSUITE, erp.credit_memos)):
        for ref in refunds.values():
            out.append(RefundChanged(
                **_common(merge, system, ref.document, ref.id, ref.stamp, ref.since_lag),
                system=system, refund_id=ref.id, document=ref.document, billing_refund_id=ref.billing_refund_id,
                invoice_id=ref.invoice_id, charge_id=ref.charge_id, status=ref.status, amount=ref.amount,
                currency=ref.currency, deleted=ref.deleted))
    for ent in support.entitlements.values():
        out.append(EntitlementChanged(
            **_common(merge, Platform.ZENDESK, "organization", ent.organization_id, ent.stamp, ent.since_lag),
            organization_id=ent.organization_id, status=ent.status, tier=ent.tier, end_date=ent.end_date,
            tags=ent.tags, deleted=ent.deleted))
    for case in support.cases.values():
        out.append(SupportCaseChanged(
            **_common(merge, Platform.ZENDESK, "ticket", case.id, case.stamp, case.since_lag),
            ticket_id=case.id, organization_id=case.organization_id, status=case.status, priority=case.priority,
            subject=case.subject, created_at=case.created_at, deleted=case.deleted))
    for org, (first_ts, last_ts) in support.unread.items():  # unread from the first change to the last: both
        for part, ts in (("unread-first", first_ts), ("unread-latest", last_ts))[: 1 if first_ts == last_ts else 2]:
            out.append(ResyncRequired(
                **_common(merge, Platform.ZENDESK, "organization", org, Stamp(ts, 0, 0), 0, part),
                reason="carried from an account merged away: its entitlement was not read",
                object_type="organization", record_ids=(org,)))
    for flags in erp.flags.values():
        out.append(FinancialFlagsChanged(
            **_common(merge, Platform.NETSUITE, "customer", flags.customer_id, flags.stamp, 0, "flags"),
            system=Platform.NETSUITE, customer_id=flags.customer_id, overdue_balance=flags.overdue_balance,
            currency=flags.currency, credit_hold=flags.credit_hold))
    for order in erp.sales_orders.values():
        out.append(SalesOrderChanged(
            **_common(merge, Platform.NETSUITE, "salesOrder", order.id, order.stamp, order.since_lag),
            system=Platform.NETSUITE, order_id=order.id, opportunity_id=order.opportunity_id, status=order.status,
            total=order.total, currency=order.currency, deleted=order.deleted))
    return tuple(out)


def _common(merge: AccountMerged, system: Platform, kind: str, record_id: str, stamp: Stamp, since_lag: int,
            part: str = "") -> dict[str, Any]:
    """The event fields of a record restated from `merge`'s loser, at the version `stamp` gave it."""
    suffix = f":{part}" if part else ""
    return {"event_id": f"{merge.event_id}:carried:{system.value}:{kind}:{record_id}{suffix}", "source": system,
            "entity": EntityRef(kind, record_id), "occurred_at": stamp.ts - since_lag,
            "version": Version(stamp.ts, stamp.seq), "customer_key": merge.winner_id,
            "correlation_id": merge.correlation_id}


def _known(record: PartyRecord, field: str) -> Any:
    """The field's value if some change set it, else UNSET (a restatement must not blank it)."""
    return getattr(record, field) if record.stamp_of(field) != ZERO else UNSET


def merge_routing(state: CustomerState, event: CanonicalEvent) -> MergeRouting:
    """Route one canonical event under `state.key` around CRM merges.

    The state knows the platform ids seen for its customer (`local_ids`, learned by `apply`) and
    whether it was merged away (`merged_into`). A merge arrives under the loser's key (and the
    winner's): the loser re-points every local id it knows to the winner and restates its customer
    records to the winner (`carried`). An event still arriving
    under a merged-away key (resolved before the re-point landed) is re-addressed to the winner, and
    its local id re-pointed.
    """
    key = state.key
    if isinstance(event, AccountMerged) and key in event.loser_ids:
        return MergeRouting(tuple(
            Repoint(local_id=local, customer_key=event.winner_id, reason="crm_merge",
                    correlation_id=event.correlation_id)
            for local in state.local_ids
        ), carried(state, event))
    winner = state.merged_into
    if winner is None or key == winner:
        return MergeRouting()
    repoints: tuple[Repoint, ...] = ()
    if event.local_customer is not None:
        repoints = (Repoint(local_id=event.local_customer, customer_key=winner, reason="crm_merge",
                            correlation_id=event.correlation_id),)
    return MergeRouting(repoints, (_resolved(event, winner),), keep=False)
