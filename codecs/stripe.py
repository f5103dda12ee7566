"""Stripe webhook Event JSON -> canonical events.

`decode(body)` reads one Stripe `Event` (API versions 2020-08-27 up to 2025-03-31.basil and later)
and returns the canonical events it carries:

=============================================  ==========================================================
Stripe event type                              canonical events
=============================================  ==========================================================
customer.created / .updated / .deleted         one CustomerUpserted
customer.subscription.*                        one SubscriptionChanged (status from the object)
invoice.* (except invoice.upcoming)            one InvoiceChanged (status from the object)
charge.succeeded / .failed / .captured         one PaymentChanged
charge.refunded                                one RefundChanged per refund in `refunds.data`, or one
                                               for the charge's `amount_refunded` when the list is absent
charge.refund.updated, refund.*                one RefundChanged(document="refund")
credit_note.*                                  one RefundChanged(document="credit_note")
anything else (payment_intent.*, plan.*, ...)  nothing: a valid event of no interest
=============================================  ==========================================================

Speed: one typed msgspec pass decodes the envelope and `data.object` together; the object is a
union tagged by its own `object` field, and the Structs name only the fields we read (msgspec
skips the rest without building them). An object type outside the union (payment_intent, ...)
fails that pass at its tag, right away; a second pass with `data.object` left as `msgspec.Raw`
then reads the event type, and an event of no interest returns [] instead of an error.

Ordering: `version = (created ms, seq)`. Stripe's `created` has one-second resolution and webhooks
arrive out of order, so `seq` ranks the object's status in its lifecycle: within one second the
state further along wins (the `_*_RANK` tables). A deletion outranks every status.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Final, TypeVar

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from concord.codecs.common import blank_event
from concord.codecs.config import DEFAULT_CODEC_CONFIG, CodecConfig
from concord.codecs.errors import (
    BAD_CURRENCY,
    BAD_TYPE,
    INVALID_JSON,
    MISSING_FIELD,
    DecodeError,
    as_decode_error,
    msgspec_message,
)
from concord.codecs.model import (
    CanonicalEvent,
    CustomerUpserted,
    EntityRef,
    Event,
    InvoiceChanged,
    PaymentChanged,
    Platform,
    RefundChanged,
    SubscriptionChanged,
    Version,
)

__all__ = ["EVENT_TYPES", "OLDEST_API_VERSION", "decode"]

# DecodeError reasons only this codec gives (the shared ones are in codecs/errors.py).
NOT_A_STRIPE_EVENT: Final = "not_a_stripe_event"
UNEXPECTED_OBJECT: Final = "unexpected_object"
# An amount the codec computes (unit amount x quantity, a sum of taxes) beyond the bound of decoded ones.
AMOUNT_OUT_OF_RANGE: Final = "amount_out_of_range"

# Bounds keep garbage out of the canonical stream (and out of 64-bit consumers downstream).
_Id = Annotated[str, Meta(min_length=1)]
# Stripe timestamps are epoch seconds; year 9999 is far beyond any real one.
_Seconds = Annotated[int, Meta(ge=0, le=253_402_300_799)]
_MAX_AMOUNT: Final = 2**53
_Amount = Annotated[int, Meta(ge=-_MAX_AMOUNT, le=_MAX_AMOUNT)]
_Count = Annotated[int, Meta(ge=0, le=_MAX_AMOUNT)]

# Operator-readable failure text: what was wrong and what to check.
_E_NOT_EVENT: Final = (
    'the body is not a Stripe Event (top-level `object` must be "event"); check that the endpoint '
    "receives webhook Event JSON, not a bare API object"
)
_E_WRONG_OBJECT: Final = (
    "{event_type} events carry {expected} in data.object, this one carries another object type; "
    "the payload was not produced by Stripe or was altered on the way"
)
_E_CURRENCY: Final = "{where} must be a 3-letter ISO 4217 code, got {length} characters"
_E_COMPUTED: Final = "{what} computed from {source} is beyond +/-2^53 (the bound of every Stripe amount) - at `{where}`"

# Lifecycle ranks (Version.seq). Unknown statuses rank 0 so a known state wins a same-second tie.
# invoice: draft -> open -> (uncollectible ->) paid | void; paid and void are exclusive end states.
_INVOICE_RANK: Final = {"draft": 1, "open": 2, "uncollectible": 3, "paid": 4, "void": 4}
# subscription: the usual forward path; a same-second step backwards (past_due -> active) loses.
_SUBSCRIPTION_RANK: Final = {
    "incomplete": 1,
    "trialing": 2,
    "active": 3,
    "past_due": 4,
    "unpaid": 5,
    "paused": 6,
    "canceled": 7,
    "incomplete_expired": 8,
}
# refund: requires_action -> pending -> succeeded; failed can follow succeeded; canceled is final.
_REFUND_RANK: Final = {"requires_action": 1, "pending": 2, "succeeded": 3, "failed": 4, "canceled": 4}
_CREDIT_NOTE_RANK: Final = {"issued": 1, "void": 2}
# charge: pending -> succeeded (authorised; +1 once captured), or pending -> failed.
_CHARGE_RANK: Final = {"pending": 1, "succeeded": 2, "failed": 3}
# customer objects have no status: order by what the event did.
_CUSTOMER_RANK: Final = {"customer.created": 1, "customer.updated": 2}
_DELETED_RANK: Final = 99

#: The event types Concord reads: what a Stripe webhook endpoint sending to Concord must be subscribed to
#: (`enabled_events`, or "*"). `concord doctor` checks the endpoint against it.
EVENT_TYPES: Final = (
    "customer.created", "customer.updated", "customer.deleted",
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "customer.subscription.paused", "customer.subscription.resumed",
    "invoice.created", "invoice.updated", "invoice.finalized", "invoice.paid", "invoice.payment_failed",
    "invoice.voided", "invoice.marked_uncollectible", "invoice.deleted",
    "charge.succeeded", "charge.failed", "charge.captured", "charge.refunded", "charge.refund.updated",
    "refund.created", "refund.updated", "credit_note.created", "credit_note.updated", "credit_note.voided",
)  # fmt: skip
#: The oldest Stripe API version whose Event objects this codec reads (an endpoint's `api_version`).
OLDEST_API_VERSION: Final = "2020-08-27"

# Looked up once: enum attribute access is slow on the hot path.
_STRIPE: Final = Platform.STRIPE


# --- what we read from the payload (msgspec skips every other field) ------------------------------


class _In(Struct, gc=False):
    """Base of the payload Structs: decoded, read once, never in a cycle, so GC need not track them."""


class _Metadata(_In):
    # Only the key we use is decoded; Stripe metadata values are always strings.
    salesforce_account_id: str | None = None


class _Address(_In):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class _TaxId(_In):
    value: str | None = None


class _TaxIdList(_In):
    # Absent unless expanded (since 2020-08-27 `tax_ids` is not in webhook payloads by default).
    data: list[_TaxId] | UnsetType = UNSET


class _Customer(_In, tag_field="object", tag="customer"):
    id: _Id
    # UNSET when the key is absent (a deleted-customer stub carries only id and `deleted`).
    name: str | None | UnsetType = UNSET
    email: str | None | UnsetType = UNSET
    currency: str | None | UnsetType = UNSET
    address: _Address | None | UnsetType = UNSET
    metadata: _Metadata | None | UnsetType = UNSET
    tax_ids: _TaxIdList | None | UnsetType = UNSET
    deleted: bool = False


class _Price(_In):
    id: str
    unit_amount: _Amount | None = None
    currency: str | None = None


class _Plan(_In):
    # The pre-Prices shape; `amount` plays the role of `unit_amount`.
    id: str
    amount: _Amount | None = None
    currency: str | None = None


class _SubscriptionItem(_In):
    price: _Price | None = None
    plan: _Plan | None = None
    quantity: _Count | None = None
    # basil+: billing periods live on the items.
    current_period_end: _Seconds | None = None


class _SubscriptionItems(_In):
    data: list[_SubscriptionItem] = []


class _Subscription(_In, tag_field="object", tag="subscription"):
    id: _Id
    customer: str
    status: str
    items: _SubscriptionItems | None = None
    plan: _Plan | None = None
    quantity: _Count | None = None
    currency: str | None = None
    # Before basil only.
    current_period_end: _Seconds | None = None
    cancel_at_period_end: bool = False
    canceled_at: _Seconds | None = None


class _TaxAmount(_In):
    amount: _Amount


class _StatusTransitions(_In):
    paid_at: _Seconds | None = None


class _SubscriptionDetails(_In):
    subscription: str | None = None


class _InvoiceParent(_In):
    subscription_details: _SubscriptionDetails | None = None


class _Invoice(_In, tag_field="object", tag="invoice"):
    id: _Id
    status: str
    total: _Amount
    currency: str
    customer: str | None = None
    number: str | None = None
    amount_remaining: _Amount | None = None
    due_date: _Seconds | None = None
    status_transitions: _StatusTransitions | None = None
    # Before basil: `subscription`, `tax`, `total_tax_amounts`.
    subscription: str | None = None
    tax: _Amount | None = None
    total_tax_amounts: list[_TaxAmount] | None = None
    # basil+: `parent.subscription_details.subscription`, `total_taxes`.
    parent: _InvoiceParent | None = None
    total_taxes: list[_TaxAmount] | None = None


class _Refund(_In, tag_field="object", tag="refund"):
    id: _Id
    amount: _Amount
    currency: str
    charge: str | None = None
    # Documented as nullable; a refund without a status has not settled yet.
    status: str | None = None


class _RefundList(_In):
    data: list[_Refund] = []


class _Charge(_In, tag_field="object", tag="charge"):
    id: _Id
    amount: _Amount
    currency: str
    status: str
    customer: str | None = None
    # Removed in basil (charges no longer name an invoice).
    invoice: str | None = None
    captured: bool = False
    amount_refunded: _Amount = 0
    # Not included by default since 2022-11-15: then only `amount_refunded` is known.
    refunds: _RefundList | None = None


class _CreditNote(_In, tag_field="object", tag="credit_note"):
    id: _Id
    currency: str
    status: str
    total: _Amount | None = None
    amount: _Amount | None = None
    invoice: str | None = None
    customer: str | None = None


_Object = _Customer | _Subscription | _Invoice | _Charge | _Refund | _CreditNote


class _Data(_In):
    object: _Object


class _Envelope(_In):
    # Optional, so that a missing one gets our own reason (not_a_stripe_event / missing_field).
    id: _Id | None = None
    object: str | None = None
    type: str | None = None
    created: _Seconds | None = None
    data: _Data | None = None


class _RawData(_In):
    object: Raw


class _RawEnvelope(_In):
    """The fallback pass: everything but the object, which stays undecoded."""

    id: _Id | None = None
    object: str | None = None
    type: str | None = None
    created: _Seconds | None = None
    data: _RawData | None = None


_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)
_replace: Final = msgspec.structs.replace
_raw_envelope_decoder: Final = msgspec.json.Decoder(_RawEnvelope)


# --- the codec ------------------------------------------------------------------------------------


class _Event(Struct, frozen=True, gc=False):
    """A validated envelope: what the handlers read."""

    id: str
    type: str
    created_ms: int
    object: _Object


_Handler = Callable[[_Event], list[CanonicalEvent]]
_T = TypeVar("_T")
_E = TypeVar("_E", bound=Event)


def decode(body: bytes, config: CodecConfig = DEFAULT_CODEC_CONFIG) -> list[CanonicalEvent]:
    """Decode one Stripe webhook Event into canonical events (none for an event of no interest).

    Raises `DecodeError` (and nothing else) when `body` is not a readable Stripe Event, or when an
    event we map lacks a field we need. `config` is there for the common codec signature; Stripe
    needs no per-deployment option.
    """
    try:
        try:
            env = _envelope_decoder.decode(body)
        except msgspec.ValidationError as exc:
            return _decode_unmodelled(body, exc)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise _malformed(exc) from None
        event_id, event_type, created = _checked(env)
        if env.data is None:
            raise _missing_data()
        handler = _route(event_type)
        if handler is None:
            return []
        return handler(_Event(event_id, event_type, created * 1000, env.data.object))
    except DecodeError:
        raise
    except Exception as exc:  # too deep (RecursionError), too large (MemoryError), a codec bug: named, no value
        raise as_decode_error(exc, "Stripe event") from None


def _decode_unmodelled(body: bytes, error: msgspec.ValidationError) -> list[CanonicalEvent]:
    """The typed pass failed: fine for an event of no interest (its object is not ours), else an error."""
    try:
        env = _raw_envelope_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, None) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # The typed pass can stop at a bad field before it reaches broken JSON further on.
        raise _malformed(exc) from None
    _, event_type, _ = _checked(env)
    if env.data is None:
        raise _missing_data()
    if _route(event_type) is None:
        return []
    raise _invalid(error, event_type) from None


def _checked(env: _Envelope | _RawEnvelope) -> tuple[str, str, int]:
    """The envelope's id, type and created, once they are known to be there."""
    if env.object != "event":
        raise DecodeError(NOT_A_STRIPE_EVENT, _E_NOT_EVENT)
    if env.id is None:
        raise DecodeError(MISSING_FIELD, "event `id` is missing or null - at `$.id`")
    if not env.type:
        raise DecodeError(MISSING_FIELD, "event `type` is missing, null or empty - at `$.type`")
    if env.created is None:
        raise DecodeError(MISSING_FIELD, "event `created` is missing or null - at `$.created`")
    return env.id, env.type, env.created


def _missing_data() -> DecodeError:
    return DecodeError(MISSING_FIELD, "event `data` is missing or null - at `$.data`")


def _invalid(exc: msgspec.ValidationError, event_type: str | None) -> DecodeError:
    """Classify a msgspec validation error; its message names the field and path, not the value."""
    message = str(exc)
    if " - at `" not in message and message.startswith("Expected `object`"):
        return DecodeError(NOT_A_STRIPE_EVENT, f"{_E_NOT_EVENT} ({message})")
    if message.endswith("- at `$.data.object.object`"):
        # The object's type is not the one the event type promises (msgspec would quote the value).
        expected = _EXPECTED_OBJECT.get(_route(event_type or ""), "another object")
        return DecodeError(UNEXPECTED_OBJECT, _E_WRONG_OBJECT.format(event_type=_type_name(event_type),
                                                                     expected=expected))
    if message.startswith("Object missing required field"):
        return DecodeError(MISSING_FIELD, message)
    # A nested tag (refunds.data[].object) of the wrong type: keep the path, drop the quoted value.
    return DecodeError(BAD_TYPE, msgspec_message(exc))


def _type_name(event_type: str | None) -> str:
    """The event type for an error message, if it has the shape of one (else it is not repeated)."""
    # Lower-case words joined by dots and underscores, as Stripe's are (no regex: the codec imports none).
    if (
        event_type
        and len(event_type) <= 80
        and event_type.isascii()
        and event_type.islower()
        and event_type.replace(".", "").replace("_", "").isalnum()
    ):
        return event_type
    return "these"


def _malformed(exc: msgspec.DecodeError | UnicodeDecodeError) -> DecodeError:
    if isinstance(exc, UnicodeDecodeError):
        # msgspec hands invalid UTF-8 inside strings to Python's codec, which raises this.
        return DecodeError(INVALID_JSON, f"invalid UTF-8 in a JSON string at byte {exc.start}")
    return DecodeError(INVALID_JSON, str(exc))


@lru_cache(maxsize=512)
def _route(event_type: str) -> _Handler | None:
    """The handler for an event type, or None for types of no interest (cached: types repeat)."""
    if event_type.startswith("customer.subscription."):
        return _subscription_changed
    if event_type in ("customer.created", "customer.updated", "customer.deleted"):
        return _customer_upserted
    if event_type == "invoice.upcoming":
        # A preview of the next invoice: it has no id and is not a state of any invoice.
        return None
    if event_type.startswith("invoice."):
        return _invoice_changed
    if event_type in ("charge.succeeded", "charge.failed", "charge.captured"):
        return _payment_changed
    if event_type == "charge.refunded":
        return _charge_refunded
    if event_type == "charge.refund.updated" or event_type.startswith("refund."):
        return _refund_changed
    if event_type.startswith("credit_note."):
        return _credit_note_changed
    return None


def _expect(event: _Event, cls: type[_T]) -> _T:
    obj = event.object
    if not isinstance(obj, cls):
        expected = _EXPECTED_OBJECT.get(_route(event.type), "another object")
        raise DecodeError(UNEXPECTED_OBJECT, _E_WRONG_OBJECT.format(event_type=_type_name(event.type),
                                                                    expected=expected))
    return obj


def _computed_out_of_range(what: str, source: str, where: str) -> DecodeError:
    return DecodeError(AMOUNT_OUT_OF_RANGE, _E_COMPUTED.format(what=what, source=source, where=where))


def _currency(code: str, where: str) -> str:
    # `_currency_code`, inlined: this runs for every event.
    upper = _upper_letters(code) if len(code) == 3 else None
    if upper is None:
        raise DecodeError(BAD_CURRENCY, _E_CURRENCY.format(where=where, length=len(code)))
    return upper


def _currency_code(code: str) -> str | None:
    """`code` upper-cased when it is 3 ASCII letters, else None."""
    # Only 3-character strings reach the cache, so it holds nothing large.
    return _upper_letters(code) if len(code) == 3 else None


@lru_cache(maxsize=256)
def _upper_letters(code: str) -> str | None:
    # Cached: a handful of codes recur, and the checks cost more than the lookup.
    return code.upper() if code.isascii() and code.isalpha() else None


def _one_line(address: _Address) -> str | None:
    parts = (address.line1, address.line2, address.city, address.state, address.postal_code, address.country)
    return ", ".join(filter(None, parts)) or None  # filter(None, ...): the non-empty parts, without a generator


# Building events: a handler stamps what every Stripe event carries on a blank of its class
# (`_stamped`), then sets its own fields in one `replace` call of at most 15 keyword arguments
# (CPython passes more in a dict, several times slower; see `blank_event`).
_CUSTOMER: Final = blank_event(CustomerUpserted, _STRIPE, system=_STRIPE, customer_id="")
_SUBSCRIPTION: Final = blank_event(SubscriptionChanged, _STRIPE, subscription_id="", customer_id="", status="")
_INVOICE: Final = blank_event(InvoiceChanged, _STRIPE, system=_STRIPE, invoice_id="", status="", total=0, currency="")
_PAYMENT: Final = blank_event(PaymentChanged, _STRIPE, system=_STRIPE, payment_id="", status="", amount=0, currency="")
_REFUND: Final = blank_event(
    RefundChanged, _STRIPE, system=_STRIPE, refund_id="", document="", status="", amount=0, currency=""
)


def _stamped(
    blank: _E,
    event: _Event,
    kind: str,
    object_id: str,
    seq: int,
    customer_id: str | None,
    crm_account_id: str | None = None,
    *,
    event_id: str | None = None,
    local_customer: str | None = None,
) -> _E:
    """`blank` with the fields every Stripe event sets the same way.

    `version` is `(created ms, seq)`, `correlation_id` the Stripe event id, `event_id` that id unless
    the event is one of several. Only customer events know a CRM account (`customer_key`); the
    customer's ids go to `local_customer` (else the given fallback) and `xrefs`.
    """
    if customer_id:
        local_customer = "stripe:" + customer_id
        xrefs = {"stripe": customer_id, "salesforce": crm_account_id} if crm_account_id else {"stripe": customer_id}
    else:
        xrefs = {"salesforce": crm_account_id} if crm_account_id else {}
    ms = event.created_ms
    return _replace(
        blank,
        event_id=event_id or event.id,
        entity=EntityRef(kind, object_id),
        occurred_at=ms,
        version=Version(ms, seq),
        customer_key=crm_account_id,
        local_customer=local_customer,
        xrefs=xrefs,
        correlation_id=event.id,
    )


def _customer_upserted(event: _Event) -> list[CanonicalEvent]:
    cus = _expect(event, _Customer)
    deleted = cus.deleted or event.type == "customer.deleted"

    # The object is a full snapshot: a present-but-empty section means "cleared" (None).
    # `is None` / `is UNSET` before isinstance: isinstance is slow when it fails on a Struct class.
    crm_account_id: str | None | UnsetType = UNSET
    if cus.metadata is None:
        crm_account_id = None
    elif cus.metadata is not UNSET:
        crm_account_id = cus.metadata.salesforce_account_id or None

    country: str | None | UnsetType = UNSET
    address: str | None | UnsetType = UNSET
    if cus.address is None:
        country = address = None
    elif cus.address is not UNSET:
        country = cus.address.country or None
        address = _one_line(cus.address)

    tax_id: str | None | UnsetType = UNSET
    if cus.tax_ids is not None and cus.tax_ids is not UNSET and cus.tax_ids.data is not UNSET:
        tax_id = cus.tax_ids.data[0].value if cus.tax_ids.data else None

    currency = cus.currency
    if isinstance(currency, str):
        currency = _currency(currency, "$.data.object.currency")

    seq = _DELETED_RANK if deleted else _CUSTOMER_RANK.get(event.type, 0)
    sf_id = crm_account_id if isinstance(crm_account_id, str) else None
    upserted = _stamped(_CUSTOMER, event, "customer", cus.id, seq, cus.id, sf_id)
    return [
        _replace(
            upserted,
            customer_id=cus.id,
            name=cus.name,
            email=cus.email,
            country=country,
            currency=currency,
            tax_id=tax_id,
            address=address,
            crm_account_id=crm_account_id,
            deleted=deleted,
        )
    ]


def _subscription_changed(event: _Event) -> list[CanonicalEvent]:
    sub = _expect(event, _Subscription)
    items = sub.items.data if sub.items is not None else []

    plan: str | None = None
    currencies: set[str] = set()
    amount: int | None = 0
    quantity = 0
    period_end = sub.current_period_end
    for index, item in enumerate(items):
        quantity += item.quantity or 0
        if sub.current_period_end is None and item.current_period_end is not None:
            period_end = max(period_end or 0, item.current_period_end)
        # Prices replaced plans (2020-08-27 still sends both); either carries the unit amount.
        price = item.price or item.plan
        unit = None
        if price is not None:
            plan = plan or price.id
            unit = price.unit_amount if isinstance(price, _Price) else price.amount
            if price.currency is not None:
                currency_code = _currency_code(price.currency)
                if currency_code is None:
                    # The path is built only for the error message.
                    where = f"$.data.object.items.data[{index}].{'price' if item.price else 'plan'}.currency"
                    currency_code = _currency(price.currency, where)
                currencies.add(currency_code)
        # Tiered or metered items have no fixed value: then the total is unknown.
        if amount is not None and unit is not None and item.quantity is not None:
            amount += unit * item.quantity
            if not -_MAX_AMOUNT <= amount <= _MAX_AMOUNT:
                raise _computed_out_of_range("subscription amount", "unit amount x quantity of its items",
                                             f"$.data.object.items.data[{index}].quantity")
        else:
            amount = None
    if quantity > _MAX_AMOUNT:
        raise _computed_out_of_range("subscription quantity", "the quantities of its items",
                                     "$.data.object.items.data")
    if not items:
        # Shapes without items (very old API versions) name a single plan at the top level.
        quantity = sub.quantity if sub.quantity is not None else 1
        amount = None
        if sub.plan is not None:
            plan = sub.plan.id
            if sub.plan.amount is not None:
                amount = sub.plan.amount * quantity
                if not -_MAX_AMOUNT <= amount <= _MAX_AMOUNT:
                    raise _computed_out_of_range("subscription amount", "plan amount x quantity",
                                                 "$.data.object.quantity")
            if sub.plan.currency is not None:
                currencies.add(_currency(sub.plan.currency, "$.data.object.plan.currency"))

    currency: str | None = None
    if sub.currency is not None:
        currency = _currency(sub.currency, "$.data.object.currency")
    elif len(currencies) == 1:
        currency = next(iter(currencies))
    if len(currencies) > 1:
        # Stripe does not allow mixed-currency items; if a payload has them, no single value is true.
        amount = currency = None

    deleted = event.type == "customer.subscription.deleted"
    seq = _DELETED_RANK if deleted else _SUBSCRIPTION_RANK.get(sub.status, 0)
    changed = _stamped(_SUBSCRIPTION, event, "subscription", sub.id, seq, sub.customer)
    return [
        _replace(
            changed,
            subscription_id=sub.id,
            customer_id=sub.customer,
            status=sub.status,
            plan=plan,
            quantity=quantity,
            amount=amount,
            currency=currency,
            # Epoch seconds to ms, inline (a call costs more than the work).
            current_period_end=None if period_end is None else period_end * 1000,
            cancel_at_period_end=sub.cancel_at_period_end,
            canceled_at=None if sub.canceled_at is None else sub.canceled_at * 1000,
            deleted=deleted,
        )
    ]


def _invoice_changed(event: _Event) -> list[CanonicalEvent]:
    inv = _expect(event, _Invoice)

    subscription = inv.subscription
    if subscription is None and inv.parent is not None and inv.parent.subscription_details is not None:
        subscription = inv.parent.subscription_details.subscription

    # An empty tax list means "no tax" (0); no tax information at all stays None.
    tax = inv.tax
    if tax is None:
        taxes = inv.total_taxes if inv.total_taxes is not None else inv.total_tax_amounts
        if taxes is not None:
            tax = 0
            for tax_amount in taxes:  # a loop, not sum(generator): cheaper for these short lists
                tax += tax_amount.amount
            if not -_MAX_AMOUNT <= tax <= _MAX_AMOUNT:
                field = "total_taxes" if inv.total_taxes is not None else "total_tax_amounts"
                raise _computed_out_of_range("invoice tax", f"the sum of `{field}`", f"$.data.object.{field}")

    paid_at = inv.status_transitions.paid_at if inv.status_transitions is not None else None
    deleted = event.type == "invoice.deleted"
    seq = _DELETED_RANK if deleted else _INVOICE_RANK.get(inv.status, 0)
    changed = _stamped(_INVOICE, event, "invoice", inv.id, seq, inv.customer)
    return [
        _replace(
            changed,
            invoice_id=inv.id,
            billing_invoice_id=inv.id,
            customer_id=inv.customer,
            status=inv.status,
            total=inv.total,
            currency=_currency(inv.currency, "$.data.object.currency"),
            subscription_id=subscription,
            number=inv.number,
            tax=tax,
            amount_remaining=inv.amount_remaining,
            # Epoch seconds to ms, inline (a call costs more than the work).
            due_at=None if inv.due_date is None else inv.due_date * 1000,
            paid_at=None if paid_at is None else paid_at * 1000,
            deleted=deleted,
        )
    ]


def _payment_changed(event: _Event) -> list[CanonicalEvent]:
    charge = _expect(event, _Charge)
    seq = _CHARGE_RANK.get(charge.status, 0)
    if charge.status == "succeeded" and charge.captured:
        seq += 1
    changed = _stamped(_PAYMENT, event, "charge", charge.id, seq, charge.customer)
    return [
        _replace(
            changed,
            payment_id=charge.id,
            invoice_id=charge.invoice,
            customer_id=charge.customer,
            status=charge.status,
            amount=charge.amount,
            currency=_currency(charge.currency, "$.data.object.currency"),
            # Refund objects name only their charge: link the charge id to this customer.
            aliases=_charge_alias(charge),
        )
    ]


def _charge_refunded(event: _Event) -> list[CanonicalEvent]:
    charge = _expect(event, _Charge)
    refunds = charge.refunds.data if charge.refunds is not None else []
    if refunds:
        # One canonical event per refund: suffix the event id so dedup by event_id keeps them all.
        return [
            _refund_event(
                event,
                refund,
                f"$.data.object.refunds.data[{index}].currency",
                invoice_id=charge.invoice,
                customer_id=charge.customer,
                charge_id=charge.id,
                event_id=f"{event.id}:{refund.id}",
            )
            for index, refund in enumerate(refunds)
        ]
    if charge.amount_refunded <= 0:
        return []
    # Without the list only the charge's running total is known: one refund record per charge,
    # keyed by the charge id (never a real `re_` id). `amount_refunded` counts refunds that did
    # not fail or get canceled; the refund.* events carry each refund's own status.
    status = "succeeded"
    seq = _REFUND_RANK[status]
    refunded = _stamped(_REFUND, event, "refund", charge.id, seq, charge.customer, event_id=f"{event.id}:{charge.id}")
    return [
        _replace(
            refunded,
            refund_id=charge.id,
            document="refund",
            charge_id=charge.id,
            status=status,
            amount=charge.amount_refunded,
            currency=_currency(charge.currency, "$.data.object.currency"),
            invoice_id=charge.invoice,
            customer_id=charge.customer,
        )
    ]


def _charge_alias(charge: _Charge) -> tuple[str, ...]:
    return ("stripe:" + charge.id,) if charge.customer else ()


def _refund_changed(event: _Event) -> list[CanonicalEvent]:
    refund = _expect(event, _Refund)
    # Refund objects name neither the customer nor the invoice: identity goes through the charge,
    # whose id the charge events link to the customer (`aliases`).
    local_customer = "stripe:" + refund.charge if refund.charge else None
    return [_refund_event(event, refund, "$.data.object.currency", local_customer=local_customer)]


def _refund_event(
    event: _Event,
    refund: _Refund,
    currency_path: str,
    *,
    invoice_id: str | None = None,
    customer_id: str | None = None,
    charge_id: str | None = None,
    event_id: str | None = None,
    local_customer: str | None = None,
) -> RefundChanged:
    """A RefundChanged for `refund`; `local_customer` is used when `customer_id` gives none."""
    status = refund.status or "pending"
    seq = _REFUND_RANK.get(status, 0)
    refunded = _stamped(
        _REFUND, event, "refund", refund.id, seq, customer_id, event_id=event_id, local_customer=local_customer
    )
    return _replace(
        refunded,
        refund_id=refund.id,
        document="refund",
        charge_id=charge_id or refund.charge,
        status=status,
        amount=refund.amount,
        currency=_currency(refund.currency, currency_path),
        invoice_id=invoice_id,
        customer_id=customer_id,
    )


def _credit_note_changed(event: _Event) -> list[CanonicalEvent]:
    note = _expect(event, _CreditNote)
    # `total` includes discounts and tax; very old payloads only have `amount`.
    amount = note.total if note.total is not None else note.amount
    if amount is None:
        raise DecodeError(MISSING_FIELD, "credit note has neither `total` nor `amount` - at `$.data.object`")
    seq = _CREDIT_NOTE_RANK.get(note.status, 0)
    changed = _stamped(_REFUND, event, "credit_note", note.id, seq, note.customer)
    return [
        _replace(
            changed,
            refund_id=note.id,
            document="credit_note",
            invoice_id=note.invoice,
            status=note.status,
            amount=amount,
            currency=_currency(note.currency, "$.data.object.currency"),
            customer_id=note.customer,
        )
    ]


# What each handler needs in data.object, for the unexpected_object message.
_EXPECTED_OBJECT: Final[dict[_Handler | None, str]] = {
    _customer_upserted: "a customer",
    _subscription_changed: "a subscription",
    _invoice_changed: "an invoice",
    _payment_changed: "a charge",
    _charge_refunded: "a charge",
    _refund_changed: "a refund",
    _credit_note_changed: "a credit note",
}
