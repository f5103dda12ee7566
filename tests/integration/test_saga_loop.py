"""Quote-to-cash on the real broker with the sandbox: every deal ends as the sandbox's ground truth says.

The sandbox plays closed-won deals only (`--deal-rate 1`), some broken for D10 (incomplete accounts, some
fixed by a person later), some whose ERP sales order is refused for good, some reopened or amended after
provisioning. The worker's sagas provision them through the sandbox's APIs while the worker is SIGKILLed
mid-saga and restarted, and while Stripe answers nothing but 503 for a while. At the end each deal's saga
is in the state `/_sandbox/deals` expects (a paused one with the expected reason, an amended one billing
the amended quantity), D10 resolved through the saga where the account was fixed and escalated where it
was not, and the sandbox saw no effect applied twice.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from concord.bench.common import free_port
from concord.core import messages
from concord.core.settings import Settings
from concord.core.topics import topic_names
from concord.infra.redis import RedisNode
from tests.integration.harness import Infra, WorkerProcess, read_all
from tests.integration.test_closed_loop import SANDBOX_CREDENTIALS, _get, _wait, loop_redis, loop_settings

__all__ = ["loop_redis"]  # the fixture, imported to be used here

STRIPE_DOWN_S = 8.0


async def _post(url: str, body: Any) -> None:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _found(worker: WorkerProcess, path: str) -> dict[str, Any] | None:
    """GET `path` as an admin: the JSON answer, or None for a 404."""
    headers = {"Authorization": f"Bearer {worker.settings.admin_token}"}
    async with aiohttp.ClientSession(headers=headers) as session, session.get(f"{worker.base_url}{path}") as resp:
        if resp.status == 404:
            return None
        assert resp.status == 200, f"{resp.status}: {await resp.text()}"
        found: dict[str, Any] = await resp.json()
        return found


async def _saga(worker: WorkerProcess, opportunity_id: str) -> dict[str, Any] | None:
    return await _found(worker, f"/api/v1/sagas/{opportunity_id}")


def _ends_as_expected(deal: dict[str, Any], saga: dict[str, Any] | None) -> bool:
    if saga is None:
        # Won and reopened before any saga started (both read in one backlog after the restart): nothing was
        # provisioned, so nothing is undone; the end is the same as compensated.
        return deal["variant"] == "reopened"
    if saga["state"] != deal["expected"] or saga["command_id"]:
        return False
    if deal["expected"] == "paused":
        return bool(saga["reason_code"] == deal["reason"])
    return deal["expected"] != "completed" or saga["quantity"] == deal["quantity"]


async def test_every_deal_ends_as_its_ground_truth_says_through_a_crash_and_an_outage(
    infra: Infra, settings: Settings, tmp_path: Path, loop_redis: RedisNode
) -> None:
    sandbox_port = free_port()
    cfg = msgspec.structs.replace(loop_settings(settings, tmp_path, sandbox_port, loop_redis.port),
                                  saga_step_timeout_seconds=5.0, saga_step_retries=3)
    names = topic_names(cfg)
    worker_argv = [sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"]
    worker = WorkerProcess(worker_argv, cfg, tmp_path / "worker.log").start()
    sandbox = WorkerProcess(
        [sys.executable, "-m", "concord.app.cli", "sandbox", "--port", str(sandbox_port), "--seed", "3",
         "--customers", "10", "--deal-rate", "1", "--drift-rate", "0.05", "--rules", "D10",
         "--time-scale", "864000", "--duration", "20", "--linger", "600", "--progress", "5",
         "--concord-url", worker.base_url, "--test-credentials"],
        cfg, tmp_path / "sandbox.log")
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    stripe = {"Authorization": f"Bearer {SANDBOX_CREDENTIALS['stripe_api_key']}"}

    def logs() -> str:
        return f"--- worker\n{worker.log_tail(60)}\n--- sandbox\n{sandbox.log_tail(30)}"

    try:
        await worker.wait_ready()
        sandbox.start()
        await _wait("sandbox up", lambda: _get(f"{sandbox_url}/_sandbox/healthz"), 30, logs)

        async def saga_steps_ran() -> bool:
            results = await read_all(infra.bootstrap, names.command_results)
            return sum(b'"billing.create_subscription"' in r.value for r in results) >= 1
        await _wait("a saga provisioned a subscription", saga_steps_ran, 90, logs)
        worker.kill()  # mid-saga: other deals' steps are in flight
        await asyncio.sleep(1)
        worker = WorkerProcess(worker_argv, cfg, tmp_path / "worker2.log").start()
        await worker.wait_ready()

        await _post(f"{sandbox_url}/_sandbox/faults", {"stripe": {"error_rate": 1.0}})
        await asyncio.sleep(STRIPE_DOWN_S)
        await _post(f"{sandbox_url}/_sandbox/faults", {"stripe": {"error_rate": 0.0}})

        async def sandbox_finished() -> bool:
            return not (await _get(f"{sandbox_url}/_sandbox/status"))["running"]
        await _wait("sandbox traffic finished", sandbox_finished, 120, logs)
        deals = (await _get(f"{sandbox_url}/_sandbox/deals"))["deals"]
        assert {d["variant"] for d in deals} >= {"provision", "erp_refuses", "reopened", "amended"}, deals
        assert {d["expected"] for d in deals} == {"completed", "paused", "compensated"}, deals

        sagas: dict[str, Any] = {}

        async def every_deal_settled() -> bool:
            for deal in deals:
                sagas[deal["opportunity_id"]] = await _saga(worker, deal["opportunity_id"])
            return all(_ends_as_expected(d, sagas[d["opportunity_id"]]) for d in deals)

        def show() -> str:
            return "\n".join(f"{d['variant']} {d['opportunity_id']} expected {d['expected']} {d['reason']} "
                             f"q={d['quantity']}: {sagas.get(d['opportunity_id'])}" for d in deals) + "\n" + logs()
        await _wait("every deal ended as the sandbox expects", every_deal_settled, 180, show)
        print(show())

        # What the sagas did is in Stripe: each completed deal bills its (amended) quantity once.
        for deal in deals:
            saga = sagas[deal["opportunity_id"]]
            if saga is None:
                continue
            subscription_id = saga["records"].get("subscription")
            if deal["expected"] == "completed":
                live = await _get_with(f"{sandbox_url}/v1/subscriptions/{subscription_id}", stripe)
                assert live["status"] == "active" and live["items"]["data"][0]["quantity"] == deal["quantity"]
            elif deal["expected"] == "compensated" and subscription_id:
                status = await _status(f"{sandbox_url}/v1/subscriptions/{subscription_id}", stripe)
                assert status in (200, 404)

        # D10: a deal fixed by a person was resumed by D10's saga.resume (its finding corrected); a deal never
        # fixed stays paused, its D10 escalated (D14). (A fixed deal whose fix was read before its saga started,
        # as happens when the worker restarts in between, never paused: no D10, and the deal completed above.)
        injected = await _get(f"{sandbox_url}/_sandbox/injected?rule=D10")
        assert injected, "the D10 deals were not injected"
        outcome: dict[str, str] = {}
        paused = {d["opportunity_id"] for d in deals if d["expected"] == "paused"}

        async def d10_settled() -> bool:
            for injection in injected:
                finding = await _found(worker, f"/api/v1/drift/{injection['fingerprint']}")
                outcome[injection["subject"]] = (
                    "absent" if finding is None else f"{finding['status']} {finding.get('resolution')}")
            return all(v == "escalated None" if k in paused else v in ("resolved corrected", "absent")
                       for k, v in outcome.items())
        await _wait("D10 findings resolved through the saga or escalated", d10_settled, 120,
                    lambda: f"{outcome}\n{logs()}")
        print(f"D10: {outcome}")
        # Whether a fixed deal's saga paused depends on timing (a fix read in the same step as the win, as after the
        # worker's restart, never pauses it); every one that did pause was resumed through D10's saga.resume.
        audit = [msgspec.json.decode(r.value, type=messages.AuditRecord)
                 for r in await read_all(infra.bootstrap, names.audit)]
        fixed = {d["opportunity_id"] for d in deals if d["variant"] == "fixed"}
        fixed_and_paused = fixed & {a.correlation_id for a in audit if a.kind == "saga.paused"}
        print(f"fixed deals whose saga paused: {sorted(fixed_and_paused)}")
        assert all(outcome.get(opp) == "resolved corrected" for opp in fixed_and_paused), (outcome, fixed_and_paused)

        results = await read_all(infra.bootstrap, names.command_results)
        saga_results = [r for r in results if f'"rule":"{messages.SAGA_RULE}"'.encode() in r.value]
        assert saga_results, "no saga command ran"
        effects = await _get(f"{sandbox_url}/_sandbox/effects")
        assert effects["duplicates"] == [], effects["duplicates"]
    finally:
        sandbox.stop()
        worker.stop()





async def _get_with(url: str, headers: dict[str, str]) -> Any:
    async with aiohttp.ClientSession(headers=headers) as session, session.get(url) as resp:
        assert resp.status == 200, f"GET {url} -> {resp.status}: {await resp.text()}"
        return await resp.json()


async def _status(url: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession(headers=headers) as session, session.get(url) as resp:
        return resp.status
