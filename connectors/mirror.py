"""Per-customer snapshots mirrored into Redis in the background: the drift index and the search index.

Workers own customers by partition; a view of every customer (the drift board, the search box) needs
all of them. Each worker mirrors the customers it owns into Redis by snapshot: whenever what the view
shows of a customer changes, its current snapshot replaces what Redis had for it. Snapshots wait in
memory (the latest per customer) and are written in the background; while Redis is down they stay
queued and stream processing goes on, and after recovery or a rebalance the owner submits its
customers again from its table.

A Redis that lost a mirror (restarted without persistence, flushed) is noticed by its `epoch` key:
each worker checks every few seconds that the key still holds the token it saw last; the first worker
to find it missing sets a new one, and every worker, finding a token it did not see, mirrors its owned
customers again (`on_lost`). A Redis restarted with its data keeps the token: no re-mirror.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import redis.asyncio as aioredis

log = logging.getLogger("concord.mirror")

# How often a worker checks that Redis still holds the mirror (its epoch token).
EPOCH_CHECK_SECONDS: Final = 5.0

Snapshot = TypeVar("Snapshot")


class RedisMirror(Generic[Snapshot]):
    """Snapshots queued per customer and written by `run` in the background; subclasses say how (`_write`).

    `prefix` starts every key of the mirror (`<topic prefix>:drift:`); `chunk` caps the customers of one
    write (0: all that are queued), so that a worker re-mirroring all it owns sends bounded pipelines.
    """

    #: What log lines call this mirror.
    name: str = "mirror"

    def __init__(self, client: aioredis.Redis, prefix: str, flush_interval: float = 0.2, chunk: int = 0) -> None:
        # The worker's one client (`Concord.redis`), closed by its owner. Any: redis-py types its commands
        # as sync-or-async unions that mypy cannot await.
        self._redis: Any = client
        self._p = prefix
        self._pending: dict[str, Snapshot] = {}
        self._flush_interval = flush_interval
        self._chunk = chunk
        self._wakeup = asyncio.Event()
        self.healthy = True
        self._epoch: bytes | None = None
        self._epoch_due = 0.0
        # Called when Redis lost the mirror: the owner re-submits every customer it owns.
        self.on_lost: Callable[[], None] | None = None

    def submit(self, customer_key: str, snapshot: Snapshot) -> None:
        """Queue the customer's current snapshot (the latest one wins)."""
        self._pending[customer_key] = snapshot
        self._wakeup.set()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def _take(self) -> dict[str, Snapshot]:
        if not self._chunk or len(self._pending) <= self._chunk:
            batch, self._pending = self._pending, {}
            return batch
        keys = list(itertools.islice(self._pending, self._chunk))
        self._wakeup.set()  # the rest goes with the next write
        return {key: self._pending.pop(key) for key in keys}

    async def run(self) -> None:
        """Write queued snapshots until cancelled; retry with backoff while Redis is away."""
        backoff = self._flush_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=EPOCH_CHECK_SECONDS)
            self._wakeup.clear()
            await asyncio.sleep(self._flush_interval)
            batch: dict[str, Snapshot] = {}
            try:
                if time.monotonic() >= self._epoch_due:
                    await self._check_epoch()
                if not self._pending:
                    continue
                batch = self._take()
                await self._write(batch)
                self.healthy = True
                backoff = self._flush_interval
            except (aioredis.RedisError, OSError) as exc:
                # Keep the snapshots (newer ones queued meanwhile win) and try again later.
                for key, snapshot in batch.items():
                    self._pending.setdefault(key, snapshot)
                if self.healthy:
                    log.warning("%s: Redis unavailable (%s); %d customers queued", self.name, exc, len(self._pending))
                self.healthy = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                self._wakeup.set()

    async def _check_epoch(self) -> None:
        """Notice a Redis that lost the mirror since the last check (see the module docstring)."""
        key = f"{self._p}epoch"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(key, uuid.uuid4().hex, nx=True)
            pipe.get(key)
            _, token = await pipe.execute()
        self._epoch_due = time.monotonic() + EPOCH_CHECK_SECONDS
        if self._epoch is not None and token != self._epoch:
            log.warning("%s: Redis lost it (restarted empty or flushed); mirroring this worker's customers again",
                        self.name)
            if self.on_lost is not None:
                self.on_lost()
        self._epoch = token

    async def _write(self, batch: dict[str, Snapshot]) -> None:
        """Replace what Redis holds for each customer of `batch` with its snapshot."""
        raise NotImplementedError
