"""NetSuite record events -> canonical events.

NetSuite has no native webhook. A SuiteScript User Event script (docs/netsuite-suitescript.md) POSTs
one signed envelope per saved record, and Concord's own REST reads can wrap a record the same way:

    {"envelope": "concord.netsuite.v1", "recordType": "invoice", "id": "1215", "eventType": "edit",
     "lastModifiedDate": "2023-02-06T09:48:00Z", "accountId": "1234567", "currencyCode": "USD",
     "record": {...the record as GET /services/rest/record/v1/invoice/1215 returns it...}}

`record` follows the REST record shape: camelCase fields, references as `{"id", "refName"}`, select
values as `{"id", "refName"}` or their bare id (`simpleEnumFormat`), money as decimal numbers, dates
as `YYYY-MM-DD`; fields NetSuite leaves empty are absent. `currencyCode` (optional) is the ISO 4217
code of the record's currency: `currency.refName` is the currency record's *name* ("USA" for US
dollars in many accounts), so the script resolves the code and this codec only falls back to names.

Mapping: customer -> CustomerUpserted + FinancialFlagsChanged; invoice -> InvoiceChanged;
customerpayment -> PaymentChanged; creditmemo -> RefundChanged (document "credit_memo");
salesorder -> SalesOrderChanged. Other record types, and read-only event types (view, print,
email), are valid input of no interest: `[]`. A `delete` may come without `record`; it yields the
kind with `deleted=True` (and placeholders for the fields the model requires: status "void",
amount 0, currency "XXX").

A customer's CRM account id (its `customer_key`) is the custom entity field the configuration names
(`CodecConfig.netsuite_crm_link_field`, setting CONCORD_NETSUITE_CRM_LINK_FIELD, default
`custentity_sf_account_id`) when it is set and not empty, else its `externalId`. Concord's connector
writes the link to that field: NetSuite keeps externalId unique, so a merged-away account's ERP
customer could not take the winner's id while the winner's own customer held it. Customers linked
before the field existed (or by other tools) still carry the id in externalId.

Dedup and ordering: `event_id` is `"<recordType>:<id>:<lastModifiedDate ms>"` (`:delete` appended
for deletions, `:financial_flags` for the customer's second event); `version` is
`Version(ts=lastModifiedDate ms)`, with `seq=1` for a deletion so it wins over an edit stamped with
the same millisecond.

Money is converted exactly (Decimal, never float) to the currency's minor unit. `decode` raises only
`DecodeError`. Reasons: `invalid_json`, `unknown_shape`, `missing_field`, `bad_type`, `bad_time`,
`bad_currency`, `bad_amount`, `bad_status`, `id_mismatch`, `too_deep`, `too_large` (and `codec_error`
for a bug). Details name the record type, fields, types and lengths, never a payload value (not even
the record id).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final, NamedTuple, TypeVar, cast

import msgspec
from msgspec import Raw, Struct, field

from concord.codecs.common import EventFields, decode_json, epoch_ms, event_fields
from concord.codecs.config import DEFAULT_CODEC_CONFIG, CodecConfig
from concord.codecs.errors import (
    BAD_CURRENCY,
    BAD_TYPE,
    MISSING_FIELD,
    UNKNOWN_SHAPE,
    DecodeError,
    as_decode_error,
)
from concord.codecs.model import (
    CanonicalEvent,
    CustomerUpserted,
    EntityRef,
    FinancialFlagsChanged,
    InvoiceChanged,
    PaymentChanged,
    Platform,
    RefundChanged,
    SalesOrderChanged,
    Version,
)
from concord.core.currency import minor_units

__all__ = ["ENVELOPE_V1", "decode"]

ENVELOPE_V1: Final = "concord.netsuite.v1"

# DecodeError reasons only this codec gives (the shared ones are in codecs/errors.py).
BAD_AMOUNT: Final = "bad_amount"
BAD_STATUS: Final = "bad_status"
ID_MISMATCH: Final = "id_mismatch"

# User Event types that do not change the record (the script does not send them; tolerated).
_READ_ONLY_EVENT_TYPES: Final = frozenset({"view", "print", "email"})
# Ends the error detail of a time without a UTC offset.
_TIME_HINT: Final = " (send ISO 8601 with Z)"
_ISO_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")
# Fallback only: names NetSuite gives its currency records by default. "USA" is the US dollar in
# Oracle's documented invoice example; every other name needs `currencyCode` in the envelope.
_CURRENCY_NAMES: Final = {
    "USA": "USD",
    "US DOLLAR": "USD",
    "EURO": "EUR",
    "BRITISH POUND": "GBP",
    "CANADIAN DOLLAR": "CAD",
}
# Bounded so a hostile exponent (1e999999) cannot build a huge integer, and so every amount stays
# exact in consumers that read JSON numbers as doubles (the Stripe codec uses the same bound).
_MAX_MINOR: Final = 2**53
# Status texts compared squashed (lower case, letters and digits only), so the REST refName
# ("Paid In Full"), the SuiteScript statusRef ("paidInFull") and the status id ("CustInvc:B") all
# match. Invoices use the model's fixed vocabulary: an unknown status is an error, not a guess.
_INVOICE_STATUS: Final = {
    "open": "open", "a": "open", "custinvca": "open",
    "paidinfull": "paid", "b": "paid", "custinvcb": "paid",
    "voided": "void", "void": "void", "v": "void", "custinvcv": "void",
    # A rejected invoice never became a receivable; pending approval is not one yet.
    "rejected": "void", "e": "void", "custinvce": "void",
    "pendingapproval": "draft", "d": "draft", "custinvcd": "draft",
}  # fmt: skip
_PAYMENT_STATUS: Final = {
    "deposited": "succeeded", "notdeposited": "succeeded", "undeposited": "succeeded",
    "unapprovedpayment": "pending", "unapproved": "pending",
    "voided": "void", "void": "void",
}  # fmt: skip
_CREDIT_MEMO_STATUS: Final = {"open": "open", "fullyapplied": "applied", "voided": "void", "void": "void"}
# creditHoldOverride: ON and OFF are standing decisions; AUTO leaves the hold to NetSuite's
# credit-limit check at transaction time, which Concord cannot see, so it is reported as unknown.
_CREDIT_HOLD: Final = {"on": True, "off": False, "auto": None}
_ENVELOPE_NAME: Final = re.compile(r"concord\.netsuite\.v[0-9]{1,3}")


class _Ref(Struct, rename="camel"):
    """A reference or select value: `{"id": "1", "refName": "USA", "links": [...]}`."""

    id: str | None = None
    ref_name: str | None = None


# Select fields come as a reference object, or as the bare id with simpleEnumFormat=true.
_Select = _Ref | str


class _ApplyLine(Struct):
    apply: bool = False
    doc: _Ref | None = None


class _ApplyList(Struct):
    """The `apply` sublist; `items` only when expanded (expandSubResources or the script)."""

    items: list[_ApplyLine] = []


class _Customer(Struct, rename="camel"):
    id: str | None = None
    external_id: str | None = None
    # The CRM link: the custom entity field CodecConfig.netsuite_crm_link_field names (`_customer_decoder`).
    crm_link: str | None = field(default=None, name=DEFAULT_CODEC_CONFIG.netsuite_crm_link_field)
    company_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    currency: _Ref | None = None
    terms: _Ref | None = None
    overdue_balance: Decimal | None = None
    credit_hold_override: _Select | None = None


class _Invoice(Struct, rename="camel"):
    id: str | None = None
    external_id: str | None = None
    tran_id: str | None = None
    entity: _Ref | None = None
    status: _Select | None = None
    total: Decimal | None = None
    tax_total: Decimal | None = None
    amount_remaining: Decimal | None = None
    currency: _Ref | None = None
    due_date: date | None = None


class _CustomerPayment(Struct, rename="camel"):
    id: str | None = None
    customer: _Ref | None = None
    status: _Select | None = None
    payment: Decimal | None = None
    currency: _Ref | None = None
    apply: _ApplyList | None = None


class _CreditMemo(Struct, rename="camel"):
    id: str | None = None
    external_id: str | None = None
    entity: _Ref | None = None
    status: _Select | None = None
    total: Decimal | None = None
    currency: _Ref | None = None
    apply: _ApplyList | None = None


class _SalesOrder(Struct, rename="camel"):
    id: str | None = None
    external_id: str | None = None
    entity: _Ref | None = None
    status: _Select | None = None
    total: Decimal | None = None
    currency: _Ref | None = None


class _Head(Struct):
    envelope: str | None = None


class _Envelope(Struct, rename="camel"):
    envelope: str
    record_type: str
    id: str | int
    event_type: str
    last_modified_date: datetime
    account_id: str
    currency_code: str | None = None
    record: Raw = Raw()


class _Source(NamedTuple):
    """What every event derived from one envelope shares."""

    record_type: str
    record_id: str
    event_id: str
    version: Version
    deleted: bool
    currency_code: str | None
    # The customer field holding the CRM account id (configuration: CodecConfig.netsuite_crm_link_field).
    crm_link_field: str


_T = TypeVar("_T")

_head_decoder: Final = msgspec.json.Decoder(_Head)
_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)


def decode(body: bytes, config: CodecConfig = DEFAULT_CODEC_CONFIG) -> list[CanonicalEvent]:
    """Decode one `concord.netsuite.v1` envelope into canonical events.

    Returns `[]` for record types and event types Concord does not track. Raises `DecodeError` for
    anything else that cannot be read (a bare REST record without the envelope is `unknown_shape`).
    """
    try:
        return _decode(body, config.netsuite_crm_link_field)
    except DecodeError:
        raise
    except Exception as exc:  # too large (MemoryError), a codec bug: named, without the payload's values
        raise as_decode_error(exc, "NetSuite envelope") from None


def _decode(body: bytes, crm_link_field: str) -> list[CanonicalEvent]:
    try:
        head = decode_json(_head_decoder, body, "body")
    except DecodeError as exc:
        if exc.reason not in (BAD_TYPE, MISSING_FIELD):
            raise  # not JSON, too deep, too large
        raise DecodeError(UNKNOWN_SHAPE, f"body is not a {ENVELOPE_V1} envelope object: {exc.detail}") from None
    if head.envelope != ENVELOPE_V1:
        found = "no `envelope` field" if head.envelope is None else _other_envelope(head.envelope)
        raise DecodeError(
            UNKNOWN_SHAPE,
            f"{found}; Concord reads {ENVELOPE_V1} envelopes posted by the SuiteScript in "
            "docs/netsuite-suitescript.md - deploy that script (or update it) in the sending account",
        )
    env = decode_json(_envelope_decoder, body, "envelope")
    record_id = str(env.id)
    required = {
        "recordType": env.record_type,
        "eventType": env.event_type,
        "id": record_id,
        "accountId": env.account_id,
    }
    for name, value in required.items():
        if not value.strip():
            raise DecodeError(MISSING_FIELD, f"envelope field {name} is empty")
    event_type = env.event_type.lower()
    record_type = env.record_type.lower()
    mapper = _MAPPERS.get(record_type)
    if mapper is None or event_type in _READ_ONLY_EVENT_TYPES:
        return []
    deleted = event_type == "delete"
    ts = epoch_ms(env.last_modified_date, "envelope lastModifiedDate", _TIME_HINT)
    event_id = f"{record_type}:{record_id}:{ts}" + (":delete" if deleted else "")
    source = _Source(
        record_type=record_type,
        record_id=record_id,
        event_id=event_id,
        version=Version(ts=ts, seq=1 if deleted else 0),
        deleted=deleted,
        currency_code=env.currency_code,
        crm_link_field=crm_link_field,
    )
    return mapper(source, env.record)


def _other_envelope(envelope: str) -> str:
    # A version of our own envelope is named (not customer data); any other text only by its length.
    if _ENVELOPE_NAME.fullmatch(envelope):
        return f"envelope {envelope}"
    return f"an unknown `envelope` value ({len(envelope)} characters)"


def _customer(src: _Source, raw: Raw) -> list[CanonicalEvent]:
    rec = _record(src, raw, _customer_decoder(src.crm_link_field))
    local = f"netsuite:{src.record_id}"
    if rec is None:
        if not src.deleted:
            raise _no_record(src)
        return [
            CustomerUpserted(
                **_base(src, customer_key=None, local_customer=local),
                system=Platform.NETSUITE,
                customer_id=src.record_id,
                deleted=True,
            )
        ]
    where = "customer"
    # The link field when set; else the externalId (customers created before the field, or by other tools).
    crm_account_id = rec.crm_link or rec.external_id or None
    currency = _currency(src.currency_code, rec.currency, where)
    person = " ".join(part for part in (rec.first_name, rec.last_name) if part)
    customer = CustomerUpserted(
        **_base(src, customer_key=crm_account_id, local_customer=local),
        system=Platform.NETSUITE,
        customer_id=src.record_id,
        name=rec.company_name or person or None,
        email=rec.email or None,
        currency=currency,
        payment_terms=rec.terms.ref_name if rec.terms else None,
        crm_account_id=crm_account_id,
        deleted=src.deleted,
    )
    if src.deleted:
        return [customer]
    overdue = None
    if rec.overdue_balance is not None:
        if currency is None:
            raise DecodeError(
                BAD_CURRENCY,
                f"{where} has overdueBalance but no currency: send currencyCode in the envelope",
            )
        overdue = _minor(rec.overdue_balance, currency, f"{where} overdueBalance")
    flags = FinancialFlagsChanged(
        **_base(src, customer_key=crm_account_id, local_customer=local, suffix=":financial_flags"),
        system=Platform.NETSUITE,
        customer_id=src.record_id,
        overdue_balance=overdue,
        currency=currency,
        credit_hold=_credit_hold(rec.credit_hold_override, where),
    )
    return [customer, flags]


def _invoice(src: _Source, raw: Raw) -> list[CanonicalEvent]:
    rec = _record(src, raw, _invoice_decoder)
    if rec is None:
        if not src.deleted:
            raise _no_record(src)
        # The model requires status, total and currency; a deletion without its record has none:
        # "void", 0 and ISO's "no currency" code XXX, flagged deleted so state drops the invoice.
        return [
            InvoiceChanged(
                **_base(src, customer_key=None, local_customer=None),
                system=Platform.NETSUITE,
                invoice_id=src.record_id,
                status="void",
                total=0,
                currency="XXX",
                deleted=True,
            )
        ]
    where = "invoice"
    currency = _currency(src.currency_code, rec.currency, where)
    if rec.status is None or rec.total is None or currency is None:
        raise _missing(where, status=rec.status, total=rec.total, currency=currency)
    customer_id = rec.entity.id if rec.entity else None
    return [
        InvoiceChanged(
            **_base(src, customer_key=None, local_customer=_local(customer_id)),
            system=Platform.NETSUITE,
            invoice_id=src.record_id,
            billing_invoice_id=rec.external_id,
            customer_id=customer_id,
            number=rec.tran_id,
            status=_status(rec.status, _INVOICE_STATUS, where, strict=True),
            total=_minor(rec.total, currency, f"{where} total"),
            tax=_optional_minor(rec.tax_total, currency, f"{where} taxTotal"),
            amount_remaining=_optional_minor(rec.amount_remaining, currency, f"{where} amountRemaining"),
            currency=currency,
            due_at=_date_ms(rec.due_date),
            deleted=src.deleted,
        )
    ]


def _customer_payment(src: _Source, raw: Raw) -> list[CanonicalEvent]:
    rec = _record(src, raw, _payment_decoder)
    if rec is None:
        if not src.deleted:
            raise _no_record(src)
        return [
            PaymentChanged(
                **_base(src, customer_key=None, local_customer=None),
                system=Platform.NETSUITE, payment_id=src.record_id, status="void", amount=0, currency="XXX",
                deleted=True,
            )
        ]
    where = "customerpayment"
    currency = _currency(src.currency_code, rec.currency, where)
    if rec.status is None or rec.payment is None or currency is None:
        raise _missing(where, status=rec.status, payment=rec.payment, currency=currency)
    customer_id = rec.customer.id if rec.customer else None
    return [
        PaymentChanged(
            **_base(src, customer_key=None, local_customer=_local(customer_id)),
            system=Platform.NETSUITE,
            payment_id=src.record_id,
            invoice_id=_single_applied_doc(rec.apply),
            customer_id=customer_id,
            status=_status(rec.status, _PAYMENT_STATUS, where, strict=False),
            amount=_minor(rec.payment, currency, f"{where} payment"),
            currency=currency,
            deleted=src.deleted,
        )
    ]


def _credit_memo(src: _Source, raw: Raw) -> list[CanonicalEvent]:
    rec = _record(src, raw, _credit_memo_decoder)
    if rec is None:
        if not src.deleted:
            raise _no_record(src)
        return [
            RefundChanged(
                **_base(src, customer_key=None, local_customer=None),
                system=Platform.NETSUITE, refund_id=src.record_id, document="credit_memo", status="void",
                amount=0, currency="XXX", deleted=True,
            )
        ]
    where = "creditmemo"
    currency = _currency(src.currency_code, rec.currency, where)
    if rec.status is None or rec.total is None or currency is None:
        raise _missing(where, status=rec.status, total=rec.total, currency=currency)
    customer_id = rec.entity.id if rec.entity else None
    return [
        RefundChanged(
            **_base(src, customer_key=None, local_customer=_local(customer_id)),
            system=Platform.NETSUITE,
            refund_id=src.record_id,
            document="credit_memo",
            billing_refund_id=rec.external_id,
            invoice_id=_single_applied_doc(rec.apply),
            customer_id=customer_id,
            status=_status(rec.status, _CREDIT_MEMO_STATUS, where, strict=False),
            amount=_minor(rec.total, currency, f"{where} total"),
            currency=currency,
            deleted=src.deleted,
        )
    ]


def _sales_order(src: _Source, raw: Raw) -> list[CanonicalEvent]:
    rec = _record(src, raw, _sales_order_decoder)
    if rec is None:
        if not src.deleted:
            raise _no_record(src)
        return [
            SalesOrderChanged(
                **_base(src, customer_key=None, local_customer=None),
                system=Platform.NETSUITE,
                order_id=src.record_id,
                deleted=True,
            )
        ]
    where = "salesorder"
    currency = _currency(src.currency_code, rec.currency, where)
    if rec.total is not None and currency is None:
        raise DecodeError(BAD_CURRENCY, f"{where} has a total but no currency: send currencyCode")
    customer_id = rec.entity.id if rec.entity else None
    return [
        SalesOrderChanged(
            **_base(src, customer_key=None, local_customer=_local(customer_id)),
            system=Platform.NETSUITE,
            order_id=src.record_id,
            opportunity_id=rec.external_id,
            customer_id=customer_id,
            status=_status(rec.status, {}, where, strict=False) if rec.status is not None else None,
            total=_optional_minor(rec.total, currency, f"{where} total") if currency else None,
            currency=currency,
            deleted=src.deleted,
        )
    ]


@lru_cache(maxsize=16)
def _customer_decoder(crm_link_field: str) -> msgspec.json.Decoder[_Customer | None]:
    """The customer decoder that reads `crm_link_field` as the CRM link (built once per field name)."""
    if crm_link_field == DEFAULT_CODEC_CONFIG.netsuite_crm_link_field:
        return msgspec.json.Decoder(_Customer | None)
    renamed: list[Any] = [("crm_link", str | None, field(default=None, name=crm_link_field))]
    customer = msgspec.defstruct("_LinkedCustomer", renamed, bases=(_Customer,), rename="camel")
    return cast(msgspec.json.Decoder[_Customer | None], msgspec.json.Decoder(customer | None))


_invoice_decoder: Final = msgspec.json.Decoder(_Invoice | None)
_payment_decoder: Final = msgspec.json.Decoder(_CustomerPayment | None)
_credit_memo_decoder: Final = msgspec.json.Decoder(_CreditMemo | None)
_sales_order_decoder: Final = msgspec.json.Decoder(_SalesOrder | None)

_MAPPERS: Final[dict[str, Callable[[_Source, Raw], list[CanonicalEvent]]]] = {
    "customer": _customer,
    "invoice": _invoice,
    "customerpayment": _customer_payment,
    "creditmemo": _credit_memo,
    "salesorder": _sales_order,
}


def _base(src: _Source, *, customer_key: str | None, local_customer: str | None, suffix: str = "") -> EventFields:
    """The common fields of an event about the envelope's record.

    Only a customer names a CRM account (its link field, else its externalId; an invoice's externalId is
    the billing invoice id), so only customer events pass a `customer_key`.
    """
    entity = EntityRef(src.record_type, src.record_id)
    event_id = src.event_id + suffix
    return event_fields(
        Platform.NETSUITE, event_id, entity, src.version, crm_account_id=customer_key, local_customer=local_customer
    )


def _record(src: _Source, raw: Raw, decoder: msgspec.json.Decoder[_T | None]) -> _T | None:
    """The decoded `record`, or None when the envelope has none (absent or null)."""
    rec = decode_json(decoder, raw, f"{src.record_type} record") if len(raw) else None
    record_id = getattr(rec, "id", None)
    if record_id is not None and record_id != src.record_id:
        raise DecodeError(ID_MISMATCH, f"{src.record_type}: the envelope's `id` and the record's `id` differ")
    return rec


def _no_record(src: _Source) -> DecodeError:
    return DecodeError(
        MISSING_FIELD,
        f"{src.record_type}: envelope has no record (only a delete may omit it)",
    )


def _missing(where: str, **fields: object) -> DecodeError:
    missing = [name for name, value in fields.items() if value is None]
    return DecodeError(MISSING_FIELD, f"{where} record lacks {', '.join(missing)}")


def _local(customer_id: str | None) -> str | None:
    return f"netsuite:{customer_id}" if customer_id else None


def _currency(code: str | None, ref: _Ref | None, where: str) -> str | None:
    """ISO 4217 code: the envelope's currencyCode, else the record's currency refName."""
    if code is not None:
        upper = code.strip().upper()
        if not _ISO_CURRENCY.match(upper):
            raise DecodeError(
                BAD_CURRENCY, f"{where}: envelope currencyCode ({len(code)} characters) is not an ISO 4217 code"
            )
        return upper
    if ref is None:
        return None
    name = (ref.ref_name or "").strip()
    # Names first: "USA" has the shape of a code but is NetSuite's name for the US dollar. Otherwise
    # only a name already written as a code counts ("EUR"); "Yen" upper-cased is not ISO.
    resolved = _CURRENCY_NAMES.get(name.upper()) or (name if _ISO_CURRENCY.match(name) else None)
    if resolved is None:
        raise DecodeError(
            BAD_CURRENCY,
            f"{where}: currency refName ({len(name)} characters) is a NetSuite currency name, not an ISO code; "
            "send currencyCode in the envelope (see docs/netsuite-suitescript.md)",
        )
    return resolved


def _minor(amount: Decimal, currency: str, where: str) -> int:
    """Exact integer minor units of a decimal amount; refuses to round."""
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):  # NaN or Infinity
        raise DecodeError(BAD_AMOUNT, f"{where} is not a number")
    text = "".join(map(str, digits))
    significant = text.rstrip("0")
    if not significant:
        return 0
    # Trailing zeros carry no value ("1.5000"); the last significant digit must be a whole minor unit.
    shift = exponent + len(text) - len(significant) + minor_units(currency)
    if shift < 0:
        raise DecodeError(BAD_AMOUNT, f"{where} has more decimals than {currency} allows")
    # Sized before int(): 17+ digits is out of range anyway, and no giant number gets built.
    if len(significant) + shift > len(str(_MAX_MINOR)) or (value := int(significant) * 10**shift) > _MAX_MINOR:
        raise DecodeError(BAD_AMOUNT, f"{where} is out of range (at most {_MAX_MINOR} minor units)")
    return -value if sign else value


def _optional_minor(amount: Decimal | None, currency: str, where: str) -> int | None:
    return None if amount is None else _minor(amount, currency, where)


def _status(value: _Select, known: dict[str, str], where: str, *, strict: bool) -> str:
    """Normalised status: by refName, then id; unknown ones are an error (strict) or snake_case."""
    texts = [value.ref_name, value.id] if isinstance(value, _Ref) else [value]
    for text in texts:
        if text and (found := known.get(_squash(text))):
            return found
    label = next((text for text in texts if text), None)
    if strict or label is None:
        found = "no status" if label is None else f"a status of {len(label)} characters"
        raise DecodeError(BAD_STATUS, f"{where}: {found}, not one of {sorted(set(known.values()))}")
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _credit_hold(value: _Select | None, where: str) -> bool | None:
    if value is None:
        return None
    texts = [value.id, value.ref_name] if isinstance(value, _Ref) else [value]
    for text in texts:
        if text and _squash(text) in _CREDIT_HOLD:
            return _CREDIT_HOLD[_squash(text)]
    raise DecodeError(BAD_TYPE, f"{where}: creditHoldOverride is not ON, OFF or AUTO")


def _single_applied_doc(apply: _ApplyList | None) -> str | None:
    """The one invoice a payment or credit memo is applied to; None if none or several."""
    docs = {line.doc.id for line in (apply.items if apply else []) if line.apply and line.doc and line.doc.id}
    return docs.pop() if len(docs) == 1 else None


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _date_ms(value: date | None) -> int | None:
    # NetSuite dates carry no time zone; midnight UTC keeps them comparable with billing due dates.
    if value is None:
        return None
    return epoch_ms(datetime(value.year, value.month, value.day, tzinfo=UTC), "date")
