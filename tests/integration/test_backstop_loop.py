"""The backstop on the real broker: drift at rest and drift lost events hide are found by the schedule.

The sandbox starts with history customers (`--history`: their records were there before anyone listened,
some with drift injected at rest, no event ever sent about them) and plays its traffic with a share of its
platform events lost (`--lose-rate`: the platforms changed, their events never came). A worker with every
role reconciles every platform every 60 s (`CONCORD_<PLATFORM>_RECONCILE_EVERY_SECONDS`; after the first,
Salesforce's, Zendesk's and NetSuite's passes list what changed since the previous one). The loop ends with:

* every injected drift found, at rest and live, whether its event came or was lost: corrected, converged,
  escalated, reported (review rules) or dead-lettered with a reason, as in the closed loop;
* no finding left unresolved that the sandbox's world does not justify (an injection);
* Concord's state equal to the world on the fields the billing and support rules read: every Stripe
  subscription's status and plan, every Stripe invoice's status and total, every Zendesk entitlement.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from concord.bench.common import free_port
from concord.core.settings import Settings
from concord.core.topics import PLATFORMS, topic_names
from concord.drift.finding import fingerprint
from tests.integration.harness import Infra, WorkerProcess
from tests.integration.test_closed_loop import SANDBOX_CREDENTIALS, SETTLED, _get, _wait, loop_rules, outcomes

RECONCILE_EVERY_S = 60.0


async def _stripe_list(session: aiohttp.ClientSession, url: str, kind: str, **params: str) -> list[dict[str, Any]]:
    """Every object of a Stripe list endpoint of the sandbox, page by page."""
    found: list[dict[str, Any]] = []
    query = {"limit": "100", **params}
    headers = {"Authorization": f"Bearer {SANDBOX_CREDENTIALS['stripe_api_key']}"}
    while True:
        async with session.get(f"{url}/v1/{kind}", params=query, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        found += page["data"]
        if not page["has_more"]:
            return found
        query["starting_after"] = page["data"][-1]["id"]


async def _organizations(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    import base64

    user = f"{SANDBOX_CREDENTIALS['zendesk_api_email']}/token:{SANDBOX_CREDENTIALS['zendesk_api_token']}"
    headers = {"Authorization": f"Basic {base64.b64encode(user.encode()).decode()}"}
    found: list[dict[str, Any]] = []
    start = "0"
    while True:
        async with session.get(f"{url}/api/v2/incremental/organizations.json", params={"start_time": start},
                               headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        found += page["organizations"]
        if page["end_of_stream"]:
            return found
        start = str(page["end_time"])


async def world_against_state(worker: WorkerProcess, sandbox_url: str, settings: Settings) -> list[str]:
    """Where Concord's state differs from the world on the fields the billing and support rules read."""
    differences: list[str] = []
    async with aiohttp.ClientSession() as session:
        customers = [c for c in await _stripe_list(session, sandbox_url, "customers")
                     if (c.get("metadata") or {}).get("salesforce_account_id")]
        subscriptions = await _stripe_list(session, sandbox_url, "subscriptions", status="all")
        invoices = await _stripe_list(session, sandbox_url, "invoices")
        organizations = await _organizations(session, sandbox_url)
    key_of = {c["id"]: c["metadata"]["salesforce_account_id"] for c in customers}
    states: dict[str, dict[str, Any]] = {}

    async def state(key: str) -> dict[str, Any]:
        if key not in states:
            found = await worker.get_json(f"/api/customers/{key}")
            assert isinstance(found, dict)
            merged = found.get("merged_into")
            states[key] = await state(merged) if merged else found
        return states[key]

    for sub in subscriptions:
        key = key_of.get(sub["customer"])
        if key is None:
            continue
        held = (await state(key))["billing"]["subscriptions"].get(sub["id"])
        world = (sub["status"], sub["items"]["data"][0]["price"]["id"] if sub["items"]["data"] else None)
        mine = None if held is None else (held["status"], held["plan"])
        if mine != world:
            differences.append(f"subscription {sub['id']} of {key}: world {world}, Concord {mine}")
    for invoice in invoices:
        key = key_of.get(invoice["customer"])
        if key is None:
            continue
        held = (await state(key))["billing"]["invoices"].get(invoice["id"])
        world = (invoice["status"], invoice["total"])
        mine = None if held is None else (held["status"], held["total"])
        if mine != world and not (held is None and invoice["status"] in ("paid", "void")):
            # A closed invoice may have left the state's bounded history: only a missing open one counts.
            differences.append(f"invoice {invoice['id']} of {key}: world {world}, Concord {mine}")
    status_field, tier_field = settings.zendesk_status_field, settings.zendesk_tier_field
    for org in organizations:
        key = org.get("external_id")
        if not key:
            continue
        fields = org.get("organization_fields") or {}
        held = (await state(key))["support"]["entitlements"].get(str(org["id"]))
        world = (fields.get(status_field), fields.get(tier_field))
        mine = None if held is None else (held["status"], held["tier"])
        if mine != world and any(world):
            differences.append(f"entitlement of organization {org['id']} ({key}): world {world}, Concord {mine}")
    return differences


async def test_drift_at_rest_and_drift_lost_events_hide_are_found_by_the_schedule(
        infra: Infra, settings: Settings, tmp_path: Path) -> None:
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    cfg = msgspec.structs.replace(
        settings, rules_file=str(loop_rules(tmp_path / "rules.json")), deadline_scan_seconds=0.2,
        watermark_idle_seconds=1.0, stripe_api_url=sandbox_url, salesforce_instance_url=sandbox_url,
        zendesk_url=sandbox_url, netsuite_url=sandbox_url, command_backoff_seconds=0.2,
        command_backoff_max_seconds=2.0, breaker_reset_seconds=1.0, netsuite_rate_limit=200.0,
        stripe_rate_limit=200.0, zendesk_rate_limit=200.0, salesforce_rate_limit=200.0,
        **{f"{p}_reconcile_every_seconds": RECONCILE_EVERY_S for p in PLATFORMS}, **SANDBOX_CREDENTIALS)
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], cfg,
                           tmp_path / "worker.log").start()
    sandbox = WorkerProcess(
        [sys.executable, "-m", "concord.app.cli", "sandbox", "--port", str(sandbox_port), "--seed", "9",
         "--customers", "12", "--history", "200", "--lose-rate", "0.05", "--drift-rate", "0.3",
         "--time-scale", "864000", "--duration", "20", "--linger", "900", "--progress", "5",
         "--concord-url", worker.base_url, "--test-credentials"],
        cfg, tmp_path / "sandbox.log")
    names = topic_names(cfg)

    def logs() -> str:
        return f"--- worker\n{worker.log_tail(60)}\n--- sandbox\n{sandbox.log_tail(20)}"

    try:
        sandbox.start()  # first: its history is in the world before the worker's first pass
        await _wait("sandbox up", lambda: _get(f"{sandbox_url}/_sandbox/healthz"), 30, logs)
        await worker.wait_ready()

        async def traffic_over() -> bool:
            return not (await _get(f"{sandbox_url}/_sandbox/status"))["running"]
        await _wait("sandbox traffic finished", traffic_over, 180, logs)
        traffic_ended = int(time.time() * 1000)
        injected = await _get(f"{sandbox_url}/_sandbox/injected")
        lost = await _get(f"{sandbox_url}/_sandbox/lost")
        at_rest = [i for i in injected if i.get("at_rest")]
        assert len(at_rest) >= 10 and lost, (len(at_rest), len(lost))

        # A pass that began after the traffic, complete on every platform and applied: what lost events hid
        # is in the state now.
        async def reconciled_after_the_traffic() -> bool:
            status = await worker.get_json("/api/v1/reconcile")
            assert isinstance(status, dict)
            return not status["held"] and all(p["last_complete_at"] > traffic_ended for p in status["platforms"])
        await _wait("a reconciliation of every platform after the traffic", reconciled_after_the_traffic,
                    RECONCILE_EVERY_S * 3, logs)

        last: dict[str, str] = {}

        async def every_injection_settled() -> bool:
            last.update(await outcomes(worker, injected, infra.bootstrap, names.dlq_commands))
            return all(v.startswith(SETTLED) for v in last.values())
        await _wait("every injected drift, at rest or hidden by a lost event, settled", every_injection_settled,
                    180, lambda: "\n".join(f"{k}: {v}" for k, v in sorted(last.items()) if not v.startswith(SETTLED))
                    + "\n" + logs())

        expected = {fingerprint(i["rule"], i["customer_key"], i["subject"]) for i in injected}

        async def nothing_unjustified() -> list[str]:
            page = await worker.get_json("/api/v1/drift?limit=1000")  # not resolved
            assert isinstance(page, dict)
            return [f"{f['rule']} {f['customer_key']} {f['status']}: {f.get('summary')}" for f in page["items"]
                    if f["fingerprint"] not in expected]
        unjustified: list[str] = []

        async def settled() -> bool:
            unjustified[:] = await nothing_unjustified()
            return not unjustified
        await _wait("no unresolved finding the world does not justify", settled, 120,
                    lambda: "\n".join(unjustified) + "\n" + logs())

        differences = await world_against_state(worker, sandbox_url, cfg)
        assert not differences, "\n".join(differences[:40])
        print(f"{len(injected)} injections ({len(at_rest)} at rest), {len(lost)} events lost: all settled; "
              f"state equal to the world")
        status = await worker.get_json("/api/v1/reconcile")
        assert isinstance(status, dict)
        # Between full listings, Salesforce, Zendesk and NetSuite were listed for what changed since the last pass.
        assert all(p["last"]["incremental"] >= 1 for p in status["platforms"] if p["platform"] != "stripe"), status
        print(json.dumps(status)[:2000])
    finally:
        sandbox.stop()
        worker.stop()
