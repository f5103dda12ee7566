"""NetSuite codec: the envelope, every record type and event type, money, dedup keys, fuzzing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concord.codecs import model, netsuite
from concord.codecs.config import CodecConfig, codec_config
from concord.codecs.errors import DecodeError
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
from concord.core.settings import Settings

from . import netsuite_payloads as ns
from .fuzz_payloads import corrupted, mutated

EXCERPT = "rest_invoice_1215.EXCERPT_first_fields.json"
T = ns.MODIFIED_MS


def decode(body: bytes) -> list[CanonicalEvent]:
    """Decode and check every event survives the canonical model's own codec unchanged."""
    events = netsuite.decode(body)
    for event in events:
        assert model.decode(model.encode(event)) == event
    return events


def failure(body: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(body)
    return caught.value


def excerpt(shared_fixtures: Path) -> dict[str, Any]:
    return json.loads((shared_fixtures / "erp" / EXCERPT).read_bytes())


# --- Oracle's documented invoice (excerpt), unedited inside the envelope ----------------------------


def test_invoice_excerpt_in_envelope_lacks_total_and_status(shared_fixtures: Path) -> None:
    # The stored excerpt stops before `status` and `total` (see erp/SOURCES.txt); an invoice event
    # without them would be a guess, so the codec refuses and says which fields are missing.
    error = failure(ns.envelope("invoice", excerpt(shared_fixtures), record_id="1215"))
    assert error.reason == "missing_field"
    assert error.detail == "invoice record lacks status, total"


def test_invoice_excerpt_completed_with_the_fields_it_cut(shared_fixtures: Path) -> None:
    # Excerpt fields untouched; only the fields past the excerpt's end are appended.
    record = excerpt(shared_fixtures) | {
        "entity": ns.ref("220", "Dwight Schrute"),
        "externalId": "in_1OaBcDeFgHiJkLmN",
        "status": ns.ref("open", "Open"),
        "total": 1000.0,
        "tranId": "INV1215",
    }
    (invoice,) = decode(ns.envelope("invoice", record, record_id="1215", modified="2023-02-06T09:48:00Z"))
    modified = 1675676880000
    assert invoice == InvoiceChanged(
        event_id=f"invoice:1215:{modified}",
        source=Platform.NETSUITE,
        entity=EntityRef("invoice", "1215"),
        occurred_at=modified,
        version=Version(ts=modified),
        local_customer="netsuite:220",
        system=Platform.NETSUITE,
        invoice_id="1215",
        billing_invoice_id="in_1OaBcDeFgHiJkLmN",
        customer_id="220",
        number="INV1215",
        status="open",
        total=100000,
        tax=None,
        amount_remaining=100000,  # amountRemaining 1000.0
        currency="USD",  # currency.refName "USA": NetSuite's name for the US dollar
    )


def test_bare_rest_record_without_envelope_is_unknown(shared_fixtures: Path) -> None:
    error = failure((shared_fixtures / "erp" / EXCERPT).read_bytes())
    assert error.reason == "unknown_shape"
    assert "netsuite-suitescript.md" in error.detail


@pytest.mark.parametrize("name", ["customer.test_records.json", "sales_order.test_records.json"])
def test_erpnext_files_are_not_netsuite(shared_fixtures: Path, name: str) -> None:
    assert failure((shared_fixtures / "erp" / name).read_bytes()).reason == "unknown_shape"


# --- customer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["create", "edit", "xedit"])
def test_customer(event_type: str) -> None:
    customer, flags = decode(ns.envelope("customer", ns.customer(), event_type=event_type))
    common: dict[str, Any] = {
        "source": Platform.NETSUITE,
        "entity": EntityRef("customer", "101"),
        "occurred_at": T,
        "version": Version(ts=T),
        "customer_key": "001Dn00000AcmeAAA",
        "local_customer": "netsuite:101",
        "xrefs": {"salesforce": "001Dn00000AcmeAAA"},
    }
    assert customer == CustomerUpserted(
        event_id=f"customer:101:{T}",
        system=Platform.NETSUITE,
        customer_id="101",
        name="Acme Corp",
        email="ap@acme.example",
        currency="USD",
        payment_terms="Net 30",
        crm_account_id="001Dn00000AcmeAAA",
        **common,
    )
    assert flags == FinancialFlagsChanged(
        event_id=f"customer:101:{T}:financial_flags",
        system=Platform.NETSUITE,
        customer_id="101",
        overdue_balance=123450,
        currency="USD",
        credit_hold=None,  # AUTO: NetSuite decides per transaction
        **common,
    )


@pytest.mark.parametrize(
    ("override", "hold"),
    [
        (ns.ref("ON", "On"), True),
        (ns.ref("OFF", "Off"), False),
        (ns.ref("AUTO", "Auto"), None),
        ("ON", True),  # simpleEnumFormat=true
        ("OFF", False),
        ("AUTO", None),
    ],
)
def test_customer_credit_hold(override: Any, hold: bool | None) -> None:
    _, flags = decode(ns.envelope("customer", ns.customer(creditHoldOverride=override)))
    assert isinstance(flags, FinancialFlagsChanged) and flags.credit_hold is hold


def test_customer_sparse_record() -> None:
    # NetSuite leaves empty fields out: a person, no terms, no external id, no balances.
    record = {"id": "101", "firstName": "Dwight", "lastName": "Schrute", "isPerson": True}
    customer, flags = decode(ns.envelope("customer", record))
    assert isinstance(customer, CustomerUpserted)
    assert (customer.name, customer.currency, customer.payment_terms) == ("Dwight Schrute", None, None)
    assert (customer.customer_key, customer.crm_account_id, customer.xrefs) == (None, None, {})
    assert isinstance(flags, FinancialFlagsChanged)
    assert (flags.overdue_balance, flags.currency, flags.credit_hold) == (None, None, None)


def test_customer_crm_link_is_the_link_field_when_set_else_the_external_id() -> None:
    # Concord writes the CRM link to a custom entity field (NetSuite keeps externalId unique, so a merged-away
    # account's ERP customer could not take the winner's id); older customers carry it in externalId only.
    repointed = ns.customer(custentity_sf_account_id="001Dn00000WinrAAA")
    customer, flags = decode(ns.envelope("customer", repointed))
    assert isinstance(customer, CustomerUpserted) and isinstance(flags, FinancialFlagsChanged)
    assert (customer.crm_account_id, customer.customer_key, flags.customer_key) == ("001Dn00000WinrAAA",) * 3
    assert customer.xrefs == {"salesforce": "001Dn00000WinrAAA"}
    for unset in ({}, {"custentity_sf_account_id": ""}, {"custentity_sf_account_id": None}):
        customer, _ = decode(ns.envelope("customer", ns.customer(**unset)))
        assert isinstance(customer, CustomerUpserted) and customer.crm_account_id == "001Dn00000AcmeAAA"
    only_link = {k: v for k, v in repointed.items() if k != "externalId"}
    customer, _ = decode(ns.envelope("customer", only_link))
    assert isinstance(customer, CustomerUpserted) and customer.customer_key == "001Dn00000WinrAAA"


def test_customer_crm_link_field_is_configuration() -> None:
    record = ns.customer(custentity_crm_account="001Dn00000OtheAAA", custentity_sf_account_id="001Dn00000WinrAAA")
    configured = CodecConfig(netsuite_crm_link_field="custentity_crm_account")
    customer, _ = netsuite.decode(ns.envelope("customer", record), configured)
    assert isinstance(customer, CustomerUpserted) and customer.crm_account_id == "001Dn00000OtheAAA"
    customer, _ = netsuite.decode(ns.envelope("customer", ns.customer()), configured)
    assert isinstance(customer, CustomerUpserted) and customer.crm_account_id == "001Dn00000AcmeAAA"
    assert codec_config(Settings(netsuite_crm_link_field="custentity_crm_account")) == configured
    # A link that is not text (a list/record field) is refused, naming the field, not guessed.
    error = failure(ns.envelope("customer", ns.customer(custentity_sf_account_id=ns.ref("5", "Acme"))))
    assert error.reason == "bad_type" and "custentity_sf_account_id" in error.detail


def test_customer_currency_code_from_envelope_sets_minor_units() -> None:
    body = ns.envelope("customer", ns.customer(currency=ns.ref("7", "Yen"), overdueBalance=1500), currencyCode="jpy")
    customer, flags = decode(body)
    assert isinstance(customer, CustomerUpserted) and customer.currency == "JPY"
    assert isinstance(flags, FinancialFlagsChanged) and flags.overdue_balance == 1500


@pytest.mark.parametrize(
    ("overrides", "extra"),
    [
        ({"currency": ns.ref("7", "Yen")}, {}),  # a name, not a code, and no currencyCode
        ({"currency": ns.ref("7", "eur")}, {}),  # codes count only written as codes
        ({}, {"currencyCode": "US$"}),
        ({"currency": None}, {}),  # overdueBalance without any currency
    ],
)
def test_customer_bad_currency(overrides: dict[str, Any], extra: dict[str, Any]) -> None:
    record = {k: v for k, v in (ns.customer() | overrides).items() if v is not None}
    assert failure(ns.envelope("customer", record, **extra)).reason == "bad_currency"


def test_customer_iso_code_as_currency_name() -> None:
    customer, _ = decode(ns.envelope("customer", ns.customer(currency=ns.ref("2", "EUR"))))
    assert isinstance(customer, CustomerUpserted) and customer.currency == "EUR"


def test_customer_bad_credit_hold() -> None:
    assert failure(ns.envelope("customer", ns.customer(creditHoldOverride="MAYBE"))).reason == "bad_type"


@pytest.mark.parametrize("record", [None, ns.customer()])
def test_customer_delete(record: dict[str, Any] | None) -> None:
    (customer,) = decode(ns.envelope("customer", record, event_type="delete"))
    assert isinstance(customer, CustomerUpserted) and customer.deleted
    assert customer.event_id == f"customer:101:{T}:delete"
    assert customer.version == Version(ts=T, seq=1)
    assert customer.customer_key == (None if record is None else "001Dn00000AcmeAAA")


# --- invoice ----------------------------------------------------------------------------------------


def test_invoice() -> None:
    (invoice,) = decode(ns.envelope("invoice", ns.invoice()))
    assert invoice == InvoiceChanged(
        event_id=f"invoice:101:{T}",
        source=Platform.NETSUITE,
        entity=EntityRef("invoice", "101"),
        occurred_at=T,
        version=Version(ts=T),
        local_customer="netsuite:77",
        system=Platform.NETSUITE,
        invoice_id="101",
        billing_invoice_id="in_1OaBcDeFgHiJkLmN",
        customer_id="77",
        number="INV-0042",
        status="open",
        total=121000,
        tax=21000,
        amount_remaining=121000,
        currency="USD",
        due_at=1711843200000,  # 2024-03-31T00:00:00Z
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (ns.ref("open", "Open"), "open"),
        (ns.ref("paidInFull", "Paid In Full"), "paid"),
        (ns.ref("voided", "Voided"), "void"),
        (ns.ref("rejected", "Rejected"), "void"),
        (ns.ref("pendingApproval", "Pending Approval"), "draft"),
        ({"id": "B"}, "paid"),
        ("paidInFull", "paid"),  # simpleEnumFormat / SuiteScript statusRef
        ("CustInvc:V", "void"),
        ({"id": "whatever", "refName": "Paid In Full"}, "paid"),  # refName wins
    ],
)
def test_invoice_status(status: Any, expected: str) -> None:
    (invoice,) = decode(ns.envelope("invoice", ns.invoice(status=status)))
    assert isinstance(invoice, InvoiceChanged) and invoice.status == expected


def test_invoice_unknown_status_is_an_error() -> None:
    error = failure(ns.envelope("invoice", ns.invoice(status=ns.ref("x", "Partially Haunted"))))
    assert error.reason == "bad_status" and "a status of 17 characters" in error.detail
    assert "Partially Haunted" not in error.detail  # a payload value: never in a dead letter


def test_invoice_delete_without_record() -> None:
    (invoice,) = decode(ns.envelope("invoice", None, event_type="delete"))
    assert invoice == InvoiceChanged(
        event_id=f"invoice:101:{T}:delete",
        source=Platform.NETSUITE,
        entity=EntityRef("invoice", "101"),
        occurred_at=T,
        version=Version(ts=T, seq=1),
        system=Platform.NETSUITE,
        invoice_id="101",
        status="void",
        total=0,
        currency="XXX",
        deleted=True,
    )


def test_invoice_delete_with_record_keeps_its_fields() -> None:
    (invoice,) = decode(ns.envelope("invoice", ns.invoice(), event_type="delete"))
    assert isinstance(invoice, InvoiceChanged)
    assert (invoice.deleted, invoice.total, invoice.billing_invoice_id) == (
        True,
        121000,
        "in_1OaBcDeFgHiJkLmN",
    )
    assert invoice.version == Version(ts=T, seq=1)


def test_delete_orders_after_an_edit_in_the_same_millisecond() -> None:
    (edit,) = decode(ns.envelope("invoice", ns.invoice()))
    (delete,) = decode(ns.envelope("invoice", None, event_type="delete"))
    assert delete.version > edit.version
    assert delete.event_id != edit.event_id


# --- money ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (1234.5, None, 123450),
        ("1234.50", None, 123450),
        (0.1, None, 10),
        (0, None, 0),
        (-12.34, None, -1234),
        (1e2, None, 10000),
        (19.99, None, 1999),
        (123456789012.34, None, 12345678901234),
        (1500, "JPY", 1500),
        (1.234, "KWD", 1234),
        ("0E+999999", None, 0),
        ("-0.00", None, 0),
        ("1.5" + "0" * 60, None, 150),
        ("90071992547409.92", None, 2**53),
    ],
)
def test_money_is_exact(amount: Any, currency: str | None, minor: int) -> None:
    extra = {"currencyCode": currency} if currency else {}
    (invoice,) = decode(ns.envelope("invoice", ns.invoice(total=amount), **extra))
    assert isinstance(invoice, InvoiceChanged) and invoice.total == minor


@pytest.mark.parametrize(
    "amount",
    [
        b"10.005",
        b'"NaN"',
        b'"Infinity"',
        b"1e999999",
        b"-1e999999",
        b"1e-999999",
        b"1" + b"0" * 30,
        b"9" * 5000,  # beyond Python's int-from-text digit limit
        b"0." + b"1" * 5000,
        b"90071992547409.93",  # 2**53 + 1 minor units
    ],
)
def test_money_that_cannot_be_exact_is_refused(amount: bytes) -> None:
    body = ns.envelope("invoice", ns.invoice(total=4242.42)).replace(b"4242.42", amount)
    error = failure(body)
    assert error.reason == "bad_amount"
    assert error.detail.startswith("invoice total ")
    assert "101" not in error.detail.removesuffix("(at most 9007199254740992 minor units)")


def test_money_with_decimals_a_zero_decimal_currency_lacks() -> None:
    assert failure(ns.envelope("invoice", ns.invoice(total=1.5), currencyCode="JPY")).reason == "bad_amount"


def test_money_as_text_that_is_not_a_number() -> None:
    assert failure(ns.envelope("invoice", ns.invoice(total="12,50"))).reason == "bad_type"


# --- customer payment, credit memo, sales order ---------------------------------------------------


def test_customer_payment() -> None:
    (payment,) = decode(ns.envelope("customerpayment", ns.customer_payment(), event_type="create"))
    assert payment == PaymentChanged(
        event_id=f"customerpayment:101:{T}",
        source=Platform.NETSUITE,
        entity=EntityRef("customerpayment", "101"),
        occurred_at=T,
        version=Version(ts=T),
        local_customer="netsuite:77",
        system=Platform.NETSUITE,
        payment_id="101",
        invoice_id="555",
        customer_id="77",
        status="succeeded",
        amount=121000,
        currency="USD",
    )


@pytest.mark.parametrize(
    ("apply", "invoice_id"),
    [
        (None, None),
        ({"links": []}, None),  # sublist not expanded
        ({"items": [{"apply": False, "doc": ns.ref("555", "Invoice")}]}, None),
        (
            {"items": [{"apply": True, "doc": ns.ref("1", "A")}, {"apply": True, "doc": ns.ref("2", "B")}]},
            None,
        ),
    ],
)
def test_customer_payment_applied_invoice(apply: Any, invoice_id: str | None) -> None:
    record = {k: v for k, v in (ns.customer_payment() | {"apply": apply}).items() if v is not None}
    (payment,) = decode(ns.envelope("customerpayment", record))
    assert isinstance(payment, PaymentChanged) and payment.invoice_id == invoice_id


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (ns.ref("notDeposited", "Not Deposited"), "succeeded"),
        (ns.ref("unapprovedPayment", "Unapproved Payment"), "pending"),
        ("Voided", "void"),
        (ns.ref("x", "Payment Declined"), "payment_declined"),  # outside the map: snake_case
    ],
)
def test_customer_payment_status(status: Any, expected: str) -> None:
    (payment,) = decode(ns.envelope("customerpayment", ns.customer_payment(status=status)))
    assert isinstance(payment, PaymentChanged) and payment.status == expected


def test_credit_memo() -> None:
    (refund,) = decode(ns.envelope("creditmemo", ns.credit_memo(), event_type="create"))
    assert refund == RefundChanged(
        event_id=f"creditmemo:101:{T}",
        source=Platform.NETSUITE,
        entity=EntityRef("creditmemo", "101"),
        occurred_at=T,
        version=Version(ts=T),
        local_customer="netsuite:77",
        system=Platform.NETSUITE,
        refund_id="101",
        document="credit_memo",
        billing_refund_id="re_3OaBcDeFgHiJkLmN",
        invoice_id="555",
        customer_id="77",
        status="open",
        amount=10000,
        currency="USD",
    )


def test_credit_memo_fully_applied() -> None:
    (refund,) = decode(ns.envelope("creditmemo", ns.credit_memo(status=ns.ref("fullyApplied", "Fully Applied"))))
    assert isinstance(refund, RefundChanged) and refund.status == "applied"


def test_sales_order() -> None:
    (order,) = decode(ns.envelope("salesorder", ns.sales_order(), event_type="xedit"))
    assert order == SalesOrderChanged(
        event_id=f"salesorder:101:{T}",
        source=Platform.NETSUITE,
        entity=EntityRef("salesorder", "101"),
        occurred_at=T,
        version=Version(ts=T),
        local_customer="netsuite:77",
        system=Platform.NETSUITE,
        order_id="101",
        opportunity_id="006Dn00000OppAAA",
        customer_id="77",
        status="pending_fulfillment",
        total=500000,
        currency="USD",
    )


def test_sales_order_delete_without_record() -> None:
    (order,) = decode(ns.envelope("salesorder", None, event_type="delete"))
    assert isinstance(order, SalesOrderChanged)
    assert (order.deleted, order.order_id, order.total, order.event_id) == (
        True,
        "101",
        None,
        f"salesorder:101:{T}:delete",
    )
    assert order.version == Version(ts=T, seq=1)


def test_payment_and_credit_memo_deletes_keep_the_record_they_were() -> None:
    (payment,) = decode(ns.envelope("customerpayment", ns.customer_payment(), event_type="delete"))
    assert isinstance(payment, PaymentChanged)
    assert (payment.deleted, payment.amount, payment.invoice_id, payment.local_customer, payment.event_id) == (
        True, 121000, "555", "netsuite:77", f"customerpayment:101:{T}:delete")
    (memo,) = decode(ns.envelope("creditmemo", ns.credit_memo(), event_type="delete"))
    assert isinstance(memo, RefundChanged)
    assert (memo.deleted, memo.billing_refund_id, memo.amount, memo.version) == (
        True, "re_3OaBcDeFgHiJkLmN", 10000, Version(ts=T, seq=1))


@pytest.mark.parametrize("record_type", ["customerpayment", "creditmemo"])
def test_payment_and_credit_memo_deletes_without_record_carry_placeholders(record_type: str) -> None:
    (event,) = decode(ns.envelope(record_type, None, event_type="delete"))
    assert isinstance(event, PaymentChanged | RefundChanged)
    assert (event.deleted, event.status, event.amount, event.currency, event.local_customer) == (
        True, "void", 0, "XXX", None)


# --- every record type x every event type: dedup and ordering keys --------------------------------

RECORDS = {
    "customer": ns.customer,
    "invoice": ns.invoice,
    "customerpayment": ns.customer_payment,
    "creditmemo": ns.credit_memo,
    "salesorder": ns.sales_order,
}


@pytest.mark.parametrize("record_type", sorted(RECORDS))
@pytest.mark.parametrize("event_type", ["create", "edit", "xedit", "approve", "cancel", "delete", "DELETE"])
def test_keys_for_every_record_and_event_type(record_type: str, event_type: str) -> None:
    body = ns.envelope(record_type, RECORDS[record_type](), event_type=event_type, record_id=101)
    events = decode(body)
    deleted = event_type.lower() == "delete"
    base = f"{record_type}:101:{T}" + (":delete" if deleted else "")
    expected_ids = [base, f"{base}:financial_flags"] if record_type == "customer" and not deleted else [base]
    assert [e.event_id for e in events] == expected_ids
    assert all(e.version == Version(ts=T, seq=1 if deleted else 0) for e in events)
    assert all(e.entity == EntityRef(record_type, "101") and e.occurred_at == T for e in events)
    assert decode(body) == events  # the same delivery decodes to the same keys (redelivery dedups)


@pytest.mark.parametrize("event_type", ["view", "print", "email"])
def test_read_only_event_types_are_ignored(event_type: str) -> None:
    assert decode(ns.envelope("invoice", ns.invoice(), event_type=event_type)) == []


@pytest.mark.parametrize("record_type", ["vendorbill", "employee", "journalentry"])
def test_untracked_record_types_are_ignored(record_type: str) -> None:
    assert decode(ns.envelope(record_type, {"id": "101"})) == []


def test_offset_times_are_converted_to_utc() -> None:
    (order,) = decode(ns.envelope("salesorder", ns.sales_order(), modified="2024-03-01T11:20:30.456+01:00"))
    assert order.version == Version(ts=T)


# --- envelope errors --------------------------------------------------------------------------------


def _raw_envelope(**changes: Any) -> bytes:
    body = json.loads(ns.envelope("invoice", ns.invoice()))
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "invalid_json"),
        (b"\x80", "invalid_json"),
        (b'{"envelope": "concord.netsuite.v1"', "invalid_json"),
        (b"[]", "unknown_shape"),
        (b'"concord.netsuite.v1"', "unknown_shape"),
        (b'{"envelope": 1}', "unknown_shape"),
        (_raw_envelope(envelope="concord.netsuite.v2"), "unknown_shape"),
        (_raw_envelope(envelope=None), "unknown_shape"),
        (_raw_envelope(accountId=None), "missing_field"),
        (_raw_envelope(lastModifiedDate=None), "missing_field"),
        (_raw_envelope(recordType=""), "missing_field"),
        (_raw_envelope(id=" "), "missing_field"),
        (_raw_envelope(accountId=""), "missing_field"),
        (_raw_envelope(eventType=7), "bad_type"),
        (_raw_envelope(lastModifiedDate="2024-03-01T10:20:30"), "bad_time"),
        (_raw_envelope(lastModifiedDate="1 March 2024"), "bad_type"),
        (_raw_envelope(record=None), "missing_field"),
        (_raw_envelope(record="x"), "bad_type"),
        (_raw_envelope(id="999"), "id_mismatch"),
        (_raw_envelope(currencyCode="dollars"), "bad_currency"),
        (ns.envelope("invoice", ns.invoice(dueDate="31/03/2024")), "bad_type"),
        (ns.envelope("invoice", ns.invoice(entity="77")), "bad_type"),
        (ns.envelope("customerpayment", ns.customer_payment(payment=None)), "missing_field"),
        (ns.envelope("creditmemo", ns.credit_memo(status=None)), "missing_field"),
        (ns.envelope("salesorder", ns.sales_order(currency=None)), "bad_currency"),
    ],
)
def test_errors(body: bytes, expected: str) -> None:
    assert failure(body).reason == expected


def test_record_null_on_edit_is_missing() -> None:
    error = failure(_raw_envelope(record=None))
    assert error.detail == "invoice: envelope has no record (only a delete may omit it)"


# --- fuzzing ------------------------------------------------------------------------------------------


def _documents(shared_fixtures: Path) -> list[Any]:
    docs: list[Any] = [json.loads(ns.envelope(kind, build())) for kind, build in RECORDS.items()]
    docs.append(json.loads(ns.envelope("invoice", excerpt(shared_fixtures), record_id="1215")))
    docs.append(json.loads(ns.envelope("invoice", None, event_type="delete")))
    return docs


def _only_events_or_decode_error(body: bytes) -> None:
    try:
        events = netsuite.decode(body)
    except DecodeError:
        return
    for event in events:
        assert model.decode(model.encode(event)) == event


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_envelopes(shared_fixtures: Path, data: st.DataObject) -> None:
    _only_events_or_decode_error(data.draw(mutated(_documents(shared_fixtures))))


@FUZZ
@given(data=st.data())
def test_fuzz_corrupted_bytes(shared_fixtures: Path, data: st.DataObject) -> None:
    bodies = [json.dumps(doc).encode() for doc in _documents(shared_fixtures)]
    _only_events_or_decode_error(data.draw(corrupted(bodies)))


@FUZZ
@given(body=st.binary(max_size=256))
def test_fuzz_random_bytes(body: bytes) -> None:
    _only_events_or_decode_error(body)
