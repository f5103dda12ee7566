"""Round trips: sandbox platform operations -> native events (sandbox/events.py) -> Concord's codecs.

Each test drives the world through a platform's own operations (records in the platform's REST
shape), builds the events the platform would send and decodes them with the codec Concord runs in
production, then checks the canonical events: kind, ids, customer link, amounts, statuses, times.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import msgspec
import pytest
from msgspec import UNSET

from concord.codecs.config import CodecConfig
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
    RefundChanged,
    ResyncRequired,
    SalesOrderChanged,
    SubscriptionChanged,
    SupportCaseChanged,
)
from concord.codecs.registry import decoder
from concord.sandbox import netsuite, salesforce, stripe, zendesk
from concord.sandbox.events import (
    STRIPE_API_VERSION,
    Delivery,
    EventConfig,
    KafkaDelivery,
    NativeEvents,
    WebhookDelivery,
)
from concord.sandbox.world import Change, World

TOPIC = "concord.raw.salesforce"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CODEC_CONFIG = CodecConfig()
_json = msgspec.json.Decoder()


class Recorder:
    """A world whose changes are turned into deliveries as they happen (as the emitter does)."""

    def __init__(self, step_ms: int = 250, run: str = "t1") -> None:
        ticks = itertools.count(START_MS, step_ms)
        self.world = World(clock=lambda: next(ticks) / 1000)
        self.events = NativeEvents(EventConfig(salesforce_topic=TOPIC, run=run))
        self.log: list[tuple[Change, list[Delivery]]] = []
        self.world.listen(lambda change: self.log.append((change, self.events.build(change))))

    def mark(self) -> int:
        return len(self.log)

    def since(self, mark: int) -> list[Delivery]:
        return [delivery for _, deliveries in self.log[mark:] for delivery in deliveries]

    def one(self, mark: int) -> Delivery:
        deliveries = self.since(mark)
        assert len(deliveries) == 1, deliveries
        return deliveries[0]


def body(delivery: Delivery) -> bytes:
    return delivery.body if isinstance(delivery, WebhookDelivery) else delivery.value


def payload(delivery: Delivery) -> Any:
    return _json.decode(body(delivery))


def decode(delivery: Delivery) -> list[CanonicalEvent]:
    return decoder(delivery.platform)(body(delivery), CODEC_CONFIG)


def decode_one(delivery: Delivery) -> CanonicalEvent:
    events = decode(delivery)
    assert len(events) == 1, events
    return events[0]


# --- Stripe -------------------------------------------------------------------------------------------


def test_stripe_customer_created_is_a_signed_webhook_event_with_the_crm_link() -> None:
    rec = Recorder()
    customer = stripe.create_customer(rec.world, name="Acme Corp", email="billing@acme.test", country="DE",
                                      currency="eur", salesforce_account_id="001Hp00000AcmeXAAQ", tax_id="DE123")
    delivery = rec.one(0)
    assert isinstance(delivery, WebhookDelivery)
    assert delivery.path == "/webhooks/stripe"
    event = payload(delivery)
    assert event["object"] == "event"
    assert event["type"] == "customer.created"
    assert event["api_version"] == STRIPE_API_VERSION
    assert event["livemode"] is False
    assert event["created"] == rec.log[0][0].at // 1000
    assert event["request"] == {"id": None, "idempotency_key": None}
    assert event["data"]["object"] == customer
    assert "previous_attributes" not in event["data"]

    upserted = decode_one(delivery)
    assert isinstance(upserted, CustomerUpserted)
    assert upserted.event_id == event["id"] == delivery.event_id
    assert upserted.customer_id == customer["id"]
    assert upserted.customer_key == upserted.crm_account_id == "001Hp00000AcmeXAAQ"
    assert upserted.local_customer == f"stripe:{customer['id']}"
    assert (upserted.name, upserted.email, upserted.country, upserted.currency, upserted.tax_id) == (
        "Acme Corp", "billing@acme.test", "DE", "EUR", "DE123")
    assert upserted.occurred_at == event["created"] * 1000


def test_stripe_updated_event_carries_previous_values_of_the_changed_keys_only() -> None:
    rec = Recorder()
    customer = stripe.create_customer(rec.world, name="Acme", salesforce_account_id="001Hp00000AcmeXAAQ")
    mark = rec.mark()
    stripe.update_customer(rec.world, customer["id"], {"name": "Acme GmbH", "metadata": {"tier": "gold"}})
    event = payload(rec.one(mark))
    assert event["type"] == "customer.updated"
    # Only what changed, nested hashes too: the new metadata key had no value before.
    assert event["data"]["previous_attributes"] == {"metadata": {"tier": None}, "name": "Acme"}
    upserted = decode_one(rec.one(mark))
    assert isinstance(upserted, CustomerUpserted)
    assert upserted.name == "Acme GmbH"
    assert upserted.crm_account_id == "001Hp00000AcmeXAAQ"


def test_stripe_subscription_invoice_payment_refund_and_cancellation_round_trip() -> None:
    rec = Recorder()
    world = rec.world
    customer = stripe.create_customer(world, name="Acme", salesforce_account_id="001Hp00000AcmeXAAQ", currency="usd")
    mark = rec.mark()
    sub = stripe.create_subscription(world, customer["id"], price_id="price_gold", unit_amount=4900,
                                     currency="usd", quantity=3)
    created = decode_one(rec.one(mark))
    assert isinstance(created, SubscriptionChanged)
    assert (created.subscription_id, created.customer_id, created.status) == (sub["id"], customer["id"], "active")
    assert (created.plan, created.quantity, created.amount, created.currency) == ("price_gold", 3, 14_700, "USD")
    assert created.current_period_end == sub["items"]["data"][0]["current_period_end"] * 1000
    assert created.local_customer == f"stripe:{customer['id']}"

    mark = rec.mark()
    invoice = stripe.create_invoice(world, customer["id"], subscription_id=sub["id"], tax=1_029)
    invoice_events = {payload(d)["type"]: decode_one(d) for d in rec.since(mark) if d.platform == "stripe"}
    assert {"invoice.created", "invoice.finalized"} <= invoice_events.keys()
    finalized = invoice_events["invoice.finalized"]
    assert isinstance(finalized, InvoiceChanged)
    assert (finalized.invoice_id, finalized.billing_invoice_id) == (invoice["id"], invoice["id"])
    assert (finalized.status, finalized.total, finalized.tax, finalized.currency) == ("open", 15_729, 1_029, "USD")
    assert finalized.subscription_id == sub["id"]
    assert finalized.number == invoice["number"]
    assert finalized.due_at == invoice["due_date"] * 1000
    assert invoice_events["invoice.created"].version < finalized.version  # draft ranks below open

    mark = rec.mark()
    paid_invoice, charge = stripe.pay_invoice(world, invoice["id"])
    paid = {payload(d)["type"]: decode_one(d) for d in rec.since(mark)}
    payment = paid["charge.succeeded"]
    assert isinstance(payment, PaymentChanged)
    assert (payment.payment_id, payment.customer_id, payment.status, payment.amount, payment.currency) == (
        charge["id"], customer["id"], "succeeded", 15_729, "USD")
    assert payment.aliases == (f"stripe:{charge['id']}",)
    invoice_paid = paid["invoice.paid"]
    assert isinstance(invoice_paid, InvoiceChanged)
    assert (invoice_paid.status, invoice_paid.amount_remaining) == ("paid", 0)
    assert invoice_paid.paid_at == paid_invoice["status_transitions"]["paid_at"] * 1000

    mark = rec.mark()
    refund, _ = stripe.refund_charge(world, charge["id"], amount=5_000)
    refund_delivery = next(d for d in rec.since(mark) if payload(d)["type"] == "refund.created")
    refunded = decode_one(refund_delivery)
    assert isinstance(refunded, RefundChanged)
    assert (refunded.refund_id, refunded.charge_id, refunded.status, refunded.amount) == (
        refund["id"], charge["id"], "succeeded", 5_000)
    # A refund names only its charge: identity resolves it through the charge's alias.
    assert refunded.local_customer == f"stripe:{charge['id']}"

    mark = rec.mark()
    stripe.cancel_subscription(world, sub["id"])
    delivery = rec.one(mark)
    assert payload(delivery)["type"] == "customer.subscription.deleted"
    canceled = decode_one(delivery)
    assert isinstance(canceled, SubscriptionChanged)
    assert (canceled.status, canceled.deleted) == ("canceled", True)
    assert canceled.canceled_at == rec.world.get("stripe", "subscription", sub["id"])["canceled_at"] * 1000


def test_stripe_deleted_customer_decodes_as_deleted() -> None:
    rec = Recorder()
    customer = stripe.create_customer(rec.world, name="Gone Ltd")
    mark = rec.mark()
    stripe.delete_customer(rec.world, customer["id"])
    delivery = rec.one(mark)
    assert payload(delivery)["type"] == "customer.deleted"
    deleted = decode_one(delivery)
    assert isinstance(deleted, CustomerUpserted)
    assert (deleted.customer_id, deleted.deleted) == (customer["id"], True)


def test_stripe_event_type_falls_back_to_the_object_and_the_operation() -> None:
    rec = Recorder()
    rec.world.put("stripe", "subscription", "sub_x", {"id": "sub_x", "object": "subscription",
                                                      "customer": "cus_x", "status": "active"})
    rec.world.put("stripe", "product", "prod_x", {"id": "prod_x", "object": "product", "name": "Gold"})
    assert [payload(d)["type"] for d in rec.since(0)] == ["customer.subscription.created", "product.created"]
    # An event type Concord does not track is valid input of no interest.
    assert decode(rec.since(1)[0]) == []


def test_event_ids_are_deterministic_per_change_and_distinct_across_runs() -> None:
    def run(token: str) -> list[str]:
        rec = Recorder(run=token)
        customer = stripe.create_customer(rec.world, name="Acme")
        stripe.update_customer(rec.world, customer["id"], {"name": "Acme 2"})
        account = salesforce.create_account(rec.world, name="Acme")
        salesforce.update_account(rec.world, account["Id"], {"Name": "Acme 2"})
        org = zendesk.create_organization(rec.world, name="Acme")
        zendesk.update_organization(rec.world, org["id"], name="Acme 2")
        return [event.event_id for delivery in rec.since(0) for event in decode(delivery)]

    first = run("a")
    assert first == run("a")
    assert len(set(first)) == len(first)
    assert not set(first) & set(run("b"))


# --- Salesforce ---------------------------------------------------------------------------------------


def test_account_create_is_cometd_cdc_on_the_raw_topic() -> None:
    rec = Recorder()
    account = salesforce.create_account(rec.world, name="Acme Corp", country="US", street="1 Main St",
                                        city="Springfield", state="IL", postal_code="62701", currency="USD",
                                        tax_id="US-99", payment_terms="Net 30")
    delivery = rec.one(0)
    assert isinstance(delivery, KafkaDelivery)
    assert (delivery.topic, delivery.key) == (TOPIC, account["Id"].encode())
    message = payload(delivery)
    assert message["channel"] == "/data/AccountChangeEvent"
    assert message["data"]["event"]["replayId"] == 1
    fields = message["data"]["payload"]
    header = fields["ChangeEventHeader"]
    assert (header["entityName"], header["changeType"], header["recordIds"]) == ("Account", "CREATE", [account["Id"]])
    assert header["commitTimestamp"] == rec.log[0][0].at
    assert header["changedFields"] == []
    # CometD: no REST metadata, no nulls, compound address nested, datetimes in Z form.
    assert not {"attributes", "Id", "SystemModstamp", "BillingCity", "MasterRecordId"} & fields.keys()
    assert fields["BillingAddress"] == {"Street": "1 Main St", "City": "Springfield", "State": "IL",
                                        "PostalCode": "62701", "Country": "US"}
    assert fields["CreatedDate"].endswith("Z") and "+" not in fields["CreatedDate"]

    upserted = decode_one(delivery)
    assert isinstance(upserted, AccountUpserted)
    assert upserted.event_id == delivery.event_id == f"{header['transactionKey']}:1"
    assert upserted.customer_key == account["Id"]
    assert (upserted.name, upserted.country, upserted.currency, upserted.tax_id, upserted.payment_terms) == (
        "Acme Corp", "US", "USD", "US-99", "Net 30")
    assert upserted.address == "1 Main St, Springfield, IL 62701, US"
    assert upserted.occurred_at == header["commitTimestamp"]


def test_account_update_carries_only_the_changed_fields() -> None:
    rec = Recorder()
    account = salesforce.create_account(rec.world, name="Acme", country="US", street="1 Main St", city="Springfield",
                                        state="IL", postal_code="62701", tax_id="US-99")
    mark = rec.mark()
    salesforce.update_account(rec.world, account["Id"], {"Name": "Acme Inc", "BillingCity": "Chicago"})
    delivery = rec.one(mark)
    fields = payload(delivery)["data"]["payload"]
    header = fields.pop("ChangeEventHeader")
    assert header["changeType"] == "UPDATE"
    assert set(header["changedFields"]) == {"Name", "BillingAddress.City", "LastModifiedDate"}
    assert fields == {"Name": "Acme Inc", "BillingAddress": {"City": "Chicago"},
                      "LastModifiedDate": fields["LastModifiedDate"]}
    updated = decode_one(delivery)
    assert isinstance(updated, AccountUpserted)
    assert updated.name == "Acme Inc"
    # Only part of the address changed: the one-line address cannot be rebuilt, and says so.
    assert updated.address is UNSET and "address" in updated.changed
    assert updated.country is UNSET and updated.tax_id is UNSET

    mark = rec.mark()
    salesforce.update_account(rec.world, account["Id"], {"Tax_Id__c": None})
    delivery = rec.one(mark)
    header = payload(delivery)["data"]["payload"]["ChangeEventHeader"]
    assert header["nulledFields"] == ["Tax_Id__c"]
    assert "Tax_Id__c" not in payload(delivery)["data"]["payload"]
    cleared = decode_one(delivery)
    assert isinstance(cleared, AccountUpserted)
    assert cleared.tax_id is None and cleared.name is UNSET


def test_opportunity_create_and_closed_won_round_trip() -> None:
    rec = Recorder()
    account = salesforce.create_account(rec.world, name="Acme", country="US")
    mark = rec.mark()
    opportunity = salesforce.create_opportunity(rec.world, account["Id"], name="Acme - Gold", amount=1_200_050,
                                                currency="USD", close_date="2026-02-15", plan="gold")
    created = decode_one(rec.one(mark))
    assert isinstance(created, OpportunityChanged)
    assert (created.opportunity_id, created.account_id, created.customer_key) == (
        opportunity["Id"], account["Id"], account["Id"])
    assert (created.amount, created.currency, created.stage, created.is_won) == (1_200_050, "USD", "Prospecting", False)
    assert (created.close_date, created.plan) == ("2026-02-15", "gold")

    mark = rec.mark()
    salesforce.close_won(rec.world, opportunity["Id"])
    delivery = rec.one(mark)
    assert payload(delivery)["channel"] == "/data/OpportunityChangeEvent"
    won = decode_one(delivery)
    assert isinstance(won, OpportunityChanged)
    assert (won.stage, won.is_won, won.is_closed) == ("Closed Won", True, True)
    assert won.amount is UNSET and won.account_id is UNSET  # not part of this change
    assert won.version > created.version


def test_merge_deletes_the_loser_with_master_record_id() -> None:
    rec = Recorder()
    winner = salesforce.create_account(rec.world, name="Acme")
    loser = salesforce.create_account(rec.world, name="Acme (duplicate)")
    opportunity = salesforce.create_opportunity(rec.world, loser["Id"], name="Deal", amount=10_000)
    mark = rec.mark()
    salesforce.merge_accounts(rec.world, winner["Id"], loser["Id"])
    events = [event for delivery in rec.since(mark) for event in decode(delivery)]
    moved = [e for e in events if isinstance(e, OpportunityChanged)]
    assert [(e.opportunity_id, e.account_id) for e in moved] == [(opportunity["Id"], winner["Id"])]
    merged = [e for e in events if isinstance(e, AccountMerged)]
    assert len(merged) == 1
    assert (merged[0].winner_id, merged[0].loser_ids, merged[0].customer_key) == (
        winner["Id"], (loser["Id"],), winner["Id"])
    delete = next(d for d in rec.since(mark) if payload(d)["data"]["payload"]["ChangeEventHeader"]["changeType"]
                  == "DELETE")
    assert payload(delete)["data"]["payload"]["MasterRecordId"] == winner["Id"]

    mark = rec.mark()
    salesforce.delete_account(rec.world, winner["Id"])
    deleted = decode_one(rec.one(mark))
    assert isinstance(deleted, AccountUpserted)
    assert (deleted.customer_key, deleted.deleted) == (winner["Id"], True)


def test_salesforce_sends_nothing_for_untracked_objects_or_system_field_changes() -> None:
    rec = Recorder()
    rec.world.put("salesforce", "Contact", "003Hp00000Contac1AA", {"Id": "003Hp00000Contac1AA", "LastName": "Doe"})
    account = salesforce.create_account(rec.world, name="Acme")
    mark = rec.mark()
    stored = rec.world.get("salesforce", "Account", account["Id"]) or {}
    touched = {**stored, "SystemModstamp": "2026-01-02T00:00:00.000+0000"}
    rec.world.put("salesforce", "Account", account["Id"], touched, event="UPDATE")
    assert rec.log[0][1] == []
    assert rec.since(mark) == []


def test_salesforce_replay_ids_and_commit_numbers_increase() -> None:
    rec = Recorder(step_ms=0)  # every change in the same millisecond
    account = salesforce.create_account(rec.world, name="Acme")
    for name in ("B", "C", "D"):
        salesforce.update_account(rec.world, account["Id"], {"Name": name})
    messages = [payload(d) for d in rec.since(0)]
    assert [m["data"]["event"]["replayId"] for m in messages] == [1, 2, 3, 4]
    numbers = [m["data"]["payload"]["ChangeEventHeader"]["commitNumber"] for m in messages]
    assert numbers == sorted(set(numbers))
    versions = [decode_one(d).version for d in rec.since(0)]
    assert versions == sorted(versions)


# --- Zendesk ------------------------------------------------------------------------------------------


def test_zendesk_organization_created_webhook_asks_concord_to_reread() -> None:
    rec = Recorder()
    org = zendesk.create_organization(rec.world, name="Acme", external_id="001Hp00000AcmeXAAQ",
                                      fields={"support_status": "active", "support_tier": "gold"})
    delivery = rec.one(0)
    assert isinstance(delivery, WebhookDelivery)
    assert delivery.path == "/webhooks/zendesk"
    hook = payload(delivery)
    assert hook["type"] == "zen:event-type:organization.created"
    assert hook["subject"] == f"zen:organization:{org['id']}"
    assert hook["zendesk_event_version"] == "2022-06-20"
    assert hook["detail"]["id"] == str(org["id"])  # ids as strings in webhook detail
    assert hook["detail"]["external_id"] == "001Hp00000AcmeXAAQ"
    assert "organization_fields" not in hook["detail"]

    customer, resync = decode(delivery)
    assert isinstance(customer, CustomerUpserted)
    assert (customer.customer_id, customer.name, customer.crm_account_id, customer.customer_key) == (
        str(org["id"]), "Acme", "001Hp00000AcmeXAAQ", "001Hp00000AcmeXAAQ")
    assert customer.event_id == hook["id"] == delivery.event_id
    assert isinstance(resync, ResyncRequired)
    assert (resync.object_type, resync.record_ids) == ("organization", (str(org["id"]),))


def test_zendesk_entitlement_change_sends_one_custom_field_event_per_field() -> None:
    rec = Recorder()
    org = zendesk.create_organization(rec.world, name="Acme", external_id="001Hp00000AcmeXAAQ",
                                      fields={"support_status": "active", "support_tier": "gold"})
    mark = rec.mark()
    zendesk.set_entitlement(rec.world, org["id"], status="suspended", tier="silver")
    deliveries = rec.since(mark)
    hooks = [payload(d) for d in deliveries]
    assert [h["type"] for h in hooks] == ["zen:event-type:organization.custom_field_changed"] * 2
    changes = {h["event"]["field"]["title"]: (h["event"]["previous"], h["event"]["current"]) for h in hooks}
    assert changes == {"support_status": ("active", "suspended"), "support_tier": ("gold", "silver")}
    assert len({d.event_id for d in deliveries}) == 2
    for delivery in deliveries:
        kinds = [type(e) for e in decode(delivery)]
        assert kinds == [CustomerUpserted, ResyncRequired]


def test_zendesk_name_change_and_deletion() -> None:
    rec = Recorder()
    org = zendesk.create_organization(rec.world, name="Acme", external_id="001Hp00000AcmeXAAQ")
    mark = rec.mark()
    zendesk.update_organization(rec.world, org["id"], name="Acme Inc")
    delivery = rec.one(mark)
    assert payload(delivery)["event"] == {"current": "Acme Inc", "previous": "Acme"}
    renamed = decode_one(delivery)  # a name change cannot touch the entitlement: no re-read
    assert isinstance(renamed, CustomerUpserted)
    assert renamed.name == "Acme Inc"

    mark = rec.mark()
    zendesk.delete_organization(rec.world, org["id"])
    delivery = rec.one(mark)
    assert payload(delivery)["type"] == "zen:event-type:organization.deleted"
    customer, entitlement = decode(delivery)
    assert isinstance(customer, CustomerUpserted) and customer.deleted
    assert isinstance(entitlement, EntitlementChanged) and entitlement.deleted
    assert entitlement.organization_id == str(org["id"])


def test_zendesk_ticket_lifecycle_round_trip() -> None:
    rec = Recorder()
    org = zendesk.create_organization(rec.world, name="Acme", external_id="001Hp00000AcmeXAAQ")
    mark = rec.mark()
    ticket = zendesk.create_ticket(rec.world, organization_id=org["id"], subject="Cannot log in", requester_id=42,
                                   priority="high")
    delivery = rec.one(mark)
    hook = payload(delivery)
    assert hook["type"] == "zen:event-type:ticket.created"
    assert (hook["detail"]["status"], hook["detail"]["priority"]) == ("NEW", "HIGH")
    assert hook["detail"]["organization_id"] == str(org["id"])
    created = decode_one(delivery)
    assert isinstance(created, SupportCaseChanged)
    assert (created.ticket_id, created.organization_id, created.requester_id) == (
        str(ticket["id"]), str(org["id"]), "42")
    assert (created.status, created.priority, created.subject) == ("new", "high", "Cannot log in")
    assert created.local_customer == f"zendesk:{org['id']}"
    assert created.created_at == datetime.fromisoformat(ticket["created_at"]).timestamp() * 1000

    mark = rec.mark()
    zendesk.update_ticket(rec.world, ticket["id"], status="solved")
    delivery = rec.one(mark)
    hook = payload(delivery)
    assert hook["type"] == "zen:event-type:ticket.status_changed"
    assert hook["event"] == {"current": "SOLVED", "previous": "NEW"}
    solved = decode_one(delivery)
    assert isinstance(solved, SupportCaseChanged)
    assert solved.status == "solved"

    mark = rec.mark()
    rec.world.delete("zendesk", "ticket", str(ticket["id"]))
    delivery = rec.one(mark)
    assert payload(delivery)["type"] == "zen:event-type:ticket.soft_deleted"
    deleted = decode_one(delivery)
    assert isinstance(deleted, SupportCaseChanged) and deleted.deleted


# --- NetSuite -----------------------------------------------------------------------------------------


def test_netsuite_customer_envelope_round_trip() -> None:
    rec = Recorder()
    customer = netsuite.upsert_customer(rec.world, "001Hp00000AcmeXAAQ", company_name="Acme Corp",
                                        email="ap@acme.test", currency="USD", terms="Net 30")
    delivery = rec.one(0)
    assert isinstance(delivery, WebhookDelivery)
    assert delivery.path == "/webhooks/netsuite"
    envelope = payload(delivery)
    assert envelope["envelope"] == "concord.netsuite.v1"
    assert (envelope["recordType"], envelope["id"], envelope["eventType"]) == ("customer", customer["id"], "create")
    # The currency record's name is "USA"; the script sends the ISO code from its symbol.
    assert envelope["currencyCode"] == "USD"
    assert envelope["record"] == customer
    assert delivery.headers["X-Concord-Account"] == envelope["accountId"]

    upserted, flags = decode(delivery)
    assert isinstance(upserted, CustomerUpserted)
    assert (upserted.customer_id, upserted.crm_account_id, upserted.customer_key) == (
        customer["id"], "001Hp00000AcmeXAAQ", "001Hp00000AcmeXAAQ")
    assert (upserted.name, upserted.email, upserted.currency, upserted.payment_terms) == (
        "Acme Corp", "ap@acme.test", "USD", "Net 30")
    assert upserted.event_id == delivery.event_id
    assert isinstance(flags, FinancialFlagsChanged)
    assert (flags.overdue_balance, flags.credit_hold) == (0, None)


def test_netsuite_invoice_payment_and_credit_memo_round_trip() -> None:
    rec = Recorder()
    world = rec.world
    customer = netsuite.upsert_customer(world, "001Hp00000AcmeXAAQ", company_name="Acme", currency="EUR")
    mark = rec.mark()
    invoice = netsuite.upsert_invoice(world, "in_000042", customer_id=customer["id"], number="INV-0042",
                                      total=12_345, tax=1_345, currency="EUR", due_date="2026-02-01")
    opened = decode_one(rec.one(mark))
    assert isinstance(opened, InvoiceChanged)
    assert (opened.invoice_id, opened.billing_invoice_id, opened.customer_id, opened.number) == (
        invoice["id"], "in_000042", customer["id"], "INV-0042")
    assert (opened.status, opened.total, opened.tax, opened.amount_remaining, opened.currency) == (
        "open", 12_345, 1_345, 12_345, "EUR")
    assert opened.due_at == 1_769_904_000_000  # 2026-02-01T00:00:00Z
    assert opened.local_customer == f"netsuite:{customer['id']}"

    mark = rec.mark()
    payment, _ = netsuite.apply_payment(world, invoice["id"])
    by_type = {payload(d)["recordType"]: decode_one(d) for d in rec.since(mark)}
    paid_payment = by_type["customerpayment"]
    assert isinstance(paid_payment, PaymentChanged)
    assert (paid_payment.payment_id, paid_payment.invoice_id, paid_payment.customer_id) == (
        payment["id"], invoice["id"], customer["id"])
    assert (paid_payment.status, paid_payment.amount, paid_payment.currency) == ("succeeded", 12_345, "EUR")
    paid = by_type["invoice"]
    assert isinstance(paid, InvoiceChanged)
    assert (paid.status, paid.amount_remaining) == ("paid", 0)
    assert paid.version > opened.version

    mark = rec.mark()
    memo = netsuite.create_credit_memo(world, "re_000077", customer_id=customer["id"], amount=2_000, currency="EUR",
                                       invoice_id=invoice["id"])
    credited = decode_one(rec.one(mark))
    assert isinstance(credited, RefundChanged)
    assert (credited.refund_id, credited.document, credited.billing_refund_id, credited.invoice_id) == (
        memo["id"], "credit_memo", "re_000077", invoice["id"])
    assert (credited.status, credited.amount, credited.currency) == ("applied", 2_000, "EUR")


def test_netsuite_sales_order_and_deletion() -> None:
    rec = Recorder()
    customer = netsuite.upsert_customer(rec.world, "001Hp00000AcmeXAAQ", company_name="Acme")
    mark = rec.mark()
    order = netsuite.upsert_sales_order(rec.world, "006Hp00000DealXAAQ", customer_id=customer["id"], total=99_900)
    ordered = decode_one(rec.one(mark))
    assert isinstance(ordered, SalesOrderChanged)
    assert (ordered.order_id, ordered.opportunity_id, ordered.customer_id) == (
        order["id"], "006Hp00000DealXAAQ", customer["id"])
    assert (ordered.total, ordered.currency, ordered.status) == (99_900, "USD", "pending_fulfillment")

    invoice = netsuite.upsert_invoice(rec.world, "in_000043", customer_id=customer["id"], number="INV-0043",
                                      total=500)
    mark = rec.mark()
    netsuite.delete_record(rec.world, "invoice", invoice["id"])
    delivery = rec.one(mark)
    envelope = payload(delivery)
    assert envelope["eventType"] == "delete"
    assert envelope["record"]["id"] == invoice["id"]  # the record as it was
    deleted = decode_one(delivery)
    assert isinstance(deleted, InvoiceChanged)
    assert (deleted.invoice_id, deleted.deleted) == (invoice["id"], True)
    assert deleted.event_id.endswith(":delete")


def test_netsuite_edits_in_one_millisecond_keep_distinct_event_ids() -> None:
    rec = Recorder(step_ms=0)
    customer = netsuite.upsert_customer(rec.world, "001Hp00000AcmeXAAQ", company_name="Acme")
    for name in ("Acme 2", "Acme 3"):
        netsuite.upsert_customer(rec.world, "001Hp00000AcmeXAAQ", company_name=name)
    envelopes = [payload(d) for d in rec.since(0)]
    assert [e["id"] for e in envelopes] == [customer["id"]] * 3
    stamps = [e["lastModifiedDate"] for e in envelopes]
    assert stamps == sorted(set(stamps))
    names = [decode(d)[0] for d in rec.since(0)]
    assert len({e.event_id for e in names}) == 3
    assert [e.name for e in sorted(names, key=lambda e: e.version)] == ["Acme", "Acme 2", "Acme 3"]


@pytest.mark.parametrize(("record_type", "expected"), [("customerPayment", "customerpayment"),
                                                        ("creditMemo", "creditmemo"), ("salesOrder", "salesorder")])
def test_netsuite_record_types_are_sent_as_record_type_ids(record_type: str, expected: str) -> None:
    rec = Recorder()
    rec.world.put("netsuite", record_type, "7", {"id": "7"}, event="create")
    assert payload(rec.one(0))["recordType"] == expected


def test_unknown_platform_is_an_error_naming_it() -> None:
    events = NativeEvents(EventConfig(salesforce_topic=TOPIC))
    change = Change(platform="hubspot", type="deal", id="1", op="create", record={})
    with pytest.raises(ValueError, match="hubspot"):
        events.build(change)


def test_stripe_endpoint_receives_only_the_event_types_it_subscribes_to() -> None:
    rec = Recorder()
    rec.events = NativeEvents(EventConfig(salesforce_topic=TOPIC, stripe_enabled_events=frozenset(
        {"invoice.paid", "charge.succeeded", "refund.created"})))
    customer = stripe.create_customer(rec.world, name="Acme")
    invoice = stripe.create_invoice(rec.world, customer["id"], amount=1_000, currency="usd")
    _, charge = stripe.pay_invoice(rec.world, invoice["id"])
    stripe.refund_charge(rec.world, charge["id"])
    assert [payload(d)["type"] for d in rec.since(0)] == ["charge.succeeded", "invoice.paid", "refund.created"]
