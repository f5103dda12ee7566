"""The closed loop on the real broker and Redis, under faults, a worker crash and a Redis restart.

The sandbox plays customers on the four platforms and injects drift for the rules; the worker
detects it, commands the sandbox's APIs through 30% 5xx answers and 429 bursts, is SIGKILLed and
restarted mid-run, and loses its Redis for a while. At the end every injected drift is detected and
either corrected (its finding resolved) or dead-lettered with a reason (review rules: reported for
a person), and the sandbox saw no side effect applied twice.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from concord.bench.common import free_port
from concord.core import messages
from concord.core.messages import Command
from concord.core.settings import Settings
from concord.core.topics import topic_names
from concord.drift import catalog
from concord.drift.finding import fingerprint
from concord.infra import redis
from concord.infra.cli import default_cache
from concord.sandbox.traffic import PLAN_TIERS
from tests.integration.harness import Infra, WorkerProcess, read_all

SANDBOX_CREDENTIALS = {
    "stripe_api_key": "sk_test_loop_stripe_key",
    "salesforce_access_token": "00Dloop!access_token",
    "zendesk_api_email": "loop@concord.invalid",
    "zendesk_api_token": "loop-zendesk-api-token",
    "netsuite_access_token": "loop-netsuite-access-token",
    "stripe_webhook_secret": "whsec_loop_stripe_secret",
    "zendesk_webhook_secret": "loop-zendesk-webhook-secret",
    "netsuite_webhook_secret": "loop-netsuite-hook-secret",
    "admin_token": "loop-admin-token-secret",
}
FAULTS = {
    # 30% 5xx before anything is applied, a burst of 429s, and 10% applied but answered 500 (the call
    # succeeded, its answer was lost: the retry must not apply it again).
    platform: {"error_rate": 0.3, "burst_429": 3, "retry_after": 1, "error_after_apply_rate": 0.1}
    for platform in ("stripe", "salesforce", "zendesk", "netsuite")
}
REVIEW = "review"


def loop_rules(path: Path) -> Path:
    path.write_text(json.dumps({
        "rules": {rule.id: {"grace_seconds": 3 if rule.defaults.grace_seconds else 0} for rule in catalog.RULES},
        "correction_timeout_seconds": 12,
        "plan_tiers": PLAN_TIERS,
    }))
    return path


def loop_settings(settings: Settings, tmp_path: Path, sandbox_port: int, redis_port: int) -> Settings:
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    return msgspec.structs.replace(
        settings,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        rules_file=str(loop_rules(tmp_path / "rules.json")),
        deadline_scan_seconds=0.2,
        stripe_api_url=sandbox,
        salesforce_instance_url=sandbox,
        zendesk_url=sandbox,
        netsuite_url=sandbox,
        command_backoff_seconds=0.2,
        command_backoff_max_seconds=2.0,
        breaker_reset_seconds=1.0,
        **SANDBOX_CREDENTIALS,
    )


async def _get(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, f"GET {url} -> {resp.status}"
        return await resp.json()


async def _wait(what: str, check: Any, timeout: float, diagnose: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except (aiohttp.ClientError, OSError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout:.0f} s; last: {last}\n{diagnose() if diagnose else ''}")


@pytest.fixture
def loop_redis(tmp_path: Path) -> Any:
    """A Redis of this test's own, persistent (AOF), so the test can stop and restart it."""
    node = redis.RedisNode(cache=default_cache() / "redis", port=free_port(), persist=True)
    assert redis.start(node)
    yield node
    redis.stop(node)


@pytest.mark.parametrize("salesforce_delivery", ["kafka", "pubsub"])
async def test_every_injected_drift_ends_corrected_or_dead_lettered_without_double_effects(
    infra: Infra, settings: Settings, tmp_path: Path, loop_redis: redis.RedisNode, salesforce_delivery: str
) -> None:
    """With `pubsub`, Salesforce's change events come through `concord bridge salesforce` from the sandbox's
    Pub/Sub API instead of straight to Kafka; the bridge is SIGKILLed with the worker, and loses Redis too."""
    sandbox_port, pubsub_port = free_port(), free_port()
    cfg = loop_settings(settings, tmp_path, sandbox_port, loop_redis.port)
    if salesforce_delivery == "pubsub":
        cfg = msgspec.structs.replace(cfg, salesforce_pubsub_url=f"grpc://127.0.0.1:{pubsub_port}",
                                      salesforce_org_id="00Dloop00Concrd", salesforce_pubsub_replay_preset="EARLIEST")
    names = topic_names(cfg)
    worker_argv = [sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"]
    bridge_argv = [sys.executable, "-m", "concord.app.cli", "bridge", "salesforce", "-l", "info"]
    worker = WorkerProcess(worker_argv, cfg, tmp_path / "worker.log").start()
    sandbox = WorkerProcess(
        [sys.executable, "-m", "concord.app.cli", "sandbox", "--port", str(sandbox_port), "--seed", "7",
         "--customers", "16", "--drift-rate", "0.5", "--time-scale", "864000", "--duration", "25",
         "--linger", "600", "--progress", "5", "--salesforce-delivery", salesforce_delivery,
         "--pubsub-port", str(pubsub_port), "--concord-url", worker.base_url, "--test-credentials"],
        cfg, tmp_path / "sandbox.log")
    bridge = WorkerProcess(bridge_argv, cfg, tmp_path / "bridge.log")
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"

    def logs() -> str:
        return (f"--- worker\n{worker.log_tail(60)}\n--- sandbox\n{sandbox.log_tail(30)}\n"
                f"--- bridge\n{bridge.log_tail(20)}")

    try:
        await worker.wait_ready()
        sandbox.start()
        await _wait("sandbox up", lambda: _get(f"{sandbox_url}/_sandbox/healthz"), 30, logs)
        if salesforce_delivery == "pubsub":
            bridge.start()
        async with aiohttp.ClientSession() as session, \
                session.post(f"{sandbox_url}/_sandbox/faults", json=FAULTS) as resp:
            assert resp.status == 200, await resp.text()

        # Mid-run: the worker is killed once commands flow, and restarted.
        async def some_commands_ran() -> bool:
            results = await read_all(infra.bootstrap, names.command_results)
            return len(results) >= 3
        await _wait("first command results", some_commands_ran, 90, logs)
        worker.kill()
        if salesforce_delivery == "pubsub":
            bridge.kill()  # resumes after its stored replay id: what it produced but had not stored comes again
        await asyncio.sleep(1)
        worker = WorkerProcess(worker_argv, cfg, tmp_path / "worker2.log").start()
        if salesforce_delivery == "pubsub":
            bridge = WorkerProcess(bridge_argv, cfg, tmp_path / "bridge2.log").start()
        await worker.wait_ready()

        # Then Redis goes away for a while, and comes back with what it had.
        assert redis.stop(loop_redis)
        await asyncio.sleep(4)
        assert redis.start(loop_redis)

        injected, last = await settled(worker, sandbox_url, infra.bootstrap, names.dlq_commands, logs)
        assert {i["rule"] for i in injected} >= {"D01", "D04", "D06"}, injected
        corrected = [k for k, v in last.items() if v == "corrected"]
        assert len(corrected) >= len(last) // 3, last  # most corrections got through the faults

        # A correction the platform refused (data) is not commanded again: its finding is escalated at
        # once, saying why, so a person takes it over after one dead letter, not one per generation.
        refused: dict[str, str] = {}

        async def refused_corrections_escalated() -> bool:
            for record in await read_all(infra.bootstrap, names.dlq_commands):
                command = msgspec.json.decode(record.value, type=Command)
                if dict(record.headers or ()).get(messages.DLQ_KIND) == b"data" and command.fingerprint:
                    refused[command.fingerprint] = command.command_id
            for fp in refused:
                finding = await worker.get_json(f"/api/drift/{fp}")
                if finding["status"] not in ("escalated", "resolved"):
                    return False
            return True
        await _wait("findings of refused corrections escalated", refused_corrections_escalated, 90, logs)
        escalated = [await worker.get_json(f"/api/drift/{fp}") for fp in refused]
        print(f"{len(refused)} finding(s) had a correction refused: "
              + "; ".join(f"{f['rule']} {f['status']}: {f.get('note', '')}" for f in escalated))
        assert all("dead-lettered" in f.get("note", "") for f in escalated if f["status"] == "escalated"
                   and f["generation"] == 1), escalated

        effects = await _get(f"{sandbox_url}/_sandbox/effects")
        assert effects["duplicates"] == [], effects["duplicates"]
        assert sum(e["applied"] for e in effects["effects"]) > 0  # corrections did reach the platforms
    finally:
        bridge.stop()
        sandbox.stop()
        worker.stop()


async def settled(worker: WorkerProcess, sandbox_url: str, bootstrap: str, dlq_topic: str,
                  logs: Callable[[], str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Once the sandbox's traffic has finished and every drift it injected has settled (`SETTLED`): the
    injections, and each one's outcome (`outcomes`)."""
    async def sandbox_finished() -> bool:
        status = await _get(f"{sandbox_url}/_sandbox/status")
        return not status["running"]
    await _wait("sandbox traffic finished", sandbox_finished, 120, logs)
    injected: list[dict[str, Any]] = await _get(f"{sandbox_url}/_sandbox/injected")
    assert injected, "the sandbox injected no drift"

    last: dict[str, str] = {}

    async def every_injection_settled() -> bool:
        last.update(await outcomes(worker, injected, bootstrap, dlq_topic))
        return all(v.startswith(SETTLED) for v in last.values())
    await _wait("every injected drift detected and corrected or dead-lettered", every_injection_settled, 150,
                lambda: "\n".join(f"{k}: {v}" for k, v in sorted(last.items())) + "\n" + logs())
    print("\n".join(f"{k}: {v}" for k, v in sorted(last.items())))
    return injected, last


async def outcomes(worker: WorkerProcess, injected: list[dict[str, Any]], bootstrap: str,
                   dlq_topic: str) -> dict[str, str]:
    """Where each injection's finding stands: `corrected`/`converged`/`escalated`, `dead-lettered: <reason>`,
    `reported` (review rules), or what it still is (`pending`, `open`, `commanded`, `missing`)."""
    dead = {}
    for record in await read_all(bootstrap, dlq_topic):
        command = msgspec.json.decode(record.value, type=Command)
        headers = dict(record.headers or ())
        dead[command.fingerprint] = headers.get(messages.DLQ_REASON, b"").decode()
    found: dict[str, str] = {}
    for item in injected:
        fp = fingerprint(item["rule"], item["customer_key"], item["subject"])
        label = f"{item['rule']} {item['customer_key']} {item['subject']}"
        try:
            finding = await worker.get_json(f"/api/drift/{fp}")
        except AssertionError:
            finding = None
        status = finding.get("status") if isinstance(finding, dict) else "missing"
        if item.get("expected_action", REVIEW) == REVIEW:
            found[label] = "reported" if status not in ("missing", "pending") else status
        elif status == "resolved" and isinstance(finding, dict):
            found[label] = str(finding.get("resolution"))
        elif status == "escalated":
            found[label] = "escalated"
        elif dead.get(fp):
            found[label] = f"dead-lettered: {dead[fp]}"
        else:
            found[label] = status
        if status == "missing":  # not in the drift index: what does the customer's state say?
            found[label] += f" (state: {await state_of(worker, item['customer_key'], fp)})"
            for word in item.get("detail", "").split():
                if word.startswith("001") and word != item["customer_key"]:  # another account named
                    found[label] += f" ({word}: {await state_of(worker, word.strip(';,.'), fp)})"
    return found


async def state_of(worker: WorkerProcess, customer_key: str, fp: str) -> str:
    try:
        state = await worker.get_json(f"/api/customers/{customer_key}")
    except AssertionError as exc:
        return str(exc)[:200]
    assert isinstance(state, dict)
    item = state.get("drift", {}).get(fp)
    return f"drift item {item}" if item else f"no drift item; merged_into={state.get('merged_into')}, " \
        f"drift={sorted((i.get('rule'), i.get('status')) for i in state.get('drift', {}).values())}, " \
        f"billing customers={list(state.get('billing', {}).get('customers', {}))}"


SETTLED = ("corrected", "converged", "escalated", "reported", "dead-lettered")
