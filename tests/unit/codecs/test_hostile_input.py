"""Hostile input against every codec: deep nesting, huge numbers, and no payload value in any error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from concord.codecs import errors, netsuite, salesforce, stripe, zendesk
from concord.codecs.errors import DecodeError

from . import netsuite_payloads as ns
from . import salesforce_payloads as sf
from .stripe_payloads import basil_customer, basil_invoice, basil_price, basil_subscription, envelope
from .zendesk_payloads import org_detail, rest_org, webhook

Decode = Callable[[bytes], Any]
CODECS: dict[str, Decode] = {
    "stripe": stripe.decode,
    "salesforce": salesforce.decode,
    "zendesk": zendesk.decode,
    "netsuite": netsuite.decode,
}
SECRET = "SECRET-VALUE-123"
_HOLE = "__HOLE__"


def refusal(decode: Decode, body: bytes) -> DecodeError:
    """The DecodeError `decode` raises for `body` (anything else, or success, fails the test)."""
    with pytest.raises(DecodeError) as caught:
        decode(body)
    assert type(caught.value) is DecodeError
    return caught.value


def with_hole(payload: bytes, filler: bytes) -> bytes:
    """`payload` with the JSON string `"__HOLE__"` replaced by raw `filler` bytes."""
    assert payload.count(f'"{_HOLE}"'.encode()) == 1
    return payload.replace(f'"{_HOLE}"'.encode(), filler)


def valid_with_hole(platform: str) -> bytes:
    """A real payload of `platform` with one field left as a hole for other bytes."""
    if platform == "stripe":
        return msgspec.json.encode(envelope(basil_invoice(metadata=_HOLE), "invoice.paid"))
    if platform == "salesforce":
        return sf.cometd(sf.header(), {"Name": _HOLE})
    if platform == "zendesk":
        return msgspec.json.encode(rest_org(organization_fields={"support_status": _HOLE}))
    return ns.envelope("invoice", ns.invoice(memo=_HOLE))


# --- deep nesting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("platform", sorted(CODECS))
def test_deep_nesting_is_too_deep(platform: str, depth: int) -> None:
    decode = CODECS[platform]
    deep_bodies = [
        b'{"a":' * depth,  # unterminated
        b'{"a":' * depth + b"1" + b"}" * depth,  # valid JSON
        b'{"a": ' + b"[" * depth + b"]" * depth + b"}",
        with_hole(valid_with_hole(platform), b"[" * depth + b"]" * depth),  # deep inside a real payload
        with_hole(valid_with_hole(platform), b'{"a":' * depth + b"1" + b"}" * depth),
    ]
    for body in deep_bodies:
        error = refusal(decode, body)
        assert error.reason == errors.TOO_DEEP, (body[:40], error)
        assert "nested too deeply" in error.detail and "Traceback" not in error.detail


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("platform", sorted(CODECS))
def test_deep_top_level_array_is_refused_by_name(platform: str, depth: int) -> None:
    # Not an object at all: refused at its first byte (no codec reads a top-level array), by name.
    for body in (b"[" * depth, b"[" * depth + b"]" * depth):
        error = refusal(CODECS[platform], body)
        assert error.reason not in (errors.CODEC_ERROR, "")
        assert len(error.detail) < 1_000


# --- huge numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(CODECS))
@pytest.mark.parametrize("number", [b"9" * 100_000, b"-" + b"9" * 5_000, b"1e999999999", b"0." + b"1" * 100_000])
def test_huge_number_is_refused_by_name(platform: str, number: bytes) -> None:
    # (In a field the codec does not read, a number is skipped, not built: see the amount test below.)
    decode = CODECS[platform]
    for body in (number, b'{"a": ' + number + b"}"):
        error = refusal(decode, body)
        assert error.reason not in (errors.CODEC_ERROR, "")
        assert b"99999" not in str(error).encode() and b"11111" not in str(error).encode()


@pytest.mark.parametrize(
    ("platform", "body"),
    [
        ("stripe", msgspec.json.encode(envelope(basil_invoice(total=_HOLE), "invoice.paid"))),
        ("salesforce", sf.cometd(sf.header(), {"Amount": _HOLE})),
        ("zendesk", msgspec.json.encode(rest_org(id=_HOLE))),
        ("netsuite", ns.envelope("invoice", ns.invoice(total=_HOLE))),
    ],
)
def test_huge_amount_in_an_amount_field(platform: str, body: bytes) -> None:
    error = refusal(CODECS[platform], with_hole(body, b"9" * 100_000))
    assert error.reason in (errors.BAD_TYPE, "invalid_value", "invalid_amount", "bad_amount")
    assert "99999" not in str(error)


# --- Stripe: computed amounts have the bound of decoded ones ---------------------------------------


def _subscription(units: list[tuple[int, int]]) -> bytes:
    from .stripe_payloads import basil_subscription_item

    sub = basil_subscription()
    sub["items"]["data"] = [
        basil_subscription_item(f"si_{n}", basil_price(f"price_{n}", unit), quantity, 1_800_000_000)
        for n, (unit, quantity) in enumerate(units)
    ]
    return msgspec.json.encode(envelope(sub, "customer.subscription.updated"))


def test_stripe_subscription_amount_beyond_2_53_is_refused() -> None:
    error = refusal(stripe.decode, _subscription([(2**53, 2)]))
    assert error.reason == stripe.AMOUNT_OUT_OF_RANGE
    assert "items.data[0].quantity" in error.detail
    # Each item within the bound, the sum beyond it.
    assert refusal(stripe.decode, _subscription([(2**52, 1), (2**52, 1), (1, 1)])).reason == stripe.AMOUNT_OUT_OF_RANGE
    assert refusal(stripe.decode, _subscription([(-(2**53), 2)])).reason == stripe.AMOUNT_OUT_OF_RANGE


def test_stripe_subscription_amount_at_the_bound_is_kept() -> None:
    (event,) = stripe.decode(_subscription([(2**52, 2)]))
    assert event.amount == 2**53


def test_stripe_quantities_beyond_2_53_are_refused() -> None:
    error = refusal(stripe.decode, _subscription([(0, 2**53), (0, 1)]))
    assert error.reason == stripe.AMOUNT_OUT_OF_RANGE


def test_stripe_plan_amount_times_quantity_beyond_2_53_is_refused() -> None:
    sub = basil_subscription(quantity=4)
    sub["items"]["data"] = []
    sub["plan"] = {"id": "plan_old", "object": "plan", "amount": 2**52, "currency": "eur"}
    error = refusal(stripe.decode, msgspec.json.encode(envelope(sub, "customer.subscription.updated")))
    assert error.reason == stripe.AMOUNT_OUT_OF_RANGE


def test_stripe_summed_taxes_beyond_2_53_are_refused() -> None:
    taxes = [{"amount": 2**53, "tax_behavior": "exclusive"}, {"amount": 1, "tax_behavior": "exclusive"}]
    error = refusal(stripe.decode, msgspec.json.encode(envelope(basil_invoice(total_taxes=taxes), "invoice.paid")))
    assert error.reason == stripe.AMOUNT_OUT_OF_RANGE and "total_taxes" in error.detail
    (event,) = stripe.decode(msgspec.json.encode(envelope(basil_invoice(total_taxes=taxes[:1]), "invoice.paid")))
    assert event.tax == 2**53


# --- no payload value in any error ----------------------------------------------------------------


def _without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


def _stripe_cases() -> list[tuple[str, bytes]]:
    def body(obj: dict[str, Any], event_type: str = "invoice.paid", **env: Any) -> bytes:
        return msgspec.json.encode(envelope(obj, event_type, **env))

    named = {"customer_email": SECRET, "customer_name": SECRET, "customer": SECRET}
    return [
        ("bad_currency", body(basil_invoice(currency=SECRET, **named))),
        ("bad_type", body(basil_invoice(total=SECRET, id=SECRET, **named))),
        ("missing_field", body(_without(basil_invoice(number=SECRET, **named), "status"))),
        ("unexpected_object", body(basil_customer(name=SECRET, email=SECRET), f"invoice.{SECRET}")),
        ("bad_type", body(basil_invoice(status_transitions={"paid_at": SECRET}, **named))),
        ("not_a_stripe_event", msgspec.json.encode({"object": SECRET, "id": SECRET, "name": SECRET})),
        ("invalid_json", body(basil_invoice(**named))[:-3]),
        ("amount_out_of_range", body(basil_invoice(total_taxes=[{"amount": 2**53}] * 2, **named))),
    ]


def _salesforce_cases() -> list[tuple[str, bytes]]:
    fields = {"Name": SECRET, "Description": SECRET}
    account_fields = {"Name": SECRET, "Phone": SECRET}
    return [
        ("invalid_record_id", sf.cometd(sf.header(record_ids=[SECRET]), fields)),
        ("unknown_change_type", sf.cometd(sf.header(change_type=SECRET), fields)),
        ("invalid_currency", sf.cometd(sf.header(), {**fields, "CurrencyIsoCode": SECRET})),
        ("invalid_date", sf.cometd(sf.header(), {**fields, "CloseDate": SECRET})),
        ("invalid_field_list", sf.cometd(sf.header(changed_fields=[SECRET]), fields)),
        ("invalid_field_list", sf.cometd(sf.header(changed_fields=["0x1", SECRET]), fields)),
        ("invalid_amount", sf.cometd(sf.header(), {**fields, "Amount": 1e300})),
        ("invalid_value", sf.cometd(sf.header(), {**fields, "StageName": 12345})),
        ("invalid_record_id", sf.cometd(sf.header(), {**fields, "AccountId": SECRET})),
        ("missing_record_id", sf.cometd(sf.header(record_ids=[], transactionKey=SECRET), fields)),
        ("missing_header", msgspec.json.encode({"channel": f"/data/{SECRET}", "data": {
            "schema": "x", "payload": {"Name": SECRET}, "event": {"replayId": 1}}})),
        ("invalid_record_id", sf.cometd(
            sf.header(entity="Account", change_type="DELETE", record_ids=[sf.ACCOUNT_ID]),
            {**account_fields, "MasterRecordId": SECRET})),
    ]


def _zendesk_cases() -> list[tuple[str, bytes]]:
    def org(**overrides: Any) -> bytes:
        return msgspec.json.encode(rest_org(name=SECRET, external_id=SECRET, **overrides))

    return [
        ("bad_type", org(organization_fields={"support_end_date": SECRET})),
        ("missing_field", org(id=SECRET, updated_at=None)),
        ("bad_time", org(id=SECRET, updated_at="2024-05-06T07:08:09")),
        ("bad_type", org(id=SECRET, updated_at=SECRET)),
        ("unknown_shape", msgspec.json.encode({SECRET: SECRET, "name": SECRET})),
        ("bad_type", msgspec.json.encode({"tickets": [{"id": SECRET, "subject": SECRET, "updated_at": 5}]})),
        ("bad_time", webhook("organization.created", org_detail(id=SECRET, name=SECRET,
                                                                updated_at="2099-07-07T03:44:13"),
                             event_id=SECRET, time="2099-07-07T03:44:13Z")),
    ]


def _netsuite_cases() -> list[tuple[str, bytes]]:
    named = {"companyName": SECRET, "email": SECRET, "entityId": SECRET, "externalId": SECRET}
    return [
        ("unknown_shape", ns.envelope("invoice", ns.invoice(), envelope=SECRET)),
        ("bad_currency", ns.envelope("customer", ns.customer(id=SECRET, **named), record_id=SECRET,
                                     currencyCode=SECRET)),
        ("bad_currency", ns.envelope("invoice", ns.invoice(id=SECRET, currency=ns.ref(SECRET, SECRET)),
                                     record_id=SECRET)),
        ("bad_status", ns.envelope("invoice", ns.invoice(id=SECRET, status=ns.ref(SECRET, SECRET)),
                                   record_id=SECRET)),
        ("bad_type", ns.envelope("customer", ns.customer(id=SECRET, creditHoldOverride=ns.ref(SECRET, SECRET),
                                                         **named), record_id=SECRET)),
        ("id_mismatch", ns.envelope("customer", ns.customer(id=SECRET + "-other", **named), record_id=SECRET)),
        ("missing_field", ns.envelope("invoice", None, record_id=SECRET)),
        ("bad_amount", ns.envelope("invoice", ns.invoice(id=SECRET, total=10.005), record_id=SECRET)),
        ("missing_field", ns.envelope("invoice", ns.invoice(id=SECRET, status=None), record_id=SECRET)),
        ("bad_time", ns.envelope("invoice", ns.invoice(id=SECRET), record_id=SECRET,
                                 modified="2024-03-01T10:20:30")),
    ]


@pytest.mark.parametrize(
    ("platform", "reason", "body"),
    [("stripe", r, b) for r, b in _stripe_cases()]
    + [("salesforce", r, b) for r, b in _salesforce_cases()]
    + [("zendesk", r, b) for r, b in _zendesk_cases()]
    + [("netsuite", r, b) for r, b in _netsuite_cases()],
)
def test_no_payload_value_in_a_refusal(platform: str, reason: str, body: bytes) -> None:
    assert SECRET.encode() in body
    error = refusal(CODECS[platform], body)
    assert error.reason == reason, error
    for text in (error.reason, error.detail, str(error), repr(error)):
        assert SECRET not in text and "SECRET" not in text, text
