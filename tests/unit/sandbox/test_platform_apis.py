"""The sandbox platforms: operations build real-shape records (Concord's codecs read them), and the HTTP routes."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from concord.codecs import netsuite as netsuite_codec
from concord.codecs import stripe as stripe_codec
from concord.codecs import zendesk as zendesk_codec
from concord.codecs.model import (
    CustomerUpserted,
    EntitlementChanged,
    InvoiceChanged,
    PaymentChanged,
    RefundChanged,
    SubscriptionChanged,
)
from concord.sandbox import netsuite, salesforce, stripe, zendesk
from concord.sandbox.events import EventConfig, KafkaDelivery, NativeEvents
from concord.sandbox.faults import Faults, PlatformCredentials
from concord.sandbox.world import Change, World

NOW = 1_743_422_400.0  # 2025-03-31T12:00:00Z
CREDENTIALS = PlatformCredentials(stripe_api_key="sk_test_1", salesforce_access_token="sf", zendesk_api_email="a@b.c",
                                  zendesk_api_token="zd", netsuite_access_token="ns", netsuite_concurrency=1)


def _recorded() -> tuple[World, list[Change]]:
    world = World(clock=lambda: NOW)
    changes: list[Change] = []
    world.listen(changes.append)
    return world, changes


def _stripe_event(change: Change) -> bytes:
    return msgspec.json.encode({"id": f"evt_{len(change.id)}", "object": "event", "type": change.event,
                                "created": int(NOW), "data": {"object": change.record}})


# --- operations -----------------------------------------------------------------------------------


def test_stripe_lifecycle_records_decode_as_stripe_events() -> None:
    world, changes = _recorded()
    customer = stripe.create_customer(world, name="Acme", country="US", salesforce_account_id="001A",
                                      currency="usd")
    sub = stripe.create_subscription(world, customer["id"], price_id="price_gold", unit_amount=2_000,
                                     currency="USD", quantity=3)
    invoice = stripe.create_invoice(world, customer["id"], subscription_id=sub["id"], tax=600)
    paid, charge = stripe.pay_invoice(world, invoice["id"])
    refund, _ = stripe.refund_charge(world, charge["id"], amount=1_000)
    decoded = {c.event: stripe_codec.decode(_stripe_event(c)) for c in changes}

    assert [c.event for c in changes] == [
        "customer.created", "customer.subscription.created", "invoice.created", "customer.subscription.updated",
        "customer.updated", "invoice.finalized", "charge.succeeded", "invoice.paid", "refund.created",
        "charge.refunded"]
    [upserted] = decoded["customer.created"]
    assert isinstance(upserted, CustomerUpserted)
    assert (upserted.crm_account_id, upserted.country, upserted.name) == ("001A", "US", "Acme")
    [subscription] = decoded["customer.subscription.created"]
    assert isinstance(subscription, SubscriptionChanged)
    assert (subscription.amount, subscription.currency, subscription.quantity) == (6_000, "USD", 3)
    assert subscription.current_period_end == sub["items"]["data"][0]["current_period_end"] * 1000
    [booked] = decoded["invoice.paid"]
    assert isinstance(booked, InvoiceChanged)
    assert (booked.status, booked.total, booked.tax, booked.amount_remaining) == ("paid", 6_600, 600, 0)
    assert (booked.subscription_id, booked.number) == (sub["id"], paid["number"])
    assert booked.paid_at == int(NOW) * 1000
    [payment] = decoded["charge.succeeded"]
    assert isinstance(payment, PaymentChanged) and payment.amount == 6_600
    [refunded] = decoded["refund.created"]
    assert isinstance(refunded, RefundChanged)
    assert (refunded.refund_id, refunded.amount, refunded.status) == (refund["id"], 1_000, "succeeded")


def test_stripe_dunning_cancel_pause_and_void() -> None:
    world, changes = _recorded()
    customer = stripe.create_customer(world, name="Acme")
    sub = stripe.create_subscription(world, customer["id"], price_id="price_1", unit_amount=500, currency="eur")
    invoice = stripe.create_invoice(world, customer["id"], subscription_id=sub["id"])
    stripe.fail_invoice_payment(world, invoice["id"])
    assert world.get("stripe", "subscription", sub["id"])["status"] == "past_due"
    stripe.pay_invoice(world, invoice["id"])
    assert world.get("stripe", "subscription", sub["id"])["status"] == "active"
    assert stripe.pause_subscription(world, sub["id"])["status"] == "paused"
    assert stripe.resume_subscription(world, sub["id"])["status"] == "active"
    assert stripe.cancel_subscription(world, sub["id"], at_period_end=True)["cancel_at_period_end"] is True
    assert stripe.cancel_subscription(world, sub["id"])["status"] == "canceled"
    second = stripe.create_invoice(world, customer["id"], amount=100, currency="eur")
    assert stripe.void_invoice(world, second["id"])["status"] == "void"
    events = [c.event for c in changes]
    for expected in ("charge.failed", "invoice.payment_failed", "customer.subscription.paused",
                     "customer.subscription.resumed", "customer.subscription.deleted", "invoice.voided"):
        assert expected in events
    with pytest.raises(ValueError):
        stripe.pay_invoice(world, second["id"])


def test_stripe_update_customer_merges_metadata_and_address_like_stripe() -> None:
    world, _ = _recorded()
    customer = stripe.create_customer(world, name="Acme", country="US", metadata={"keep": "1", "drop": "2"})
    stripe.update_customer(world, customer["id"], {"metadata": {"drop": "", "salesforce_account_id": "001B"},
                                                   "address": {"city": "Berlin"}})
    updated = world.get("stripe", "customer", customer["id"])
    assert updated["metadata"] == {"keep": "1", "salesforce_account_id": "001B"}
    assert (updated["address"]["city"], updated["address"]["country"]) == ("Berlin", "US")
    with pytest.raises(ValueError, match="unknown parameter: currency"):
        stripe.update_customer(world, customer["id"], {"currency": "eur"})


def test_salesforce_accounts_opportunities_and_merges() -> None:
    world, changes = _recorded()
    winner = salesforce.create_account(world, name="Acme", country="US", street="1 Main St", city="Springfield")
    loser = salesforce.create_account(world, name="Acme Inc")
    opportunity = salesforce.create_opportunity(world, loser["Id"], name="Acme - Gold", amount=1_200_050,
                                                plan="gold")
    won = salesforce.close_won(world, opportunity["Id"])
    salesforce.merge_accounts(world, winner["Id"], loser["Id"])

    assert len(winner["Id"]) == 18 and winner["Id"].startswith("001")
    assert opportunity["Id"].startswith("006")
    assert (won["StageName"], won["IsWon"], won["IsClosed"], won["Probability"]) == ("Closed Won", True, True, 100)
    assert (opportunity["Amount"], opportunity["Plan__c"], opportunity["CloseDate"]) == (12_000.5, "gold",
                                                                                         "2025-03-31")
    assert winner["BillingAddress"]["street"] == "1 Main St"
    assert world.get("salesforce", "Account", loser["Id"]) is None
    assert world.get("salesforce", "Opportunity", opportunity["Id"])["AccountId"] == winner["Id"]
    deleted = [c for c in changes if c.op == "delete"]
    assert [(c.event, c.record["MasterRecordId"]) for c in deleted] == [("DELETE", winner["Id"])]
    assert {c.event for c in changes} == {"CREATE", "UPDATE", "DELETE"}
    with pytest.raises(ValueError, match="No such column 'Bogus__c'"):
        salesforce.update_account(world, winner["Id"], {"Bogus__c": 1})


def test_salesforce_money_converts_exactly() -> None:
    assert salesforce.to_major(1_999, "USD") == 19.99
    assert salesforce.to_minor(19.99, "USD") == 1_999
    assert salesforce.to_minor(500, "JPY") == 500


def test_zendesk_organizations_decode_with_their_entitlement() -> None:
    world, changes = _recorded()
    org = zendesk.create_organization(world, name="Acme", external_id="001A", tags=["vip"])
    zendesk.update_organization(world, org["id"], name="Acme Corp")
    zendesk.set_entitlement(world, org["id"], status="active", tier="gold", end_date="2026-03-31")
    ticket = zendesk.create_ticket(world, organization_id=org["id"], subject="Help")
    zendesk.update_ticket(world, ticket["id"], status="open", priority="high")

    assert [c.event.removeprefix("zen:event-type:") for c in changes] == [
        "organization.created", "organization.name_changed", "organization.custom_field_changed",
        "ticket.created", "ticket.status_changed", "ticket.priority_changed"]
    stored = world.get("zendesk", "organization", str(org["id"]))
    events = zendesk_codec.decode(msgspec.json.encode({"organization": stored}))
    [entitlement] = [e for e in events if isinstance(e, EntitlementChanged)]
    assert (entitlement.status, entitlement.tier, entitlement.end_date) == ("active", "gold", "2026-03-31")
    assert entitlement.customer_key == "001A"
    assert isinstance(org["id"], int)


def test_netsuite_invoice_payment_and_credit_memo_decode() -> None:
    world, changes = _recorded()
    customer = netsuite.upsert_customer(world, "001A", company_name="Acme", currency="EUR", terms="Net 30")
    invoice = netsuite.upsert_invoice(world, "in_1", customer_id=customer["id"], number="INV-1", total=10_000,
                                      tax=1_000, currency="EUR")
    payment, paid = netsuite.apply_payment(world, invoice["id"], external_id="pay-1")
    again, _ = netsuite.apply_payment(world, invoice["id"], external_id="pay-1")
    memo = netsuite.create_credit_memo(world, "re_1", customer_id=customer["id"], amount=500, currency="EUR",
                                       invoice_id=invoice["id"])
    order = netsuite.upsert_sales_order(world, "006A", customer_id=customer["id"], total=10_000, currency="EUR")

    assert again["id"] == payment["id"]
    assert len(list(world.all("netsuite", "customerPayment"))) == 1
    assert (paid["amountRemaining"], paid["status"]["refName"]) == (0.0, "Paid In Full")
    assert {c.event for c in changes} == {"create", "edit"}

    def decode(record_type: str, record: dict[str, Any]) -> list[Any]:
        return netsuite_codec.decode(msgspec.json.encode({
            "envelope": "concord.netsuite.v1", "recordType": record_type.lower(), "id": record["id"],
            "eventType": "edit", "lastModifiedDate": record["lastModifiedDate"], "accountId": "1234567",
            "currencyCode": "EUR", "record": record}))

    [booked] = decode("invoice", paid)
    assert (booked.billing_invoice_id, booked.status, booked.total, booked.tax, booked.amount_remaining) == (
        "in_1", "paid", 10_000, 1_000, 0)
    [settled] = decode("customerPayment", payment)
    assert (settled.invoice_id, settled.amount, settled.status) == (invoice["id"], 10_000, "succeeded")
    [credit] = decode("creditMemo", memo)
    assert (credit.billing_refund_id, credit.amount, credit.invoice_id) == ("re_1", 500, invoice["id"])
    [ordered] = decode("salesOrder", order)
    assert (ordered.opportunity_id, ordered.total) == ("006A", 10_000)
    customer_event = decode("customer", world.get("netsuite", "customer", customer["id"]))[0]
    assert (customer_event.crm_account_id, customer_event.payment_terms) == ("001A", "Net 30")


# --- routes ---------------------------------------------------------------------------------------


async def _client(world: World, faults: Faults | None = None) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    for module in (stripe, salesforce, zendesk, netsuite):
        app.add_routes(module.routes(world, faults or Faults(), CREDENTIALS))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


STRIPE = {"Authorization": "Bearer sk_test_1"}
SALESFORCE = {"Authorization": "Bearer sf"}
ZENDESK = {"Authorization": "Basic " + base64.b64encode(b"a@b.c/token:zd").decode()}
NETSUITE = {"Authorization": "Bearer ns"}


async def test_stripe_routes_form_bodies_idempotency_and_errors() -> None:
    world = World(clock=lambda: NOW)
    customer = stripe.create_customer(world, name="Acme")
    client = await _client(world)
    path = f"/v1/customers/{customer['id']}"
    form = "name=Acme+Corp&metadata[salesforce_account_id]=001A&address[country]=DE"
    first = await client.post(path, data=form, headers={**STRIPE, "Idempotency-Key": "k1",
                                                        "Content-Type": "application/x-www-form-urlencoded"})
    first_body = await first.read()
    replay = await client.post(path, data=form, headers={**STRIPE, "Idempotency-Key": "k1",
                                                         "Content-Type": "application/x-www-form-urlencoded"})
    replay_body = await replay.read()
    other = await client.post(path, data="name=Else", headers={**STRIPE, "Idempotency-Key": "k1",
                                                               "Content-Type": "application/x-www-form-urlencoded"})
    other_error = (await other.json())["error"]
    unauthenticated = await client.get(path)
    missing = await client.get("/v1/customers/cus_404", headers=STRIPE)
    missing_error = (await missing.json())["error"]
    fetched = await (await client.get(path, headers=STRIPE)).json()
    await client.close()

    assert first.status == 200 and "Idempotent-Replayed" not in first.headers
    assert (replay.status, replay.headers["Idempotent-Replayed"], replay_body) == (200, "true", first_body)
    assert (other.status, other_error["type"]) == (400, "idempotency_error")
    assert unauthenticated.status == 401
    assert (missing.status, missing_error["type"], missing_error["code"]) == (404, "invalid_request_error",
                                                                              "resource_missing")
    assert fetched["metadata"] == {"salesforce_account_id": "001A"}
    assert (fetched["name"], fetched["address"]["country"]) == ("Acme Corp", "DE")
    [effect] = world.effects.all()
    assert (effect.key, effect.requests, effect.applied) == ("k1", 2, 1)


async def test_stripe_routes_invoice_actions_and_refunds() -> None:
    world = World(clock=lambda: NOW)
    customer = stripe.create_customer(world, name="Acme")
    invoice = stripe.create_invoice(world, customer["id"], amount=1_000, currency="usd")
    client = await _client(world)
    paid = await (await client.post(f"/v1/invoices/{invoice['id']}/pay", headers=STRIPE)).json()
    [charge] = world.all("stripe", "charge")
    refund = await client.post("/v1/refunds", data={"charge": charge["id"], "amount": "400"}, headers=STRIPE)
    refund_body = await refund.json()
    over = await client.post("/v1/refunds", data={"charge": charge["id"], "amount": "4000"}, headers=STRIPE)
    await client.close()
    assert paid["status"] == "paid"
    assert (refund.status, refund_body["amount"], refund_body["status"]) == (200, 400, "succeeded")
    assert over.status == 400
    assert world.get("stripe", "charge", charge["id"])["amount_refunded"] == 400


async def test_salesforce_routes_patch_upsert_and_error_lists() -> None:
    world = World(clock=lambda: NOW)
    account = salesforce.create_account(world, name="Acme")
    client = await _client(world)
    root = "/services/data/v62.0/sobjects"
    patched = await client.patch(f"{root}/Account/{account['Id']}", json={"BillingCountry": "FR"}, headers=SALESFORCE)
    created = await client.patch(f"{root}/Account/External_Id__c/X-1", json={"Name": "Beta"}, headers=SALESFORCE)
    created_body = await created.json()
    updated = await client.patch(f"{root}/Account/External_Id__c/X-1", json={"Name": "Beta"}, headers=SALESFORCE)
    invalid = await client.patch(f"{root}/Account/{account['Id']}", json={"Nope__c": 1}, headers=SALESFORCE)
    invalid_body = await invalid.json()
    denied = await client.get(f"{root}/Account/{account['Id']}", headers={"Authorization": "Bearer bad"})
    denied_body = await denied.json()
    fetched = await (await client.get(f"{root}/Account/{account['Id']}", headers=SALESFORCE)).json()
    unknown = await client.get(f"{root}/Lead/00Q1", headers=SALESFORCE)
    await client.close()

    assert patched.status == 204 and fetched["BillingCountry"] == "FR"
    assert (created.status, created_body["created"], updated.status) == (201, True, 204)
    assert world.find("salesforce", "Account", "External_Id__c", "X-1")["Name"] == "Beta"
    assert (invalid.status, invalid_body[0]["errorCode"]) == (400, "INVALID_FIELD")
    assert set(invalid_body[0]) == {"message", "errorCode", "fields"}
    assert (denied.status, denied_body[0]["errorCode"]) == (401, "INVALID_SESSION_ID")
    assert unknown.status == 404
    effects = {e.key: (e.requests, e.applied) for e in world.effects.all()}
    assert effects["Account:eid:X-1"] == (2, 1)


async def test_zendesk_routes_merge_fields_search_and_replay() -> None:
    world = World(clock=lambda: NOW)
    org = zendesk.create_organization(world, name="Acme", external_id="001A",
                                      fields={"support_status": "active", "support_tier": "gold"})
    client = await _client(world)
    path = f"/api/v2/organizations/{org['id']}.json"
    body = {"organization": {"organization_fields": {"support_status": "suspended"}}}
    first = await client.put(path, json=body, headers={**ZENDESK, "Idempotency-Key": "k"})
    replay = await client.put(path, json=body, headers={**ZENDESK, "Idempotency-Key": "k"})
    replay_body = await replay.json()
    found = await (await client.get("/api/v2/organizations/search.json", params={"external_id": "001A"},
                                    headers=ZENDESK)).json()
    created = await client.post("/api/v2/organizations/create_or_update.json", headers=ZENDESK,
                                json={"organization": {"name": "Beta", "external_id": "001B"}})
    denied = await client.get(path, headers={"Authorization": "Basic " + base64.b64encode(b"a@b.c:pw").decode()})
    missing = await client.get("/api/v2/organizations/1.json", headers=ZENDESK)
    missing_body = await missing.json()
    await client.close()

    assert (first.headers["x-idempotency-lookup"], replay.headers["x-idempotency-lookup"]) == ("miss", "hit")
    assert replay_body["organization"]["organization_fields"] == {"support_status": "suspended",
                                                                  "support_tier": "gold"}
    assert [o["id"] for o in found["organizations"]] == [org["id"]]
    assert created.status == 201
    assert denied.status == 401
    assert (missing.status, missing_body["error"]) == (404, "RecordNotFound")
    effects = {e.key: (e.requests, e.applied) for e in world.effects.all()}
    assert effects["k"] == (2, 1)
    assert effects["organization:eid:001B"] == (1, 1)


async def test_netsuite_routes_upsert_by_external_id_and_concurrency_limit() -> None:
    world = World(clock=lambda: NOW)
    faults = Faults()
    client = await _client(world, faults)
    root = "/services/rest/record/v1"
    put = await client.put(f"{root}/customer/eid:001A", json={"companyName": "Acme"}, headers=NETSUITE)
    by_eid = await (await client.get(f"{root}/customer/eid:001A", headers=NETSUITE)).json()
    patched = await client.patch(f"{root}/customer/{by_eid['id']}", json={"email": "a@acme.test"}, headers=NETSUITE)
    read_only = await client.patch(f"{root}/customer/{by_eid['id']}", json={"id": "9"}, headers=NETSUITE)
    missing = await client.get(f"{root}/invoice/999", headers=NETSUITE)
    missing_body = await missing.json(content_type=None)
    faults.update(b'{"netsuite": {"latency_ms": 100}}')
    # The limit is 1 (CREDENTIALS): of two requests in flight together, one is turned away.
    both = await asyncio.gather(*(client.get(f"{root}/customer/{by_eid['id']}", headers=NETSUITE)
                                  for _ in range(2)))
    [blocked] = [r for r in both if r.status == 429]
    blocked_body = await blocked.json(content_type=None)
    await client.close()

    assert (put.status, put.headers["Location"].endswith(f"/customer/{by_eid['id']}")) == (204, True)
    assert patched.status == 204
    assert world.get("netsuite", "customer", by_eid["id"])["email"] == "a@acme.test"
    assert read_only.status == 400
    assert (missing.status, missing_body["o:errorDetails"][0]["o:errorCode"]) == (404, "NONEXISTENT_ID")
    assert set(missing_body) == {"type", "title", "status", "o:errorDetails"}
    assert blocked_body["o:errorDetails"][0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    assert sorted(r.status for r in both) == [200, 429]


# --- what the quote-to-cash saga calls ------------------------------------------------------------

FORM = {**STRIPE, "Content-Type": "application/x-www-form-urlencoded"}


async def test_stripe_creates_a_subscription_of_a_catalogue_price_once_per_idempotency_key() -> None:
    world = World(clock=lambda: NOW)
    customer = stripe.create_customer(world, name="Acme", salesforce_account_id="001A")
    client = await _client(world)
    form = (f"customer={customer['id']}&items[0][price]=price_pro_monthly&items[0][quantity]=7"
            "&metadata[salesforce_opportunity_id]=006A")
    first = await client.post("/v1/subscriptions", data=form, headers={**FORM, "Idempotency-Key": "saga-1:sub"})
    body = await first.json()
    replay = await client.post("/v1/subscriptions", data=form, headers={**FORM, "Idempotency-Key": "saga-1:sub"})
    replayed = await replay.json()
    fetched = await (await client.get(f"/v1/subscriptions/{body['id']}", headers=STRIPE)).json()
    await client.close()

    assert first.status == 200 and (replay.status, replay.headers["Idempotent-Replayed"]) == (200, "true")
    assert replayed == body == fetched
    assert [s["id"] for s in world.all("stripe", "subscription")] == [body["id"]]
    item = body["items"]["data"][0]
    assert (item["price"]["id"], item["price"]["unit_amount"], item["quantity"]) == ("price_pro_monthly", 19_900, 7)
    assert (body["object"], body["status"], body["customer"], body["currency"]) == ("subscription", "active",
                                                                                    customer["id"], "usd")
    assert body["metadata"] == {"salesforce_opportunity_id": "006A"}
    # The object the world function makes, field for field.
    other = World(clock=lambda: NOW)
    made = stripe.create_subscription(other, stripe.create_customer(other, name="B")["id"], price_id="p",
                                      unit_amount=1, currency="usd")
    assert set(body) == set(made) and set(item) == set(made["items"]["data"][0])
    [created] = stripe_codec.decode(_stripe_event(Change(platform="stripe", type="subscription", id=body["id"],
                                                         op="create", record=body,
                                                         event="customer.subscription.created")))
    assert isinstance(created, SubscriptionChanged)
    assert (created.plan, created.quantity, created.amount, created.currency) == ("price_pro_monthly", 7, 139_300,
                                                                                  "USD")
    effects = {e.key: (e.requests, e.applied) for e in world.effects.all()}
    assert effects == {"saga-1:sub": (2, 1)} and world.effects.duplicates() == []


@pytest.mark.parametrize(("form", "param", "code"), [
    ("items[0][price]=price_basic_monthly", "customer", "parameter_missing"),
    ("customer=cus_nope&items[0][price]=price_basic_monthly", "customer", "resource_missing"),
    ("customer={customer}", "items", "parameter_missing"),
    ("customer={customer}&items[0][quantity]=2", "items[0][price]", "parameter_missing"),
    ("customer={customer}&items[0][price]=price_gold_yearly", "items[0][price]", "resource_missing"),
    ("customer={customer}&items[0][price]=price_basic_monthly&items[0][quantity]=two", "items[0][quantity]",
     "parameter_invalid_integer"),
    ("customer={customer}&items[0][price]=price_basic_monthly&trial_period_days=7", "trial_period_days",
     "parameter_unknown"),
])
async def test_stripe_refuses_a_subscription_it_cannot_create_naming_the_parameter(form: str, param: str,
                                                                                 code: str) -> None:
    world = World(clock=lambda: NOW)
    customer = stripe.create_customer(world, name="Acme")
    client = await _client(world)
    response = await client.post("/v1/subscriptions", data=form.format(customer=customer["id"]), headers=FORM)
    error = (await response.json())["error"]
    await client.close()
    assert (response.status, error["type"], error["code"], error["param"]) == (400, "invalid_request_error", code,
                                                                               param)
    assert list(world.all("stripe", "subscription")) == []


async def test_a_subscription_is_billed_in_the_requested_else_the_customer_s_else_the_default_currency() -> None:
    world = World(clock=lambda: NOW)
    plain, euro = stripe.create_customer(world, name="Plain"), stripe.create_customer(world, name="Euro")
    pounds = stripe.create_customer(world, name="Pounds", currency="GBP")
    client = await _client(world)

    async def subscribe(customer: str, extra: str = "") -> tuple[int, dict[str, Any]]:
        response = await client.post("/v1/subscriptions", headers=FORM,
                                     data=f"customer={customer}&items[0][price]=price_basic_monthly{extra}")
        return response.status, await response.json()

    assert (await subscribe(plain["id"]))[1]["currency"] == "usd"  # the price's default currency
    assert (await subscribe(euro["id"], "&currency=eur"))[1]["currency"] == "eur"
    assert (await subscribe(pounds["id"]))[1]["currency"] == "gbp"
    status, refused = await subscribe(pounds["id"], "&currency=usd")
    unknown_status, unknown = await subscribe(plain["id"], "&currency=jpy")
    await client.close()
    # Stripe keeps one currency per customer: the first subscription set it.
    assert [world.get("stripe", "customer", c["id"])["currency"] for c in (plain, euro, pounds)] == ["usd", "eur",
                                                                                                     "gbp"]
    assert (status, refused["error"]["param"]) == (400, "currency")
    assert "cannot combine currencies" in refused["error"]["message"]
    assert (unknown_status, unknown["error"]["param"]) == (400, "currency")


async def test_a_plan_and_seat_change_goes_through_the_subscription_s_one_item() -> None:
    world = World(clock=lambda: NOW)
    customer = stripe.create_customer(world, name="Acme", currency="usd")
    sub = stripe.create_subscription(world, customer["id"], price_id="price_basic_monthly", unit_amount=4_900,
                                     currency="usd", quantity=3)
    item_id = sub["items"]["data"][0]["id"]
    client = await _client(world)
    path = f"/v1/subscriptions/{sub['id']}"
    changed = await client.post(path, headers={**FORM, "Idempotency-Key": "cmd-amend"}, data=(
        f"items[0][id]={item_id}&items[0][price]=price_pro_monthly&items[0][quantity]=5"))
    body = await changed.json()
    seats_only = await (await client.post(path, headers=FORM, data=f"items[0][id]={item_id}&items[0][quantity]=6"))\
        .json()
    wrong_item = await client.post(path, headers=FORM, data="items[0][id]=si_other&items[0][quantity]=2")
    wrong_item_error = (await wrong_item.json())["error"]
    unknown_price = await client.post(path, headers=FORM, data=f"items[0][id]={item_id}&items[0][price]=price_x")
    unknown_price_error = (await unknown_price.json())["error"]
    await client.delete(path, headers=STRIPE)
    after_cancel = await client.post(path, headers=FORM, data="quantity=2")
    await client.close()

    item = body["items"]["data"][0]
    assert changed.status == 200 and item["id"] == item_id  # Stripe keeps the item when its price changes
    assert (item["price"]["id"], item["price"]["unit_amount"], item["quantity"]) == ("price_pro_monthly", 19_900, 5)
    assert (seats_only["items"]["data"][0]["price"]["id"], seats_only["items"]["data"][0]["quantity"]) == (
        "price_pro_monthly", 6)
    assert (wrong_item.status, wrong_item_error["code"], wrong_item_error["param"]) == (400, "resource_missing",
                                                                                        "items[0][id]")
    assert (unknown_price.status, unknown_price_error["param"]) == (400, "items[0][price]")
    assert after_cancel.status == 400
    assert {e.key: e.applied for e in world.effects.all()}["cmd-amend"] == 1


async def test_deleting_a_canceled_subscription_is_404_as_in_stripe_though_it_can_still_be_read() -> None:
    world, changes = _recorded()
    customer = stripe.create_customer(world, name="Acme", currency="usd")
    sub = stripe.create_subscription(world, customer["id"], price_id="price_basic_monthly", unit_amount=4_900,
                                     currency="usd")
    client = await _client(world)
    path = f"/v1/subscriptions/{sub['id']}"
    first = await client.delete(path, headers={**STRIPE, "Idempotency-Key": "cancel-1"})
    first_body = await first.json()
    again = await client.delete(path, headers={**STRIPE, "Idempotency-Key": "cancel-2"})
    again_error = (await again.json())["error"]
    read = await client.get(path, headers=STRIPE)
    read_body = await read.json()
    await client.close()

    assert (first.status, first_body["status"]) == (200, "canceled")
    assert (again.status, again_error["code"], again_error["param"]) == (404, "resource_missing", "id")
    assert again_error["message"] == f"No such subscription: '{sub['id']}'"
    assert (read.status, read_body["status"]) == (200, "canceled")
    assert [c.event for c in changes].count("customer.subscription.deleted") == 1


async def test_opportunities_carry_their_seats_in_rest_soql_and_change_events() -> None:
    world, changes = _recorded()
    account = salesforce.create_account(world, name="Acme", currency="EUR")
    opportunity = salesforce.create_opportunity(world, account["Id"], name="Acme - Pro", amount=99_500,
                                                currency="EUR", plan="price_pro_monthly", quantity=5)
    small = salesforce.create_opportunity(world, account["Id"], name="Acme - Basic", amount=4_900, quantity=1)
    salesforce.close_won(world, opportunity["Id"])
    amended = salesforce.update_opportunity(world, opportunity["Id"], {"TotalOpportunityQuantity": 7.0,
                                                                       "Amount": 1_393.0})
    reopened = salesforce.reopen(world, opportunity["Id"])
    client = await _client(world)
    root = "/services/data/v62.0"
    fetched = await (await client.get(f"{root}/sobjects/Opportunity/{opportunity['Id']}",
                                      params={"fields": "TotalOpportunityQuantity,Amount"}, headers=SALESFORCE)).json()
    query = "SELECT Id, TotalOpportunityQuantity FROM Opportunity WHERE TotalOpportunityQuantity >= 5"
    found = await (await client.get(f"{root}/query", params={"q": query}, headers=SALESFORCE)).json()
    await client.close()

    assert (opportunity["TotalOpportunityQuantity"], small["TotalOpportunityQuantity"]) == (5.0, 1.0)
    assert (fetched["TotalOpportunityQuantity"], fetched["Amount"]) == (7.0, 1_393.0)
    assert [(r["Id"], r["TotalOpportunityQuantity"]) for r in found["records"]] == [(opportunity["Id"], 7.0)]
    assert amended["IsWon"] and (reopened["StageName"], reopened["IsWon"], reopened["IsClosed"]) == (
        "Negotiation/Review", False, False)
    native = NativeEvents(EventConfig(salesforce_topic="t", run="r"))
    payloads = []
    for change in changes:
        if change.id == opportunity["Id"] and "TotalOpportunityQuantity" in change.changed:
            [event] = native.build(change)
            assert isinstance(event, KafkaDelivery)
            payloads.append(msgspec.json.decode(event.value)["data"]["payload"])
    created, amend = payloads
    assert created["TotalOpportunityQuantity"] == 5.0
    assert amend["TotalOpportunityQuantity"] == 7.0
    assert set(amend["ChangeEventHeader"]["changedFields"]) >= {"TotalOpportunityQuantity", "Amount"}


async def test_netsuite_customers_link_their_crm_account_in_a_field_rest_and_suiteql_carry() -> None:
    world = World(clock=lambda: NOW)
    winner = netsuite.upsert_customer(world, "001W", company_name="Acme")
    loser = netsuite.upsert_customer(world, "001L", company_name="Acme")
    client = await _client(world)
    root = "/services/rest/record/v1"
    before = await (await client.get(f"{root}/customer/eid:001L", headers=NETSUITE)).json()
    taken = await client.patch(f"{root}/customer/{loser['id']}", json={"externalId": "001W"}, headers=NETSUITE)
    repointed = await client.patch(f"{root}/customer/{loser['id']}", json={netsuite.CRM_LINK_FIELD: "001W"},
                                   headers=NETSUITE)
    after = await (await client.get(f"{root}/customer/{loser['id']}", headers=NETSUITE)).json()
    query = f"SELECT id, externalid, {netsuite.CRM_LINK_FIELD} FROM customer WHERE {netsuite.CRM_LINK_FIELD} = '001W'"
    rows = await (await client.post(netsuite.SUITEQL_PATH, json={"q": query},
                                    headers={**NETSUITE, "Prefer": "transient"})).json()
    created = await client.put(f"{root}/customer/eid:001N", json={"companyName": "New",
                                                                  netsuite.CRM_LINK_FIELD: "001N"}, headers=NETSUITE)
    await client.close()

    assert (winner[netsuite.CRM_LINK_FIELD], before[netsuite.CRM_LINK_FIELD]) == ("001W", "001L")
    assert taken.status == 400  # NetSuite keeps externalIds unique
    assert repointed.status == 204 and (after["externalId"], after[netsuite.CRM_LINK_FIELD]) == ("001L", "001W")
    assert [(r["id"], r["externalid"], r[netsuite.CRM_LINK_FIELD]) for r in rows["items"]] == [
        (winner["id"], "001W", "001W"), (loser["id"], "001L", "001W")]
    assert created.status == 204
    assert world.find("netsuite", "customer", "externalId", "001N")[netsuite.CRM_LINK_FIELD] == "001N"


def _sales_order(customer_key: str, price: str = "price_pro_monthly") -> dict[str, Any]:
    """The body of erp.upsert_sales_order, as the saga contract gives it: 5 seats of Pro in EUR."""
    return {"entity": {"externalId": customer_key}, "currency": {"refName": "EUR"},
            "orderStatus": {"id": "B", "refName": "Pending Fulfillment"}, "total": 995.0,
            "item": {"items": [{"item": {"externalId": price}, "quantity": 5, "amount": 995.0}]}}


async def test_netsuite_sales_orders_are_upserted_by_opportunity_and_cancelled() -> None:
    world, changes = _recorded()
    customer = netsuite.upsert_customer(world, "001A", company_name="Acme", currency="EUR")
    client = await _client(world)
    order_path = "/services/rest/record/v1/salesOrder/eid:006A"
    put = await client.put(order_path, json=_sales_order("001A"), headers=NETSUITE)
    again = await client.put(order_path, json=_sales_order("001A"), headers=NETSUITE)
    order = await (await client.get(order_path, headers=NETSUITE)).json()
    cancelled = await client.patch(order_path, json={"status": {"id": "C", "refName": "Cancelled"}}, headers=NETSUITE)
    after = await (await client.get(order_path, headers=NETSUITE)).json()
    rows = await (await client.post(netsuite.SUITEQL_PATH, headers={**NETSUITE, "Prefer": "transient"}, json={
        "q": "SELECT externalid, type, status, entity, foreigntotal FROM transaction WHERE type = 'SalesOrd'"})).json()
    missing_patch = await client.patch("/services/rest/record/v1/salesOrder/eid:006B",
                                       json={"status": {"id": "C", "refName": "Cancelled"}}, headers=NETSUITE)
    missing_body = await missing_patch.json(content_type=None)
    missing_get = await client.get("/services/rest/record/v1/salesOrder/eid:006B", headers=NETSUITE)
    unknown_item = await client.put("/services/rest/record/v1/salesOrder/eid:006C",
                                    json=_sales_order("001A", price="price_x"), headers=NETSUITE)
    unknown_customer = await client.put("/services/rest/record/v1/salesOrder/eid:006D",
                                        json=_sales_order("001Z"), headers=NETSUITE)
    await client.close()

    assert (put.status, again.status) == (204, 204) and put.headers["Location"].endswith(f"/salesorder/{order['id']}")
    assert order["externalId"] == "006A" and order["entity"] == {"id": customer["id"], "refName": "Acme"}
    assert order["status"] == order["orderStatus"] == {"id": "B", "refName": "Pending Fulfillment"}
    assert order["currency"] == netsuite.currency_ref("EUR") and order["total"] == 995.0
    assert order["item"]["items"] == [{"item": {"id": "502", "refName": "Pro", "externalId": "price_pro_monthly"},
                                       "quantity": 5, "amount": 995.0}]
    assert cancelled.status == 204
    assert after["status"] == after["orderStatus"] == {"id": "C", "refName": "Cancelled"}
    assert rows["items"] == [{"links": [], "externalid": "006A", "type": "SalesOrd", "status": "C",
                              "entity": customer["id"], "foreigntotal": "995"}]
    assert (missing_patch.status, missing_body["o:errorDetails"][0]["o:errorCode"]) == (404, "NONEXISTENT_ID")
    assert missing_get.status == 404
    assert (unknown_item.status, unknown_customer.status) == (400, 400)
    assert [o["externalId"] for o in world.all("netsuite", "salesOrder")] == ["006A"]
    effects = {e.key: (e.requests, e.applied) for e in world.effects.all()}
    assert effects["salesOrder:eid:006A"] == (2, 1) and effects[f"salesOrder:{order['id']}"] == (1, 1)
    # A sales order is a record like the others: each write is an event of the User Event script.
    assert [(c.type, c.op) for c in changes if c.type == "salesOrder"] == [("salesOrder", "create"),
                                                                          ("salesOrder", "update")]
    [ordered] = netsuite_codec.decode(msgspec.json.encode({
        "envelope": "concord.netsuite.v1", "recordType": "salesorder", "id": order["id"], "eventType": "create",
        "lastModifiedDate": order["lastModifiedDate"], "accountId": "1234567", "currencyCode": "EUR",
        "record": order}))
    assert (ordered.opportunity_id, ordered.total) == ("006A", 99_500)


async def test_a_refused_opportunity_s_sales_order_is_refused_every_time_with_user_error() -> None:
    world = World(clock=lambda: NOW)
    netsuite.upsert_customer(world, "001A", company_name="Acme", currency="EUR")
    netsuite.refuse_sales_orders(world, "006R", "Sales order approval failed: credit review required.")
    client = await _client(world)
    path = "/services/rest/record/v1/salesOrder/eid:006R"
    answers = [await client.put(path, json=_sales_order("001A"), headers=NETSUITE) for _ in range(3)]
    bodies = [await answer.json(content_type=None) for answer in answers]
    other = await client.put("/services/rest/record/v1/salesOrder/eid:006S", json=_sales_order("001A"),
                             headers=NETSUITE)
    await client.close()

    assert [answer.status for answer in answers] == [400, 400, 400] and other.status == 204
    for body in bodies:
        [detail] = body["o:errorDetails"]
        assert detail["o:errorCode"] == "USER_ERROR"
        assert detail["detail"] == ("Error while accessing a resource. Sales order approval failed: credit review "
                                    "required.")
    assert world.find("netsuite", "salesOrder", "externalId", "006R") is None
    with pytest.raises(ValueError, match="credit review"):
        netsuite.upsert_sales_order(world, "006R", customer_id=world.find("netsuite", "customer", "externalId",
                                                                          "001A")["id"], total=100)
    effects = {e.key: (e.requests, e.applied) for e in world.effects.all()}
    assert effects["salesOrder:eid:006R"] == (3, 0)
