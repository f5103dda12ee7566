"""Poison pills on the real broker: a record the state agent cannot decode is dead-lettered, never a crash loop."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from concord.codecs.model import CustomerUpserted, EntityRef, Platform, Version
from concord.codecs.model import encode as encode_event
from concord.core import messages
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import Infra, WorkerProcess, produce, read_all, wait_committed, wait_for_record

KEY = "001POISON0000001AAA"
# Valid JSON, deeper than any decoder recurses: msgspec raises RecursionError (not a DecodeError) on it.
DEEP = b'{"kind": "customer", "pad": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def customer(name: str, ts: int) -> bytes:
    event = CustomerUpserted(
        event_id=f"evt_poison_{ts}", source=Platform.STRIPE, entity=EntityRef("customer", "cus_poison"),
        occurred_at=ts, version=Version(ts), customer_key=KEY, xrefs={"stripe": "cus_poison"},
        system=Platform.STRIPE, customer_id="cus_poison", name=name, crm_account_id=KEY,
    )
    return encode_event(event)


def state_worker(settings: Settings, log: Path) -> WorkerProcess:
    return WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "--roles", "state"], settings, log)


async def wait_customer_named(worker: WorkerProcess, name: str, timeout: float = 60) -> None:
    """Until the customer's state (read as a reader would) holds `name`."""
    headers = {"Authorization": f"Bearer {worker.settings.read_token}"} if worker.settings.read_token else {}
    deadline = time.monotonic() + timeout
    body = ""
    async with aiohttp.ClientSession(headers=headers) as session:
        while time.monotonic() < deadline:
            async with session.get(f"{worker.base_url}/api/customers/{KEY}") as resp:
                body = await resp.text()
                if resp.status == 200 and name in body:
                    state = await worker.get_json(f"/api/customers/{KEY}")
                    assert name in orjson.dumps(state).decode()
                    return
            await asyncio.sleep(0.3)
    raise AssertionError(f"customer {KEY} never named {name!r}: {body}\n{worker.log_tail()}")


async def test_deep_record_on_the_canonical_topic_is_dead_lettered_and_the_stream_goes_on(
    infra: Infra, settings: Settings, tmp_path: Path
) -> None:
    names = topic_names(settings)
    now = int(time.time() * 1000)
    worker = state_worker(settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        # One good event, the poison pill, and a good event behind it, all on the same key (partition).
        await produce(infra.bootstrap, names.canonical, [
            (KEY.encode(), customer("Before Poison Ltd", now)),
            (KEY.encode(), DEEP),
            (KEY.encode(), customer("After Poison Ltd", now + 1000)),
        ])
        await wait_customer_named(worker, "After Poison Ltd")

        dead = await wait_for_record(infra.bootstrap, names.dlq_ingest, lambda r: r.value == DEEP)
        headers = dict(dead.headers)
        assert dead.key == KEY.encode()
        assert headers[messages.DLQ_REASON] == b"too_deep"
        assert headers[messages.DLQ_PLATFORM] == b"internal"
        assert headers[messages.DLQ_SOURCE_TOPIC] == names.canonical.encode()
        assert int(headers[messages.DLQ_SOURCE_OFFSET]) >= 1
        detail = headers[messages.DLQ_DETAIL].decode()
        assert "nested too deeply" in detail and "Traceback" not in detail

        await wait_committed(infra.bootstrap, settings.app_id, names.canonical)
        worker.kill()
    finally:
        worker.stop()

    # Restarted on the same topics: ready, no crash loop on the record it skipped, and it goes on.
    restarted = state_worker(settings, tmp_path / "worker2.log").start()
    try:
        await restarted.wait_ready()
        await produce(infra.bootstrap, names.canonical, [(KEY.encode(), customer("After Restart Ltd", now + 2000))])
        await wait_customer_named(restarted, "After Restart Ltd")
        assert restarted.proc is not None and restarted.proc.poll() is None
    finally:
        restarted.stop()

    dead_letters = [r for r in await read_all(infra.bootstrap, names.dlq_ingest) if r.value == DEEP]
    assert len(dead_letters) == 1  # dead-lettered once: its offset was committed, not read again
