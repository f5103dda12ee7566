"""The worker context: one Redis client and one drift index for every role, closed after the closers."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from concord.agents import context
from concord.app.main import build
from concord.core.settings import Settings


def test_a_worker_with_every_role_opens_one_redis_client_and_one_drift_index(
        monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[aioredis.Redis] = []
    init = aioredis.Redis.__init__

    def counted(self: aioredis.Redis, *args: object, **kwargs: object) -> None:
        opened.append(self)  # every client, wherever it is made (none connects before a command)
        init(self, *args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(aioredis.Redis, "__init__", counted)
    concord = build(Settings(topic_prefix="one-pool"))
    assert concord.roles == frozenset(context.ROLES)
    assert opened == [concord.redis]  # the ledger, the rate limits, both APIs and the index share it
    assert concord.drift_index is concord.drift_index


async def test_shutdown_runs_every_closer_in_order_then_closes_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    concord = build(Settings(topic_prefix="closers"), roles=["ingest"])

    async def closed() -> None:
        events.append("redis closed")
    monkeypatch.setattr(concord.redis, "aclose", closed)

    async def first() -> None:
        events.append("first")

    async def broken() -> None:
        raise RuntimeError("a connector that fails to close")

    async def last() -> None:
        events.append("last")

    for closer in (first, broken, last):
        concord.on_shutdown(closer)
    await concord.app.on_before_shutdown.send()
    assert events == ["first", "last", "redis closed"]


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        build(Settings(), roles=["ingest", "billing"])
