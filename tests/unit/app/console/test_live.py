"""The board's live stream (app/console/live.py) over a real aiohttp server, with an in-memory change log:
catch-up and resume by id, fan-out to every board, heartbeats, health, reset, and shutdown."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from concord.app.console import live
from concord.connectors.drift_changes import FindingChange, stream_id


class MemoryLog:
    """The change log's reads, over a list (ids `<n>-0`)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, FindingChange]] = []
        self.trimmed_to = 0  # entries up to this number were trimmed away
        self._added = asyncio.Event()
        self.waits = 0

    def add(self, fingerprint: str, kind: str = "new") -> str:
        change_id = f"{len(self.entries) + 1 + self.trimmed_to}-0"
        self.entries.append((change_id, FindingChange(kind=kind, fingerprint=fingerprint, customer_key="001A",
                                                      rule="D04", severity="high", status="open")))
        self._added.set()
        return change_id

    def _after(self, after: str, count: int) -> list[tuple[str, FindingChange]]:
        mark = stream_id(after) or (0, 0)
        return [e for e in self.entries if (stream_id(e[0]) or (0, 0)) > mark][:count]

    async def last_id(self) -> str:
        return self.entries[-1][0] if self.entries else "0-0"

    async def since(self, after: str, count: int) -> list[tuple[str, FindingChange]]:
        return self._after(after, count)

    async def wait(self, after: str, block_ms: int, count: int) -> list[tuple[str, FindingChange]]:
        self.waits += 1
        found = self._after(after, count)
        if not found:
            self._added.clear()
            try:
                await asyncio.wait_for(self._added.wait(), block_ms / 1000)
            except TimeoutError:
                return []
            found = self._after(after, count)
        return found

    async def lost_after(self, after: str) -> bool:
        return (stream_id(after) or (0, 0))[0] < self.trimmed_to


@pytest.fixture
def changes() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
async def feed(changes: MemoryLog) -> AsyncIterator[live.Feed]:
    feed = live.Feed(changes, block_ms=50)  # type: ignore[arg-type]
    yield feed
    await feed.close()


def server(feed: live.Feed, **options: Any) -> TestServer:
    app = web.Application()
    app.router.add_get("/events", functools.partial(live.stream, feed=feed, **options))
    return TestServer(app)


async def read_event(response: Any, timeout: float = 3.0) -> dict[str, str]:
    """The next event's fields (a comment comes back as {"comment": ...})."""
    raw = await asyncio.wait_for(response.content.readuntil(b"\n\n"), timeout)
    fields: dict[str, str] = {}
    for line in raw.decode().strip("\n").split("\n"):
        if line.startswith(":"):
            fields["comment"] = line[1:].strip()
            continue
        name, _, value = line.partition(": ")
        fields[name] = fields[name] + "\n" + value if name in fields else value
    return fields


async def next_finding(response: Any) -> dict[str, str]:
    while True:
        event = await read_event(response)
        if event.get("event") in ("finding", "reset"):
            return event


async def test_a_board_catches_up_after_its_page_then_gets_changes_live(changes: MemoryLog, feed: live.Feed) -> None:
    rendered_at = changes.add("old")
    missed = changes.add("while-connecting")
    async with TestClient(server(feed)) as client:
        response = await client.get(f"/events?after={rendered_at}")
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        assert (await read_event(response))["retry"] == "3000"
        event = await next_finding(response)
        assert event["id"] == missed and '"fingerprint":"while-connecting"' in event["data"]
        for _ in range(50):  # wait until the board is subscribed to the feed
            if feed.subscribers:
                break
            await asyncio.sleep(0.01)
        fresh = changes.add("fresh", kind="status")
        event = await next_finding(response)
        assert (event["id"], event["event"]) == (fresh, "finding") and '"kind":"status"' in event["data"]


async def test_reconnecting_resumes_after_the_last_event_id(changes: MemoryLog, feed: live.Feed) -> None:
    ids = [changes.add(f"f{n}") for n in range(5)]
    async with TestClient(server(feed)) as client:
        # The browser's Last-Event-ID wins over the page's ?after=.
        response = await client.get(f"/events?after={ids[0]}", headers={"Last-Event-ID": ids[2]})
        assert [(await next_finding(response))["id"] for _ in range(2)] == ids[3:]


async def test_without_any_id_a_board_starts_with_what_comes_next(changes: MemoryLog, feed: live.Feed) -> None:
    changes.add("before")
    async with TestClient(server(feed)) as client:
        response = await client.get("/events")
        await read_event(response)  # retry
        for _ in range(50):
            if feed.subscribers:
                break
            await asyncio.sleep(0.01)
        after = changes.add("after")
        assert (await next_finding(response))["id"] == after


async def test_changes_no_longer_kept_make_the_board_reload(changes: MemoryLog, feed: live.Feed) -> None:
    changes.trimmed_to = 10
    changes.add("kept")
    async with TestClient(server(feed)) as client:
        response = await client.get("/events", headers={"Last-Event-ID": "3-0"})
        event = await next_finding(response)
        assert event["event"] == "reset" and "id" not in event
        assert await asyncio.wait_for(response.content.read(), 2) == b""  # and the stream ends


async def test_one_reader_for_every_board_of_a_worker(changes: MemoryLog, feed: live.Feed) -> None:
    async with TestClient(server(feed)) as client:
        boards = [await client.get("/events?after=0-0") for _ in range(3)]
        for _ in range(100):
            if feed.subscribers == 3:
                break
            await asyncio.sleep(0.01)
        assert feed.subscribers == 3
        change_id = changes.add("everyone")
        for board in boards:
            assert (await next_finding(board))["id"] == change_id
        waits = changes.waits
        await asyncio.sleep(0.2)
        assert changes.waits - waits <= 6  # one XREAD loop (50 ms blocks), not one per board
        for board in boards:
            board.close()
        for _ in range(100):
            if not feed.subscribers:
                break
            await asyncio.sleep(0.02)


async def test_a_quiet_stream_gets_heartbeats_and_health(changes: MemoryLog, feed: live.Feed) -> None:
    async with TestClient(server(feed, health=lambda: "<table>ok</table>", heartbeat_seconds=0.1,
                                 health_seconds=0.15)) as client:
        response = await client.get("/events")
        seen: dict[str, dict[str, str]] = {}
        while len(seen) < 2:
            event = await read_event(response)
            if "comment" in event:
                seen["heartbeat"] = event
            elif event.get("event") == "health":
                seen["health"] = event
        assert seen["heartbeat"]["comment"] == "keep-alive"
        assert seen["health"]["data"] == '{"html":"<table>ok</table>"}' and "id" not in seen["health"]


async def test_closing_the_feed_ends_every_stream(changes: MemoryLog, feed: live.Feed) -> None:
    async with TestClient(server(feed)) as client:
        response = await client.get("/events")
        await read_event(response)
        for _ in range(50):
            if feed.subscribers:
                break
            await asyncio.sleep(0.01)
        await feed.close()
        assert await asyncio.wait_for(response.content.read(), 2) == b""
        late = await client.get("/events")  # a worker that is stopping streams nothing more
        assert await asyncio.wait_for(late.content.read(), 2) == b"retry: 3000\n\n"


async def test_a_board_too_slow_for_its_changes_is_dropped_and_resumes(changes: MemoryLog) -> None:
    subscription = live.Subscription(limit=2)
    for n in range(3):
        subscription.offer((f"{n + 1}-0", FindingChange(kind="new", fingerprint=str(n), customer_key="k",
                                                        rule="D04", severity="high", status="open")))
    assert subscription.overflowed
    assert [i for i, _ in await subscription.take(0)] == ["1-0", "2-0"]  # sent; it reconnects after 2-0


async def test_redis_away_when_a_board_connects_is_a_503() -> None:
    class Down(MemoryLog):
        async def last_id(self) -> str:
            raise ConnectionRefusedError("redis down")

    feed = live.Feed(Down(), block_ms=50)  # type: ignore[arg-type]
    async with TestClient(server(feed)) as client:
        response = await client.get("/events")
        assert response.status == 503 and (await response.json())["error"] == "redis_unreachable"
    await feed.close()
