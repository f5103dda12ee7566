"""The sagas of every worker in Redis, for `GET /api/sagas`, `concord saga` and the console.

Sagas live in the `sagas` table, by customer, on the worker that owns the customer. Each worker mirrors
the sagas of its customers here whenever one changes (connectors/mirror.py: in the background, queued
while Redis is down, mirrored again after recovery, a rebalance or a Redis that lost it).

Keys (prefix `<topic_prefix>:sagas:`): hash `all` (opportunity id -> the saga as JSON, `SagaView`) and the
mirror's `epoch`. A few thousand deals in flight or recently closed fit one hash; a listing reads it whole,
once, and filters and counts what it read (`select`, `state_counts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec
import redis.asyncio as aioredis

from concord.connectors.mirror import RedisMirror
from concord.drift.saga import STATES, SagaBook, SagaView, view

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SagaView).decode
#: The most sagas one listing returns.
LIMIT_MAX: Final = 1000


def sagas_prefix(topic_prefix: str) -> str:
    return f"{topic_prefix}:sagas:"


class SagaIndex(RedisMirror[SagaBook]):
    """Writes (per customer, in the background) and reads (any worker, the CLI) the sagas."""

    name = "saga index"

    def __init__(self, client: aioredis.Redis, topic_prefix: str, flush_interval: float = 0.2) -> None:
        super().__init__(client, sagas_prefix(topic_prefix), flush_interval, chunk=500)

    async def _write(self, batch: dict[str, SagaBook]) -> None:
        mapping = {opp: _encode(view(saga)) for book in batch.values() for opp, saga in book.sagas.items()}
        if mapping:
            await self._redis.hset(f"{self._p}all", mapping=mapping)

    async def get(self, opportunity_id: str) -> SagaView | None:
        raw = await self._redis.hget(f"{self._p}all", opportunity_id)
        return _decode(raw) if raw else None

    async def all(self) -> list[SagaView]:
        """Every saga, in one read: a page's listing and its counts come from the same read."""
        return list(map(_decode, await self._redis.hvals(f"{self._p}all")))


def capped(limit: int) -> int:
    """A listing's limit brought within 1 to LIMIT_MAX."""
    return max(1, min(limit, LIMIT_MAX))


def select(sagas: Iterable[SagaView], state: str | None = None, customer_key: str | None = None,
           limit: int = 100) -> list[SagaView]:
    """The sagas (in `state`, of `customer_key`), most recently changed first, at most `limit` (1 to LIMIT_MAX)."""
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    found = [s for s in sagas if (state is None or s.state == state)
             and (customer_key is None or s.customer_key == customer_key)]
    found.sort(key=lambda s: (-s.updated_at, s.opportunity_id))
    return found[:capped(limit)]


def state_counts(sagas: Iterable[SagaView]) -> dict[str, int]:
    """How many sagas are in each state."""
    counts = dict.fromkeys(STATES, 0)
    for saga in sagas:
        counts[saga.state] = counts.get(saga.state, 0) + 1
    return counts
