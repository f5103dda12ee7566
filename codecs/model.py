"""The canonical model: what every platform payload is decoded into.

Every record is a msgspec Struct in one tagged union (`kind` is the tag), versioned by `v`.
Conventions, shared by every codec:

* Money is an integer amount in the currency's minor unit plus an upper-case ISO 4217 code.
* Times are UTC epoch milliseconds (`EpochMs`); calendar dates are ISO `YYYY-MM-DD` strings.
* A field left `UNSET` was not changed by the source and must never overwrite state
  (Salesforce UPDATE events carry only what changed). `None` means the source cleared it.
* `version` orders the changes of one entity: `(ts, seq)` compared as a tuple. `seq` is exact
  Python int, so a Salesforce `commitNumber` above 2**53 keeps every digit.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

SCHEMA_VERSION: Final = 1

EpochMs = Annotated[int, Meta(description="UTC epoch milliseconds")]
Minor = Annotated[int, Meta(description="amount in the currency's minor unit (cents)")]
Currency = Annotated[str, Meta(pattern="^[A-Z]{3}$", description="ISO 4217, upper case")]


class Platform(StrEnum):
    SALESFORCE = "salesforce"
    STRIPE = "stripe"
    ZENDESK = "zendesk"
    NETSUITE = "netsuite"


class Version(Struct, gc=False, frozen=True, order=True, array_like=True):
    """Per-entity ordering key: a later change has a greater `(ts, seq)`."""

    ts: EpochMs
    seq: int = 0


class EntityRef(Struct, gc=False, frozen=True, array_like=True):
    """What the event is about, in its source system: `("invoice", "in_123")`."""

    kind: str
    id: str


class Event(Struct, gc=False, frozen=True, kw_only=True, tag_field="kind"):
    """Fields common to every canonical event."""

    v: int = SCHEMA_VERSION
    # The source's event id. A codec that turns one source event into several canonical events
    # suffixes it (":<entity id>") so dedup keeps each; correlation_id keeps the bare source id.
    event_id: str
    source: Platform
    entity: EntityRef
    occurred_at: EpochMs
    version: Version
    # CRM Account Id, once known (from the payload itself or from identity resolution).
    customer_key: str | None = None
    # The platform-local customer this event belongs to, as "platform:id" (for identity).
    local_customer: str | None = None
    # Ids of the same customer in other systems found in the payload: {"salesforce": "001..."}.
    xrefs: dict[str, str] = {}
    # Other platform-local ids that name this same customer ("stripe:ch_1" on a charge): once this
    # event is resolved, identity links them too, so events that only know them (refunds) resolve.
    aliases: tuple[str, ...] = ()
    correlation_id: str = ""


class AccountUpserted(Event, frozen=True, kw_only=True, tag="account"):
    """A CRM account created, changed or deleted (Salesforce Account)."""

    name: str | None | UnsetType = UNSET
    country: str | None | UnsetType = UNSET
    currency: str | None | UnsetType = UNSET
    tax_id: str | None | UnsetType = UNSET
    address: str | None | UnsetType = UNSET
    payment_terms: str | None | UnsetType = UNSET
    deleted: bool = False
    # Names of the fields this change carries (Salesforce changedFields, resolved to our names).
    changed: tuple[str, ...] = ()


class AccountMerged(Event, frozen=True, kw_only=True, tag="account_merged"):
    """Salesforce merged `loser_ids` into `winner_id`; references to the losers must move."""

    winner_id: str
    loser_ids: tuple[str, ...]


class OpportunityChanged(Event, frozen=True, kw_only=True, tag="opportunity"):
    opportunity_id: str
    account_id: str | None | UnsetType = UNSET
    stage: str | None | UnsetType = UNSET
    is_won: bool | None | UnsetType = UNSET
    is_closed: bool | None | UnsetType = UNSET
    amount: Minor | None | UnsetType = UNSET
    currency: str | None | UnsetType = UNSET
    close_date: str | None | UnsetType = UNSET
    plan: str | None | UnsetType = UNSET
    # Units sold (Salesforce TotalOpportunityQuantity, a whole number): what the subscription bills.
    quantity: int | None | UnsetType = UNSET
    deleted: bool = False
    changed: tuple[str, ...] = ()
    # Decimals `amount` is counted in: the currency's, or (an amount-only update names no currency)
    # the fewest, at least 2, that keep it exact. The state reads it in the record's currency.
    amount_digits: int | None | UnsetType = UNSET


class CustomerUpserted(Event, frozen=True, kw_only=True, tag="customer"):
    """A customer record in billing (Stripe), support (Zendesk organization) or ERP (NetSuite)."""

    system: Platform
    customer_id: str
    name: str | None | UnsetType = UNSET
    email: str | None | UnsetType = UNSET
    country: str | None | UnsetType = UNSET
    currency: str | None | UnsetType = UNSET
    tax_id: str | None | UnsetType = UNSET
    address: str | None | UnsetType = UNSET
    payment_terms: str | None | UnsetType = UNSET
    crm_account_id: str | None | UnsetType = UNSET
    deleted: bool = False


class SubscriptionChanged(Event, frozen=True, kw_only=True, tag="subscription"):
    subscription_id: str
    customer_id: str
    # Stripe status: incomplete, incomplete_expired, trialing, active, past_due, canceled, unpaid, paused
    status: str
    plan: str | None = None
    quantity: int = 1
    # Recurring value per period (sum of price x quantity over the items), minor units.
    amount: Minor | None = None
    currency: Currency | None = None
    current_period_end: EpochMs | None = None
    cancel_at_period_end: bool = False
    canceled_at: EpochMs | None = None
    deleted: bool = False


class InvoiceChanged(Event, frozen=True, kw_only=True, tag="invoice"):
    """An invoice in billing (Stripe) or in the ERP (NetSuite)."""

    system: Platform
    invoice_id: str
    # The billing system's invoice id (NetSuite externalId); equals invoice_id for Stripe.
    billing_invoice_id: str | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    number: str | None = None
    # draft, open, paid, void, uncollectible (billing); open, paid, void (ERP, normalised)
    status: str
    total: Minor
    tax: Minor | None = None
    amount_remaining: Minor | None = None
    currency: Currency
    due_at: EpochMs | None = None
    paid_at: EpochMs | None = None
    deleted: bool = False


class PaymentChanged(Event, frozen=True, kw_only=True, tag="payment"):
    system: Platform
    payment_id: str
    invoice_id: str | None = None
    customer_id: str | None = None
    status: str
    amount: Minor
    currency: Currency
    deleted: bool = False


class RefundChanged(Event, frozen=True, kw_only=True, tag="refund"):
    """A refund or credit note in billing, or a credit memo in the ERP."""

    system: Platform
    refund_id: str
    # refund, credit_note (billing) or credit_memo (ERP)
    document: str
    # The billing refund/credit note this ERP credit memo books (NetSuite externalId).
    billing_refund_id: str | None = None
    invoice_id: str | None = None
    charge_id: str | None = None
    customer_id: str | None = None
    status: str
    amount: Minor
    currency: Currency
    deleted: bool = False


class EntitlementChanged(Event, frozen=True, kw_only=True, tag="entitlement"):
    """Support entitlement of an organization (Zendesk custom fields and tags)."""

    organization_id: str
    status: str | None = None
    tier: str | None = None
    end_date: str | None = None
    tags: tuple[str, ...] = ()
    deleted: bool = False


class SupportCaseChanged(Event, frozen=True, kw_only=True, tag="support_case"):
    ticket_id: str
    organization_id: str | None = None
    requester_id: str | None = None
    status: str | None = None
    priority: str | None = None
    subject: str | None = None
    created_at: EpochMs | None = None
    deleted: bool = False


class FinancialFlagsChanged(Event, frozen=True, kw_only=True, tag="financial_flags"):
    """ERP view of the customer's credit: overdue balance and credit hold."""

    system: Platform
    customer_id: str
    overdue_balance: Minor | None = None
    currency: str | None = None
    credit_hold: bool | None = None


class SalesOrderChanged(Event, frozen=True, kw_only=True, tag="sales_order"):
    system: Platform
    order_id: str
    # The CRM opportunity this order fulfils (NetSuite externalId).
    opportunity_id: str | None = None
    customer_id: str | None = None
    status: str | None = None
    total: Minor | None = None
    currency: str | None = None
    deleted: bool = False


class ResyncRequired(Event, frozen=True, kw_only=True, tag="resync"):
    """The source says events were lost (Salesforce GAP_* / GAP_OVERFLOW): re-read these records."""

    reason: str
    object_type: str
    record_ids: tuple[str, ...] = ()


CanonicalEvent = (
    AccountUpserted
    | AccountMerged
    | OpportunityChanged
    | CustomerUpserted
    | SubscriptionChanged
    | InvoiceChanged
    | PaymentChanged
    | RefundChanged
    | EntitlementChanged
    | SupportCaseChanged
    | FinancialFlagsChanged
    | SalesOrderChanged
    | ResyncRequired
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CanonicalEvent)


def encode(event: CanonicalEvent) -> bytes:
    """JSON bytes of one canonical event (the `kind` tag included)."""
    return _encoder.encode(event)


def decode(data: bytes) -> CanonicalEvent:
    """Inverse of `encode`; raises `msgspec.ValidationError` on a malformed record."""
    return _decoder.decode(data)
