"""The drift index's change log and the board's queries, against the real Redis: what a write appends, in the
same transaction; reading on from an id; trimming noticed; counts, owners, platforms, recent resolutions."""

from __future__ import annotations

import asyncio
import uuid

from concord.connectors.drift_changes import ORIGIN, ChangeLog
from concord.connectors.drift_index import DriftIndex
from concord.connectors.ledger import redis_client
from concord.core.messages import Observation
from concord.tables.state import DriftItem
from tests.integration.harness import Infra
from tests.integration.test_drift_index import flushed


def item(fp: str, rule: str, status: str, first_seen: int, severity: str = "high", last_seen: int = 0,
         systems: tuple[str, ...] = ("stripe", "netsuite"), resolved_at: int = 0) -> DriftItem:
    return DriftItem(fingerprint=fp, rule=rule, subject=fp, status=status, severity=severity, since=0, due=0,
                     first_seen=first_seen, last_seen=last_seen or first_seen, resolved_at=resolved_at,
                     resolution="corrected" if status == "resolved" else None,
                     evidence=tuple(Observation(system=s, record="r", field="total", value=1) for s in systems))


async def test_each_write_appends_what_changed_and_a_reader_goes_on_from_any_id(infra: Infra) -> None:
    client = redis_client(infra.redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    index = DriftIndex(client, prefix, flush_interval=0.05)
    log = ChangeLog(client, prefix)
    runner = asyncio.create_task(index.run())
    try:
        assert await log.last_id() == ORIGIN and await log.since(ORIGIN, 10) == []
        index.submit("001A", [item("a1", "D04", "open", 10), item("a2", "D15", "open", 20),
                              item("p1", "D01", "pending", 5)])
        await flushed(index)
        first = await log.since(ORIGIN, 10)
        assert sorted((c.kind, c.fingerprint) for _, c in first) == [("new", "a1"), ("new", "a2")]  # never pending
        mark = await log.last_id()
        assert mark == first[-1][0]

        # Seen again only: no change. Resolved, escalated, gone: one change each.
        index.submit("001A", [item("a1", "D04", "open", 10, last_seen=99), item("a2", "D15", "open", 20)])
        await flushed(index)
        assert await log.since(mark, 10) == []
        index.submit("001A", [item("a1", "D04", "resolved", 10, resolved_at=50), item("a3", "D05", "escalated", 30)])
        await flushed(index)
        later = await log.since(mark, 10)
        assert sorted((c.kind, c.fingerprint, c.status, c.previous) for _, c in later) == [
            ("new", "a3", "escalated", ""), ("removed", "a2", "", "open"), ("resolved", "a1", "resolved", "open")]
        assert all(c.customer_key == "001A" and c.at > 0 for _, c in later)
        # A blocking read returns what comes after the id it is given.
        waiter = asyncio.create_task(log.wait(later[-1][0], 1000, 10))
        await asyncio.sleep(0.05)
        index.submit("001B", [item("b1", "D06", "open", 40)])
        found = await waiter
        assert [(c.kind, c.fingerprint) for _, c in found] == [("new", "b1")]
        assert not await log.lost_after(mark) and not await log.lost_after(ORIGIN)
    finally:
        runner.cancel()
        await client.aclose()


async def test_a_reader_whose_id_was_trimmed_away_is_told(infra: Infra) -> None:
    client = redis_client(infra.redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    index = DriftIndex(client, prefix, flush_interval=0.01, changes_kept=100)
    log = ChangeLog(client, prefix)
    runner = asyncio.create_task(index.run())
    try:
        index.submit("001A", [item("first", "D04", "open", 1)])
        await flushed(index)
        early = await log.last_id()
        for n in range(3):  # well past the bound (trimming is by whole nodes of ~100 entries)
            index.submit("001B", [item(f"b{n}-{m}", "D04", "open", 2) for m in range(150)])
            await flushed(index)
        assert await log.lost_after(early)
        assert not await log.lost_after(await log.last_id())
        assert await log.lost_after(ORIGIN)  # a page rendered before any change, away ever since
        await client.delete(log.key)  # Redis lost it all
        assert await log.lost_after(early)
    finally:
        runner.cancel()
        await client.aclose()


async def test_board_queries_counts_owners_platforms_and_recent_resolutions(infra: Infra) -> None:
    client = redis_client(infra.redis_url)
    index = DriftIndex(client, f"t{uuid.uuid4().hex[:8]}", flush_interval=0.05)
    runner = asyncio.create_task(index.run())
    try:
        index.submit("001A", [item("a1", "D04", "open", 10), item("a2", "D05", "commanded", 20, severity="low"),
                              item("a3", "D01", "open", 30, systems=("zendesk", "stripe")),
                              item("a4", "D04", "resolved", 5, resolved_at=500),
                              item("a5", "D06", "resolved", 6, resolved_at=900)])
        await flushed(index)
        assert await index.counts(["D01", "D04", "D05", "D06"]) == {
            "D04": {"high": 1}, "D05": {"low": 1}, "D01": {"high": 1}}
        finance = await index.query("open", rules=["D04", "D05", "D06", "D07"])
        assert [f.fingerprint for f in finance.items] == ["a2", "a1"] and finance.total == 2
        assert [f.fingerprint for f in (await index.query("all", rules=["D04"])).items] == ["a1", "a4"]
        assert (await index.query("open", rules=[])).total == 0
        assert [f.fingerprint for f in (await index.query("open", system="zendesk")).items] == ["a3"]
        assert [f.fingerprint for f in (await index.query("open", system="netsuite", rules=["D04", "D05"],
                                                          severity="low")).items] == ["a2"]
        assert [f.fingerprint for f in await index.recently_resolved(10)] == ["a5", "a4"]  # by when resolved
        assert not [k async for k in client.scan_iter(match=f"{index._p}tmp:*")]  # no query left a key behind
        # Reopened, and its evidence moved to other systems: the sets follow.
        index.submit("001A", [item("a4", "D04", "open", 5, systems=("zendesk",))])
        await flushed(index)
        assert [f.fingerprint for f in await index.recently_resolved(10)] == []
        assert [f.fingerprint for f in (await index.query("open", system="zendesk")).items] == ["a4"]
        assert (await index.query("all", system="stripe")).total == 0
    finally:
        runner.cancel()
        await client.aclose()
