"""Per-customer state and its pure transition `apply(state, event, limits) -> (state, applied)`.

One `CustomerState` per customer key (the CRM Account Id), with a section per system. Every record
carries a `Stamp` (version + a tie-break from the event id), and an event changes a record (or a
field of it) only when its stamp is newer: last-writer-wins per record, and per field where a source
sends partial updates (Salesforce UPDATE, Zendesk organizations, NetSuite customers, Stripe deletion
stubs). With a total order of stamps, the result of a customer's history does not depend on the order
or repetition of its events.

Closed invoices, payments, refunds and cases are kept only up to a bound (`Limits`); the newest
evicted stamp becomes the section's horizon, and a change at or below it for a record the section
does not hold is taken for a late change of an evicted record and ignored. That is the one
order-dependent rule: in version order such a change arrives before the horizon passes it and is kept
(an old invoice still open, say); delivered later, it is dropped. Below the bounds nothing is evicted
and the horizon stays at zero.

Pure: no Faust, no I/O. Encoded with msgpack for the table, compact and bounded: records and sections
are arrays, per-field stamps are shared by the fields a change set, and values the state can derive (a
billing invoice's own id, a source time equal to its version) are not stored twice. A typical customer
stays under 1,700 bytes (a test holds it to that).

The Structs here are not tracked by the cyclic garbage collector (`gc=False`): a state is a tree of
immutable records, never a cycle, and a worker keeps hundreds of thousands of these objects decoded;
tracked, each collection walked them all (canonical events and evidence are untracked too).
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Protocol, TypeVar

import msgspec
from msgspec import UNSET, Struct

from concord.codecs.model import (
    AccountMerged,
    AccountUpserted,
    CanonicalEvent,
    CustomerUpserted,
    EntitlementChanged,
    FinancialFlagsChanged,
    InvoiceChanged,
    OpportunityChanged,
    PaymentChanged,
    Platform,
    RefundChanged,
    ResyncRequired,
    SalesOrderChanged,
    SubscriptionChanged,
    SupportCaseChanged,
)
from concord.core.currency import minor_units, rescale
from concord.core.messages import DriftItem


class Stamp(Struct, gc=False, frozen=True, order=True, array_like=True):
    """Total order of changes: source version, then a hash of the event id to break exact ties."""

    ts: int
    seq: int
    tie: int


ZERO: Final = Stamp(0, 0, 0)


def event_hash(event_id: str) -> int:
    """64-bit hash of an event id: dedup ring entries and stamp tie-breaks.

    CRC-32 and Adler-32 side by side: stable across processes and versions, and half the cost of a
    cryptographic digest on the hot path (no hashlib object per event). Nothing here needs resistance
    to chosen collisions: a ring entry also holds the event's version, and a tie-break only orders
    two changes of one record at one exact version.
    """
    data = event_id.encode()
    return zlib.adler32(data) << 32 | zlib.crc32(data)  # CRC-32 low: the tie-break takes those bits


def event_stamp(event: CanonicalEvent, h: int) -> Stamp:
    """The stamp of `event` (`h` is `event_hash(event.event_id)`)."""
    # 32 bits are plenty to break ties between two changes of one record at one exact version.
    return Stamp(event.version.ts, event.version.seq, h & 0xFFFFFFFF)


class Limits(Struct, frozen=True, kw_only=True):
    """Bounds that keep a customer's state flat as its history grows (settings)."""

    closed_invoices: int = 12
    payments: int = 12
    refunds: int = 12
    closed_cases: int = 10
    open_records: int = 200
    # The dedup ring is only an early-drop cache: a duplicate's stamp is never newer than what its record
    # (or field, or the horizon once the record is evicted) holds, so its transition is a no-op anyway.
    recent_event_ids: int = 8
    local_ids: int = 64


DEFAULT_LIMITS: Final = Limits()

# ---------------------------------------------------------------- records

# Fields of the records stamped one by one; bit i of a mask stands for field i. The fields most changes
# carry come first, so that their masks stay below 128: one byte.
_ACCOUNT_FIELDS: Final = ("deleted", "name", "country", "currency", "tax_id", "address", "payment_terms")
_OPPORTUNITY_FIELDS: Final = ("deleted", "stage", "is_won", "is_closed", "amount", "currency", "close_date", "plan",
                              "account_id", "amount_digits", "quantity")
_PARTY_FIELDS: Final = ("deleted", "crm_account_id", "name", "currency", "country", "payment_terms", "email",
                        "tax_id", "address")


# Per-field stamps of a record: each distinct stamp of its fields once, oldest first, with the fields it
# stamps as a bit mask (bit i: field i of the record's FIELDS). A field in no mask was never set.
FieldStamps = tuple[tuple[Stamp, int], ...]


class FieldStamped:
    """Mixin of the records whose fields are stamped one by one (their sources send partial updates).

    A change stamps all the fields it sets at once, so a record mostly holds one or two stamps, not one
    per field. Kept canonical (sorted, no empty mask: see `_restamped`) so that records with the same
    stamp per field are equal, whatever order the changes came in.
    """

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]]
    stamps: FieldStamps

    @property
    def stamp(self) -> Stamp:
        """The newest change applied to any field (ZERO before any)."""
        return self.stamps[-1][0] if self.stamps else ZERO

    def stamp_of(self, field: str) -> Stamp:
        """The stamp of the change that set `field` last (ZERO if none did)."""
        return _stamp_at(self.stamps, 1 << self.FIELDS.index(field))


def _stamp_at(stamps: FieldStamps, bit: int) -> Stamp:
    """The stamp of the field `bit` stands for (ZERO if it was never set)."""
    for stamp, mask in stamps:
        if mask & bit:
            return stamp
    return ZERO


class Account(Struct, FieldStamped, gc=False, kw_only=True, frozen=True, array_like=True):
    """CRM account; fields stamped one by one (Salesforce UPDATE carries only what changed)."""

    FIELDS = _ACCOUNT_FIELDS
    name: str | None = None
    country: str | None = None
    currency: str | None = None
    tax_id: str | None = None
    address: str | None = None
    payment_terms: str | None = None
    deleted: bool = False
    stamps: FieldStamps = ()


class Opportunity(Struct, FieldStamped, gc=False, kw_only=True, frozen=True, array_like=True):
    FIELDS = _OPPORTUNITY_FIELDS
    id: str
    account_id: str | None = None
    stage: str | None = None
    is_won: bool | None = None
    is_closed: bool | None = None
    amount: int | None = None
    currency: str | None = None
    close_date: str | None = None
    plan: str | None = None
    deleted: bool = False
    stamps: FieldStamps = ()
    # Decimals `amount` is counted in (None: those of `currency`, as in states stored before this field).
    amount_digits: int | None = None
    # Units sold (TotalOpportunityQuantity). Last: a record is an array, so states stored before it decode.
    quantity: int | None = None

    def amount_in(self, currency: str | None) -> int | None:
        """`amount` in minor units of `currency` (the record's own, or its account's when it has none).

        Salesforce amounts are decimal numbers whose unit is the record's currency: an amount-only
        change names no currency, and a currency-only change keeps the number. The codec counts the
        amount in the decimals it knew of (`amount_digits`); it is read here in the currency that holds.
        """
        amount, digits = self.amount, self.amount_digits
        if amount is None or digits is None or currency is None:
            return amount
        return rescale(amount, digits, minor_units(currency.upper()))


class PartyRecord(Struct, FieldStamped, gc=False, kw_only=True, frozen=True, array_like=True):
    """A customer record in billing, support or ERP; fields stamped one by one (see _put_party)."""

    FIELDS = _PARTY_FIELDS
    id: str
    name: str | None = None
    email: str | None = None
    country: str | None = None
    currency: str | None = None
    tax_id: str | None = None
    address: str | None = None
    payment_terms: str | None = None
    crm_account_id: str | None = None
    deleted: bool = False
    stamps: FieldStamps = ()


class Versioned:
    """Mixin of the records replaced whole by each newer change, stamped `stamp`.

    `since`, the source time of that change, is kept as `since_lag`, its distance below the change's
    version time: the Stripe, Zendesk and NetSuite codecs version a change by its source time, so the
    lag is 0, one byte where the time took nine.
    """

    __slots__ = ()
    stamp: Stamp
    since_lag: int

    @property
    def since(self) -> int:
        """Source time of the change that set this record (its status)."""
        return self.stamp.ts - self.since_lag


class Subscription(Struct, Versioned, gc=False, kw_only=True, frozen=True, array_like=True):
    id: str
    customer_id: str
    status: str
    plan: str | None = None
    quantity: int = 1
    amount: int | None = None
    currency: str | None = None
    current_period_end: int | None = None
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    deleted: bool = False
    since_lag: int = 0
    stamp: Stamp = ZERO


class Invoice(Struct, Versioned, gc=False, kw_only=True, frozen=True, array_like=True):
    id: str
    # `billing_invoice_id` without repeating the id: True when it is the invoice's own (every billing
    # invoice names itself), else the billing invoice an ERP invoice books (its externalId), or None.
    # One field, not a flag and a reference: `_apply_invoice` passes every field, and a 16th keyword
    # argument takes a far slower call path in CPython.
    billing_ref: str | bool | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    number: str | None = None
    status: str = "open"
    total: int = 0
    tax: int | None = None
    amount_remaining: int | None = None
    currency: str = ""
    due_at: int | None = None
    paid_at: int | None = None
    deleted: bool = False
    since_lag: int = 0
    stamp: Stamp = ZERO

    @property
    def billing_invoice_id(self) -> str | None:
        """The billing invoice this invoice is (a billing invoice) or books (an ERP invoice's externalId)."""
        ref = self.billing_ref
        return self.id if isinstance(ref, bool) else ref  # only True is stored


class Payment(Struct, Versioned, gc=False, kw_only=True, frozen=True, array_like=True):
    id: str
    invoice_id: str | None = None
    status: str = ""
    amount: int = 0
    currency: str = ""
    since_lag: int = 0
    stamp: Stamp = ZERO
    deleted: bool = False  # kept as a tombstone: a late older change must not bring it back


class Refund(Struct, Versioned, gc=False, kw_only=True, frozen=True, array_like=True):
    id: str
    document: str = "refund"
    billing_refund_id: str | None = None
    invoice_id: str | None = None
    charge_id: str | None = None
    status: str = ""
    amount: int = 0
    currency: str = ""
    since_lag: int = 0
    stamp: Stamp = ZERO
    deleted: bool = False  # kept as a tombstone: a late older change must not bring it back


class Entitlement(Struct, Versioned, gc=False, kw_only=True, frozen=True, array_like=True):
    organization_id: str
    status: str | None = None
    tier: str | None = None
    end_date: str | None = None
    tags: tuple[str, ...] = ()
    deleted: bool = False
    since_lag: int = 0
    stamp: Stamp = ZERO


class Case(Struct, Versioned, gc=False, kw_only=True, frozen=True, array_like=True):
    id: str
    organization_id: str | None = None
    status: str | None = None
    priority: str | None = None
    subject: str | None = None
    created_at: int | None = None
    deleted: bool = False
    since_lag: int = 0
    stamp: Stamp = ZERO


class Flags(Struct, gc=False, kw_only=True, frozen=True, array_like=True):
    customer_id: str
    overdue_balance: int | None = None
    currency: str | None = None
    credit_hold: bool | None = None
    stamp: Stamp = ZERO


class SalesOrder(Struct, Versioned, gc=False, kw_only=True, frozen=True, array_like=True):
    id: str
    opportunity_id: str | None = None
    status: str | None = None
    total: int | None = None
    currency: str | None = None
    deleted: bool = False
    since_lag: int = 0
    stamp: Stamp = ZERO


# ---------------------------------------------------------------- sections
#
# Array-like too, as the records: field names would repeat in every stored state (new fields go last,
# with a default, so that states stored before them still decode).


class Crm(Struct, gc=False, kw_only=True, frozen=True, array_like=True):
    account: Account | None = None
    opportunities: dict[str, Opportunity] = {}
    # Records changed at the source in ways no event showed (a Salesforce gap event): record id (the
    # customer's own account, or an opportunity) -> (source time of the first change not read, of the
    # latest). Unknown, not absent, until the record is read whole as of the latest (`read_whole_as_of`):
    # the re-read of connectors/rereads.py, or any event carrying every field.
    unread: dict[str, tuple[int, int]] = {}


class Billing(Struct, gc=False, kw_only=True, frozen=True, array_like=True):
    customers: dict[str, PartyRecord] = {}
    subscriptions: dict[str, Subscription] = {}
    invoices: dict[str, Invoice] = {}
    payments: dict[str, Payment] = {}
    refunds: dict[str, Refund] = {}
    horizon: Stamp = ZERO


class Support(Struct, gc=False, kw_only=True, frozen=True, array_like=True):
    organizations: dict[str, PartyRecord] = {}
    entitlements: dict[str, Entitlement] = {}
    cases: dict[str, Case] = {}
    horizon: Stamp = ZERO
    # Organizations whose entitlement changed at the source and is not read yet (a Zendesk webhook carries
    # no custom fields; the re-read brings them): organization id -> (source time of the first change not
    # read, of the latest). The entitlement the state holds for them is unknown, not absent, meanwhile.
    unread: dict[str, tuple[int, int]] = {}


class Erp(Struct, gc=False, kw_only=True, frozen=True, array_like=True):
    customers: dict[str, PartyRecord] = {}
    flags: dict[str, Flags] = {}
    invoices: dict[str, Invoice] = {}
    payments: dict[str, Payment] = {}
    credit_memos: dict[str, Refund] = {}
    sales_orders: dict[str, SalesOrder] = {}
    horizon: Stamp = ZERO


class CustomerState(Struct, gc=False, kw_only=True, frozen=True, array_like=True):
    """Everything Concord knows of one customer across the four systems."""

    key: str
    crm: Crm = Crm()
    billing: Billing = Billing()
    support: Support = Support()
    erp: Erp = Erp()
    # (version, hash) of the most recent event ids (the newest by version): duplicates are dropped early.
    recent: tuple[tuple[int, int], ...] = ()
    # Platform-local ids seen for this customer ("stripe:cus_1"): re-pointed after a CRM merge.
    local_ids: tuple[str, ...] = ()
    merged_into: str | None = None
    merged_stamp: Stamp = ZERO
    last_event_at: int = 0
    # Findings by fingerprint: pending, open, commanded, escalated, and the last few resolved.
    drift: dict[str, DriftItem] = {}
    # Earliest time the drift lifecycle must look at this customer again without a new event.
    next_due: int = 0
    # Accounts merged into this one in the CRM: (loser key, merge time). Records still naming a
    # loser are re-pointed here (D13); the loser's own state is retired (`merged_into`).
    absorbed: tuple[tuple[str, int], ...] = ()
    # The quote-to-cash sagas of this customer's opportunities, as the rules see them: opportunity id ->
    # the saga's state (running, completed, paused, ...; the sagas themselves live in the `sagas` table,
    # drift/saga.py), and the earliest time one of them must be looked at again (0: none).
    sagas: dict[str, str] = {}
    saga_due: int = 0


def empty(key: str) -> CustomerState:
    return CustomerState(key=key)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CustomerState)


def dump(state: CustomerState) -> bytes:
    return _encoder.encode(state)


def load(data: bytes) -> CustomerState:
    return _decoder.decode(data)


# ---------------------------------------------------------------- transition
#
# A transition returns the CustomerState fields it changes (None when the event changed no record), so
# `apply` builds the new state once, bookkeeping included.

_replace = msgspec.structs.replace
Changes = dict[str, Any]
Transition = Callable[[CustomerState, Any, Stamp, Limits], Changes | None]
# What the dedup ring and the local ids hold, each kept sorted.
Ordered = TypeVar("Ordered", tuple[int, int], str)
# Records watermarked field by field, and records kept in bounded collections.
Partial = TypeVar("Partial", Account, Opportunity, PartyRecord)
Bounded = TypeVar("Bounded", Invoice, Payment, Refund, Case)


class _Stamped(Protocol):
    @property
    def stamp(self) -> Stamp: ...


def _with_newer_fields(record: Partial, event: Any, stamp: Stamp) -> Partial | None:
    """`record` with each field `event` carries (not UNSET) set where the field's stamp is older than `stamp`.

    The fields set take `stamp`, the others keep theirs; None when no field was older.
    """
    stamps = record.stamps
    newest = not stamps or stamps[-1][0] < stamp  # then every field is older: the common case
    values: dict[str, Any] = {}
    taken, bit = 0, 1
    for name in record.FIELDS:
        value = getattr(event, name)
        if value is not UNSET and (newest or _stamp_at(stamps, bit) < stamp):
            values[name] = value
            taken |= bit
        bit <<= 1
    if not values:
        return None
    return _replace(record, stamps=_restamped(stamps, taken, stamp), **values)


def _restamped(stamps: FieldStamps, taken: int, stamp: Stamp) -> FieldStamps:
    """`stamps` once `stamp` stamps the fields in `taken`: still sorted, and no mask left empty."""
    kept: FieldStamps = ()
    for older, mask in stamps:
        if older == stamp:  # an exact tie (two changes at one version, event ids hashed alike): one entry
            taken |= mask
        elif mask & ~taken:
            kept += ((older, mask & ~taken),)
    at = bisect_left(kept, (stamp,))
    return (*kept[:at], (stamp, taken), *kept[at:])


def _is_newer(records: Mapping[str, _Stamped], rid: str, stamp: Stamp) -> bool:
    current = records.get(rid)
    return current is None or current.stamp < stamp


def _admits(records: Mapping[str, _Stamped], rid: str, stamp: Stamp, horizon: Stamp) -> bool:
    """Whether a change of a record in a bounded collection is newer than what the state knows of it.

    A record the collection does not hold is taken for an evicted one when the change is at or below
    the horizon: without this, a late change of an evicted record would bring it back.
    """
    current = records.get(rid)
    return stamp > horizon if current is None else current.stamp < stamp


def _record_stamp(record: Bounded) -> Stamp:
    return record.stamp


def _bounded(records: dict[str, Bounded], horizon: Stamp, keep_closed: int,
             is_open: Callable[[Bounded], bool] | None = None, keep_open: int = 0) -> tuple[dict[str, Bounded], Stamp]:
    """Keep the `keep_open` newest open records and the `keep_closed` newest closed ones.

    Collections without an open state (`is_open` None) keep their `keep_closed` newest records. The
    newest stamp dropped raises the horizon.
    """
    size = len(records)
    if size <= keep_closed and (is_open is None or size <= keep_open):
        return records, horizon
    if is_open is None:
        ranked = sorted(records.values(), key=_record_stamp, reverse=True)
        kept, dropped = ranked[:keep_closed], ranked[keep_closed:]
    else:
        opened = [r for r in records.values() if is_open(r)]
        if len(opened) <= keep_open and size - len(opened) <= keep_closed:
            return records, horizon
        closed = sorted((r for r in records.values() if not is_open(r)), key=_record_stamp, reverse=True)
        opened.sort(key=_record_stamp, reverse=True)
        kept = opened[:keep_open] + closed[:keep_closed]
        dropped = opened[keep_open:] + closed[keep_closed:]
    return {r.id: r for r in kept}, max(horizon, *(r.stamp for r in dropped))


def _section_of(system: Platform) -> str:
    """Where invoices, payments and refunds of `system` live: billing for Stripe, ERP otherwise."""
    return "billing" if system is Platform.STRIPE else "erp"


_NO_ACCOUNT: Final = Account()
# Every field of a record set: a record read whole.
_ALL_FIELDS: Final = {Account: (1 << len(_ACCOUNT_FIELDS)) - 1, Opportunity: (1 << len(_OPPORTUNITY_FIELDS)) - 1}


def _second_end(ts: int) -> int:
    """The last millisecond of `ts`'s second.

    Salesforce times a record to the second (LastModifiedDate, SystemModstamp; the codec versions a REST
    record at the end of its second, as it holds every change of that second made before the read), and
    two changes in one second cannot be told apart: a gap is settled only by a record held whole as of the
    end of the gap's second, never by a change event of that same second, which may be the earlier one.
    """
    return ts - ts % 1000 + 999


def read_whole_as_of(record: Account | Opportunity | None) -> int:
    """Source time as of which the state holds every field of `record` (0: some field was never read).

    The oldest of its fields' stamps once each field was set (a re-read, a change event carrying
    every field); a deleted record is known as of its deletion. A partial update (a Salesforce
    UPDATE) does not make a record whose other fields are unread known.
    """
    if record is None or not record.stamps:
        return 0
    if record.deleted:
        return record.stamp_of("deleted").ts
    taken = 0
    for _, mask in record.stamps:
        taken |= mask
    return record.stamps[0][0].ts if taken == _ALL_FIELDS[type(record)] else 0


def _read_again(unread: dict[str, tuple[int, int]], record_id: str,
                record: Account | Opportunity | None) -> dict[str, tuple[int, int]]:
    """`unread` without `record_id` once `record` is read whole as of its latest unread change."""
    pending = unread.get(record_id)
    if pending is None or read_whole_as_of(record) < _second_end(pending[1]):
        return unread
    return {rid: times for rid, times in unread.items() if rid != record_id}


def recountried(address: str, old: str | None, new: str | None) -> str | None:
    """The one-line address (codecs/salesforce.py: its parts joined by ", ", the country last) with its country
    changed from `old` to `new`.

    Salesforce's change events carry only the parts of a compound address that changed: a person filling in a
    missing billing country sends the country alone, and the one-line address held would stay without it while
    the other systems (provisioned with it since) hold it whole.
    """
    parts = address.split(", ")
    if old and parts[-1] == old:
        parts.pop()
    if new:
        parts.append(new)
    return ", ".join(parts) or None


def _apply_account(state: CustomerState, e: AccountUpserted, stamp: Stamp, limits: Limits) -> Changes | None:
    if e.entity.id != state.key:
        # Another account's change, re-addressed here after a merge (a merged-away account, deleted or
        # re-read): this customer's account is its own, so it changes nothing.
        return None
    crm = state.crm
    held = crm.account
    if e.address is UNSET and e.country is not UNSET and "address" in e.changed and held and held.address:
        e = _replace(e, address=recountried(held.address, held.country, e.country))
    account = _with_newer_fields(crm.account or _NO_ACCOUNT, e, stamp)
    unread = _read_again(crm.unread, state.key, account or crm.account) if crm.unread else crm.unread
    if account is None:
        return None if unread is crm.unread else {"crm": _replace(crm, unread=unread)}
    if unread is not crm.unread:
        return {"crm": _replace(crm, account=account, unread=unread)}
    return {"crm": _replace(crm, account=account)}


def _apply_opportunity(state: CustomerState, e: OpportunityChanged, stamp: Stamp, limits: Limits) -> Changes | None:
    crm = state.crm
    opportunities = crm.opportunities
    current = opportunities.get(e.opportunity_id) or Opportunity(id=e.opportunity_id)
    opportunity = _with_newer_fields(current, e, stamp)
    unread = crm.unread
    if unread:
        unread = _read_again(unread, e.opportunity_id, opportunity or opportunities.get(e.opportunity_id))
    if opportunity is None:
        return None if unread is crm.unread else {"crm": _replace(crm, unread=unread)}
    if unread is not crm.unread:
        return {"crm": _replace(crm, opportunities={**opportunities, e.opportunity_id: opportunity}, unread=unread)}
    return {"crm": _replace(crm, opportunities={**opportunities, e.opportunity_id: opportunity})}


def _put_party(records: dict[str, PartyRecord], e: CustomerUpserted, stamp: Stamp) -> dict[str, PartyRecord] | None:
    # Per field: Zendesk and NetSuite never send some fields, and a Stripe deletion stub sends none;
    # a field left UNSET keeps the value (and watermark) an older change gave it, in any order.
    record = _with_newer_fields(records.get(e.customer_id) or PartyRecord(id=e.customer_id), e, stamp)
    return None if record is None else {**records, e.customer_id: record}


def _apply_customer(state: CustomerState, e: CustomerUpserted, stamp: Stamp, limits: Limits) -> Changes | None:
    if e.system is Platform.STRIPE:
        customers = _put_party(state.billing.customers, e, stamp)
        return None if customers is None else {"billing": _replace(state.billing, customers=customers)}
    if e.system is Platform.ZENDESK:
        organizations = _put_party(state.support.organizations, e, stamp)
        return None if organizations is None else {"support": _replace(state.support, organizations=organizations)}
    customers = _put_party(state.erp.customers, e, stamp)
    return None if customers is None else {"erp": _replace(state.erp, customers=customers)}


def _apply_subscription(state: CustomerState, e: SubscriptionChanged, stamp: Stamp, limits: Limits) -> Changes | None:
    billing = state.billing
    if not _is_newer(billing.subscriptions, e.subscription_id, stamp):
        return None
    record = Subscription(
        id=e.subscription_id, customer_id=e.customer_id, status=e.status, plan=e.plan, quantity=e.quantity,
        amount=e.amount, currency=e.currency, current_period_end=e.current_period_end,
        cancel_at_period_end=e.cancel_at_period_end, canceled_at=e.canceled_at, deleted=e.deleted,
        since_lag=stamp.ts - e.occurred_at, stamp=stamp,
    )
    return {"billing": _replace(billing, subscriptions={**billing.subscriptions, e.subscription_id: record})}


def _is_open_invoice(inv: Invoice) -> bool:
    return inv.status in ("draft", "open") and not inv.deleted


def _apply_invoice(state: CustomerState, e: InvoiceChanged, stamp: Stamp, limits: Limits) -> Changes | None:
    name = _section_of(e.system)
    section: Billing | Erp = getattr(state, name)
    if not _admits(section.invoices, e.invoice_id, stamp, section.horizon):
        return None
    record = Invoice(
        id=e.invoice_id, billing_ref=True if e.billing_invoice_id == e.invoice_id else e.billing_invoice_id,
        customer_id=e.customer_id, subscription_id=e.subscription_id, number=e.number, status=e.status,
        total=e.total, tax=e.tax, amount_remaining=e.amount_remaining, currency=e.currency, due_at=e.due_at,
        paid_at=e.paid_at, deleted=e.deleted, since_lag=stamp.ts - e.occurred_at, stamp=stamp,
    )
    invoices, horizon = _bounded({**section.invoices, e.invoice_id: record}, section.horizon,
                                 limits.closed_invoices, _is_open_invoice, limits.open_records)
    return {name: _replace(section, invoices=invoices, horizon=horizon)}


def _apply_payment(state: CustomerState, e: PaymentChanged, stamp: Stamp, limits: Limits) -> Changes | None:
    name = _section_of(e.system)
    section: Billing | Erp = getattr(state, name)
    if not _admits(section.payments, e.payment_id, stamp, section.horizon):
        return None
    record = Payment(id=e.payment_id, invoice_id=e.invoice_id, status=e.status, amount=e.amount,
                     currency=e.currency, since_lag=stamp.ts - e.occurred_at, stamp=stamp, deleted=e.deleted)
    payments, horizon = _bounded({**section.payments, e.payment_id: record}, section.horizon, limits.payments)
    return {name: _replace(section, payments=payments, horizon=horizon)}


def _put_refund(records: dict[str, Refund], horizon: Stamp, e: RefundChanged, stamp: Stamp,
                limits: Limits) -> tuple[dict[str, Refund], Stamp] | None:
    if not _admits(records, e.refund_id, stamp, horizon):
        return None
    record = Refund(id=e.refund_id, document=e.document, billing_refund_id=e.billing_refund_id,
                    invoice_id=e.invoice_id, charge_id=e.charge_id, status=e.status, amount=e.amount,
                    currency=e.currency, since_lag=stamp.ts - e.occurred_at, stamp=stamp, deleted=e.deleted)
    return _bounded({**records, e.refund_id: record}, horizon, limits.refunds)


def _apply_refund(state: CustomerState, e: RefundChanged, stamp: Stamp, limits: Limits) -> Changes | None:
    # Billing refunds and credit notes go to billing.refunds, ERP credit memos to erp.credit_memos.
    if e.system is Platform.STRIPE:
        put = _put_refund(state.billing.refunds, state.billing.horizon, e, stamp, limits)
        return None if put is None else {"billing": _replace(state.billing, refunds=put[0], horizon=put[1])}
    put = _put_refund(state.erp.credit_memos, state.erp.horizon, e, stamp, limits)
    return None if put is None else {"erp": _replace(state.erp, credit_memos=put[0], horizon=put[1])}


def _apply_entitlement(state: CustomerState, e: EntitlementChanged, stamp: Stamp, limits: Limits) -> Changes | None:
    support = state.support
    unread = support.unread
    pending = unread.get(e.organization_id)
    if pending is not None and stamp.ts >= pending[1]:  # read as of the latest change announced: known again
        unread = {org: times for org, times in unread.items() if org != e.organization_id}
    if not _is_newer(support.entitlements, e.organization_id, stamp):
        return None if unread is support.unread else {"support": _replace(support, unread=unread)}
    record = Entitlement(organization_id=e.organization_id, status=e.status, tier=e.tier, end_date=e.end_date,
                         tags=e.tags, deleted=e.deleted, since_lag=stamp.ts - e.occurred_at, stamp=stamp)
    return {"support": _replace(support, entitlements={**support.entitlements, e.organization_id: record},
                                unread=unread)}


def _is_open_case(case: Case) -> bool:
    return case.status not in ("solved", "closed") and not case.deleted


def _apply_case(state: CustomerState, e: SupportCaseChanged, stamp: Stamp, limits: Limits) -> Changes | None:
    support = state.support
    if not _admits(support.cases, e.ticket_id, stamp, support.horizon):
        return None
    record = Case(id=e.ticket_id, organization_id=e.organization_id, status=e.status, priority=e.priority,
                  subject=e.subject, created_at=e.created_at, deleted=e.deleted, since_lag=stamp.ts - e.occurred_at,
                  stamp=stamp)
    cases, horizon = _bounded({**support.cases, e.ticket_id: record}, support.horizon, limits.closed_cases,
                              _is_open_case, limits.open_records)
    return {"support": _replace(support, cases=cases, horizon=horizon)}


def _apply_flags(state: CustomerState, e: FinancialFlagsChanged, stamp: Stamp, limits: Limits) -> Changes | None:
    erp = state.erp
    if not _is_newer(erp.flags, e.customer_id, stamp):
        return None
    record = Flags(customer_id=e.customer_id, overdue_balance=e.overdue_balance, currency=e.currency,
                   credit_hold=e.credit_hold, stamp=stamp)
    return {"erp": _replace(erp, flags={**erp.flags, e.customer_id: record})}


def _apply_sales_order(state: CustomerState, e: SalesOrderChanged, stamp: Stamp, limits: Limits) -> Changes | None:
    erp = state.erp
    if not _is_newer(erp.sales_orders, e.order_id, stamp):
        return None
    record = SalesOrder(id=e.order_id, opportunity_id=e.opportunity_id, status=e.status, total=e.total,
                        currency=e.currency, deleted=e.deleted, since_lag=stamp.ts - e.occurred_at, stamp=stamp)
    return {"erp": _replace(erp, sales_orders={**erp.sales_orders, e.order_id: record})}


def _apply_merge(state: CustomerState, e: AccountMerged, stamp: Stamp, limits: Limits) -> Changes | None:
    if state.key == e.winner_id:
        known = {loser for loser, _ in state.absorbed}
        new = [(loser, stamp.ts) for loser in e.loser_ids if loser not in known and loser != state.key]
        if not new:
            return None
        return {"absorbed": tuple(sorted((*state.absorbed, *new)))}
    if state.key not in e.loser_ids or state.merged_stamp >= stamp:
        return None
    return {"merged_into": e.winner_id, "merged_stamp": stamp}


def _apply_resync(state: CustomerState, e: ResyncRequired, stamp: Stamp, limits: Limits) -> Changes | None:
    """A record changed in ways no event showed: unread until a read as of that change arrives.

    A Zendesk organization webhook (no custom fields): its entitlement. A Salesforce gap event naming
    an Account or Opportunity: that CRM record. Other re-read requests change nothing here (a gap
    naming no record, GAP_OVERFLOW, is said in the health document: agents/ingest.py).
    """
    if e.source is Platform.SALESFORCE:
        return _crm_unread(state, e, stamp) if e.object_type in _CRM_OBJECTS else None
    if e.source is not Platform.ZENDESK or e.object_type != "organization":
        return None
    support = state.support
    unread = dict(support.unread)
    for org in e.record_ids:
        first, latest = unread.get(org, (stamp.ts, stamp.ts))
        if org in support.entitlements and support.entitlements[org].stamp.ts >= stamp.ts:
            continue  # the state already holds the entitlement as of this change
        unread[org] = (min(first, stamp.ts), max(latest, stamp.ts))
    return None if unread == support.unread else {"support": _replace(support, unread=unread)}


_CRM_OBJECTS: Final = frozenset({"Account", "Opportunity"})


def _crm_unread(state: CustomerState, e: ResyncRequired, stamp: Stamp) -> Changes | None:
    """The Salesforce records a gap event names are unread, unless held whole as of its second already."""
    crm = state.crm
    unread = dict(crm.unread)
    for rid in e.record_ids:
        if e.object_type == "Account":
            if rid != state.key:
                continue  # another account's gap, re-addressed after a merge: not this customer's record
            record: Account | Opportunity | None = crm.account
        else:
            record = crm.opportunities.get(rid)
        if read_whole_as_of(record) >= _second_end(stamp.ts):
            continue  # the state holds the record as of that change already (its re-read came first)
        first, latest = unread.get(rid, (stamp.ts, stamp.ts))
        unread[rid] = (min(first, stamp.ts), max(latest, stamp.ts))
    return None if unread == crm.unread else {"crm": _replace(crm, unread=unread)}


_TRANSITIONS: Final[dict[type, Transition]] = {
    AccountUpserted: _apply_account,
    AccountMerged: _apply_merge,
    OpportunityChanged: _apply_opportunity,
    CustomerUpserted: _apply_customer,
    SubscriptionChanged: _apply_subscription,
    InvoiceChanged: _apply_invoice,
    PaymentChanged: _apply_payment,
    RefundChanged: _apply_refund,
    EntitlementChanged: _apply_entitlement,
    SupportCaseChanged: _apply_case,
    FinancialFlagsChanged: _apply_flags,
    SalesOrderChanged: _apply_sales_order,
    ResyncRequired: _apply_resync,
}


def _slot(ring: tuple[Ordered, ...], item: Ordered) -> int | None:
    """Where `item` goes in the sorted `ring`; None when the ring holds it already."""
    at = bisect_left(ring, item)
    return None if at < len(ring) and ring[at] == item else at


def _insert(ring: tuple[Ordered, ...], at: int, item: Ordered, size: int) -> tuple[Ordered, ...]:
    """Sorted `ring` with `item` inserted at `at`, keeping its `size` greatest entries."""
    if at == 0 and len(ring) == size:
        return ring  # below everything a full ring keeps
    grown = ring[:at] + (item,) + ring[at:]
    return grown[-size:] if size else ()


def is_duplicate(state: CustomerState, event: CanonicalEvent, h: int) -> bool:
    """Whether the dedup ring holds `event` (`h` is `event_hash(event.event_id)`)."""
    return _slot(state.recent, (event.version.ts, h)) is None


def _stamps_mapped(value: Any, stamp: Callable[[Stamp], Stamp], lag: bool) -> Any:
    """`value` with every stamp mapped by `stamp`, deep (and every `since_lag` zeroed unless `lag`)."""
    if isinstance(value, Stamp):
        return stamp(value)
    if isinstance(value, Struct):
        changed = {name: _stamps_mapped(getattr(value, name), stamp, lag) for name in value.__struct_fields__}
        if not lag and "since_lag" in changed:
            changed["since_lag"] = 0
        return _replace(value, **changed)
    if isinstance(value, dict):
        return {k: _stamps_mapped(v, stamp, lag) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_stamps_mapped(v, stamp, lag) for v in value)
    return value


def untied(value: Any) -> Any:
    """`value` with every stamp's tie-break (the hash of the event that made a change) zeroed, deep: two events of
    one record at one version that carry the same values then leave the same record."""
    return _stamps_mapped(value, lambda s: Stamp(s.ts, s.seq, 0), lag=True)


def records_differ(before: CustomerState, after: CustomerState) -> bool:
    """Whether the four systems' records of `after` hold other values than `before`'s, versions aside: a
    reconciliation's snapshot that only restamps what the state held changed nothing a person would call a
    change (every Stripe snapshot does: it is versioned by when it was listed). For snapshots, not the hot path."""
    return any(_stamps_mapped(getattr(before, name), _unstamped, lag=False)
               != _stamps_mapped(getattr(after, name), _unstamped, lag=False)
               for name in ("crm", "billing", "support", "erp"))


def _unstamped(stamp: Stamp) -> Stamp:
    return ZERO


def apply(state: CustomerState, event: CanonicalEvent, limits: Limits = DEFAULT_LIMITS) -> tuple[CustomerState, bool]:
    """The state after `event`, and whether the event changed any record.

    A duplicate event id is dropped (the same state comes back); a change older than what the state
    holds for its record (or field) does not regress it. Either way a new event's id, local id and
    source time are remembered, as order-free summaries: the ring keeps the newest ids by (version,
    hash), the local ids are a sorted set, `last_event_at` is a maximum.
    """
    h = event_hash(event.event_id)
    entry = (event.version.ts, h)
    recent = state.recent
    at = _slot(recent, entry)
    if at is None:
        return state, False
    try:
        transition = _TRANSITIONS[type(event)]
    except KeyError:
        raise TypeError(f"apply: unknown canonical event {type(event).__name__}; add its transition") from None
    changes = transition(state, event, event_stamp(event, h), limits)
    applied = changes is not None
    if changes is None:
        changes = {}
    ring = _insert(recent, at, entry, limits.recent_event_ids)
    if ring is not recent:
        changes["recent"] = ring
    local = event.local_customer
    if local is not None and local not in state.local_ids:
        local_ids = _insert(state.local_ids, bisect_left(state.local_ids, local), local, limits.local_ids)
        if local_ids is not state.local_ids:
            changes["local_ids"] = local_ids
    if event.occurred_at > state.last_event_at:
        changes["last_event_at"] = event.occurred_at
    return (_replace(state, **changes) if changes else state), applied
