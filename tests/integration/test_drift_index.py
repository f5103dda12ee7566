"""The Redis drift index against a real Redis: filters, paging, replacement, and an outage."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis

from concord.connectors import mirror
from concord.connectors.drift_index import DriftIndex
from concord.connectors.ledger import redis_client
from concord.tables.state import DriftItem
from tests.integration.harness import Infra


def item(fp: str, rule: str, status: str, first_seen: int, severity: str = "high") -> DriftItem:
    return DriftItem(fingerprint=fp, rule=rule, subject=fp, status=status, severity=severity, since=0,
                     due=0, first_seen=first_seen, last_seen=first_seen)


async def flushed(index: DriftIndex) -> None:
    for _ in range(100):
        if index.backlog == 0:
            await asyncio.sleep(0.3)  # the write itself
            return
        await asyncio.sleep(0.05)
    raise AssertionError("index did not flush")


async def test_query_filters_paging_and_snapshot_replacement(infra: Infra) -> None:
    client = redis_client(infra.redis_url)
    index = DriftIndex(client, f"t{uuid.uuid4().hex[:8]}", flush_interval=0.05)
    runner = asyncio.create_task(index.run())
    try:
        index.submit("001A", [item("a1", "D01", "commanded", 10), item("a2", "D15", "open", 20),
                              item("a3", "D04", "resolved", 5), item("a4", "D02", "pending", 1)])
        index.submit("001B", [item("b1", "D01", "open", 30, severity="low")])
        await flushed(index)
        page = await index.query("open")
        assert [f.fingerprint for f in page.items] == ["b1", "a2", "a1"] and page.total == 3  # pending never
        assert [f.fingerprint for f in (await index.query("resolved")).items] == ["a3"]
        assert (await index.query("all")).total == 4
        assert [f.fingerprint for f in (await index.query("open", rule="D01")).items] == ["b1", "a1"]
        assert [f.fingerprint for f in (await index.query("all", customer_key="001A")).items] == ["a2", "a1", "a3"]
        assert [f.fingerprint for f in (await index.query("open", severity="low")).items] == ["b1"]
        second = await index.query("open", offset=1, limit=1)
        assert (second.total, [f.fingerprint for f in second.items]) == (3, ["a2"])
        # A new snapshot replaces the customer's findings: a2 gone, a1 resolved.
        index.submit("001A", [item("a1", "D01", "resolved", 10)])
        await flushed(index)
        assert [f.fingerprint for f in (await index.query("open")).items] == ["b1"]
        assert [f.fingerprint for f in (await index.query("all", rule="D15")).items] == []
        assert (await index.get("a1")).status == "resolved"  # type: ignore[union-attr]
        assert await index.get("a2") is None
    finally:
        runner.cancel()
        await client.aclose()


async def test_redis_outage_queues_snapshots_and_detection_goes_on(infra: Infra) -> None:
    client = redis_client("redis://127.0.0.1:1/0")  # nothing listens there
    index = DriftIndex(client, "outage", flush_interval=0.05)
    runner = asyncio.create_task(index.run())
    try:
        index.submit("001A", [item("a1", "D01", "open", 10)])
        await asyncio.sleep(0.5)
        assert index.backlog == 1 and index.healthy is False  # kept, not lost; submit never blocked
    finally:
        runner.cancel()
        await client.aclose()


async def test_a_redis_that_lost_the_index_is_noticed_by_every_worker(infra: Infra, monkeypatch: Any) -> None:
    monkeypatch.setattr(mirror, "EPOCH_CHECK_SECONDS", 0.1)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    lost: list[str] = []
    clients = [redis_client(infra.redis_url) for _ in range(2)]  # two workers, each with its own client
    workers = [DriftIndex(c, prefix, flush_interval=0.05) for c in clients]
    for name, index in zip("ab", workers, strict=True):
        index.on_lost = lambda name=name: lost.append(name)  # type: ignore[misc]
    runners = [asyncio.create_task(index.run()) for index in workers]
    client = aioredis.from_url(infra.redis_url)
    try:
        workers[0].submit("001A", [item("a1", "D01", "open", 10)])
        await flushed(workers[0])
        await asyncio.sleep(0.5)  # several checks: the index is intact, nobody re-mirrors
        assert lost == []
        keys = [key async for key in client.scan_iter(match=f"{prefix}:drift:*")]
        await client.delete(*keys)  # what an empty restart or a flush leaves of this index
        for _ in range(100):
            if sorted(lost) == ["a", "b"]:
                break
            await asyncio.sleep(0.05)
        assert sorted(lost) == ["a", "b"]  # both workers mirror their customers again, once
        await asyncio.sleep(0.5)
        assert sorted(lost) == ["a", "b"]
    finally:
        for runner in runners:
            runner.cancel()
        for c in clients:
            await c.aclose()
        await client.aclose()
