"""A reconciliation on the real broker: the drift already at rest is found, and nothing else.

The sandbox's world holds history customers (`--history`: their records were there before anyone listened,
and no event about them was ever sent), some of them with drift injected at rest. A worker (ingest and
state) runs; `concord reconcile --all` lists the four platforms through the sandbox's list APIs and feeds
every record to the raw topics. Once the command has returned (the workers applied the pass's records, the
platforms are released), Concord reports exactly the injected drift: every at-rest injection, and no
finding the world does not justify. The pass is checkpointed complete in Redis, and its holds are gone.

The first run is a dry run (`--dry-run`, a new installation's first pass): its findings are reported, in dry
run. A second run, not a dry run, finds nothing new: the same records, the same findings, no longer in dry
run (they would be corrected now; this worker has no commands role). Then records are deleted at the
platforms with no event (a lost deletion): the third run's complete listings no longer return them, and it
feeds their deletion; Concord's state holds them deleted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from concord.core.settings import Settings
from concord.drift import catalog
from concord.sandbox import netsuite, salesforce, stripe, zendesk
from concord.sandbox.faults import Faults, PlatformCredentials
from concord.sandbox.traffic import PLAN_TIERS, Traffic, TrafficConfig
from concord.sandbox.world import World
from tests.integration.harness import Infra, WorkerProcess, concord_cli

CREDENTIALS = PlatformCredentials(stripe_api_key="sk_test_reconcile_key_0001",
                                  salesforce_access_token="00D!reconcile-token-0001",
                                  zendesk_api_email="ops@example.com", zendesk_api_token="zd-reconcile-token-0001",
                                  netsuite_access_token="ns-reconcile-token-0001")


async def reconcile(settings: Settings, *args: str) -> tuple[int, str]:
    """`concord reconcile ARGS` as a process (this loop keeps serving the sandbox meanwhile)."""
    return await concord_cli(settings, "reconcile", *args)


async def reported(worker: WorkerProcess) -> dict[str, dict[str, Any]]:
    page = await worker.get_json("/api/v1/drift?status=all&limit=1000")
    assert isinstance(page, dict)
    return {item["fingerprint"]: item for item in page["items"]}


async def test_a_reconciliation_finds_the_drift_at_rest_and_nothing_else(
        infra: Infra, settings: Settings, tmp_path: Path) -> None:
    world = World()
    traffic = Traffic(world, TrafficConfig(seed=21, customers=0, history=30, drift_rate=0.4),
                      defer=lambda fn: fn())
    traffic.play_history()
    # Drift visible at once (D14 shows only after failed corrections, which this worker never makes).
    expected = {i.fingerprint: i for i in traffic.injections if i.at_rest and not i.after}
    assert len(expected) >= 5, "the seed gives too little drift at rest for this test to say anything"

    faults = Faults(seed=3)
    api = web.Application()
    for module in (stripe, salesforce, zendesk, netsuite):
        api.add_routes(module.routes(world, faults, CREDENTIALS))
    server = TestServer(api, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {r.id: {"grace_seconds": 0} for r in catalog.RULES},
                                 "plan_tiers": PLAN_TIERS}))
    configured = msgspec.structs.replace(
        settings, rules_file=str(rules), deadline_scan_seconds=0.2, watermark_idle_seconds=1.0,
        stripe_api_url=url, stripe_api_key=CREDENTIALS.stripe_api_key, salesforce_instance_url=url,
        salesforce_access_token=CREDENTIALS.salesforce_access_token, zendesk_url=url,
        zendesk_api_email=CREDENTIALS.zendesk_api_email, zendesk_api_token=CREDENTIALS.zendesk_api_token,
        netsuite_url=url, netsuite_access_token=CREDENTIALS.netsuite_access_token,
        # The sandbox takes far more than a real NetSuite's 5 requests/s: a pass reads each record over REST.
        netsuite_rate_limit=200.0)
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info", "--roles",
                            "ingest,state"], configured, tmp_path / "worker.log").start()
    client = aioredis.from_url(configured.redis_url)
    try:
        await worker.wait_ready()
        # A new installation's first pass: in dry run (what it reveals is reported, not corrected).
        code, out = await reconcile(configured, "--all", "--dry-run")
        assert code == 0, out
        assert out.count("dry run: what it reveals is reported") == 4, out
        assert "0 of them changed" not in out, out  # the first pass brought every record: all changes
        reported_line = next(line for line in out.splitlines() if "finding(s) reported" in line)
        assert int(reported_line.split("after: ")[1].split(" finding")[0].replace(",", "")) >= len(expected), out
        assert "waiting for the workers to apply" in out

        # The pass's records are applied (the command waited for that); the judgments follow within the
        # watermark allowance and the deadline scan.
        deadline = time.monotonic() + 60
        found: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            found = await reported(worker)
            if set(expected) <= set(found):
                break
            await asyncio.sleep(0.5)
        missing = {fp: (i.rule, i.customer_key, i.detail) for fp, i in expected.items() if fp not in found}
        assert not missing, f"at-rest drift not found: {missing}\n{worker.log_tail()}"
        await asyncio.sleep(3)  # anything else the pass would report has had its time too
        found = await reported(worker)
        unjustified = {fp: (f["rule"], f["customer_key"], f.get("summary")) for fp, f in found.items()
                       if fp not in expected}
        assert not unjustified, f"findings the world does not justify: {unjustified}"
        assert all(f["dry_run"] for f in found.values()), found

        assert " is behind" not in worker.log_path.read_text()  # snapshots of old records are not a late platform
        prefix = configured.topic_prefix
        assert await client.hgetall(f"{prefix}:reconcile:holds") == {}
        for platform in ("stripe", "salesforce", "zendesk", "netsuite"):
            checkpoint = json.loads(await client.get(f"{prefix}:reconcile:{platform}"))
            assert checkpoint["finished_at"] > 0 and checkpoint["cursor"] is None and checkpoint["records"] > 0

        # Again, not in dry run: the same records (nothing newer), the same findings, no longer in dry run.
        code, out = await reconcile(configured, "--all")
        assert code == 0, out
        assert out.count("complete listing") == 4, out
        assert out.count("0 of them changed Concord's state") == 4, out  # listed again: only restamped
        await asyncio.sleep(3)
        again = await reported(worker)
        assert set(again) == set(found)
        assert not any(f["dry_run"] for f in again.values()), again
        assert "gone from the platform" not in out

        # Records deleted at the platforms with no event (lost): the next complete listing feeds their deletion.
        stripe_customer = next(iter(world.all("stripe", "customer")))
        key = stripe_customer["metadata"]["salesforce_account_id"]
        erp_customer = world.find("netsuite", "customer", "externalId", key)
        assert erp_customer is not None
        erp_invoice = next(i for i in world.all("netsuite", "invoice") if i["entity"]["id"] == erp_customer["id"])
        organization = world.find("zendesk", "organization", "external_id", key)
        assert organization is not None
        with world.at_rest(time.time):
            world.delete("stripe", "customer", stripe_customer["id"])
            world.delete("netsuite", "invoice", str(erp_invoice["id"]))
            world.delete("zendesk", "organization", str(organization["id"]))
        code, out = await reconcile(configured, "--all")
        assert code == 0, out
        for platform in ("stripe", "netsuite", "zendesk"):
            line = next(line for line in out.splitlines() if line.strip().startswith(platform) and "pass" in line)
            assert "1 record(s) gone from the platform" in line, out
        state = await worker.get_json(f"/api/customers/{key}")
        assert isinstance(state, dict)
        assert state["billing"]["customers"][stripe_customer["id"]]["deleted"] is True, (
            out, state["billing"]["customers"][stripe_customer["id"]])
        assert state["erp"]["invoices"][str(erp_invoice["id"])]["deleted"] is True, (
            out, state["erp"]["invoices"][str(erp_invoice["id"])])
        assert state["support"]["organizations"][str(organization["id"])]["deleted"] is True
    finally:
        worker.stop()
        await client.aclose()
        await server.close()
