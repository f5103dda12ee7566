"""The traffic generator against Concord's own pure core: codecs, identity, state and rules, no Kafka.

`PureConcord` listens to the sandbox world like the emitter does, builds each change's native
events (`sandbox/events.py`), decodes them with Concord's codecs, resolves customers with the real
identity logic (`tables/identity.py`) and applies them to per-customer state (`tables/state.py`).
The drift rules then say what Concord would find: nothing for healthy traffic, exactly the ground
truth for broken traffic.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import msgspec
import pytest

from concord.codecs.config import DEFAULT_CODEC_CONFIG
from concord.codecs.model import AccountMerged, CanonicalEvent, ResyncRequired
from concord.codecs.registry import decoder
from concord.core.messages import Repoint
from concord.drift import catalog, lifecycle, saga
from concord.drift.config import DriftConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context
from concord.sandbox import deals, injection, netsuite
from concord.sandbox import stripe as stripe_sandbox
from concord.sandbox import zendesk as zd
from concord.sandbox.events import Delivery, EventConfig, KafkaDelivery, NativeEvents
from concord.sandbox.injection import Injection
from concord.sandbox.traffic import PLAN_TIERS, Runner, Traffic, TrafficConfig, build_scripts, timeline
from concord.sandbox.world import Change, World
from concord.tables import identity
from concord.tables import state as st

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CONFIG = DriftConfig(rules=catalog.default_configs(), plan_tiers=PLAN_TIERS)
SAGAS = saga.SagaConfig(plan_tiers=PLAN_TIERS)


class SimClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class PureConcord:
    """Concord's pipeline without Kafka: native events -> codecs -> identity -> state."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.native = NativeEvents(EventConfig(salesforce_topic="concord.raw.salesforce", run="t"))
        self.queue: deque[Delivery] = deque()
        self.links: dict[str, str] = {}
        self.parked: dict[str, identity.ParkedQueue] = {}
        self.states: dict[str, st.CustomerState] = {}
        self.sagas: dict[str, saga.SagaBook] = {}
        world.listen(self._heard)

    def _heard(self, change: Change) -> None:
        # Built at write time, as the emitter does; decoded later, as Concord would receive them.
        self.queue.extend(self.native.build(change))

    def flush(self) -> None:
        while self.queue:
            delivery = self.queue.popleft()
            body = delivery.value if isinstance(delivery, KafkaDelivery) else delivery.body
            for event in decoder(delivery.platform)(body, DEFAULT_CODEC_CONFIG):
                self._ingest(event)

    def _ingest(self, event: CanonicalEvent) -> None:
        if isinstance(event, ResyncRequired):
            # Concord re-reads the organization over REST (support.fetch_organization) when it arrives.
            for record_id in event.record_ids:
                org = self.world.get("zendesk", "organization", record_id)
                if org is not None:
                    for reread in decoder("zendesk")(msgspec.json.encode({"organization": org}), DEFAULT_CODEC_CONFIG):
                        self._ingest(reread)
        elif event.local_customer is not None:
            self._identify(event.local_customer, event)
        else:
            assert event.customer_key is not None, event
            self._canonical(event, event.customer_key)

    def _identify(self, local_id: str, message: CanonicalEvent | Repoint) -> None:
        outcome = identity.step(self.links.get(local_id), self.parked.get(local_id, identity.EMPTY_QUEUE), message,
                                limit=1000)
        if outcome.link is not None:
            self.links[local_id] = outcome.link
        self.parked[local_id] = outcome.parked
        for link in outcome.alias_links:
            self._identify(link.local_id, link)
        for event in outcome.forward:
            assert event.customer_key is not None
            self._canonical(event, event.customer_key)
            if isinstance(event, AccountMerged):
                for loser in event.loser_ids:
                    self._canonical(event, loser)

    def _canonical(self, event: CanonicalEvent, key: str) -> None:
        state = self.states.get(key) or st.empty(key)
        if state.merged_into is not None or isinstance(event, AccountMerged):
            routing = identity.merge_routing(state, event)
            for repoint in routing.repoints:
                self._identify(repoint.local_id, repoint)
            for moved in routing.readdressed:
                assert moved.customer_key is not None
                self._canonical(moved, moved.customer_key)
            if not routing.keep:
                return
        state, _ = st.apply(state, event)
        # The deals' sagas as the engine's state agent runs them after each event (their commands are not
        # executed here: a saga that passed validation stays running, one that failed it pauses).
        progress = saga.advance(self.sagas.get(key, saga.SagaBook()), state, 0, SAGAS)
        self.sagas[key] = progress.book
        self.states[key] = msgspec.structs.replace(state, sagas=saga.marks(progress.book))

    def findings(self, now_ms: int) -> list[Finding]:
        found: list[Finding] = []
        for state in self.states.values():
            for rule in catalog.RULES:
                rule_config = CONFIG.rule(rule.id, rule.defaults)
                found += rule.check(state, now_ms, Context(rule_config, CONFIG))
        return found


def play(config: TrafficConfig) -> tuple[World, Traffic, PureConcord, SimClock, list[Callable[[], None]]]:
    """Every step of the scripts on a fresh world, with Concord's pure core listening."""
    clock = SimClock()
    world = World(clock=clock)
    deferred: list[Callable[[], None]] = []
    traffic = Traffic(world, config, defer=deferred.append)
    concord = PureConcord(world)
    for step in traffic.steps:
        clock.now = T0 + step.at
        traffic.run_step(step)
        concord.flush()
    return world, traffic, concord, clock, deferred


def concord_findings(concord: PureConcord, world: World, clock: SimClock) -> list[Finding]:
    """What the rules find once every step was delivered."""
    return concord.findings(int(clock.now * 1000))


def describe(findings: list[Finding]) -> list[str]:
    return sorted(f"{f.rule} {f.customer_key} {f.subject}: {f.summary}" for f in findings)


def minor(amount: float) -> int:
    return round(amount * 100)


def assert_world_agrees(world: World) -> None:
    """Field by field, what the company's integrations keep equal across the four systems."""
    status_field, tier_field = zd.EntitlementKeys().status, zd.EntitlementKeys().tier
    for account in world.all("salesforce", "Account"):
        key = account["Id"]
        customers = [c for c in world.all("stripe", "customer") if c["metadata"].get("salesforce_account_id") == key]
        orgs = [o for o in world.all("zendesk", "organization") if o["external_id"] == key]
        erp = [c for c in world.all("netsuite", "customer") if c["externalId"] == key]
        assert len(customers) == len(orgs) == len(erp) == 1, key
        (customer,), (org,), (erp_customer,) = customers, orgs, erp
        assert customer["name"] == org["name"] == erp_customer["companyName"] == account["Name"]
        assert customer["address"]["country"] == account["BillingCountry"]
        assert customer["currency"].upper() == account["CurrencyIsoCode"]
        subscriptions = [s for s in world.all("stripe", "subscription") if s["customer"] == customer["id"]]
        assert len(subscriptions) == 1
        (subscription,) = subscriptions
        fields = org["organization_fields"]
        if subscription["status"] == "canceled":
            assert fields[status_field] == "inactive"
        else:
            assert fields[status_field] == "active"
            assert fields[tier_field] == PLAN_TIERS[subscription["items"]["data"][0]["price"]["id"]]
        won = [o for o in world.all("salesforce", "Opportunity") if o["AccountId"] == key and o["IsWon"]]
        latest = max(won, key=lambda o: o["CreatedDate"])
        item = subscription["items"]["data"][0]
        assert latest["Plan__c"] == item["price"]["id"]
        assert minor(latest["Amount"]) == item["price"]["unit_amount"] * item["quantity"]
    for invoice in world.all("stripe", "invoice"):
        booked = world.find("netsuite", "invoice", "externalId", invoice["id"])
        assert booked is not None, invoice["id"]
        assert minor(booked["total"]) == invoice["total"], invoice["id"]
        assert minor(booked["taxTotal"]) == sum(tax["amount"] for tax in invoice["total_taxes"]), invoice["id"]
        expected = {"open": "Open", "paid": "Paid In Full", "void": "Voided"}[invoice["status"]]
        assert booked["status"]["refName"] == expected, invoice["id"]
    for refund in world.all("stripe", "refund"):
        memo = world.find("netsuite", "creditMemo", "externalId", refund["id"])
        assert memo is not None and minor(memo["total"]) == refund["amount"], refund["id"]
    assert all(ticket["status"] == "solved" for ticket in world.all("zendesk", "ticket"))


def test_the_same_seed_plays_the_same_steps_and_injections() -> None:
    config = TrafficConfig(seed=7, customers=25, drift_rate=0.05)
    first, second = play(config), play(config)
    assert first[1].steps == second[1].steps and len(first[1].steps) > 100
    assert first[1].injections == second[1].injections and first[1].injections
    assert build_scripts(config) == build_scripts(config)
    assert timeline(build_scripts(msgspec.structs.replace(config, seed=8))) != first[1].steps


def test_steps_spread_over_the_run_in_time_order() -> None:
    steps = timeline(build_scripts(TrafficConfig(seed=2, customers=30, duration=600, time_scale=3600)))
    arrivals = sorted(s.at for s in steps if s.kind in ("onboard", "deal"))
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    assert len(arrivals) == 30 and arrivals[0] < 600 * 3600 / 30 and arrivals[-1] > 600 * 3600 / 4
    assert arrivals[-1] <= 600 * 3600 / 2  # every customer arrives in the first half of the run


def test_healthy_traffic_keeps_every_system_in_agreement_and_concord_finds_nothing() -> None:
    world, traffic, concord, clock, _ = play(TrafficConfig(seed=4, customers=60, drift_rate=0.0, deal_rate=0.0))
    kinds = {step.kind for step in traffic.steps}
    # The run exercises the whole lifecycle, or the test would prove little.
    assert kinds >= {"onboard", "invoice", "payment", "payment_failed", "nonpayment", "refund", "ticket_open",
                     "ticket_solve", "upgrade", "rename", "merge_prepare", "merge", "cancel"}, kinds
    assert traffic.injections == [] and traffic.step_errors == 0
    assert_world_agrees(world)
    assert describe(concord_findings(concord, world, clock)) == []
    assert len(concord.states) > 60  # merged-away duplicates have states of their own


def test_every_rule_is_injected_and_concord_finds_exactly_the_ground_truth() -> None:
    world, traffic, concord, clock, _ = play(TrafficConfig(seed=5, customers=15, drift_rate=1.0))
    assert sorted({i.rule for i in traffic.injections}) == list(injection.RULES)
    found = {f.fingerprint: f for f in concord_findings(concord, world, clock)}
    # What shows only after a correction (D14, the duplicate a D13 fix reveals) is tested below.
    expected = {i.fingerprint: i for i in traffic.injections if not i.after}
    assert describe([f for fp, f in found.items() if fp not in expected]) == []
    assert [f"{i.rule} {i.subject}" for fp, i in expected.items() if fp not in found] == []
    for fingerprint, truth in expected.items():
        finding = found[fingerprint]
        assert (finding.rule, finding.customer_key, finding.subject) == (truth.rule, truth.customer_key, truth.subject)
        assert finding.action.name == truth.expected_action


def test_a_correction_that_does_not_stick_is_escalated_as_d14() -> None:
    world, traffic, concord, clock, deferred = play(TrafficConfig(seed=1, customers=1, drift_rate=1.0,
                                                                  rules=("D14",)))
    (unpaid, stuck) = traffic.injections
    assert (unpaid.rule, stuck.rule) == ("D01", "D14")
    assert stuck.subject == f"{unpaid.fingerprint}|escalated" and stuck.expected_action == "review"
    assert stuck.after == unpaid.fingerprint and not unpaid.after
    config = msgspec.structs.replace(
        CONFIG, rules={k: msgspec.structs.replace(v, grace_seconds=0) for k, v in CONFIG.rules.items()})
    key, organization = unpaid.customer_key, unpaid.subject
    now = int(clock.now * 1000) + 1000
    suspended = 0
    for _ in range(config.max_corrections + 2):
        verdict = lifecycle.evaluate(concord.states[key], now, catalog.RULES, config)
        concord.states[key] = verdict.state
        for command in verdict.commands:
            if command.action == "support.suspend_entitlement":
                clock.now = now / 1000
                # What Concord's Zendesk connector does to the world.
                zd.set_entitlement(world, command.target["organization_id"], status="suspended")
                suspended += 1
        while deferred:
            deferred.pop(0)()  # the sandbox undoes it before Concord re-reads the organization
        concord.flush()
        now += config.correction_timeout_seconds * 1000 + 1
    drift = concord.states[key].drift
    assert drift[unpaid.fingerprint].status == "escalated"
    assert drift[stuck.fingerprint].status == "open" and drift[stuck.fingerprint].rule == "D14"
    assert suspended == traffic.rebreaks == config.max_corrections
    org = world.get("zendesk", "organization", organization)
    assert org is not None and org["organization_fields"]["support_status"] == "active"


def test_fixing_a_merged_account_reference_reveals_the_duplicate_in_the_ground_truth() -> None:
    world, traffic, concord, clock, _ = play(TrafficConfig(seed=1, customers=1, drift_rate=1.0, rules=("D13",)))
    (merged, erp_merged, duplicate, erp_duplicate) = traffic.injections
    assert (merged.rule, duplicate.rule, duplicate.subject) == ("D13", "D12", "duplicate|stripe")
    assert duplicate.after == merged.fingerprint and merged.expected_action == "billing.update_customer"
    # The duplicate's ERP customer names the merged-away account too, and reaches the winner with it
    # although it never changes after the merge; its correction is not refused any more (no D14).
    assert (erp_merged.rule, erp_merged.expected_action) == ("D13", "erp.update_customer")
    assert erp_merged.subject.startswith("netsuite:")
    assert (erp_duplicate.rule, erp_duplicate.subject, erp_duplicate.after) == ("D12", "duplicate|netsuite",
                                                                                erp_merged.fingerprint)
    assert "D14" not in {i.rule for i in traffic.injections}
    found = {f.fingerprint for f in concord_findings(concord, world, clock)}
    assert found == {merged.fingerprint, erp_merged.fingerprint}
    # What Concord's Stripe connector does for billing.update_customer {"crm_account_id": <winner>}.
    stripe_customer = merged.subject.removeprefix("stripe:")
    clock.now += 60
    stripe_sandbox.update_customer(world, stripe_customer, {"metadata": {"salesforce_account_id": merged.customer_key}})
    concord.flush()
    assert {f.fingerprint for f in concord_findings(concord, world, clock)} == {duplicate.fingerprint,
                                                                               erp_merged.fingerprint}
    # NetSuite keeps externalIds unique, so the loser's customer cannot take the winner's; what
    # erp.update_customer {"crm_account_id": <winner>} writes is the CRM link field, which it can.
    loser_erp = erp_merged.subject.removeprefix("netsuite:")
    with pytest.raises(ValueError, match="already exists"):
        netsuite.patch_record(world, "customer", loser_erp, {"externalId": merged.customer_key})
    netsuite.patch_record(world, "customer", loser_erp, {netsuite.CRM_LINK_FIELD: merged.customer_key})
    naming_winner = [c["id"] for c in world.all("netsuite", "customer")
                     if c[netsuite.CRM_LINK_FIELD] == merged.customer_key]
    assert len(naming_winner) == 2 and loser_erp in naming_winner  # the duplicate the ground truth announces


def test_d10_deals_rotate_their_variant_and_missing_field_and_concord_finds_their_ground_truth() -> None:
    world, traffic, concord, clock, _ = play(TrafficConfig(seed=1, customers=4, drift_rate=1.0, rules=("D10",)))
    assert [(s.deal, s.defect) for s in traffic.scripts] == [
        ("incomplete", "missing_tax_id"), ("fixed", "missing_billing_country"),
        ("incomplete", "missing_billing_country"), ("fixed", "missing_tax_id")]
    by_customer: dict[str, list[Injection]] = {}
    for made in traffic.injections:
        by_customer.setdefault(made.customer_key, []).append(made)
    for script in traffic.scripts:
        live = traffic._live[script.index]
        made = by_customer[live.account]
        won = made[0]
        assert (won.rule, won.subject, won.expected_action) == ("D10", live.opportunity, "saga.resume")
        if script.deal == "incomplete":
            (escalated,) = made[1:]
            assert (escalated.rule, escalated.subject, escalated.after) == ("D14", f"{won.fingerprint}|escalated",
                                                                            won.fingerprint)
        else:
            assert len(made) == 1  # fixed: D10's saga.resume corrects it (no D08: the ERP customer is the saga's)
        account = world.get("salesforce", "Account", live.account)
        assert account is not None
        if script.defect == "missing_tax_id":
            assert account["BillingCountry"] in deals.EU_VAT_COUNTRIES
        fixed_field = {"missing_tax_id": "Tax_Id__c", "missing_billing_country": "BillingCountry"}[script.defect]
        assert (account[fixed_field] is not None) is (script.deal == "fixed")
    # Only the CRM holds the deals: Concord's saga provisions the rest.
    for platform, type_ in (("stripe", "customer"), ("stripe", "subscription"), ("netsuite", "customer"),
                            ("netsuite", "salesOrder"), ("zendesk", "organization")):
        assert list(world.all(platform, type_)) == [], type_
    expected = {i.fingerprint for i in traffic.injections if not i.after}
    assert {f.fingerprint for f in concord_findings(concord, world, clock)} == expected
    assert [(d.variant, d.expected, d.reason) for d in traffic.deals] == [
        ("incomplete", "paused", "missing_tax_id"), ("fixed", "completed", ""),
        ("incomplete", "paused", "missing_billing_country"), ("fixed", "completed", "")]


def test_a_value_mismatch_injected_on_one_seat_is_still_a_mismatch() -> None:
    # Seed 20's customer 2 buys one seat and its D11 draws one seat fewer: it is billed two, not one.
    config = TrafficConfig(seed=20, customers=12, drift_rate=1.0, rules=("D11",))
    assert [s.quantity + s.steps[0].value for s in build_scripts(config) if s.index == 2] == [0]
    world, traffic, concord, clock, _ = play(config)
    injected = {i.fingerprint for i in traffic.injections}
    assert len(injected) == 12 and injected <= {f.fingerprint for f in concord_findings(concord, world, clock)}


def test_only_the_rules_asked_for_are_injected() -> None:
    _, traffic, _, _, _ = play(TrafficConfig(seed=3, customers=8, drift_rate=1.0, rules=("D04", "D01")))
    assert sorted(i.rule for i in traffic.injections) == ["D01"] * 4 + ["D04"] * 4
    assert [s.rule for s in traffic.scripts] == ["D04", "D01"] * 4


def test_a_drift_rate_between_breaks_some_customers() -> None:
    scripts = build_scripts(TrafficConfig(seed=9, customers=200, drift_rate=0.02))
    broken = [s for s in scripts if s.rule]
    assert 0 < len(broken) < len(scripts)
    assert all(any(step.inject for step in s.steps) for s in broken)
    assert not any(step.inject for s in scripts if not s.rule for step in s.steps)


def test_parse_rules() -> None:
    assert injection.parse_rules("") == injection.RULES
    assert injection.parse_rules(" d04, D01,D04 ") == ("D04", "D01")
    with pytest.raises(ValueError, match="unknown rule 'D16'.*D01, D02"):
        injection.parse_rules("D01,D16")


async def test_runner_plays_the_timeline_in_scaled_time_until_the_duration_ends() -> None:
    config = TrafficConfig(seed=2, customers=6, drift_rate=0.0, time_scale=1e8, duration=0.05)
    traffic = Traffic(World(), config)
    runner = Runner(traffic)
    assert runner.start() and not runner.start()
    await asyncio.wait_for(runner.done.wait(), 10)
    end = config.duration * config.time_scale
    assert runner.finished and not runner.running
    assert traffic.steps_done == sum(1 for s in traffic.steps if s.at <= end) < len(traffic.steps)
    assert runner.status().simulated_seconds == end and not runner.start()


async def test_runner_pauses_and_resumes_where_it_stopped() -> None:
    traffic = Traffic(World(), TrafficConfig(seed=2, customers=3, drift_rate=0.0, time_scale=1e9))
    runner = Runner(traffic)
    runner.start()
    assert await runner.stop() and not await runner.stop()
    paused_at = traffic.steps_done
    assert not runner.running and not runner.finished
    assert runner.start()
    await asyncio.wait_for(runner.done.wait(), 10)
    assert traffic.steps_done == len(traffic.steps) > paused_at


def test_a_step_whose_records_vanished_stops_only_its_customer() -> None:
    clock = SimClock()
    world = World(clock=clock)
    traffic = Traffic(world, TrafficConfig(seed=4, customers=3, drift_rate=0.0, deal_rate=0.0), defer=lambda fn: None)
    first_invoice = next(s for s in traffic.steps if s.kind == "invoice")
    for step in traffic.steps:
        clock.now = T0 + step.at
        if step is first_invoice:
            # Someone deleted the customer's subscription between two steps.
            (subscription,) = [s for s in world.all("stripe", "subscription")
                               if s["customer"] == traffic._live[step.customer].stripe]
            world.delete("stripe", "subscription", subscription["id"])
        traffic.run_step(step)
    assert traffic.step_errors == 1 and traffic.steps_done == len(traffic.steps)
    assert "invoice" in (traffic.last_error or "") and "No such subscription" in (traffic.last_error or "")
    others = {s.customer for s in traffic.steps} - {first_invoice.customer}
    assert all(world.find("stripe", "invoice", "customer", traffic._live[c].stripe) for c in others)


def test_a_short_run_reaches_every_rule_s_broken_step_before_it_ends() -> None:
    # make demo ... TIME_SCALE=3600 DURATION=60: 60 simulated hours, less than one billing month.
    config = TrafficConfig(seed=7, customers=60, drift_rate=1.0, duration=60, time_scale=3600)
    scripts = build_scripts(config)
    end = config.duration * config.time_scale
    reached = {s.inject for script in scripts for s in script.steps if s.inject and s.at < end * 0.75}
    assert reached == set(injection.RULES)
    for script in scripts:
        times = [s.at for s in script.steps]
        assert times == sorted(times)  # brought forward, never reordered
        assert all(b - a >= 1.5 * config.time_scale - 1e-6 for a, b in zip(times, times[1:], strict=False))


def test_a_healthy_customer_whose_payments_failed_does_nothing_after_its_subscription_ended() -> None:
    # Dunning exhausted ends the script: a ticket drawn for a later cycle would be a churned customer's
    # open case (D15) that the ground truth does not hold.
    scripts = build_scripts(TrafficConfig(seed=7, customers=400, drift_rate=0.0))
    ended = [s for s in scripts if any(step.kind == "nonpayment" for step in s.steps)]
    assert ended
    for script in ended:
        assert script.steps[-1].kind == "nonpayment", [step.kind for step in script.steps]
