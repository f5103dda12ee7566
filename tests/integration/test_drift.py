"""Drift detection on the real broker and Redis: exact findings, deadlines, convergence, crash safety."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from concord.bench.workload import customer_key, history
from concord.codecs.model import (
    CanonicalEvent,
    EntitlementChanged,
    InvoiceChanged,
    SubscriptionChanged,
    Version,
)
from concord.codecs.model import encode as encode_event
from concord.core.settings import Settings
from concord.core.topics import topic_names
from concord.drift.finding import fingerprint
from concord.drift.lifecycle import command_id
from tests.integration.harness import Infra, WorkerProcess, consume_all, produce, read_all, wait_committed

GRACE_S = 2
CONSISTENT, CANCELED, MISSING_ERP = 1, 2, 3


def rules_file(tmp_path: Path) -> Path:
    from concord.drift import catalog

    path = tmp_path / "rules.json"
    path.write_text(json.dumps({
        "rules": {rule.id: {"grace_seconds": GRACE_S} for rule in catalog.RULES},
        "correction_timeout_seconds": 3600,
    }))
    return path


def histories() -> tuple[list[CanonicalEvent], InvoiceChanged, int]:
    """Three customers: one consistent, one whose subscription was just canceled (entitlement still
    active, a case open), one whose last billing invoice never reached the ERP."""
    rng = random.Random(11)
    events = list(history(CONSISTENT, rng))
    canceled = history(CANCELED, rng)
    events += canceled
    sub = next(e for e in canceled if isinstance(e, SubscriptionChanged))
    now = int(time.time() * 1000)
    events.append(msgspec.structs.replace(sub, event_id="evt_cancel", status="canceled", canceled_at=now,
                                          occurred_at=now, version=Version(now, 7)))
    missing = history(MISSING_ERP, rng)
    erp_invoice = next(e for e in reversed(missing) if isinstance(e, InvoiceChanged) and e.system == "netsuite")
    events += [e for e in missing if e is not erp_invoice]
    return events, erp_invoice, now


async def drift(worker: WorkerProcess, status: str) -> list[dict[str, Any]]:
    page = await worker.get_json(f"/api/drift?status={status}&limit=100")
    assert isinstance(page, dict)
    return list(page["items"])


async def wait_drift(worker: WorkerProcess, status: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = await drift(worker, status)
        if len(items) >= count:
            return items
        await asyncio.sleep(0.3)
    raise AssertionError(f"{len(items)} {status} findings, expected {count}: {items}\n{worker.log_tail()}")


@pytest.fixture
def drift_settings(settings: Settings, tmp_path: Path) -> Settings:
    return msgspec.structs.replace(settings, rules_file=str(rules_file(tmp_path)), deadline_scan_seconds=0.2)


def state_worker(settings: Settings, log: Path) -> WorkerProcess:
    return WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "--roles", "state"], settings, log)


async def test_findings_deadlines_convergence_and_recovery_after_sigkill(
    infra: Infra, drift_settings: Settings, tmp_path: Path
) -> None:
    names = topic_names(drift_settings)
    events, erp_invoice, canceled_at = histories()
    b, c = customer_key(CANCELED), customer_key(MISSING_ERP)
    worker = state_worker(drift_settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        await produce(infra.bootstrap, names.canonical,
                      [((e.customer_key or "").encode(), encode_event(e)) for e in events])

        # Exactly the expected findings: nothing for the consistent customer.
        opened = await wait_drift(worker, "open", 3)
        await asyncio.sleep(GRACE_S + 1)  # nothing else may appear later
        opened = await drift(worker, "open")
        found = {(f["customer_key"], f["rule"]): f for f in opened}
        assert set(found) == {(b, "D01"), (b, "D15"), (c, "D04")}, opened
        assert found[(b, "D01")]["status"] == "commanded"
        assert found[(b, "D15")]["status"] == "open"  # review: reported, never commanded
        assert found[(c, "D04")]["status"] == "commanded"
        # The deadline fired with no further event: the cancellation was the last event for B.
        assert found[(b, "D01")]["first_seen"] >= canceled_at + GRACE_S * 1000
        evidence = found[(c, "D04")]["evidence"]
        assert [o[0] for o in evidence] == ["stripe", "netsuite"]  # both sides, the ERP side missing

        org = next(e for e in events if e.customer_key == b and isinstance(e, EntitlementChanged)).organization_id
        commands = await consume_all(infra.bootstrap, names.commands, expected=2, timeout=30)
        by_action = {orjson.loads(r.value)["action"]: orjson.loads(r.value) for r in commands}
        assert set(by_action) == {"support.suspend_entitlement", "erp.upsert_invoice"}
        suspend = by_action["support.suspend_entitlement"]
        assert suspend["target"] == {"organization_id": org} and suspend["generation"] == 1
        d01 = found[(b, "D01")]
        assert d01["fingerprint"] == fingerprint("D01", b, org)
        assert suspend["command_id"] == d01["command_id"] == command_id(d01["fingerprint"], suspend["action"], 1,
                                                                        d01["since"])

        # The ERP catches up: the finding resolves, as corrected (a command had been issued).
        await produce(infra.bootstrap, names.canonical, [(c.encode(), encode_event(erp_invoice))])
        resolved = await wait_drift(worker, "resolved", 1)
        assert [(f["customer_key"], f["rule"], f["resolution"]) for f in resolved] == [(c, "D04", "corrected")]

        state_before = await worker.get_json(f"/api/customers/{b}")
        all_before = sorted((f["fingerprint"], f["status"]) for f in await drift(worker, "all"))
        await wait_committed(infra.bootstrap, drift_settings.app_id, names.canonical)
        worker.kill()
    finally:
        worker.stop()

    # Lose the Redis index too: the restarted worker must rebuild it from its recovered table.
    import redis.asyncio as aioredis

    client = aioredis.from_url(drift_settings.redis_url)
    stale = [key async for key in client.scan_iter(match=f"{drift_settings.topic_prefix}:drift:*")]
    assert stale
    await client.delete(*stale)
    await client.aclose()

    restarted = state_worker(drift_settings, tmp_path / "worker2.log").start()
    try:
        await restarted.wait_ready()
        await asyncio.sleep(GRACE_S + 1)  # time for deadlines to fire again (they must not) and the rebuild
        assert await restarted.get_json(f"/api/customers/{b}") == state_before
        assert sorted((f["fingerprint"], f["status"]) for f in await drift(restarted, "all")) == all_before

        # Redis loses the index while the worker runs (an empty restart, a flush): the board fills again.
        client = aioredis.from_url(drift_settings.redis_url)
        await client.delete(*[key async for key in client.scan_iter(match=f"{drift_settings.topic_prefix}:drift:*")])
        await client.aclose()
        assert await drift(restarted, "all") == []
        await wait_drift(restarted, "all", len(all_before), timeout=30)
        assert sorted((f["fingerprint"], f["status"]) for f in await drift(restarted, "all")) == all_before
    finally:
        restarted.stop()

    # No finding opened twice, no command sent twice, across the crash and the restart.
    transitions = [orjson.loads(r.value) for r in await read_all(infra.bootstrap, names.drift)]
    opened_fps = [t["fingerprint"] for t in transitions if t["status"] == "open"]
    assert len(opened_fps) == len(set(opened_fps)) == 3
    command_ids = [orjson.loads(r.value)["command_id"] for r in await read_all(infra.bootstrap, names.commands)]
    assert len(command_ids) == len(set(command_ids)) == 2
