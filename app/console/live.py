"""The board's live updates: the drift index's change log, streamed to every browser as server-sent events.

Fan-out: a worker reads the change log (a Redis Stream every worker's drift index appends to,
connectors/drift_changes.py) with ONE blocking `XREAD` loop (`Feed`), started by the first board that
connects, and hands each change to every board connected to this worker. A hundred open boards cost
Redis one reader per worker, not a hundred; and since every worker reads the same stream, a finding that
changed on the worker owning its customer reaches boards on every worker, with no polling of the index.

Resume: each event's id is the change's stream id. A board connecting gives the id its page was rendered
at (`?after=`), or, reconnecting, the browser sends the last id it received (`Last-Event-ID`); the stream
first catches up from the change log itself (`XRANGE` after that id), then goes on with the feed, skipping
what it already sent. Nothing is missed within the log's bound (`CONCORD_DRIFT_CHANGES_KEPT` changes);
past it, a `reset` event tells the page to reload.

A comment every `HEARTBEAT_SECONDS` keeps proxies from closing a quiet stream; a `health` event every
`HEALTH_SECONDS` refreshes the health strip. A board too slow to take its changes (`QUEUE_LIMIT` waiting)
is disconnected, and reconnects from its last id. When the worker stops, `Feed.close` ends every stream,
so the web server does not wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Final

import msgspec
from aiohttp import web

from concord.app.console import sse
from concord.connectors.drift_changes import ChangeLog, FindingChange, stream_id
from concord.connectors.executor import REDIS_ERRORS

log = logging.getLogger("concord.console")

#: How long one XREAD waits for a change (under the Redis client's 2 s socket timeout).
BLOCK_MS: Final = 1000
#: Changes read at once, from the feed or in a catch-up.
BATCH: Final = 500
#: Changes waiting for one board before it is disconnected (it reconnects and catches up from the log).
QUEUE_LIMIT: Final = 2000
HEALTH_SECONDS: Final = 5.0
REDIS_RETRY_SECONDS: Final = 1.0

E_REDIS: Final = ("Redis is unreachable ({error}): the board's changes are read there; the page retries by "
                  "itself")

Item = tuple[str, FindingChange]
_encode = msgspec.json.Encoder().encode


class Subscription:
    """What one board connected to this worker has yet to be sent."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self._limit = limit
        self._pending: deque[Item] = deque()
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def offer(self, item: Item) -> None:
        if len(self._pending) >= self._limit:
            self.overflowed = True
        else:
            self._pending.append(item)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self, timeout: float) -> list[Item]:
        """What is waiting, after up to `timeout` seconds for something (empty when nothing came)."""
        if not self._pending and not self.closed:
            # An Event, not a Queue: a wait that times out as an item arrives loses nothing.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        self._ready.clear()
        items = list(self._pending)
        self._pending.clear()
        return items


class Feed:
    """This worker's one reader of the change log, fanned out to its boards' subscriptions."""

    def __init__(self, changes: ChangeLog, block_ms: int = BLOCK_MS) -> None:
        self.changes = changes
        self._block_ms = block_ms
        self._subscriptions: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    async def subscribe(self) -> Subscription:
        """A subscription to every change read from now on (the reader starts with the first one)."""
        subscription = Subscription()
        if self.closed:
            subscription.close()
            return subscription
        async with self._lock:
            if self._task is None:
                # Its start is read before the first subscriber catches up, so nothing falls between.
                start = await self.changes.last_id()
                self._task = asyncio.ensure_future(self._run(start))
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def close(self) -> None:
        """End every subscription and stop reading (the worker stops)."""
        self.closed = True
        for subscription in list(self._subscriptions):
            subscription.close()
        self._subscriptions.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, cursor: str) -> None:
        failing = False
        while not self.closed:
            try:
                found = await self.changes.wait(cursor, self._block_ms, BATCH)
            except REDIS_ERRORS as exc:
                if not failing:
                    log.warning("board live updates: cannot read the change log in Redis (%s: %s); retrying",
                                type(exc).__name__, exc)
                failing = True
                await asyncio.sleep(REDIS_RETRY_SECONDS)
                continue
            if failing:
                log.info("board live updates: reading the change log again")
                failing = False
            for item in found:
                cursor = item[0]
                for subscription in list(self._subscriptions):
                    subscription.offer(item)


def change_event(change_id: str, change: FindingChange) -> bytes:
    return sse.event(_encode(change).decode(), name="finding", id=change_id)


def _newer(change_id: str, than: str) -> bool:
    return (stream_id(change_id) or (0, 0)) > (stream_id(than) or (0, 0))


async def stream(request: web.Request, feed: Feed, health: Callable[[], str] | None = None,
                 heartbeat_seconds: float = sse.HEARTBEAT_SECONDS,
                 health_seconds: float = HEALTH_SECONDS) -> web.StreamResponse:
    """The `/events` response: catch up after the board's last id, then every change as it comes.

    `health()` renders the health strip, sent as a `health` event every `health_seconds`.
    """
    start = sse.resume_from(request.headers.get("Last-Event-ID"), request.query.get("after"))
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # nginx: pass each event on at once
    })
    try:
        subscription = await feed.subscribe()
    except REDIS_ERRORS as exc:
        return web.json_response({"error": "redis_unreachable", "detail": E_REDIS.format(
            error=f"{type(exc).__name__}: {exc}")}, status=503)
    try:
        await response.prepare(request)
        await response.write(sse.retry())
        if start is None:
            cursor = await feed.changes.last_id()
        elif await feed.changes.lost_after(start):
            await response.write(sse.event('{"reason": "changes after your last update are no longer kept"}',
                                           name="reset"))
            return response
        else:
            cursor = start
            while True:
                missed = await feed.changes.since(cursor, BATCH)
                for change_id, change in missed:
                    await response.write(change_event(change_id, change))
                    cursor = change_id
                if len(missed) < BATCH:
                    break
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + heartbeat_seconds
        next_health = loop.time() + health_seconds
        while not (subscription.closed or subscription.overflowed):
            wait = max(0.0, min(next_heartbeat, next_health if health else next_heartbeat) - loop.time())
            for change_id, change in await subscription.take(wait):
                if _newer(change_id, cursor):
                    await response.write(change_event(change_id, change))
                    cursor = change_id
            now = loop.time()
            if health is not None and now >= next_health:
                await response.write(sse.event(_encode({"html": health()}).decode(), name="health"))
                next_health = now + health_seconds
            if now >= next_heartbeat:
                await response.write(sse.HEARTBEAT)
                next_heartbeat = now + heartbeat_seconds
    except ConnectionResetError:
        pass  # the board went away
    except REDIS_ERRORS as exc:
        # The browser reconnects (after `retry`) with its last id, and catches up once Redis answers.
        log.warning("board live updates: Redis unreachable while catching up (%s: %s)", type(exc).__name__, exc)
    finally:
        feed.unsubscribe(subscription)
    return response
