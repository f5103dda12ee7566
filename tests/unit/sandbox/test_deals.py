"""Deals: the quote-to-cash lifecycles, their ground truth, and a saga run by the contract against the sandbox.

`Saga` below makes exactly the platform calls the saga contract (issue 17) names for each step,
through the sandbox's routes. Run on every deal variant, it must leave each deal as its ground truth
(`Deal.expected`) says, every system in agreement (Concord's pure rules find nothing), and no write
applied twice.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from concord.core.settings import load
from concord.sandbox import cli, deals, netsuite, salesforce, stripe, zendesk
from concord.sandbox.catalog import PLAN_TIERS, plan_of
from concord.sandbox.deals import Deal
from concord.sandbox.faults import Faults, PlatformCredentials
from concord.sandbox.server import SANDBOX, SandboxConfig, build_app
from concord.sandbox.traffic import DEAL_STEP_REAL, Traffic, TrafficConfig, build_scripts
from concord.sandbox.world import Change, Record, World
from tests.unit.sandbox.test_history_and_loss import parse
from tests.unit.sandbox.test_server import FakeEmitter
from tests.unit.sandbox.test_traffic import T0, PureConcord, SimClock, describe

CREDENTIALS = PlatformCredentials(stripe_api_key="sk_test_1", salesforce_access_token="sf", zendesk_api_email="a@b.c",
                                  zendesk_api_token="zd", netsuite_access_token="ns")
STRIPE = {"Authorization": "Bearer sk_test_1", "Content-Type": "application/x-www-form-urlencoded"}
SALESFORCE = {"Authorization": "Bearer sf"}
ZENDESK = {"Authorization": "Basic " + base64.b64encode(b"a@b.c/token:zd").decode()}
NETSUITE = {"Authorization": "Bearer ns"}
DEALS = TrafficConfig(seed=3, customers=8, drift_rate=0.0, deal_rate=1.0)


# --- validation -----------------------------------------------------------------------------------


def _valid() -> tuple[Record, Record]:
    world = World(clock=lambda: T0)
    account = salesforce.create_account(world, name="Acme GmbH", country="DE", currency="EUR", tax_id="DE123456789")
    opportunity = salesforce.create_opportunity(world, account["Id"], name="Acme - Pro", amount=99_500,
                                                currency="EUR", plan="price_pro_monthly", quantity=5)
    return account, opportunity


def test_a_complete_deal_passes_validation() -> None:
    assert deals.validate(*_valid()) == ""
    account, opportunity = _valid()
    # Outside the EU VAT area no tax id is needed (GB left it).
    assert deals.validate({**account, "BillingCountry": "GB", salesforce.TAX_ID_FIELD: None}, opportunity) == ""


def test_validation_reports_the_first_failing_check_in_the_contract_s_order() -> None:
    account, opportunity = _valid()
    broken_account = {**account, "Name": " ", "BillingCountry": None, "CurrencyIsoCode": None,
                      salesforce.TAX_ID_FIELD: None}
    broken_opportunity = {**opportunity, salesforce.PLAN_FIELD: None, "TotalOpportunityQuantity": 0.0,
                          "CurrencyIsoCode": "USD"}
    # Repair one field after the other: each repair reveals the next reason, in the contract's order.
    repairs = [("account", "Name", "Acme GmbH"), ("account", "BillingCountry", "FR"),
               ("account", "CurrencyIsoCode", "EUR"), ("account", salesforce.TAX_ID_FIELD, "FR12345678901"),
               ("opportunity", salesforce.PLAN_FIELD, "price_pro_monthly"),
               ("opportunity", "TotalOpportunityQuantity", 1.0), ("opportunity", "CurrencyIsoCode", "EUR")]
    reasons = []
    for record, field, value in repairs:
        reasons.append(deals.validate(broken_account, broken_opportunity))
        (broken_account if record == "account" else broken_opportunity)[field] = value
    assert tuple(reasons) == deals.REASONS
    assert deals.validate(broken_account, broken_opportunity) == ""
    assert deals.validate(account, {**opportunity, "TotalOpportunityQuantity": None}) == "missing_quantity"


# --- scripts --------------------------------------------------------------------------------------


def test_the_deal_share_rotates_over_the_variants_and_each_script_ends_with_its_variant_s_step() -> None:
    config = TrafficConfig(seed=3, customers=8, drift_rate=0.0, deal_rate=1.0, time_scale=3600)
    scripts = build_scripts(config)
    assert [s.deal for s in scripts] == list(deals.VARIANTS) * 2
    step = DEAL_STEP_REAL * config.time_scale
    shapes = {s.deal: [(x.kind, x.at - s.arrival) for x in s.steps] for s in scripts}
    assert shapes == {"provision": [("deal", 0.0)], "erp_refuses": [("deal", 0.0)],
                      "reopened": [("deal", 0.0), ("deal_reopen", 2 * step)],
                      "amended": [("deal", 0.0), ("deal_amend", 2 * step)]}
    for script in scripts:
        assert not script.rule and not any(x.inject for x in script.steps)  # a deal is not drift
        if script.deal == "amended":
            seats = script.steps[-1].value
            assert seats >= 1 and seats != script.quantity
    assert build_scripts(config) == scripts  # seeded


def test_about_the_deal_rate_share_of_healthy_customers_are_deals_and_none_without_it() -> None:
    scripts = build_scripts(TrafficConfig(seed=9, customers=400, drift_rate=0.05, deal_rate=0.2))
    healthy = [s for s in scripts if not s.rule]
    share = sum(1 for s in healthy if s.deal) / len(healthy)
    assert 0.15 <= share <= 0.25
    assert {s.deal for s in scripts if s.rule == "D10"} <= set(deals.D10_VARIANTS)
    assert not any(s.deal for s in scripts if s.rule and s.rule != "D10")
    assert not any(s.deal for s in build_scripts(TrafficConfig(seed=9, customers=400, deal_rate=0.0))
                   if not s.rule)


def test_a_deal_fixed_by_a_person_is_fixed_one_step_after_its_win_in_real_seconds() -> None:
    for scale in (3600.0, 1e6):
        config = TrafficConfig(seed=1, customers=2, drift_rate=1.0, rules=("D10",), time_scale=scale)
        fixed = next(s for s in build_scripts(config) if s.deal == "fixed")
        assert [(x.kind, (x.at - fixed.arrival) / scale) for x in fixed.steps] == [
            ("deal", 0.0), ("deal_fix", pytest.approx(DEAL_STEP_REAL))]


# --- the traffic's deals --------------------------------------------------------------------------


def test_a_deal_is_only_a_won_opportunity_on_an_account_and_enters_the_truth_when_its_script_ends() -> None:
    clock = SimClock()
    world = World(clock=clock)
    traffic = Traffic(world, DEALS, defer=lambda fn: None)
    refused_when_won: dict[str, bool] = {}

    def won(change: Change) -> None:
        if change.type == "Opportunity" and change.record["IsWon"] and "IsWon" in change.changed:
            refused_when_won[change.id] = world.refusal("netsuite", "salesOrder", change.id) is not None

    world.listen(won)
    last_step = {script.index: script.steps[-1] for script in traffic.scripts}
    for step in traffic.steps:
        clock.now = T0 + step.at
        listed = len(traffic.deals)
        traffic.run_step(step)
        assert len(traffic.deals) == listed + (step is last_step[step.customer])
    assert traffic.step_errors == 0
    for platform, type_ in (("stripe", "customer"), ("netsuite", "customer"), ("zendesk", "organization")):
        assert list(world.all(platform, type_)) == []
    sold = {traffic._live[s.index].account: s.quantity for s in traffic.scripts}
    for deal in traffic.deals:
        account = world.get("salesforce", "Account", deal.customer_key)
        opportunity = world.get("salesforce", "Opportunity", deal.opportunity_id)
        assert account is not None and opportunity is not None and opportunity["AccountId"] == deal.customer_key
        plan = plan_of(deal.plan)
        assert plan is not None and opportunity[salesforce.PLAN_FIELD] == deal.plan
        assert opportunity["TotalOpportunityQuantity"] == deal.quantity
        currency = account["CurrencyIsoCode"]
        assert salesforce.to_minor(opportunity["Amount"], currency) == plan.unit_amount * deal.quantity
        assert opportunity["CurrencyIsoCode"] == currency and deals.validate(account, opportunity) == ""
        assert opportunity["IsWon"] is (deal.variant != "reopened")
        # NetSuite refuses an erp_refuses deal's sales order from before the win on.
        assert refused_when_won[deal.opportunity_id] is (deal.variant == "erp_refuses")
        assert (deal.quantity != sold[deal.customer_key]) is (deal.variant == "amended")
    # Listed in the order their scripts ended: a reopened or amended deal two steps after its win.
    assert sorted((d.variant, d.expected, d.reason) for d in traffic.deals) == sorted(
        [("provision", "completed", ""), ("erp_refuses", "compensated", ""), ("reopened", "compensated", ""),
         ("amended", "completed", "")] * 2)
    assert traffic.status().deals == {"completed": 4, "paused": 0, "compensated": 4}


# --- the saga, by the contract, against the sandbox -----------------------------------------------


class Saga:
    """What the contract says Concord's saga sends, step by step (a test's stand-in for the engine)."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client
        self.keys = itertools.count(1)

    def _key(self, what: str) -> str:
        return f"cmd-{next(self.keys)}:{what}"

    async def _json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        response = await self.client.request(method, path, **kwargs)
        body = await response.read()
        return response.status, msgspec.json.decode(body) if body else None

    async def run(self, opportunity_id: str) -> str:
        """validate -> erp_customer -> billing_customer -> subscription -> sales_order -> entitlement."""
        root = "/services/data/v62.0/sobjects"
        _, opportunity = await self._json("GET", f"{root}/Opportunity/{opportunity_id}", headers=SALESFORCE)
        _, account = await self._json("GET", f"{root}/Account/{opportunity['AccountId']}", headers=SALESFORCE)
        if deals.validate(account, opportunity):
            return "paused"
        key, currency = account["Id"], account["CurrencyIsoCode"]
        status, _ = await self._json("PUT", f"/services/rest/record/v1/customer/eid:{key}", headers=NETSUITE, json={
            "companyName": account["Name"], "currency": {"refName": currency}, netsuite.CRM_LINK_FIELD: key})
        assert status == 204
        # The contract names address[country] and address[line1]; D09 compares the whole address as one line
        # (line1, city, postal code, country), so the saga must send the city and postal code too.
        status, customer = await self._json("POST", "/v1/customers", headers={**STRIPE, "Idempotency-Key": (
            billing_key := self._key("customer"))}, data={
            "name": account["Name"], "address[country]": account["BillingCountry"],
            "address[line1]": account["BillingStreet"] or "", "address[city]": account["BillingCity"] or "",
            "address[postal_code]": account["BillingPostalCode"] or "", "metadata[salesforce_account_id]": key})
        assert status == 200
        if account[salesforce.TAX_ID_FIELD]:
            status, _ = await self._json("POST", f"/v1/customers/{customer['id']}/tax_ids", headers={
                **STRIPE, "Idempotency-Key": f"{billing_key}:tax_id"}, data={"type": "eu_vat",
                                                                           "value": account[salesforce.TAX_ID_FIELD]})
            assert status == 200
        quantity = int(opportunity["TotalOpportunityQuantity"])
        # `currency` is not in the contract's create_subscription: without it Stripe bills the price's default
        # currency (test_platform_apis), so a EUR deal would be billed in USD.
        status, subscription = await self._json("POST", "/v1/subscriptions", headers={
            **STRIPE, "Idempotency-Key": self._key("subscription")}, data={
            "customer": customer["id"], "items[0][price]": opportunity[salesforce.PLAN_FIELD],
            "items[0][quantity]": str(quantity), "metadata[salesforce_opportunity_id]": opportunity_id,
            "currency": currency.lower()})
        assert status == 200
        amount = opportunity["Amount"]
        status, refused = await self._json("PUT", f"/services/rest/record/v1/salesOrder/eid:{opportunity_id}",
                                           headers=NETSUITE, json={
            "entity": {"externalId": key}, "currency": {"refName": currency},
            "orderStatus": {"id": "B", "refName": "Pending Fulfillment"}, "total": amount,
            "item": {"items": [{"item": {"externalId": opportunity[salesforce.PLAN_FIELD]}, "quantity": quantity,
                                "amount": amount}]}})
        if status != 204:
            assert status == 400 and refused["o:errorDetails"][0]["o:errorCode"] == "USER_ERROR"
            await self.cancel_subscription(subscription["id"])
            return "compensated"
        status, _ = await self._json("POST", "/api/v2/organizations/create_or_update.json", headers={
            **ZENDESK, "Idempotency-Key": self._key("create")}, json={"organization": {
                "name": account["Name"], "external_id": key, "organization_fields": {
                    "support_status": "active", "support_tier": PLAN_TIERS[opportunity[salesforce.PLAN_FIELD]]}}})
        assert status in (200, 201)
        return "completed"

    async def cancel_subscription(self, subscription_id: str) -> None:
        status, body = await self._json("DELETE", f"/v1/subscriptions/{subscription_id}",
                                        headers={**STRIPE, "Idempotency-Key": self._key("cancel")})
        assert status == 200 or (status == 404 and body["error"]["code"] == "resource_missing")

    async def compensate(self, opportunity_id: str, subscription_id: str, organization_id: str) -> None:
        """Reverse of what was done: cancel subscription, cancel sales order, suspend entitlement."""
        await self.cancel_subscription(subscription_id)
        await self.cancel_subscription(subscription_id)  # a compensation is idempotent: 404 counts as done
        status, _ = await self._json("PATCH", f"/services/rest/record/v1/salesOrder/eid:{opportunity_id}",
                                     headers=NETSUITE, json={"status": {"id": "C", "refName": "Cancelled"}})
        assert status in (204, 404)
        status, _ = await self._json("PUT", f"/api/v2/organizations/{organization_id}.json", headers={
            **ZENDESK, "Idempotency-Key": self._key("suspend")}, json={"organization": {
                "organization_fields": {"support_status": "suspended"}}})
        assert status == 200

    async def amend(self, opportunity_id: str, subscription_id: str, organization_id: str) -> None:
        """The still-won deal changed: update the subscription (through its item), then the tier."""
        _, opportunity = await self._json("GET", f"/services/data/v62.0/sobjects/Opportunity/{opportunity_id}",
                                          headers=SALESFORCE)
        _, subscription = await self._json("GET", f"/v1/subscriptions/{subscription_id}", headers=STRIPE)
        plan = opportunity[salesforce.PLAN_FIELD]
        status, _ = await self._json("POST", f"/v1/subscriptions/{subscription_id}", headers={
            **STRIPE, "Idempotency-Key": self._key("amend")}, data={
            "items[0][id]": subscription["items"]["data"][0]["id"], "items[0][price]": plan,
            "items[0][quantity]": str(int(opportunity["TotalOpportunityQuantity"]))})
        assert status == 200
        status, _ = await self._json("PUT", f"/api/v2/organizations/{organization_id}.json", headers={
            **ZENDESK, "Idempotency-Key": self._key("tier")}, json={"organization": {
                "organization_fields": {"support_tier": PLAN_TIERS[plan]}}})
        assert status == 200


def _outcome(world: World, deal: Deal) -> str:
    """What the platforms show of a deal, as a scorer would read it."""
    subscriptions = [s for s in world.all("stripe", "subscription")
                     if s["metadata"].get("salesforce_opportunity_id") == deal.opportunity_id]
    order = world.find("netsuite", "salesOrder", "externalId", deal.opportunity_id)
    organization = world.find("zendesk", "organization", "external_id", deal.customer_key)
    entitled = organization is not None and organization["organization_fields"].get("support_status") == "active"
    if not subscriptions:
        return "paused"
    (subscription,) = subscriptions
    item = subscription["items"]["data"][0]
    if (subscription["status"] == "active" and (item["price"]["id"], item["quantity"]) == (deal.plan, deal.quantity)
            and order is not None and order["status"]["id"] == "B" and entitled):
        return "completed"
    if subscription["status"] == "canceled" and (order is None or order["status"]["id"] == "C") and not entitled:
        return "compensated"
    return "inconsistent"


async def test_a_saga_run_by_the_contract_leaves_every_deal_as_its_ground_truth_says() -> None:
    clock = SimClock()
    world = World(clock=clock)
    concord = PureConcord(world)
    # Broken customers are D10 deals, the others deals of the deal_rate share: every variant is played.
    traffic = Traffic(world, TrafficConfig(seed=2, customers=12, drift_rate=0.05, deal_rate=1.0, rules=("D10",)),
                      defer=lambda fn: None)
    app = web.Application()
    for module in (stripe, salesforce, zendesk, netsuite):
        app.add_routes(module.routes(world, Faults(), CREDENTIALS))
    client = TestClient(TestServer(app))
    await client.start_server()
    saga = Saga(client)
    provisioned: dict[str, tuple[str, str]] = {}  # opportunity -> (its subscription, its organization)
    try:
        for step in traffic.steps:
            clock.now = T0 + step.at
            traffic.run_step(step)
            live = traffic._live[step.customer]
            if step.kind == "deal":
                await saga.run(live.opportunity)
            elif step.kind == "deal_fix":
                await saga.run(live.opportunity)  # what D10's saga.resume does once the account is fixed
            elif step.kind == "deal_reopen":
                await saga.compensate(live.opportunity, *provisioned[live.opportunity])
            elif step.kind == "deal_amend":
                await saga.amend(live.opportunity, *provisioned[live.opportunity])
            subscriptions = [s["id"] for s in world.all("stripe", "subscription")
                             if s["metadata"].get("salesforce_opportunity_id") == live.opportunity]
            organization = world.find("zendesk", "organization", "external_id", live.account)
            if subscriptions and organization:
                provisioned[live.opportunity] = (subscriptions[0], str(organization["id"]))
    finally:
        await client.close()
    assert traffic.step_errors == 0
    truth = traffic.deals
    assert {d.variant for d in truth} == {*deals.VARIANTS, *deals.D10_VARIANTS}
    assert [(d.variant, _outcome(world, d)) for d in truth] == [(d.variant, d.expected) for d in truth]
    assert all(d.reason for d in truth if d.expected == "paused")
    concord.flush()
    # What the engine's state would say of each saga (the stand-in above ran them): D08 and D10 read it.
    for deal in truth:
        state = concord.states[deal.customer_key]
        concord.states[deal.customer_key] = msgspec.structs.replace(state, sagas={deal.opportunity_id: deal.expected})
    # An address completed by one component (a fixed deal's billing country) is read whole (test below).
    found = concord.findings(int(clock.now * 1000))
    # What is left is exactly the paused deals' drift: their D10 (the escalation is the engine's).
    paused = {d.customer_key for d in truth if d.expected == "paused"}
    expected = {i.fingerprint for i in traffic.injections if i.rule == "D10" and i.customer_key in paused}
    assert describe([f for f in found if f.fingerprint not in expected]) == []
    assert {f.fingerprint for f in found} == expected and expected
    assert world.effects.duplicates() == []


def test_concord_reads_an_address_completed_by_one_component() -> None:
    world = World(clock=lambda: T0)
    concord = PureConcord(world)
    account = salesforce.create_account(world, name="Acme Inc.", street="1 Main St", city="Portland",
                                        postal_code="97201", currency="USD")
    salesforce.update_account(world, account["Id"], {"BillingCountry": "US"})
    concord.flush()
    state = concord.states[account["Id"]]
    assert state.crm.account is not None and state.crm.account.address == "1 Main St, Portland, 97201, US"


# --- the control API and the command line ---------------------------------------------------------


async def test_the_control_api_lists_the_deals_and_counts_them_per_outcome() -> None:
    config = SandboxConfig(traffic=TrafficConfig(seed=3, customers=6, drift_rate=0.0, deal_rate=1.0),
                           run_traffic=False, credentials=PlatformCredentials(stripe_api_key="sk_test_x"))
    client = TestClient(TestServer(build_app(config, emitter=FakeEmitter)))
    await client.start_server()
    try:
        sandbox = client.app[SANDBOX]
        empty = await (await client.get("/_sandbox/deals")).json()
        # Every step at once (a deal's later steps are seconds of real time apart when the runner plays them).
        for step in sandbox.traffic.steps:
            sandbox.traffic.run_step(step)
        listed = await (await client.get("/_sandbox/deals")).json()
        status = await (await client.get("/_sandbox/status")).json()
    finally:
        await client.close()
    assert empty == {"deals": []}
    assert set(listed) == {"deals"} and len(listed["deals"]) == 6
    assert listed["deals"] == msgspec.to_builtins(sandbox.traffic.deals)
    assert list(listed["deals"][0]) == ["opportunity_id", "customer_key", "variant", "expected", "reason", "plan",
                                        "quantity"]
    # The rotation's first six: provision, erp_refuses, reopened, amended, provision, erp_refuses.
    assert [d["variant"] for d in listed["deals"] if d["variant"] in ("provision", "erp_refuses")] == [
        "provision", "erp_refuses", "provision", "erp_refuses"]
    assert status["deals"] == {"completed": 3, "paused": 0, "compensated": 3}


def test_deal_rate_reaches_the_configuration_with_its_default() -> None:
    assert cli.config_from_args(parse("--deal-rate", "0.5"), load({})).traffic.deal_rate == 0.5
    assert cli.config_from_args(parse(), load({})).traffic.deal_rate == 0.2
    assert cli.config_from_args(parse("--deal-rate", "0"), load({})).traffic.deal_rate == 0.0


@pytest.mark.parametrize("rate", ["-0.1", "1.5"])
def test_a_deal_rate_out_of_range_is_refused_with_a_reason(rate: str) -> None:
    with pytest.raises(ValueError, match=f"--deal-rate is the share of customers that are deals, between 0 and 1, "
                                         f"got {rate}"):
        cli.config_from_args(parse("--deal-rate", rate), load({}))
