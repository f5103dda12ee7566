"""Salesforce gaps on the real broker: a gap event is re-read from Salesforce, and judged only after.

The sandbox's Salesforce (its sObject API served here, its emitter producing change events to the raw
topic) holds an account and an opportunity, whose change events reached Concord. Then the account is
renamed and the opportunity deleted, but Salesforce sends gap events instead of those change events
(the sandbox's `gap_rate` fault, at 1): Concord must not judge the CRM records it now holds, which are
stale. Stripe already bills the new name.

* The worker marks both records unread and re-reads them (`crm.fetch_record`, a REST GET of the
  sObject, slowed down here so that it comes after the rules' 2 s grace): the account comes back
  renamed, the opportunity as a 404, read as its deletion.
* Meanwhile D09 (the account's name against Stripe's) and D08 (a billed customer missing in the ERP:
  its upsert carries the account's name) hold what they see: nothing reported, nothing commanded.
* Once read, D09 finds nothing (the names agree) and D08 is reported, with the name the re-read brought.

A gap naming no record (GAP_OVERFLOW) is then shown in `/api/health`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from concord.codecs.model import CustomerUpserted, EntityRef, Platform, Version
from concord.codecs.model import encode as encode_event
from concord.core import messages
from concord.core.settings import Settings
from concord.core.topics import topic_names
from concord.drift import catalog
from concord.sandbox import salesforce as sandbox_salesforce
from concord.sandbox.emit import Emitter
from concord.sandbox.faults import Faults, PlatformCredentials
from concord.sandbox.world import World
from tests.integration.harness import Infra, WorkerProcess, produce, read_all, wait_for_record

TOKEN = "00Dgaps!integration-token"
REREAD_LATENCY_MS = 6000  # each Salesforce GET: the re-reads land well after the 2 s grace


async def test_a_gap_event_is_re_read_from_salesforce_and_the_crm_judged_only_after_it(
        infra: Infra, settings: Settings, tmp_path: Path) -> None:
    world = World()
    faults = Faults(seed=1)
    api = web.Application()
    api.add_routes(sandbox_salesforce.routes(world, faults, PlatformCredentials(salesforce_access_token=TOKEN)))
    salesforce_api = TestServer(api, host="127.0.0.1")
    await salesforce_api.start_server()

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {r.id: {"grace_seconds": 2} for r in catalog.RULES},
                                 "correction_timeout_seconds": 3600, "unread_bound_seconds": 120}))
    configured = msgspec.structs.replace(
        settings, rules_file=str(rules), deadline_scan_seconds=0.2,
        salesforce_instance_url=str(salesforce_api.make_url("")).rstrip("/"), salesforce_access_token=TOKEN,
        salesforce_reread_window_seconds=0.0)
    names = topic_names(configured)
    emitter = Emitter(world, concord_url="http://127.0.0.1:9", stripe_secret="unused", zendesk_secret="unused",
                      netsuite_secret="unused", kafka_bootstrap=infra.bootstrap,
                      salesforce_topic=names.raw["salesforce"], gaps=faults.gap)
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], configured,
                           tmp_path / "worker.log").start()

    async def state() -> dict[str, Any]:
        try:
            found = await worker.get_json(f"/api/customers/{key}")
        except AssertionError:
            return {}  # not a customer yet
        assert isinstance(found, dict)
        return found

    async def until(what: str, check: Any, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = await state()
            if current and check(current):
                return current
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout:.0f} s; state {current}\n{worker.log_tail()}")

    def findings(current: dict[str, Any], rule: str) -> list[dict[str, Any]]:
        return [item for item in current["drift"].values() if item["rule"] == rule]

    try:
        await worker.wait_ready()
        await emitter.start()
        account = sandbox_salesforce.create_account(world, name="Acme Old", country="US", currency="USD")
        key = account["Id"]
        opportunity = sandbox_salesforce.create_opportunity(world, key, name="Deal", amount=50_000)
        assert await emitter.drain(30)
        await until("the CRM records read", lambda s: s["crm"]["account"] and s["crm"]["opportunities"])

        # Salesforce changes both records but cannot build their change events: gap events instead.
        faults.update(msgspec.json.encode({"salesforce": {"gap_rate": 1, "latency_ms": REREAD_LATENCY_MS}}))
        sandbox_salesforce.update_account(world, key, {"Name": "Acme New"})
        world.delete("salesforce", "Opportunity", opportunity["Id"], event="DELETE")
        assert await emitter.drain(30) and emitter.stats().platforms["salesforce"].gaps == 2
        unread = await until("both records unread",
                             lambda s: set(s["crm"]["unread"]) == {key, opportunity["Id"]}, timeout=30)
        assert unread["crm"]["account"]["name"] == "Acme Old"  # what was read stays: unknown, not absent

        # Stripe bills the new name already; Concord does not know it is Salesforce's new name too.
        now = int(time.time() * 1000)
        stripe_customer = CustomerUpserted(
            event_id="evt_gaps_customer", source=Platform.STRIPE, entity=EntityRef("customer", "cus_G1"),
            occurred_at=now, version=Version(now), customer_key=key, local_customer="stripe:cus_G1",
            system=Platform.STRIPE, customer_id="cus_G1", name="Acme New", crm_account_id=key)
        await produce(infra.bootstrap, names.canonical, [(key.encode(), encode_event(stripe_customer))])
        await until("D08 and D09 noted, waiting", lambda s: findings(s, "D08") and findings(s, "D09"))
        await asyncio.sleep(2.5)  # past their 2 s grace, before the re-reads land
        waiting = await state()
        assert waiting["crm"]["unread"], "the re-reads landed too early for this test to show the wait"
        assert {item["rule"]: item["status"] for item in waiting["drift"].values()} == {
            "D08": "pending", "D09": "pending"}

        # The re-reads land: the account renamed, the opportunity gone.
        read = await until("both records read again", lambda s: s["crm"]["unread"] == {}, timeout=60)
        read_at = time.time() * 1000
        assert read["crm"]["account"]["name"] == "Acme New"
        assert read["crm"]["opportunities"][opportunity["Id"]]["deleted"] is True
        assert findings(read, "D09") == []  # the names agree: never reported, nothing corrected
        reported = await until("D08 reported", lambda s: findings(s, "D08")[0]["status"] != "pending")
        (d08,) = findings(reported, "D08")
        assert d08["first_seen"] >= read_at - 1000 and "Acme New" in d08["summary"]

        commands = [orjson.loads(r.value) for r in await read_all(infra.bootstrap, names.commands, timeout=10)]
        fetches = [c for c in commands if c["action"] == "crm.fetch_record"]
        assert sorted(c["target"]["record_id"] for c in fetches) == sorted([key, opportunity["Id"]])
        assert not [c for c in commands if c["rule"] == "D09"]
        (upsert,) = [c for c in commands if c["rule"] == "D08"]
        assert upsert["payload"]["name"] == "Acme New" and upsert["created_at"] >= read_at - 1000
        refetched = [r for r in await read_all(infra.bootstrap, names.raw["salesforce"], timeout=10)
                     if dict(r.headers or []).get(messages.REFETCHED_BY)]
        assert sorted(orjson.loads(r.value)["Id"] for r in refetched) == sorted([key, opportunity["Id"]])
        assert {dict(r.headers)[messages.REFETCHED_BY].decode() for r in refetched} == {
            c["command_id"] for c in fetches}

        # A gap naming no record: nothing to re-read; the health document says a reconciliation is due.
        overflow_at = int(time.time() * 1000)
        overflow = {"data": {"schema": "x", "event": {"replayId": 99}, "payload": {"ChangeEventHeader": {
            "entityName": "Account", "recordIds": ["000000000000000AAA"], "changeType": "GAP_OVERFLOW",
            "transactionKey": "gaps-overflow-1", "sequenceNumber": 1, "commitTimestamp": overflow_at,
            "commitNumber": 1, "commitUser": "005Hp00000ConcoAAA"}}}, "channel": "/data/AccountChangeEvent"}
        await produce(infra.bootstrap, names.raw["salesforce"], [(None, orjson.dumps(overflow))])
        deadline = time.monotonic() + 30
        since = 0
        while time.monotonic() < deadline and not since:
            health = await worker.get_json("/api/health")
            assert isinstance(health, dict)
            since = next(p["gap_overflow_since"] for p in health["platforms"] if p["platform"] == "salesforce")
            await asyncio.sleep(0.5)
        assert since == overflow_at, worker.log_tail()
        await wait_for_record(infra.bootstrap, names.audit,
                              lambda r: b"GAP_OVERFLOW" in r.value and b"resync_required" in r.value, timeout=10)
    finally:
        await emitter.stop()
        worker.stop()
        await salesforce_api.close()
