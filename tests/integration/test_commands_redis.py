"""The command ledger and rate limiter on a real Redis, and the executor across a Redis restart."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from concord.bench.common import free_port
from concord.connectors.base import Outcome
from concord.connectors.breaker import Breakers
from concord.connectors.executor import DONE, Executor
from concord.connectors.ledger import RedisLedger, StoredOutcome, Verdict, redis_client
from concord.connectors.policy import RetryPolicy
from concord.connectors.ratelimit import Limit, RedisRateLimiter
from concord.core.messages import Command
from concord.infra import redis as redis_infra
from concord.infra.cli import default_cache
from tests.integration.harness import Infra


def command(command_id: str, action: str = "billing.update_customer", platform: str = "stripe") -> Command:
    return Command(command_id=command_id, action=action, platform=platform, target={"customer_id": "cus_1"},
                   payload={"name": "Acme"}, fingerprint="fp", rule="D09", customer_key="001A", generation=1,
                   correlation_id="corr", created_at=1)


@pytest.fixture
async def client(infra: Infra):  # type: ignore[no-untyped-def]
    c = redis_client(infra.redis_url)
    yield c
    await c.aclose()


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_claim_semantics(client: aioredis.Redis) -> None:
    ledger = RedisLedger(client, prefix(), ttl_seconds=3600)
    c = command("c1")
    first = await ledger.claim(c, replay=False, now_ms=1000)
    assert first.verdict is Verdict.NEW and first.entry.state == "pending"
    assert (first.entry.action, first.entry.platform, first.entry.rule, first.entry.created_at) == (
        "billing.update_customer", "stripe", "D09", 1000)
    # Claimed but never finished (a crash): executed again.
    await ledger.record_attempt(c, 2, 1500)
    again = await ledger.claim(c, replay=False, now_ms=2000)
    assert again.verdict is Verdict.PENDING and again.entry.attempts == 2
    await ledger.record_done(c, 2, StoredOutcome(status=200, record_id="cus_1", detail={"name": "Acme"}), 2500)
    done = await ledger.claim(c, replay=True, now_ms=3000)  # even a replay does not re-open a done command
    assert done.verdict is Verdict.DONE and done.entry.outcome == StoredOutcome(status=200, record_id="cus_1",
                                                                                detail={"name": "Acme"})
    # `done` is final: a slower duplicate run's failure does not overwrite it.
    await ledger.record_failed(c, 3, "transient", "exhausted: late", 3500)
    assert (await ledger.get("c1")).state == "done"  # type: ignore[union-attr]

    f = command("f1")
    await ledger.claim(f, replay=False, now_ms=1000)
    await ledger.record_failed(f, 6, "transient", "exhausted: transient: 503", 2000)
    skipped = await ledger.claim(f, replay=False, now_ms=3000)
    assert skipped.verdict is Verdict.FAILED and skipped.entry.error == "exhausted: transient: 503"
    replayed = await ledger.claim(f, replay=True, now_ms=4000)
    assert replayed.verdict is Verdict.REPLAYED
    assert (replayed.entry.state, replayed.entry.attempts, replayed.entry.replays, replayed.entry.error) == (
        "pending", 0, 1, "")
    assert await ledger.get("nope") is None


async def test_two_replays_of_one_failed_command_cannot_both_take_it(client: aioredis.Redis) -> None:
    ledger = RedisLedger(client, prefix(), ttl_seconds=3600)
    f = command("f2")
    await ledger.claim(f, replay=False, now_ms=1)
    await ledger.record_failed(f, 1, "data", "data: bad", 2)
    verdicts = await asyncio.gather(*(ledger.claim(f, replay=True, now_ms=3) for _ in range(5)))
    assert sorted(v.verdict.value for v in verdicts) == ["pending"] * 4 + ["replayed"]


async def test_entries_expire_after_the_ttl(client: aioredis.Redis) -> None:
    ledger = RedisLedger(client, prefix(), ttl_seconds=3600)
    await ledger.claim(command("t1"), replay=False, now_ms=1)
    assert 3590 <= await ledger.ttl("t1") <= 3600
    await ledger.record_done(command("t1"), 1, StoredOutcome(status=200), 2)
    assert 3590 <= await ledger.ttl("t1") <= 3600  # every write keeps it for the full TTL

    short = RedisLedger(client, prefix(), ttl_seconds=1)
    await short.claim(command("t2"), replay=False, now_ms=1)
    for _ in range(40):
        if await short.get("t2") is None:
            break
        await asyncio.sleep(0.1)
    assert await short.get("t2") is None
    assert (await short.claim(command("t2"), replay=False, now_ms=5)).verdict is Verdict.NEW  # forgotten: new


async def test_token_bucket_is_shared_by_two_limiters(infra: Infra) -> None:
    # Two workers: separate clients, the same bucket. 2 requests/s with bursts of 4.
    name = prefix()
    limits = {"netsuite": Limit(rate=2.0, burst=4.0)}
    clients = [redis_client(infra.redis_url), redis_client(infra.redis_url)]
    try:
        a, b = (RedisRateLimiter(c, name, limits) for c in clients)
        taken = [await a.take("netsuite"), await b.take("netsuite"), await a.take("netsuite"),
                 await b.take("netsuite")]
        assert taken == [0.0] * 4
        wait_a, wait_b = await a.take("netsuite"), await b.take("netsuite")
        assert 0 < wait_a <= 0.5 and 0 < wait_b <= 0.5  # the burst is spent for both
        await asyncio.sleep(wait_b + 0.05)
        assert await b.take("netsuite") == 0.0  # refilled by the elapsed time
        assert await a.take("stripe") == 0.0  # no limit configured for it here: never waits
        other = RedisRateLimiter(clients[0], prefix(), limits)
        assert await other.take("netsuite") == 0.0  # another deployment's prefix: its own bucket
    finally:
        for c in clients:
            await c.aclose()


class CountingPlatform:
    """A platform applying each command once per idempotency key; can kill Redis on a given call."""

    platform = "stripe"
    actions = frozenset({"billing.update_customer"})

    def __init__(self, kill_redis_on_call: int, node: redis_infra.RedisNode) -> None:
        self.calls = 0
        self.applied: Counter[str] = Counter()
        self._kill_on = kill_redis_on_call
        self._node = node

    async def execute(self, command: Command) -> Outcome:
        self.calls += 1
        if command.command_id not in self.applied:
            self.applied[command.command_id] += 1
        if self.calls == self._kill_on:
            # Redis dies after the platform applied the command, before the ledger records it.
            await asyncio.to_thread(redis_infra.stop, self._node)
        return Outcome(status=200, record_id="cus_1")

    async def close(self) -> None:
        pass


@pytest.fixture
def own_redis() -> Iterator[redis_infra.RedisNode]:
    """A Redis of this test's own (not persistent), so stopping it disturbs no other test."""
    node = redis_infra.RedisNode(cache=default_cache() / "redis", port=free_port())
    assert redis_infra.start(node)
    yield node
    redis_infra.stop(node)


async def test_executor_pauses_while_redis_is_down_and_resumes_without_loss_or_double(
    own_redis: redis_infra.RedisNode, tmp_path: Path
) -> None:
    node = own_redis
    client = redis_client(f"redis://127.0.0.1:{node.port}/0")
    platform = CountingPlatform(kill_redis_on_call=4, node=node)
    name = prefix()
    executor = Executor(
        connectors={"stripe": platform}, ledger=RedisLedger(client, name, 3600),
        limiter=RedisRateLimiter(client, name, {"stripe": Limit(rate=1000.0, burst=1000.0)}),
        breakers=Breakers(5, 15.0, clock=lambda: 0.0),
        policy=RetryPolicy(max_attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.1),
    )
    ids = [f"cmd{i}" for i in range(8)]
    results = []

    async def run_all() -> None:
        for command_id in ids:
            results.append(await executor.run(command(command_id)))

    task = asyncio.create_task(run_all())
    try:
        for _ in range(200):
            if not executor.redis_up:
                break
            await asyncio.sleep(0.05)
        assert not executor.redis_up, "the executor never noticed Redis going away"
        await asyncio.sleep(1.5)
        # Paused: the 4th command was applied, nothing further is called without a ledger claim.
        assert platform.calls == 4 and not task.done() and len(results) == 3
        await asyncio.to_thread(redis_infra.start, node)
        await asyncio.wait_for(task, 60)
    finally:
        if not redis_infra.running(node):
            redis_infra.start(node)
        task.cancel()
    assert executor.redis_up
    assert [r.status for r in results] == [DONE] * 8 and [r.command_id for r in results] == ids
    assert platform.calls == 8 and all(platform.applied[i] == 1 for i in ids)  # nothing lost, nothing doubled
    ledger = RedisLedger(client, name, 3600)
    # Redis came back empty (it persists nothing here); the command in flight was recorded after it.
    assert (await ledger.get("cmd3")).state == "done"  # type: ignore[union-attr]
    assert (await executor.run(command("cmd3"))).status == "already_done"
    assert platform.calls == 8
    await client.aclose()
