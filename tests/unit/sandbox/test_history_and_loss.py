"""The backstop's test material: events lost on purpose (`--lose-rate`) and customers at rest (`--history`).

Lost events: the emitter drops the `lose_rate` share of every platform's events, exactly those listed
as ground truth, delivers the rest once, and the world keeps the changes. History: customers laid
down before the traffic, dated in the past, of which Concord never hears; their drift really holds in
the records, and a Concord that reads every record finds exactly it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from concord.app.cli import build_parser
from concord.core.settings import load
from concord.sandbox import cli, injection, netsuite, salesforce, stripe, zendesk
from concord.sandbox.emit import Emitter
from concord.sandbox.events import Delivery, EventConfig, NativeEvents
from concord.sandbox.faults import PLATFORMS, Faults, FaultSettings, PlatformCredentials
from concord.sandbox.injection import Injection
from concord.sandbox.lost import LostEvent
from concord.sandbox.server import SANDBOX, SandboxConfig, build_app
from concord.sandbox.traffic import (
    HISTORY_FIRST_INDEX,
    PLAN_TIERS,
    Traffic,
    TrafficConfig,
    build_history,
    build_scripts,
)
from concord.sandbox.world import Change, Record, World
from concord.sandbox.zendesk import EntitlementKeys
from tests.unit.sandbox.test_traffic import T0, PureConcord, SimClock, describe

REPO = Path(__file__).resolve().parents[3]
TOPIC = "concord.raw.salesforce"
RUN = "h"
_json = msgspec.json.Decoder()


# --- stand-ins for Concord's ingress and Kafka -------------------------------------------------------


class Inbox:
    """Concord's side of the deliveries: every webhook accepted (200), every Kafka record taken."""

    def __init__(self) -> None:
        self.ids: list[tuple[str, str]] = []  # (platform, event id), in arrival order
        self.app = web.Application()
        self.app.router.add_post("/webhooks/{platform}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        platform = request.match_info["platform"]
        payload = _json.decode(await request.read())
        if platform == "netsuite":
            modified = datetime.fromisoformat(payload["lastModifiedDate"].replace("Z", "+00:00"))
            event_id = f"{payload['recordType']}:{payload['id']}:{round(modified.timestamp() * 1000)}"
        else:
            event_id = str(payload["id"])
        self.ids.append((platform, event_id))
        return web.json_response({"status": "accepted"})

    def producer(self) -> Inbox.Producer:
        return Inbox.Producer(self)

    class Producer:
        def __init__(self, inbox: Inbox) -> None:
            self.inbox = inbox

        async def start(self) -> None:
            return None

        async def stop(self) -> None:
            return None

        async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
            assert value is not None
            header = _json.decode(value)["data"]["payload"]["ChangeEventHeader"]
            self.inbox.ids.append(("salesforce", f"{header['transactionKey']}:{header['sequenceNumber']}"))


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[Inbox, str]]:
    fake = Inbox()
    server = TestServer(fake.app)
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


def ticking() -> Callable[[], float]:
    """A clock one second further at every reading: the same writes get the same times in every run."""
    ticks = itertools.count()
    return lambda: T0 + next(ticks)


def make_emitter(world: World, url: str, inbox: Inbox, faults: Faults | None) -> Emitter:
    return Emitter(world, concord_url=url, stripe_secret="whsec_x", zendesk_secret="z", netsuite_secret="n",
                   kafka_bootstrap="unused:9092", salesforce_topic=TOPIC, producer_factory=inbox.producer,
                   retry_base=0.01, retry_max=0.05, run=RUN, lose=faults.lose if faults else None)


class Built:
    """Every event the world's changes make, built by a NativeEvents of the emitter's configuration."""

    def __init__(self, world: World) -> None:
        self.native = NativeEvents(EventConfig(salesforce_topic=TOPIC, run=RUN))
        self.deliveries: list[Delivery] = []
        world.listen(lambda change: self.deliveries.extend(self.native.build(change)))

    def ids(self) -> list[tuple[str, str]]:
        return [(d.platform, d.event_id) for d in self.deliveries]


def churn(world: World, rounds: int = 60) -> dict[str, str]:
    """A few hundred changes on all four platforms; returns the last name given to each Stripe customer."""
    names: dict[str, str] = {}
    for n in range(rounds):
        account = salesforce.create_account(world, name=f"Acme {n}", country="DE", currency="EUR")
        customer = stripe.create_customer(world, name=f"Acme {n}", salesforce_account_id=account["Id"])
        org = zendesk.create_organization(world, name=f"Acme {n}", external_id=account["Id"])
        netsuite.upsert_customer(world, account["Id"], company_name=f"Acme {n}")
        for version in (2, 3):
            name = f"Acme {n} v{version}"
            salesforce.update_account(world, account["Id"], {"Name": name})
            stripe.update_customer(world, customer["id"], {"name": name})
            zendesk.update_organization(world, org["id"], name=name)
            names[customer["id"]] = name
    return names


async def lose_at(rate: float, seed: int, url: str, inbox: Inbox) -> tuple[World, Emitter, Built, dict[str, str]]:
    world = World(clock=ticking())
    built = Built(world)
    emitter = make_emitter(world, url, inbox, Faults(FaultSettings.losing(rate), seed=seed))
    await emitter.start()
    names = churn(world)
    assert await emitter.drain(10)
    await emitter.stop()
    return world, emitter, built, names


# --- lost events --------------------------------------------------------------------------------------


async def test_the_lose_rate_drops_that_share_exactly_as_listed_and_delivers_the_rest_once(
        inbox: tuple[Inbox, str]) -> None:
    fake, url = inbox
    world, emitter, built, names = await lose_at(0.3, 7, url, fake)
    lost = emitter.lost()
    made = built.ids()
    assert len(made) >= 400 and {platform for platform, _ in made} == set(PLATFORMS)
    assert 0.24 <= len(lost) / len(made) <= 0.36, (len(lost), len(made))
    lost_ids = [(event.platform, event.event_id) for event in lost]
    # Delivered: every event made but the lost ones, each once; nothing lost arrives, not even later.
    assert sorted(fake.ids) == sorted(set(made) - set(lost_ids)) and len(set(fake.ids)) == len(fake.ids)
    assert not set(lost_ids) & set(fake.ids)
    stats = emitter.stats().platforms
    assert sum(s.lost for s in stats.values()) == len(lost)
    assert all(s.queued == s.delivered and s.failed == 0 for s in stats.values())
    for platform in PLATFORMS:
        assert stats[platform].lost == sum(1 for event in lost if event.platform == platform) > 0
    # The ground truth says what each event was about, as the built events did.
    by_id = {(d.platform, d.event_id): d for d in built.deliveries}
    for event in lost:
        assert event.event_type == by_id[(event.platform, event.event_id)].event_type != ""
        assert event.customer_key is not None and event.customer_key.startswith("001")
        # The world still holds the change: the record is there, whatever the event's fate.
        assert world.get(event.platform, event.record_type, event.record_id) is not None
    assert {customer_id: (world.get("stripe", "customer", customer_id) or {}).get("name")
            for customer_id in names} == names


async def test_the_same_seed_loses_the_same_events_and_no_rate_loses_none(inbox: tuple[Inbox, str]) -> None:
    fake, url = inbox
    first = (await lose_at(0.3, 7, url, fake))[1].lost()
    second = (await lose_at(0.3, 7, url, fake))[1].lost()
    other = (await lose_at(0.3, 8, url, fake))[1].lost()
    assert first == second and first != other
    more = (await lose_at(0.6, 7, url, fake))[1].lost()
    assert set(first) < set(more)  # a higher rate loses those and more
    fake.ids.clear()
    _, emitter, built, _ = await lose_at(0.0, 7, url, fake)
    assert emitter.lost() == [] and sorted(fake.ids) == sorted(built.ids())


async def test_a_lost_event_names_the_customer_of_records_that_name_it_through_others(
        inbox: tuple[Inbox, str]) -> None:
    fake, url = inbox
    world = World()
    emitter = make_emitter(world, url, fake, Faults(FaultSettings.losing(1.0)))
    await emitter.start()
    customer = stripe.create_customer(world, name="Acme", salesforce_account_id="001ACME")
    sub = stripe.create_subscription(world, customer["id"], price_id="price_basic_monthly", unit_amount=4900,
                                     currency="EUR", quantity=2)
    invoice = stripe.create_invoice(world, customer["id"], subscription_id=sub["id"])
    _, charge = stripe.pay_invoice(world, invoice["id"])
    stripe.refund_charge(world, charge["id"])
    org = zendesk.create_organization(world, name="Acme", external_id="001ACME")
    zendesk.create_ticket(world, organization_id=org["id"], subject="Help", status="open")
    erp = netsuite.upsert_customer(world, "001ACME", company_name="Acme")
    netsuite.upsert_invoice(world, invoice["id"], customer_id=erp["id"], number="INV-1", total=9800, tax=0,
                            currency="EUR")
    assert await emitter.drain(5)
    await emitter.stop()
    assert fake.ids == []
    assert {event.customer_key for event in emitter.lost()} == {"001ACME"}
    assert {(e.platform, e.record_type) for e in emitter.lost()} >= {
        ("stripe", "subscription"), ("stripe", "invoice"), ("stripe", "charge"), ("stripe", "refund"),
        ("zendesk", "ticket"), ("netsuite", "invoice")}


# --- the service: /_sandbox/lost, the fault at runtime, /_sandbox/status ------------------------------


def sandbox_config(traffic: TrafficConfig, lose_rate: float = 0.0, run_traffic: bool = True) -> SandboxConfig:
    return SandboxConfig(traffic=traffic, run_traffic=run_traffic, lose_rate=lose_rate,
                         credentials=PlatformCredentials(stripe_api_key="sk_test_x"))


async def serve(config: SandboxConfig, url: str, fake: Inbox) -> TestClient[web.Request, web.Application]:
    def emitter(_: SandboxConfig, world: World, faults: Faults) -> Emitter:
        return make_emitter(world, url, fake, faults)

    client: TestClient[web.Request, web.Application] = TestClient(TestServer(build_app(config, emitter=emitter)))
    await client.start_server()
    return client


async def test_the_service_lists_lost_events_counts_them_and_takes_the_rate_per_platform(
        inbox: tuple[Inbox, str]) -> None:
    fake, url = inbox
    traffic = TrafficConfig(seed=3, customers=12, drift_rate=0.0, deal_rate=0.0, time_scale=1e9)
    client = await serve(sandbox_config(traffic, lose_rate=0.3), url, fake)
    try:
        sandbox = client.app[SANDBOX]
        faults = await (await client.get("/_sandbox/faults")).json()
        assert {faults[platform]["lose_rate"] for platform in PLATFORMS} == {0.3}
        await asyncio.wait_for(sandbox.runner.done.wait(), 10)
        assert await sandbox.emitter.drain(10)
        lost = msgspec.json.decode(await (await client.get("/_sandbox/lost")).read(), type=list[LostEvent])
        assert lost == sandbox.emitter.lost() and lost
        status = await (await client.get("/_sandbox/status")).json()
        assert status["lost"] == len(lost) and status["history"] == 0
        only = await (await client.get("/_sandbox/lost?platform=zendesk")).json()
        assert only and {event["platform"] for event in only} == {"zendesk"}
        bad = await client.get("/_sandbox/lost?platform=hubspot")
        assert bad.status == 400 and "hubspot" in (await bad.json())["error"]
        # At runtime, per platform: Stripe loses everything from now on, NetSuite nothing.
        changed = await client.post("/_sandbox/faults", json={"stripe": {"lose_rate": 1.0},
                                                              "netsuite": {"lose_rate": 0.0}})
        assert changed.status == 200
        before = len(sandbox.emitter.lost())
        stripe.update_customer(sandbox.world, "cus_000005", {"name": "Renamed"})
        netsuite.upsert_customer(sandbox.world, "001X", company_name="New")
        assert [(e.platform, e.record_id) for e in sandbox.emitter.lost()[before:]] == [("stripe", "cus_000005")]
    finally:
        await client.close()


# --- history --------------------------------------------------------------------------------------------


HISTORY = TrafficConfig(seed=11, customers=10, drift_rate=0.3, history=60, time_scale=1e9)


def laid_down(config: TrafficConfig) -> tuple[World, Traffic, list[Change]]:
    """A world with the history of `config` laid down (and a listener that heard every change)."""
    world = World(clock=lambda: T0)
    heard: list[Change] = []
    world.listen(heard.append)
    traffic = Traffic(world, config, defer=lambda fn: None)
    traffic.play_history()
    return world, traffic, heard


def accounts_of(world: World, key: str) -> dict[str, list[Record]]:
    """Each platform's records of one customer, found the way the company's integrations link them."""
    customers = [c for c in world.all("stripe", "customer") if c["metadata"].get("salesforce_account_id") == key]
    ids = {c["id"] for c in customers}
    orgs = [o for o in world.all("zendesk", "organization") if o["external_id"] == key]
    return {
        "account": [a for a in world.all("salesforce", "Account") if a["Id"] == key],
        "opportunities": [o for o in world.all("salesforce", "Opportunity") if o["AccountId"] == key],
        "customers": customers,
        "subscriptions": [s for s in world.all("stripe", "subscription") if s["customer"] in ids],
        "invoices": [i for i in world.all("stripe", "invoice") if i["customer"] in ids],
        "organizations": orgs,
        "tickets": [t for t in world.all("zendesk", "ticket") if t["organization_id"] in {o["id"] for o in orgs}],
        "erp": [c for c in world.all("netsuite", "customer") if c["externalId"] == key],
    }


def test_history_customers_are_in_all_four_platforms_before_any_traffic_and_nothing_was_heard() -> None:
    world, traffic, heard = laid_down(HISTORY)
    assert heard == []  # no listener, the emitter included, heard of a single history write
    assert traffic.steps_done == 0 and traffic.status().history == 60 and traffic.status().arrived == 0
    assert traffic.play_history() == 0  # once only
    keys = [account["Id"] for account in world.all("salesforce", "Account")]  # the history's only
    assert len(set(keys)) == 60
    missing_erp = {i.customer_key for i in traffic.injections if i.rule == "D08"}
    # A D10 at rest is a deal its saga could not provision: only the CRM holds it (no D08: the ERP customer
    # is the saga's step).
    unprovisioned = {i.customer_key for i in traffic.injections if i.rule == "D10"}
    assert unprovisioned and not unprovisioned & missing_erp
    assert all(accounts_of(world, key)["erp"] == [] for key in unprovisioned)
    now = int(T0)
    for key in keys:
        records = accounts_of(world, key)
        assert len(records["account"]) == 1 and records["opportunities"], key
        if key in unprovisioned:
            assert records["customers"] == records["organizations"] == records["erp"] == [], key
            continue
        assert records["customers"] and records["organizations"], key
        assert bool(records["erp"]) is (key not in missing_erp), key
        assert records["subscriptions"], key
        # Dated in the past: created before the traffic, at least a day before.
        assert all(c["created"] < now - 86_400 for c in records["customers"] + records["invoices"]), key
    assert len(list(world.all("stripe", "invoice"))) > 60 and len(list(world.all("stripe", "charge"))) > 30
    assert list(world.all("zendesk", "ticket")) and list(world.all("netsuite", "invoice"))


async def test_the_service_sends_nothing_of_the_history(inbox: tuple[Inbox, str]) -> None:
    fake, url = inbox
    client = await serve(sandbox_config(msgspec.structs.replace(HISTORY, customers=0), run_traffic=False), url, fake)
    try:
        sandbox = client.app[SANDBOX]
        assert await sandbox.emitter.drain(5)
        status = await (await client.get("/_sandbox/status")).json()
        assert status["history"] == 60 and status["injected_at_rest"] == status["injected"] > 0
        assert all(lane["queued"] == 0 for lane in status["emitter"]["platforms"].values())
        injected = await (await client.get("/_sandbox/injected")).json()
        assert injected and all(i["at_rest"] is True for i in injected)
    finally:
        await client.close()
    assert fake.ids == []


async def test_an_emitter_already_listening_hears_nothing_of_the_history(inbox: tuple[Inbox, str]) -> None:
    fake, url = inbox
    world = World()
    emitter = make_emitter(world, url, fake, None)
    await emitter.start()
    Traffic(world, msgspec.structs.replace(HISTORY, history=10), defer=lambda fn: None).play_history()
    assert await emitter.drain(5)
    await emitter.stop()
    assert fake.ids == [] and all(s.queued == 0 for s in emitter.stats().platforms.values())


def holds(world: World, truth: Injection) -> None:
    """Assert that the drift `truth` describes really is in the records."""
    records = accounts_of(world, truth.customer_key)
    keys = EntitlementKeys()
    # A deal (D10) has no organization: only the CRM holds it.
    fields = records["organizations"][0]["organization_fields"] if records["organizations"] else {}
    sub = records["subscriptions"][-1] if records["subscriptions"] else None
    item = sub["items"]["data"][0] if sub else None
    parts = truth.subject.split("|")
    rule = truth.rule
    if rule == "D01":
        assert sub and sub["status"] == "canceled" and fields.get(keys.status) == "active"
    elif rule == "D02":
        assert sub and sub["status"] == "active" and fields.get(keys.status) != "active"
    elif rule == "D03":
        assert item and fields.get(keys.tier) != PLAN_TIERS[item["price"]["id"]]
    elif rule == "D04":
        assert world.get("stripe", "invoice", parts[0]) is not None
        assert world.find("netsuite", "invoice", "externalId", parts[0]) is None
    elif rule == "D05":
        billed, booked = world.get("stripe", "invoice", parts[0]), world.get("netsuite", "invoice", parts[1])
        assert billed and booked and round(booked["total"] * 100) != billed["total"]
    elif rule == "D06":
        billed, booked = world.get("stripe", "invoice", parts[0]), world.get("netsuite", "invoice", parts[1])
        assert billed and booked and billed["status"] == "paid" and booked["amountRemaining"] > 0
    elif rule == "D07":
        assert world.get("stripe", "refund", parts[0]) is not None
        assert world.find("netsuite", "creditMemo", "externalId", parts[0]) is None
    elif rule == "D08":
        assert records["erp"] == []
    elif rule == "D09":
        (erp,) = records["erp"]
        assert erp["companyName"] != records["account"][0]["Name"]
    elif rule == "D10":
        assert records["subscriptions"] == [] and any(o["IsWon"] for o in records["opportunities"])
    elif rule == "D11":
        (opportunity,) = [o for o in records["opportunities"] if o["Id"] == parts[0]]
        assert item and round(opportunity["Amount"] * 100) != item["price"]["unit_amount"] * item["quantity"]
    elif rule == "D12":
        assert len(records["customers"]) == 2
    elif rule == "D14":
        assert truth.after and parts == [truth.after, "escalated"]
    elif rule == "D15":
        (ticket,) = [t for t in records["tickets"] if str(t["id"]) == parts[0]]
        assert ticket["status"] == "open" and sub and sub["status"] == "canceled"
        assert fields.get(keys.status) == "inactive"
    else:
        raise AssertionError(f"{rule} is not a rule injected at rest")


def test_history_drift_is_at_rest_and_really_holds_in_the_records() -> None:
    world, traffic, _ = laid_down(msgspec.structs.replace(HISTORY, drift_rate=1.0, history=30))
    found = traffic.injections
    assert {i.rule for i in found} == set(injection.AT_REST_RULES) | {"D14"}  # D14: a D10's escalation
    assert all(i.at_rest and i.injected_at < T0 * 1000 for i in found)
    for truth in found:
        holds(world, truth)


def test_about_the_drift_rate_share_of_history_customers_is_broken_by_rules_that_hold_at_rest() -> None:
    scripts = build_history(msgspec.structs.replace(HISTORY, history=400, drift_rate=0.2))
    broken = [s for s in scripts if s.rule]
    assert 0.14 <= len(broken) / 400 <= 0.26
    assert {s.rule for s in broken} <= set(injection.AT_REST_RULES)
    assert all(step.at < 0 for s in scripts for step in s.steps)  # all before the traffic starts
    only = build_history(msgspec.structs.replace(HISTORY, rules=("D13", "D14"), drift_rate=1.0))
    assert not any(s.rule for s in only)  # no rule holds at rest: every history customer is healthy
    _, traffic, _ = laid_down(msgspec.structs.replace(HISTORY, drift_rate=0.0))
    assert traffic.injections == []


def test_concord_reading_every_record_finds_exactly_the_drift_at_rest() -> None:
    """What a reconciliation would see: every record as it is, and Concord's rules on it."""
    world, traffic, _ = laid_down(msgspec.structs.replace(HISTORY, drift_rate=1.0, history=30))
    clock = SimClock()
    concord = PureConcord(World(clock=clock))
    order = (("salesforce", "Account"), ("salesforce", "Opportunity"), ("stripe", "customer"),
             ("stripe", "subscription"), ("stripe", "invoice"), ("stripe", "charge"), ("stripe", "refund"),
             ("zendesk", "organization"), ("zendesk", "ticket"), ("netsuite", "customer"), ("netsuite", "invoice"),
             ("netsuite", "customerPayment"), ("netsuite", "creditMemo"))
    for platform, type_ in order:
        for record in world.all(platform, type_):
            record_id = str(record.get("Id") or record.get("id"))
            # A charge as the event of its outcome says it (Stripe has no event "a charge exists"); its
            # refunds are read as refunds.
            event = f"charge.{record['status']}" if type_ == "charge" else ""
            read = Change(platform=platform, type=type_, id=record_id, op="create", record=record,
                          changed=tuple(record), event=event, at=int(T0 * 1000))
            concord.queue.extend(concord.native.build(read))
    concord.world = world  # Zendesk re-reads go to the platform
    concord.flush()
    found = {f.fingerprint: f for f in concord.findings(int(T0 * 1000))}
    expected = {i.fingerprint: i for i in traffic.injections if not i.after}
    assert describe([f for fp, f in found.items() if fp not in expected]) == []
    assert [f"{i.rule} {i.subject}" for fp, i in expected.items() if fp not in found] == []


def test_the_same_seed_lays_down_the_same_history_apart_from_the_traffic() -> None:
    first, second = laid_down(HISTORY), laid_down(HISTORY)
    assert first[1].injections == second[1].injections and first[1].injections
    for platform, type_ in (("salesforce", "Account"), ("stripe", "invoice"), ("zendesk", "organization"),
                            ("netsuite", "invoice")):
        assert list(first[0].all(platform, type_)) == list(second[0].all(platform, type_))
    assert laid_down(msgspec.structs.replace(HISTORY, seed=12))[1].injections != first[1].injections
    # The traffic's scripts are the same with and without history, and no index or name is shared.
    traffic = first[1]
    assert traffic.scripts == build_scripts(msgspec.structs.replace(HISTORY, history=0))
    assert all(s.index >= HISTORY_FIRST_INDEX for s in traffic.history)
    assert all(s.index < HISTORY_FIRST_INDEX for s in traffic.scripts)
    names = [s.profile.name for s in (*traffic.scripts, *traffic.history)]
    assert len(set(names)) == len(names)


def test_history_and_traffic_records_never_share_an_id() -> None:
    clock = SimClock()
    world = World(clock=clock)
    traffic = Traffic(world, HISTORY, defer=lambda fn: None)
    traffic.play_history()
    history_ids = {(p, t, str(r.get("Id") or r.get("id"))) for p, t in (("salesforce", "Account"),
                   ("stripe", "customer"), ("zendesk", "organization"), ("netsuite", "customer"))
                   for r in world.all(p, t)}
    for step in traffic.steps:
        clock.now = T0 + step.at
        traffic.run_step(step)
    assert traffic.status().arrived == 10 and traffic.step_errors == 0
    after = {(p, t, str(r.get("Id") or r.get("id"))) for p, t in (("salesforce", "Account"),
             ("stripe", "customer"), ("zendesk", "organization"), ("netsuite", "customer"))
             for r in world.all(p, t)}
    assert history_ids < after  # the traffic added records of its own and changed none of the history's ids


# --- the command line and the demo's plumbing --------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sandbox", *argv])


def test_help_documents_both_options_with_their_defaults() -> None:
    parser = argparse.ArgumentParser(prog="concord sandbox")
    cli.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "--history N" in text and "--lose-rate R" in text
    # The last mention of each is its help (the first, the usage line).
    history = text.rsplit("--history N", 1)[1].split("--lose-rate R", 1)[0]
    lose = text.rsplit("--lose-rate R", 1)[1].split("--concord-url", 1)[0]
    assert "(default: 0)" in history and "(default: 0.0)" in lose


def test_both_options_reach_the_configuration() -> None:
    made = cli.config_from_args(parse("--history", "200", "--lose-rate", "0.05"), load({}))
    assert made.traffic.history == 200 and made.lose_rate == 0.05
    default = cli.config_from_args(parse(), load({}))
    assert default.traffic.history == 0 and default.lose_rate == 0.0


@pytest.mark.parametrize(("argv", "message"), [
    (("--history", "-1"), "--history is a number of customers, 0 or more, got -1"),
    (("--lose-rate", "-0.1"), "--lose-rate is the share of events lost, between 0 and 1, got -0.1"),
    (("--lose-rate", "1.5"), "--lose-rate is the share of events lost, between 0 and 1, got 1.5"),
])
def test_bad_values_are_refused_with_a_reason(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cli.config_from_args(parse(*argv), load({}))


def test_make_demo_and_concord_demo_pass_both_options_to_the_sandbox() -> None:
    args = build_parser().parse_args(["demo", "--history", "200", "--lose-rate", "0.05"])
    assert (args.history, args.lose_rate) == (200, 0.05)
    defaults = build_parser().parse_args(["demo"])
    assert (defaults.history, defaults.lose_rate) == (0, 0.0)
    makefile = (REPO / "Makefile").read_text()
    assert "HISTORY ?= 0" in makefile and "LOSE_RATE ?= 0" in makefile
    assert "--history $(HISTORY) --lose-rate $(LOSE_RATE)" in makefile
    [sandbox] = [line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("sandbox:")]
    assert "--history ${HISTORY:-0} --lose-rate ${LOSE_RATE:-0}" in sandbox
    demo_source = (REPO / "app" / "demo.py").read_text()
    assert '"HISTORY": str(args.history)' in demo_source and '"LOSE_RATE": str(args.lose_rate)' in demo_source
