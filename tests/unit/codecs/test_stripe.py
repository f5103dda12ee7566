"""Tests of the Stripe codec: every recorded fixture, the basil shapes, ordering keys, errors, fuzzing."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from concord.codecs import model, stripe
from concord.codecs.config import CodecConfig
from concord.codecs.errors import DecodeError
from concord.codecs.model import (
    CanonicalEvent,
    CustomerUpserted,
    EntityRef,
    InvoiceChanged,
    PaymentChanged,
    Platform,
    RefundChanged,
    SubscriptionChanged,
    Version,
)

from .stripe_payloads import (
    EVENTS_DIR,
    OBJECTS_DIR,
    T0,
    basil_charge,
    basil_credit_note,
    basil_customer,
    basil_invoice,
    basil_refund,
    basil_subscription,
    envelope,
    load,
    to_bytes,
)

ZERO_EVT = "evt_000000000000000000000000"
OLD_EVT = "evt_00000000000000"
ZERO_CUS = "cus_00000000000000"
REASONS = {
    "invalid_json",
    "not_a_stripe_event",
    "missing_field",
    "bad_type",
    "bad_currency",
    "unexpected_object",
}


def decode(payload: dict[str, Any] | bytes) -> list[CanonicalEvent]:
    """Decode, then check what every output must satisfy whatever the input."""
    body = payload if isinstance(payload, bytes) else to_bytes(payload)
    events = stripe.decode(body)
    for event in events:
        assert_valid(event)
    return events


def assert_valid(event: CanonicalEvent) -> None:
    # encode -> decode runs the model's own validation (currency pattern, types) and must round-trip.
    assert model.decode(model.encode(event)) == event
    assert event.source is Platform.STRIPE
    assert event.occurred_at == event.version.ts
    assert event.event_id and event.correlation_id
    # The event id is the source id, or the source id + ":<entity id>" for a fan-out (the source id
    # itself may contain ":" in a corrupted-but-valid payload).
    assert event.event_id == event.correlation_id or event.event_id.startswith(event.correlation_id + ":")


def one(payload: dict[str, Any] | bytes) -> CanonicalEvent:
    events = decode(payload)
    assert len(events) == 1, events
    return events[0]


def fails(payload: dict[str, Any] | bytes, reason: str) -> DecodeError:
    body = payload if isinstance(payload, bytes) else to_bytes(payload)
    with pytest.raises(DecodeError) as info:
        stripe.decode(body)
    assert info.value.reason == reason, info.value
    return info.value


# --- every recorded event fixture ------------------------------------------------------------------

# file -> (canonical class, entity, status, amount, currency, version); None = no event expected.
# Amount is the class's money field: total (invoice), amount (others); None for customers.
EVENT_TABLE: dict[str, tuple[type, EntityRef, str | None, int | None, str | None, Version] | None] = {
    "charge.captured": (
        PaymentChanged, EntityRef("charge", "ch_000000000000000000000000"), "succeeded", 100, "USD",
        Version(1648319938000, 3),
    ),
    "charge.failed": (
        PaymentChanged, EntityRef("charge", "ch_000000000000000000000000"), "failed", 2000, "USD",
        Version(1648320028000, 3),
    ),
    "charge.refund.updated": (
        RefundChanged, EntityRef("refund", "re_000000000000000000000000"), "succeeded", 100, "USD",
        Version(1648319945000, 3),
    ),
    "charge.refunded": (
        RefundChanged, EntityRef("refund", "re_000000000000000000000000"), "succeeded", 100, "USD",
        Version(1648319949000, 3),
    ),
    "charge.succeeded": (
        PaymentChanged, EntityRef("charge", "ch_000000000000000000000000"), "succeeded", 2000, "USD",
        Version(1648320032000, 3),
    ),
    "customer.created": (
        CustomerUpserted, EntityRef("customer", ZERO_CUS), None, None, None, Version(1648320107000, 1)
    ),
    "customer.deleted": (
        CustomerUpserted, EntityRef("customer", ZERO_CUS), None, None, None, Version(1648319961000, 99)
    ),
    "customer.updated": (
        CustomerUpserted, EntityRef("customer", ZERO_CUS), None, None, "USD", Version(1648320110000, 2)
    ),
    "customer.subscription.created": (
        SubscriptionChanged, EntityRef("subscription", "sub_000000000000000000000000"), "active", 1500, "USD",
        Version(1648320110000, 3),
    ),
    "customer.subscription.deleted": (
        SubscriptionChanged, EntityRef("subscription", "sub_000000000000000000000000"), "canceled", 1500,
        "USD", Version(1648320097000, 99),
    ),
    "customer.subscription.trial_will_end": (
        SubscriptionChanged, EntityRef("subscription", "su_00000000000000"), "trialing", None, None,
        Version(1326853478000, 2),
    ),
    "customer.subscription.updated": (
        SubscriptionChanged, EntityRef("subscription", "sub_000000000000000000000000"), "active", 1500, "USD",
        Version(1648320106000, 3),
    ),
    "invoice.created": (
        InvoiceChanged, EntityRef("invoice", "in_000000000000000000000000"), "draft", 1500, "USD",
        Version(1648320110000, 1),
    ),
    "invoice.finalized": (
        InvoiceChanged, EntityRef("invoice", "in_000000000000000000000000"), "paid", 2000, "USD",
        Version(1648320015000, 4),
    ),
    "invoice.paid": (
        InvoiceChanged, EntityRef("invoice", "in_000000000000000000000000"), "paid", 2000, "USD",
        Version(1648320015000, 4),
    ),
    "invoice.payment_action_required": (
        InvoiceChanged, EntityRef("invoice", "in_000000000000000000000000"), "open", 2000, "USD",
        Version(1648320004000, 2),
    ),
    "invoice.payment_failed": (
        InvoiceChanged, EntityRef("invoice", "in_000000000000000000000000"), "open", 2000, "USD",
        Version(1648320009000, 2),
    ),
    "invoice.payment_succeeded": (
        InvoiceChanged, EntityRef("invoice", "in_000000000000000000000000"), "paid", 2000, "USD",
        Version(1648320015000, 4),
    ),
    "invoice.updated": (
        InvoiceChanged, EntityRef("invoice", "in_000000000000000000000000"), "draft", 1500, "USD",
        Version(1648320099000, 1),
    ),
    # A preview without an id: valid, of no interest.
    "invoice.upcoming": None,
    # Payment intents are not mapped: charges and invoices carry the payment state.
    "payment_intent.amount_capturable_updated": None,
    "payment_intent.canceled": None,
    "payment_intent.created": None,
    "payment_intent.payment_failed": None,
    "payment_intent.processing": None,
    "payment_intent.requires_action": None,
    "payment_intent.succeeded": None,
}  # fmt: skip


def _money(event: CanonicalEvent) -> int | None:
    if isinstance(event, InvoiceChanged):
        return event.total
    if isinstance(event, CustomerUpserted):
        return None
    return getattr(event, "amount", None)


def test_event_table_lists_every_fixture(shared_fixtures: Path) -> None:
    files = {p.stem for p in (shared_fixtures / EVENTS_DIR).glob("*.json")}
    assert files == set(EVENT_TABLE)


@pytest.mark.parametrize("name", sorted(EVENT_TABLE))
def test_event_fixture(shared_fixtures: Path, name: str) -> None:
    body = (shared_fixtures / EVENTS_DIR / f"{name}.json").read_bytes()
    raw = json.loads(body)
    events = decode(body)
    expected = EVENT_TABLE[name]
    if expected is None:
        assert events == []
        # Nothing is emitted, yet the envelope is still checked: without `created` it is an error.
        del raw["created"]
        fails(raw, "missing_field")
        return
    cls, entity, status, money, currency, version = expected
    (event,) = events
    assert type(event) is cls
    assert event.entity == entity
    assert getattr(event, "status", None) == status
    assert _money(event) == money
    assert getattr(event, "currency", None) == currency
    assert event.version == version
    assert event.occurred_at == raw["created"] * 1000
    assert event.correlation_id == raw["id"]
    # Fan-out events (one per refund) carry the refund id in their event id, so dedup keeps each.
    suffix = f":{entity.id}" if name == "charge.refunded" else ""
    assert event.event_id == raw["id"] + suffix


def test_invoice_finalized_takes_state_from_object(shared_fixtures: Path) -> None:
    # Recorded after payment: the event type says finalized, the object says paid.
    event = one((shared_fixtures / EVENTS_DIR / "invoice.finalized.json").read_bytes())
    assert event == InvoiceChanged(
        event_id=ZERO_EVT,
        source=Platform.STRIPE,
        entity=EntityRef("invoice", "in_000000000000000000000000"),
        occurred_at=1648320015000,
        version=Version(1648320015000, 4),
        local_customer=f"stripe:{ZERO_CUS}",
        xrefs={"stripe": ZERO_CUS},
        correlation_id=ZERO_EVT,
        system=Platform.STRIPE,
        invoice_id="in_000000000000000000000000",
        billing_invoice_id="in_000000000000000000000000",
        customer_id=ZERO_CUS,
        subscription_id=None,
        number="EE1DF78D-0001",
        status="paid",
        total=2000,
        tax=0,  # `tax` is null and `total_tax_amounts` is an empty list: no tax
        amount_remaining=0,
        currency="USD",
        due_at=None,
        paid_at=1648320013000,
    )


def test_invoice_created_is_a_subscription_draft(shared_fixtures: Path) -> None:
    event = one((shared_fixtures / EVENTS_DIR / "invoice.created.json").read_bytes())
    assert isinstance(event, InvoiceChanged)
    assert (event.status, event.subscription_id, event.number) == (
        "draft",
        "sub_000000000000000000000000",
        None,
    )
    assert (event.total, event.amount_remaining, event.paid_at, event.deleted) == (1500, 1500, None, False)


def test_subscription_created_old_shape(shared_fixtures: Path) -> None:
    event = one((shared_fixtures / EVENTS_DIR / "customer.subscription.created.json").read_bytes())
    assert event == SubscriptionChanged(
        event_id=ZERO_EVT,
        source=Platform.STRIPE,
        entity=EntityRef("subscription", "sub_000000000000000000000000"),
        occurred_at=1648320110000,
        version=Version(1648320110000, 3),
        local_customer=f"stripe:{ZERO_CUS}",
        xrefs={"stripe": ZERO_CUS},
        correlation_id=ZERO_EVT,
        subscription_id="sub_000000000000000000000000",
        customer_id=ZERO_CUS,
        status="active",
        plan="price_000000000000000000000000",
        quantity=1,
        amount=1500,
        currency="USD",
        current_period_end=1650998510000,
        cancel_at_period_end=False,
        canceled_at=None,
    )


def test_subscription_deleted(shared_fixtures: Path) -> None:
    event = one((shared_fixtures / EVENTS_DIR / "customer.subscription.deleted.json").read_bytes())
    assert isinstance(event, SubscriptionChanged)
    assert (event.status, event.deleted, event.canceled_at) == ("canceled", True, 1648320097000)
    assert event.current_period_end == 1650998496000


def test_subscription_trial_will_end_plan_only_items(shared_fixtures: Path) -> None:
    # 2013-era payload: no api_version, items with `plan` only, and (fake data) two currencies.
    event = one((shared_fixtures / EVENTS_DIR / "customer.subscription.trial_will_end.json").read_bytes())
    assert isinstance(event, SubscriptionChanged)
    assert (event.event_id, event.customer_id) == (OLD_EVT, ZERO_CUS)
    assert event.plan == "fkx0AFo_00000000000000"
    assert event.quantity == 6
    # usd and eur items: no single currency, so no total either.
    assert (event.amount, event.currency) == (None, None)
    assert event.current_period_end == 1383759023000


def test_customer_fixtures(shared_fixtures: Path) -> None:
    created = one((shared_fixtures / EVENTS_DIR / "customer.created.json").read_bytes())
    assert created == CustomerUpserted(
        event_id=ZERO_EVT,
        source=Platform.STRIPE,
        entity=EntityRef("customer", ZERO_CUS),
        occurred_at=1648320107000,
        version=Version(1648320107000, 1),
        local_customer=f"stripe:{ZERO_CUS}",
        xrefs={"stripe": ZERO_CUS},
        correlation_id=ZERO_EVT,
        system=Platform.STRIPE,
        customer_id=ZERO_CUS,
        name=None,
        email=None,
        country=None,
        currency=None,
        address=None,
        crm_account_id=None,  # metadata present and without the key: no link
        # tax_ids is not in webhook payloads since 2020-08-27: unknown, not cleared
        tax_id=UNSET,
    )
    deleted = one((shared_fixtures / EVENTS_DIR / "customer.deleted.json").read_bytes())
    assert isinstance(deleted, CustomerUpserted)
    assert deleted.deleted and deleted.customer_key is None


def test_charge_refunded_fixture(shared_fixtures: Path) -> None:
    event = one((shared_fixtures / EVENTS_DIR / "charge.refunded.json").read_bytes())
    assert event == RefundChanged(
        event_id=f"{ZERO_EVT}:re_000000000000000000000000",
        source=Platform.STRIPE,
        entity=EntityRef("refund", "re_000000000000000000000000"),
        occurred_at=1648319949000,
        version=Version(1648319949000, 3),
        correlation_id=ZERO_EVT,
        system=Platform.STRIPE,
        refund_id="re_000000000000000000000000",
        document="refund",
        invoice_id=None,
        charge_id="ch_000000000000000000000000",
        customer_id=None,
        status="succeeded",
        amount=100,
        currency="USD",
    )


def test_charge_refund_updated_fixture(shared_fixtures: Path) -> None:
    event = one((shared_fixtures / EVENTS_DIR / "charge.refund.updated.json").read_bytes())
    assert isinstance(event, RefundChanged)
    assert (event.event_id, event.refund_id, event.charge_id) == (
        ZERO_EVT,
        "re_000000000000000000000000",
        "ch_000000000000000000000000",
    )
    # Refund objects name no customer: identity goes through the charge id, linked by charge events.
    assert (event.customer_id, event.local_customer, event.xrefs) == (None, "stripe:ch_000000000000000000000000", {})


def test_charge_fixtures_are_payments(shared_fixtures: Path) -> None:
    failed = one((shared_fixtures / EVENTS_DIR / "charge.failed.json").read_bytes())
    assert failed == PaymentChanged(
        event_id=ZERO_EVT,
        source=Platform.STRIPE,
        entity=EntityRef("charge", "ch_000000000000000000000000"),
        occurred_at=1648320028000,
        version=Version(1648320028000, 3),
        correlation_id=ZERO_EVT,
        system=Platform.STRIPE,
        payment_id="ch_000000000000000000000000",
        invoice_id=None,
        customer_id=None,
        status="failed",
        amount=2000,
        currency="USD",
    )


# --- every plain API object fixture, wrapped in an Event -------------------------------------------

DJ_CUS_1 = "cus_6lsBvm5rJ0zyHc"
DJ_CUS_2 = "cus_4UbFSo9tl62jqj"

# file -> (event type to wrap it in, expected canonical event fields or None for no event).
OBJECT_TABLE: dict[str, tuple[str, dict[str, Any] | None]] = {
    # No Stripe event carries these two as data.object; under a type of no interest they give nothing.
    "balance_transaction_txn_fake_ch_fakefakefakefakefake0001": ("balance.available", None),
    "line_item_il_invoice_item_fakefakefakefakefake0001": ("invoiceitem.created", None),
    "line_item_il_invoice_item_fakefakefakefakefake0002": ("invoiceitem.updated", None),
    "charge_ch_fakefakefakefakefake0001": (
        "charge.succeeded",
        {"entity": EntityRef("charge", "ch_fakefakefakefakefake0001"),
         "payment_id": "ch_fakefakefakefakefake0001", "invoice_id": "in_fakefakefakefakefake0001",
         "customer_id": DJ_CUS_1, "status": "succeeded", "amount": 2000, "currency": "USD",
         "local_customer": f"stripe:{DJ_CUS_1}"},
    ),
    "customer_cus_4QWKsZuuTHcs7X": (
        "customer.updated",
        {"entity": EntityRef("customer", "cus_4QWKsZuuTHcs7X"), "email": "john.doe@example.com", "name": None,
         "currency": None, "country": None, "address": None, "tax_id": UNSET, "crm_account_id": None},
    ),
    "customer_cus_4UbFSo9tl62jqj": (
        "customer.updated",
        {"entity": EntityRef("customer", DJ_CUS_2), "email": "john.snow@thewall.com", "currency": "USD",
         "xrefs": {"stripe": DJ_CUS_2}, "customer_key": None},
    ),
    "customer_cus_6lsBvm5rJ0zyHc": (
        "customer.created",
        {"entity": EntityRef("customer", DJ_CUS_1), "email": "michael.smith@example.com", "currency": "USD",
         "version": Version(T0 * 1000, 1)},
    ),
    "customer_cus_example_with_bank_account": (
        "customer.updated",
        {"entity": EntityRef("customer", "cus_example_with_bank_account"), "name": "Jane Austen",
         "email": "jane.austen@example.com", "currency": None},
    ),
    "invoice_in_fakefakefakefakefake0001": (
        "invoice.paid",
        {"invoice_id": "in_fakefakefakefakefake0001", "customer_id": DJ_CUS_1,
         "subscription_id": "sub_fakefakefakefakefake0001", "number": "E5B23224-0001", "status": "paid",
         "total": 2000, "tax": 261, "amount_remaining": 0, "currency": "USD", "paid_at": 1593225983000,
         "version": Version(T0 * 1000, 4)},
    ),
    "invoice_in_fakefakefakefakefake0004": (
        "invoice.payment_succeeded",
        {"invoice_id": "in_fakefakefakefakefake0004", "subscription_id": "sub_fakefakefakefakefake0002",
         "number": "E5B23224-0002", "total": 4000, "tax": 522, "paid_at": 1593225985000},
    ),
    "payment_intent_pi_fakefakefakefakefake0001": ("payment_intent.succeeded", None),
    "payment_method_card_fakefakefakefakefake0001": ("payment_method.attached", None),
    "payment_method_pm_fakefakefakefake0001": ("payment_method.updated", None),
    "plan_gold21323": ("plan.created", None),
    "plan_silver41294": ("plan.updated", None),
    "price_gold21323": ("price.created", None),
    "price_silver41294": ("price.updated", None),
    "product_prod_fake1": ("product.created", None),
    "subscription_sub_fakefakefakefakefake0001": (
        "customer.subscription.updated",
        {"subscription_id": "sub_fakefakefakefakefake0001", "customer_id": DJ_CUS_1, "status": "active",
         "plan": "gold21323", "quantity": 1, "amount": 2000, "currency": "USD",
         "current_period_end": 1560673576000, "version": Version(T0 * 1000, 3)},
    ),
    "subscription_sub_fakefakefakefakefake0002": (
        "customer.subscription.created",
        {"subscription_id": "sub_fakefakefakefakefake0002", "plan": "silver41294", "amount": 4000,
         "current_period_end": 1560673578000},
    ),
    "subscription_sub_fakefakefakefakefake0003": (
        "customer.subscription.updated",
        {"customer_id": DJ_CUS_2, "plan": "gold21323", "amount": 2000, "current_period_end": 1560673580000},
    ),
    # Two items (gold + silver); top-level `plan` and `quantity` are null.
    "subscription_sub_fakefakefakefakefake0004": (
        "customer.subscription.updated",
        {"customer_id": DJ_CUS_2, "plan": "gold21323", "quantity": 2, "amount": 6000, "currency": "USD",
         "current_period_end": 1560673582000},
    ),
}  # fmt: skip


def test_object_table_lists_every_fixture(shared_fixtures: Path) -> None:
    files = {p.stem for p in (shared_fixtures / OBJECTS_DIR).glob("*.json")}
    assert files == set(OBJECT_TABLE)


@pytest.mark.parametrize("name", sorted(OBJECT_TABLE))
def test_object_fixture(shared_fixtures: Path, name: str) -> None:
    event_type, expected = OBJECT_TABLE[name]
    obj = load(shared_fixtures / OBJECTS_DIR / f"{name}.json")
    events = decode(envelope(obj, event_type, event_id=f"evt_{name[:20]}", api_version="2020-08-27"))
    if expected is None:
        assert events == []
        return
    (event,) = events
    assert event.event_id == event.correlation_id == f"evt_{name[:20]}"
    assert event.entity.id == obj["id"]
    assert event.version.ts == event.occurred_at == T0 * 1000
    for field, value in expected.items():
        assert getattr(event, field) == value, field


def test_object_under_the_wrong_event_type_is_rejected(shared_fixtures: Path) -> None:
    line_item = load(shared_fixtures / OBJECTS_DIR / "line_item_il_invoice_item_fakefakefakefakefake0001.json")
    error = fails(envelope(line_item, "invoice.paid"), "unexpected_object")
    assert "invoice.paid" in error.detail and "an invoice" in error.detail
    charge = load(shared_fixtures / OBJECTS_DIR / "charge_ch_fakefakefakefakefake0001.json")
    fails(envelope(charge, "invoice.paid"), "unexpected_object")


def test_charge_refunded_without_refunds_gives_nothing(shared_fixtures: Path) -> None:
    charge = load(shared_fixtures / OBJECTS_DIR / "charge_ch_fakefakefakefakefake0001.json")
    assert decode(envelope(charge, "charge.refunded")) == []


# --- basil (2025-03-31+) shapes --------------------------------------------------------------------


def test_basil_invoice() -> None:
    event = one(envelope(basil_invoice(), "invoice.paid", event_id="evt_Basil1"))
    assert event == InvoiceChanged(
        event_id="evt_Basil1",
        source=Platform.STRIPE,
        entity=EntityRef("invoice", "in_Basil0001"),
        occurred_at=T0 * 1000,
        version=Version(T0 * 1000, 4),
        local_customer="stripe:cus_Basil0001",
        xrefs={"stripe": "cus_Basil0001"},
        correlation_id="evt_Basil1",
        system=Platform.STRIPE,
        invoice_id="in_Basil0001",
        billing_invoice_id="in_Basil0001",
        customer_id="cus_Basil0001",
        subscription_id="sub_Basil0001",  # from parent.subscription_details
        number="BASIL-0001",
        status="paid",
        total=11900,
        tax=1900,  # sum of total_taxes
        amount_remaining=0,
        currency="EUR",
        due_at=None,
        paid_at=(T0 - 2_000) * 1000,
    )


def test_basil_invoice_without_subscription_sends_invoice() -> None:
    inv = basil_invoice(
        parent=None,
        status="open",
        collection_method="send_invoice",
        due_date=T0 + 14 * 86_400,
        amount_paid=0,
        amount_remaining=11900,
        status_transitions={
            "finalized_at": T0,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        total_taxes=[
            {"amount": 1000, "tax_behavior": "exclusive", "taxable_amount": 5000, "type": "tax_rate_details"},
            {"amount": 900, "tax_behavior": "exclusive", "taxable_amount": 5000, "type": "tax_rate_details"},
        ],
    )
    event = one(envelope(inv, "invoice.finalized"))
    assert isinstance(event, InvoiceChanged)
    assert (event.subscription_id, event.status, event.tax, event.amount_remaining) == (
        None,
        "open",
        1900,
        11900,
    )
    assert (event.due_at, event.paid_at) == ((T0 + 14 * 86_400) * 1000, None)
    assert event.version.seq == 2


def test_invoice_without_any_tax_information_has_no_tax() -> None:
    inv = basil_invoice()
    del inv["total_taxes"]
    event = one(envelope(inv, "invoice.updated"))
    assert isinstance(event, InvoiceChanged) and event.tax is None


def test_basil_invoice_deleted_draft() -> None:
    inv = basil_invoice(status="draft", number=None, status_transitions=None)
    event = one(envelope(inv, "invoice.deleted"))
    assert isinstance(event, InvoiceChanged)
    assert (event.status, event.deleted, event.version.seq) == ("draft", True, 99)


def test_basil_subscription() -> None:
    event = one(envelope(basil_subscription(), "customer.subscription.updated", event_id="evt_Basil2"))
    assert event == SubscriptionChanged(
        event_id="evt_Basil2",
        source=Platform.STRIPE,
        entity=EntityRef("subscription", "sub_Basil0001"),
        occurred_at=T0 * 1000,
        version=Version(T0 * 1000, 3),
        local_customer="stripe:cus_Basil0001",
        xrefs={"stripe": "cus_Basil0001"},
        correlation_id="evt_Basil2",
        subscription_id="sub_Basil0001",
        customer_id="cus_Basil0001",
        status="active",
        plan="price_Pro",
        quantity=5,
        amount=3 * 5000 + 2 * 1000,
        currency="EUR",
        # No top-level period: the latest item period end.
        current_period_end=(T0 + 5_184_000) * 1000,
        cancel_at_period_end=False,
        canceled_at=None,
    )


def test_basil_subscription_canceling_at_period_end() -> None:
    sub = basil_subscription(cancel_at_period_end=True, canceled_at=T0 - 60, status="past_due")
    event = one(envelope(sub, "customer.subscription.updated"))
    assert isinstance(event, SubscriptionChanged)
    assert (event.status, event.cancel_at_period_end, event.canceled_at) == (
        "past_due",
        True,
        (T0 - 60) * 1000,
    )
    assert (event.deleted, event.version.seq) == (False, 4)


@pytest.mark.parametrize(
    "event_type",
    [
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.pending_update_applied",
        "customer.subscription.pending_update_expired",
        "customer.subscription.trial_will_end",
    ],
)
def test_every_subscription_event_type_maps(event_type: str) -> None:
    event = one(envelope(basil_subscription(status="paused"), event_type))
    assert isinstance(event, SubscriptionChanged)
    assert (event.status, event.version.seq, event.deleted) == ("paused", 6, False)


def test_subscription_with_metered_or_tiered_item_has_no_amount() -> None:
    sub = basil_subscription()
    sub["items"]["data"][1]["price"]["unit_amount"] = None  # tiered
    del sub["items"]["data"][0]["quantity"]  # metered
    event = one(envelope(sub, "customer.subscription.created"))
    assert isinstance(event, SubscriptionChanged)
    assert (event.amount, event.quantity, event.currency, event.plan) == (None, 2, "EUR", "price_Pro")


def test_subscription_without_items_uses_the_top_level_plan() -> None:
    sub = basil_subscription(
        items={"object": "list", "data": []},
        plan={"id": "gold", "object": "plan", "amount": 2000, "currency": "usd"},
        quantity=4,
        currency=None,
        current_period_end=T0 + 10,
    )
    event = one(envelope(sub, "customer.subscription.updated"))
    assert isinstance(event, SubscriptionChanged)
    assert (event.plan, event.quantity, event.amount, event.currency) == ("gold", 4, 8000, "USD")
    assert event.current_period_end == (T0 + 10) * 1000


def test_basil_customer_with_salesforce_link() -> None:
    event = one(envelope(basil_customer(), "customer.updated", event_id="evt_Basil3"))
    assert event == CustomerUpserted(
        event_id="evt_Basil3",
        source=Platform.STRIPE,
        entity=EntityRef("customer", "cus_Basil0001"),
        occurred_at=T0 * 1000,
        version=Version(T0 * 1000, 2),
        customer_key="001Ws00000BasilAAA",
        local_customer="stripe:cus_Basil0001",
        xrefs={"stripe": "cus_Basil0001", "salesforce": "001Ws00000BasilAAA"},
        correlation_id="evt_Basil3",
        system=Platform.STRIPE,
        customer_id="cus_Basil0001",
        name="Example GmbH",
        email="billing@example.com",
        country="DE",
        currency="EUR",
        tax_id="DE123456789",
        address="Unter den Linden 1, Berlin, 10117, DE",
        crm_account_id="001Ws00000BasilAAA",
        deleted=False,
    )


def test_customer_tax_ids_expanded_but_empty_clears_tax_id() -> None:
    cus = basil_customer(tax_ids={"object": "list", "data": [], "has_more": False})
    event = one(envelope(cus, "customer.updated"))
    assert isinstance(event, CustomerUpserted) and event.tax_id is None


def test_deleted_customer_stub_leaves_fields_unset() -> None:
    event = one(envelope({"id": "cus_Gone", "object": "customer", "deleted": True}, "customer.deleted"))
    assert isinstance(event, CustomerUpserted)
    assert event.deleted and event.version.seq == 99
    assert (event.name, event.email, event.country, event.currency, event.address, event.crm_account_id) == (
        UNSET,
        UNSET,
        UNSET,
        UNSET,
        UNSET,
        UNSET,
    )


def test_basil_charge_names_no_invoice() -> None:
    event = one(envelope(basil_charge(), "charge.succeeded", event_id="evt_Basil4"))
    assert event == PaymentChanged(
        event_id="evt_Basil4",
        source=Platform.STRIPE,
        entity=EntityRef("charge", "ch_Basil0001"),
        occurred_at=T0 * 1000,
        version=Version(T0 * 1000, 3),
        local_customer="stripe:cus_Basil0001",
        xrefs={"stripe": "cus_Basil0001"},
        aliases=("stripe:ch_Basil0001",),
        correlation_id="evt_Basil4",
        system=Platform.STRIPE,
        payment_id="ch_Basil0001",
        invoice_id=None,
        customer_id="cus_Basil0001",
        status="succeeded",
        amount=11900,
        currency="EUR",
    )


def test_charge_refunded_without_the_refund_list_reports_the_refunded_total() -> None:
    # Since 2022-11-15 `refunds` is not in the charge unless expanded.
    charge = basil_charge(amount_refunded=5000, refunded=False)
    event = one(envelope(charge, "charge.refunded", event_id="evt_R1"))
    assert event == RefundChanged(
        event_id="evt_R1:ch_Basil0001",
        source=Platform.STRIPE,
        entity=EntityRef("refund", "ch_Basil0001"),
        occurred_at=T0 * 1000,
        version=Version(T0 * 1000, 3),
        local_customer="stripe:cus_Basil0001",
        xrefs={"stripe": "cus_Basil0001"},
        correlation_id="evt_R1",
        system=Platform.STRIPE,
        refund_id="ch_Basil0001",
        document="refund",
        charge_id="ch_Basil0001",
        customer_id="cus_Basil0001",
        status="succeeded",
        amount=5000,
        currency="EUR",
    )


def test_charge_refunded_with_two_refunds_gives_two_events() -> None:
    refunds = [
        basil_refund(id="re_A", amount=1000, status="succeeded"),
        basil_refund(id="re_B", amount=2000, status="pending"),
    ]
    charge = basil_charge(amount_refunded=3000, refunds={"object": "list", "data": refunds, "has_more": False})
    events = decode(envelope(charge, "charge.refunded", event_id="evt_R2"))
    assert all(isinstance(e, RefundChanged) for e in events)
    assert [(e.event_id, e.entity, e.amount, e.status) for e in events if isinstance(e, RefundChanged)] == [
        ("evt_R2:re_A", EntityRef("refund", "re_A"), 1000, "succeeded"),
        ("evt_R2:re_B", EntityRef("refund", "re_B"), 2000, "pending"),
    ]
    assert all(e.local_customer == "stripe:cus_Basil0001" and e.correlation_id == "evt_R2" for e in events)


@pytest.mark.parametrize(
    ("event_type", "status", "seq"),
    [("refund.created", "pending", 2), ("refund.updated", "succeeded", 3), ("refund.failed", "failed", 4),
     ("charge.refund.updated", "canceled", 4), ("refund.updated", "requires_action", 1)],
)  # fmt: skip
def test_refund_events(event_type: str, status: str, seq: int) -> None:
    event = one(envelope(basil_refund(status=status), event_type, event_id="evt_R3"))
    assert event == RefundChanged(
        event_id="evt_R3",
        source=Platform.STRIPE,
        entity=EntityRef("refund", "re_Basil0001"),
        occurred_at=T0 * 1000,
        version=Version(T0 * 1000, seq),
        local_customer="stripe:ch_Basil0001",
        correlation_id="evt_R3",
        system=Platform.STRIPE,
        refund_id="re_Basil0001",
        document="refund",
        charge_id="ch_Basil0001",
        status=status,
        amount=5000,
        currency="EUR",
    )


def test_refund_with_null_status_is_pending() -> None:
    event = one(envelope(basil_refund(status=None), "refund.created"))
    assert isinstance(event, RefundChanged) and (event.status, event.version.seq) == ("pending", 2)


@pytest.mark.parametrize(("event_type", "status"), [("credit_note.created", "issued"), ("credit_note.voided", "void")])
def test_credit_note_events(event_type: str, status: str) -> None:
    event = one(envelope(basil_credit_note(status=status), event_type, event_id="evt_CN"))
    assert event == RefundChanged(
        event_id="evt_CN",
        source=Platform.STRIPE,
        entity=EntityRef("credit_note", "cn_Basil0001"),
        occurred_at=T0 * 1000,
        version=Version(T0 * 1000, 1 if status == "issued" else 2),
        local_customer="stripe:cus_Basil0001",
        xrefs={"stripe": "cus_Basil0001"},
        correlation_id="evt_CN",
        system=Platform.STRIPE,
        refund_id="cn_Basil0001",
        document="credit_note",
        invoice_id="in_Basil0001",
        customer_id="cus_Basil0001",
        status=status,
        amount=5950,
        currency="EUR",
    )


def test_credit_note_amount_falls_back_to_amount() -> None:
    note = basil_credit_note(amount=700)
    del note["total"]
    event = one(envelope(note, "credit_note.updated"))
    assert isinstance(event, RefundChanged) and event.amount == 700
    del note["amount"]
    fails(envelope(note, "credit_note.updated"), "missing_field")


def test_zero_decimal_currency_is_kept_as_is() -> None:
    inv = basil_invoice(currency="jpy", total=5000, amount_remaining=5000, status="open", total_taxes=[])
    event = one(envelope(inv, "invoice.finalized"))
    assert isinstance(event, InvoiceChanged)
    assert (event.total, event.amount_remaining, event.tax, event.currency) == (5000, 5000, 0, "JPY")


def test_null_api_version_and_livemode_decode() -> None:
    payload = envelope(basil_invoice(), "invoice.paid", api_version=None)
    payload["livemode"] = None
    assert isinstance(one(payload), InvoiceChanged)


def test_config_is_accepted() -> None:
    body = to_bytes(envelope(basil_invoice(), "invoice.paid"))
    assert stripe.decode(body, CodecConfig()) == stripe.decode(body)


@pytest.mark.parametrize(
    "event_type",
    [
        "payment_intent.succeeded",
        "payment_method.attached",
        "plan.updated",
        "price.created",
        "product.updated",
        "invoice.upcoming",
        "invoiceitem.created",
        "invoice_payment.paid",
        "charge.updated",
        "charge.dispute.created",
        "customer.discount.created",
        "customer.source.created",
        "customer.tax_id.created",
        "checkout.session.completed",
    ],
)
def test_events_of_no_interest_give_nothing(event_type: str) -> None:
    # The object is irrelevant, even a malformed one: only the envelope is checked.
    assert decode(envelope({"object": "thing", "id": 5}, event_type)) == []
    assert decode(envelope(basil_charge(), event_type)) == []


# --- ordering keys: event_id and version ----------------------------------------------------------


def _version(obj: dict[str, Any], event_type: str, created: int = T0) -> Version:
    return one(envelope(obj, event_type, created=created)).version


def test_invoice_versions_follow_the_lifecycle_within_one_second() -> None:
    draft, open_, uncollectible, paid, void = (
        _version(basil_invoice(status=s), "invoice.updated") for s in ("draft", "open", "uncollectible", "paid", "void")
    )
    assert draft < open_ < uncollectible < paid
    assert open_ < uncollectible < void
    assert paid.seq == void.seq  # exclusive end states
    assert _version(basil_invoice(status="draft"), "invoice.deleted") > paid


def test_subscription_versions_follow_the_lifecycle_within_one_second() -> None:
    statuses = [
        "incomplete",
        "trialing",
        "active",
        "past_due",
        "unpaid",
        "paused",
        "canceled",
        "incomplete_expired",
    ]
    versions = [_version(basil_subscription(status=s), "customer.subscription.updated") for s in statuses]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert _version(basil_subscription(status="canceled"), "customer.subscription.deleted") > versions[-1]


def test_a_later_second_wins_over_any_status() -> None:
    canceled = _version(basil_subscription(status="canceled"), "customer.subscription.updated", T0)
    reactivated = _version(basil_subscription(status="active"), "customer.subscription.updated", T0 + 1)
    assert reactivated > canceled
    assert reactivated == Version((T0 + 1) * 1000, 3)


def test_refund_credit_note_charge_customer_versions() -> None:
    refund = [_version(basil_refund(status=s), "refund.updated") for s in ("requires_action", "pending", "succeeded")]
    assert refund == sorted(refund)
    assert _version(basil_refund(status="failed"), "refund.failed") > refund[-1]
    assert _version(basil_credit_note(status="issued"), "credit_note.created") < _version(
        basil_credit_note(status="void"), "credit_note.voided"
    )
    pending = _version(basil_charge(status="pending", captured=False), "charge.succeeded")
    authorised = _version(basil_charge(captured=False), "charge.succeeded")
    captured = _version(basil_charge(captured=True), "charge.captured")
    assert pending < authorised < captured
    customer = [_version(basil_customer(), t) for t in ("customer.created", "customer.updated", "customer.deleted")]
    assert customer == sorted(customer) and len(set(customer)) == 3


def test_unknown_status_ranks_lowest() -> None:
    assert _version(basil_invoice(status="someday"), "invoice.updated") == Version(T0 * 1000, 0)


@pytest.mark.parametrize(
    ("obj", "event_type", "entity"),
    [(basil_customer(), "customer.updated", EntityRef("customer", "cus_Basil0001")),
     (basil_subscription(), "customer.subscription.updated", EntityRef("subscription", "sub_Basil0001")),
     (basil_invoice(), "invoice.paid", EntityRef("invoice", "in_Basil0001")),
     (basil_charge(), "charge.captured", EntityRef("charge", "ch_Basil0001")),
     (basil_refund(), "refund.created", EntityRef("refund", "re_Basil0001")),
     (basil_credit_note(), "credit_note.created", EntityRef("credit_note", "cn_Basil0001"))],
)  # fmt: skip
def test_event_id_and_version_for_each_shape(obj: dict[str, Any], event_type: str, entity: EntityRef) -> None:
    event = one(envelope(obj, event_type, event_id="evt_Order1", created=T0 + 7))
    assert (event.event_id, event.correlation_id, event.entity) == ("evt_Order1", "evt_Order1", entity)
    assert event.version.ts == event.occurred_at == (T0 + 7) * 1000
    assert event.version.seq > 0
    # Replaying the same bytes gives the same keys: dedup and watermarks see a duplicate.
    assert one(envelope(obj, event_type, event_id="evt_Order1", created=T0 + 7)) == event


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b'{"id": "evt_1"} trailing',
        b'{"id": "\xff\xfe"}',
        b"\x00\x01",
        b'{"a": [1, 2}',
    ],
)
def test_invalid_json(body: bytes) -> None:
    fails(body, "invalid_json")


@pytest.mark.parametrize(
    "body", [b"[]", b"42", b'"event"', b"null", b"{}", b'{"object": "invoice", "id": "in_1", "total": 5}']
)
def test_not_a_stripe_event(body: bytes) -> None:
    error = fails(body, "not_a_stripe_event")
    assert '"event"' in error.detail


@pytest.mark.parametrize("key", ["id", "type", "created", "data"])
def test_missing_envelope_field(key: str) -> None:
    payload = envelope(basil_invoice(), "invoice.paid")
    del payload[key]
    error = fails(payload, "missing_field")
    assert f"`$.{key}`" in error.detail


def test_missing_object_field_names_the_path() -> None:
    payload = envelope(basil_invoice(), "invoice.paid")
    del payload["data"]["object"]["total"]
    error = fails(payload, "missing_field")
    assert "`total`" in error.detail and "$.data.object" in error.detail
    payload = envelope(basil_invoice(), "invoice.paid")
    del payload["data"]["object"]
    assert "$.data" in fails(payload, "missing_field").detail


@pytest.mark.parametrize(
    ("path", "value"),
    [(("created",), "1743465600"), (("created",), 1.5), (("created",), -1), (("created",), 10**15),
     (("id",), ""), (("id",), 7), (("data", "object", "total"), 19.99), (("data", "object", "total"), 2**60),
     (("data", "object", "status"), None), (("data", "object", "status_transitions", "paid_at"), "yesterday"),
     (("data", "object", "total_taxes"), {"amount": 1}), (("data", "object", "customer"), {"id": "cus_1"})],
)  # fmt: skip
def test_bad_type(path: tuple[str, ...], value: Any) -> None:
    payload = envelope(basil_invoice(), "invoice.paid")
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    error = fails(payload, "bad_type")
    assert "$." + ".".join(path) in error.detail


@pytest.mark.parametrize("currency", ["usdx", "us", "", "1$a", "€ur"])
def test_bad_currency(currency: str) -> None:
    error = fails(envelope(basil_invoice(currency=currency), "invoice.paid"), "bad_currency")
    assert "$.data.object.currency" in error.detail
    fails(envelope(basil_charge(currency=currency), "charge.succeeded"), "bad_currency")
    fails(envelope(basil_subscription(currency=currency), "customer.subscription.updated"), "bad_currency")


def test_unexpected_object_type() -> None:
    payment_intent = {"id": "pi_1", "object": "payment_intent", "amount": 100, "currency": "usd"}
    error = fails(envelope(payment_intent, "invoice.paid"), "unexpected_object")
    assert "payment_intent" not in error.detail  # names what was expected, quotes no payload value
    fails(envelope(basil_invoice(), "customer.subscription.updated"), "unexpected_object")
    fails(envelope(basil_refund(), "charge.refunded"), "unexpected_object")


def test_error_detail_quotes_no_payload() -> None:
    secret = "4242-4242-SECRET-VALUE"
    payload = envelope(basil_invoice(), "invoice.paid")
    payload["data"]["object"]["total"] = secret
    payload["data"]["object"]["customer_email"] = secret
    assert secret not in str(fails(payload, "bad_type"))
    refunds = {"object": "list", "data": [basil_refund(object=secret)]}
    assert secret not in str(fails(envelope(basil_charge(refunds=refunds), "charge.refunded"), "bad_type"))


def test_codec_is_pure() -> None:
    # No I/O, logging or Faust in a codec: only the standard typing helpers, msgspec and our model.
    allowed = {"__future__", "collections.abc", "functools", "typing", "msgspec"}
    tree = ast.parse(Path(stripe.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name for name in imported if not name.startswith("concord.codecs.")} <= allowed


# --- fuzzing: whatever the bytes, only DecodeError ------------------------------------------------


class Seeds(list[dict[str, Any]]):
    """The fuzz seeds; a short repr keeps hypothesis failure reports readable."""

    def __repr__(self) -> str:
        return f"<{len(self)} seed payloads>"


@pytest.fixture(scope="session")
def seeds(shared_fixtures: Path) -> Seeds:
    """Every real payload (objects wrapped) and every basil shape, as dicts to mutate."""
    payloads = Seeds(load(p) for p in sorted((shared_fixtures / EVENTS_DIR).glob("*.json")))
    for name, (event_type, _) in sorted(OBJECT_TABLE.items()):
        payloads.append(envelope(load(shared_fixtures / OBJECTS_DIR / f"{name}.json"), event_type))
    payloads += [
        envelope(basil_invoice(), "invoice.paid"),
        envelope(basil_subscription(), "customer.subscription.updated"),
        envelope(basil_customer(), "customer.updated"),
        envelope(basil_charge(refunds={"object": "list", "data": [basil_refund()]}), "charge.refunded"),
        envelope(basil_refund(), "refund.updated"),
        envelope(basil_credit_note(), "credit_note.created"),
    ]
    return payloads


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["", "usd", "USDX", "evt_x", "paid", "invoice", "charge", "refund", "event", "\u20ac"]),
    # Built fresh each time: a shared container would let a later mutation create a cycle.
    st.builds(list),
    st.builds(dict),
    st.builds(lambda: {"object": "list", "data": [{}]}),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += _paths(value, (*prefix, index))
    return paths


def _only_decode_error(body: bytes) -> None:
    try:
        events = stripe.decode(body)
    except DecodeError as exc:
        assert exc.reason in REASONS
        assert len(exc.detail) < 500
        return
    for event in events:
        assert_valid(event)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(body: bytes) -> None:
    _only_decode_error(body)


@FUZZ
@given(data=st.data())
def test_fuzz_dropped_or_retyped_fields(seeds: Seeds, data: st.DataObject) -> None:
    payload = copy.deepcopy(data.draw(st.sampled_from(seeds), label="seed"))
    paths = _paths(payload)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(paths), label="path")
        parent: Any = payload
        try:
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans(), label="drop"):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(JSON_VALUES, label="value")
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    _only_decode_error(json.dumps(payload).encode())


@FUZZ
@given(data=st.data())
def test_fuzz_truncated_and_corrupted_bytes(seeds: Seeds, data: st.DataObject) -> None:
    body = bytearray(to_bytes(data.draw(st.sampled_from(seeds), label="seed")))
    cut = data.draw(st.integers(0, len(body)), label="cut")
    if data.draw(st.booleans(), label="truncate"):
        del body[cut:]
    else:
        body[cut:cut] = data.draw(st.binary(min_size=1, max_size=4), label="inserted")
    _only_decode_error(bytes(body))


def test_seeds_decode(seeds: Seeds) -> None:
    # The fuzz seeds themselves are valid: mutations start from payloads that decode.
    produced = [e for payload in seeds for e in decode(payload)]
    assert len(produced) > 30
    assert {type(e) for e in produced} == {
        CustomerUpserted,
        SubscriptionChanged,
        InvoiceChanged,
        PaymentChanged,
        RefundChanged,
    }
