"""`concord bridge salesforce` against the sandbox's Pub/Sub API, the real Kafka and the real Redis.

The sandbox's world changes go through its own emitter into its event bus (pubsub delivery), the bridge
subscribes over gRPC, and what lands on `<prefix>.raw.salesforce` is compared with what the sandbox
would have produced to Kafka itself (the oracle's form), decoded by the codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from concord.app.bridge import kafka_producer, producing
from concord.codecs import salesforce as codec
from concord.codecs.model import ResyncRequired
from concord.connectors.salesforce_pubsub import (
    BridgeConfig,
    BridgeError,
    BridgeHooks,
    ChannelBridge,
    RedisReplayStore,
    stub,
)
from concord.connectors.tokens import StaticToken, Token
from concord.core.kafka_security import kafka_security
from concord.core.pubsub_api import pb, services
from concord.core.settings import Settings, kafka_bootstrap
from concord.core.topics import TopicSpec, ensure_topics, topic_names
from concord.sandbox import salesforce as sf
from concord.sandbox.emit import Emitter
from concord.sandbox.oauth import Sessions
from concord.sandbox.pubsub import ALL_CHANGES, EventBus, PubSubService, start_server
from concord.sandbox.world import World
from tests.integration.harness import free_port

TOKEN = "00DHp00000ConcoMAA!sandbox-session"
INSTANCE = "https://concord-sandbox.my.salesforce.com"


class RecordingBus(EventBus):
    """The sandbox's bus, keeping the CometD messages appended: what Kafka delivery would have produced."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[bytes] = []
        self.keys: list[bytes] = []

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> int:
        assert value is not None and key is not None
        self.sent.append(value)
        self.keys.append(key)
        return await super().send_and_wait(topic, value, key)


class Org:
    """A sandbox org: world, emitter into the bus, the Pub/Sub server."""

    def __init__(self, bus: RecordingBus, server: grpc.aio.Server, service: PubSubService, port: int,
                 world: World, emitter: Emitter) -> None:
        self.bus, self.server, self.service, self.port, self.world, self.emitter = (bus, server, service, port,
                                                                                   world, emitter)

    async def changes(self, count: int) -> list[str]:
        """`count` accounts created (one event each), delivered to the bus; their ids."""
        before = len(self.bus.sent)
        ids = [sf.create_account(self.world, name=f"Customer {before + n}", currency="EUR")["Id"]
               for n in range(count)]
        assert await self.emitter.drain(10)
        assert len(self.bus.sent) == before + count
        return ids


@pytest.fixture
async def org() -> AsyncIterator[Org]:
    now = [1_764_000_000.0]
    world = World(clock=lambda: now[0])
    bus = RecordingBus(clock=lambda: now[0])
    port = free_port()
    server, service = await start_server(bus, Sessions(TOKEN).accepts, host="127.0.0.1",
                                         port=port, keepalive=0.3)
    emitter = Emitter(world, concord_url="http://127.0.0.1:9", stripe_secret="s", zendesk_secret="z",
                      netsuite_secret="n", kafka_bootstrap="unused:9092", salesforce_topic="unused",
                      producer_factory=lambda: bus, run="it")
    await emitter.start()
    yield Org(bus, server, service, port, world, emitter)
    await emitter.stop(timeout=1)
    await server.stop(grace=0.5)


class Harness:
    """The bridge's surroundings: a gRPC channel to the org, the raw topic, Redis."""

    def __init__(self, settings: Settings, org: Org) -> None:
        self.settings = settings
        self.org = org
        self.topic = topic_names(settings).raw["salesforce"]
        self.redis = aioredis.from_url(settings.redis_url)
        self.store = RedisReplayStore(self.redis, settings.topic_prefix)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{org.port}")
        self.producer = kafka_producer(settings)
        self.gaps: list[tuple[str, str]] = []
        self.passes_requested: list[int] = []

    def bridge(self, channel: str = ALL_CHANGES, *, batch: int = 2, preset: str = "LATEST", store: Any = None,
               tokens: Any = None) -> ChannelBridge:
        return ChannelBridge(channel, stub(self.channel), tokens=tokens or StaticToken("salesforce", TOKEN),
                             store=store or self.store, produce=producing(self.producer, self.topic),
                             config=BridgeConfig(instance_url=INSTANCE, batch=batch, preset=preset,
                                                 backoff_base=0.05),
                             hooks=BridgeHooks(gap=lambda channel, entity: self.gaps.append((channel, entity))),
                             request_pass=self.request_pass, clock_ms=lambda: 1_764_000_360_000)

    async def request_pass(self, at_ms: int) -> None:
        self.passes_requested.append(at_ms)

    async def records(self, count: int, timeout: float = 20.0) -> list[tuple[bytes, bytes]]:
        """The first `count` records of the raw topic (key, value), in offset order per partition."""
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=kafka_bootstrap(self.settings),
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        found: list[tuple[bytes, bytes]] = []
        try:
            async with asyncio.timeout(timeout):
                while len(found) < count:
                    batches = await consumer.getmany(timeout_ms=500)
                    for messages in batches.values():
                        found.extend((m.key, m.value) for m in messages)
        finally:
            await consumer.stop()
        return found

    async def all_records(self) -> list[tuple[bytes, bytes]]:
        """Every record of the raw topic (one partition), read up to its end."""
        partition = TopicPartition(self.topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap(self.settings), enable_auto_commit=False)
        await consumer.start()
        found: list[tuple[bytes, bytes]] = []
        try:
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            end = (await consumer.end_offsets([partition]))[partition]
            while await consumer.position(partition) < end:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend((m.key, m.value) for m in messages)
        finally:
            await consumer.stop()
        return found


@pytest.fixture
async def harness(settings: Settings, org: Org) -> AsyncIterator[Harness]:
    made = Harness(settings, org)
    await ensure_topics(kafka_bootstrap(settings), [TopicSpec(made.topic, 1, 1)], security=kafka_security(settings))
    await made.producer.start()
    yield made
    await made.producer.stop()
    await made.channel.close()
    await made.redis.delete(made.store.key(ALL_CHANGES))
    await made.redis.aclose()


@contextlib.asynccontextmanager
async def running(bridge: ChannelBridge) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(bridge.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


def event_id(value: bytes) -> str:
    return codec.decode(value)[0].event_id


async def test_events_arrive_in_order_with_the_sandbox_keys_and_shape(org: Org, harness: Harness) -> None:
    account = sf.create_account(org.world, name="Acme", country="DE", city="Berlin", currency="EUR")
    sf.update_account(org.world, account["Id"], {"BillingCity": "Hamburg"})
    opportunity = sf.create_opportunity(org.world, account["Id"], name="Deal", amount=50_000, currency="EUR")
    sf.close_won(org.world, opportunity["Id"])
    assert await org.emitter.drain(10)
    async with running(harness.bridge(preset="EARLIEST")):
        records = await harness.records(len(org.bus.sent))
    assert [key for key, _ in records] == org.bus.keys  # one partition: the bus's order, the sandbox's keys
    assert [codec.decode(value) for _, value in records] == [codec.decode(value) for value in org.bus.sent]


async def test_a_crash_between_produce_and_store_replays_and_never_skips(org: Org, harness: Harness) -> None:
    await org.changes(6)

    class CrashingStore(RedisReplayStore):
        """Stores the first batch's replay id, then the process 'dies' before storing the second's."""

        saves = 0

        async def save(self, channel: str, replay_id: bytes) -> None:
            self.saves += 1
            if self.saves == 2:
                raise RuntimeError("killed after producing, before storing")
            await super().save(channel, replay_id)

    crashing = CrashingStore(harness.redis, harness.settings.topic_prefix)
    with pytest.raises(RuntimeError, match="before storing"):
        await asyncio.wait_for(harness.bridge(preset="EARLIEST", store=crashing).run(), 10)
    assert len(await harness.records(4)) == 4  # two batches of two produced, one stored
    async with running(harness.bridge(preset="EARLIEST")):
        records = await harness.records(8)
    ids = [event_id(value) for _, value in records]
    assert ids == [event_id(value) for value in org.bus.sent[:4] + org.bus.sent[2:6]]  # batch 2 again, nothing lost


async def test_a_restart_resumes_after_the_stored_replay_id(org: Org, harness: Harness) -> None:
    await org.changes(3)
    async with running(harness.bridge(preset="EARLIEST")):
        assert len(await harness.records(3)) == 3
    await org.changes(2)  # while the bridge is down
    async with running(harness.bridge(preset="LATEST")):  # the stored id wins over the preset
        await harness.records(5)
        await asyncio.sleep(0.7)  # a keepalive or two: nothing more may come
        records = await harness.all_records()
    assert [event_id(value) for _, value in records] == [event_id(value) for value in org.bus.sent]
    stored = await harness.store.load(ALL_CHANGES)
    assert stored is not None and int.from_bytes(stored, "big") == org.bus.latest


async def test_an_expired_replay_id_becomes_a_gap_and_the_bridge_resubscribes_from_latest(
        org: Org, harness: Harness) -> None:
    org.bus.retention = 60.0
    await org.changes(1)
    await harness.store.save(ALL_CHANGES, (1).to_bytes(8, "big"))
    await org.changes(1)  # replayable only after event 1...
    clock = org.bus._clock
    org.bus._clock = lambda: clock() + 3600  # ...until an hour later, when both are past the retention
    await org.changes(1)
    async with running(harness.bridge(channel=ALL_CHANGES)) as task:
        records = await harness.records(2)
        gaps = [codec.decode(value)[0] for _, value in records]
        assert all(isinstance(gap, ResyncRequired) and not gap.record_ids for gap in gaps)
        assert sorted(gap.object_type for gap in gaps) == ["Account", "Opportunity"]
        await until(lambda: harness.gaps == [(ALL_CHANGES, "Account"), (ALL_CHANGES, "Opportunity")])
        assert harness.passes_requested == [1_764_000_360_000]  # a Salesforce reconciliation, to clear the mark
        await until(lambda: len(org.service.streams) == 1)  # resubscribed (LATEST): the first stream was refused
        fresh = await org.changes(1)
        records = await harness.records(3)
        assert not task.done()
    assert records[2][0] == fresh[0].encode()
    assert event_id(records[2][1]) == event_id(org.bus.sent[-1])


async def test_the_server_sends_no_more_than_requested(org: Org) -> None:
    await org.changes(5)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{org.port}")
    requests: asyncio.Queue[Any] = asyncio.Queue()
    await requests.put(pb.FetchRequest(topic_name=ALL_CHANGES, replay_preset=pb.ReplayPreset.Value("EARLIEST"),
                                       num_requested=2))

    async def fetch() -> AsyncIterator[Any]:
        while True:
            yield await requests.get()

    call = services.PubSubStub(channel).Subscribe(fetch(), metadata=(("accesstoken", TOKEN),
                                                                      ("instanceurl", INSTANCE),
                                                                      ("tenantid", "00DHp00000ConcoMAA")))
    received = 0
    responses = call.__aiter__()
    while received < 2:
        received += len((await anext(responses)).events)
    keepalive = await anext(responses)  # nothing more until asked, however many are waiting
    assert received == 2 and not keepalive.events and keepalive.pending_num_requested == 0
    await requests.put(pb.FetchRequest(num_requested=10))
    while received < 5:
        response = await anext(responses)
        received += len(response.events)
    assert received == 5 and response.pending_num_requested == 7
    call.cancel()
    await channel.close()


async def test_the_bridge_asks_for_at_most_a_batch_beyond_what_it_bridged(org: Org, harness: Harness) -> None:
    await org.changes(7)
    async with running(harness.bridge(preset="EARLIEST", batch=3)):
        await harness.records(7)
        stream = org.service.streams[-1]
        await until(lambda: stream.sent == 7)
    assert stream.requested - stream.sent <= 3


async def test_a_refused_token_is_refreshed_once_then_the_bridge_stops(org: Org, harness: Harness) -> None:
    class Expiring:
        """A session that expired: the renewal gives the valid one (or, `stale`, the same expired one)."""

        platform, renews = "salesforce", True

        def __init__(self, fresh: str) -> None:
            self.fresh = fresh
            self.held = Token(value="00DHp00000ConcoMAA!expired", obtained_at=0.0, expires_at=math.inf)
            self.refreshes = 0

        async def current(self) -> Token:
            return self.held

        async def token(self) -> str:
            return self.held.value

        async def refresh(self, refused: str | None = None) -> str:
            self.refreshes += 1
            self.held = Token(value=self.fresh, obtained_at=0.0, expires_at=math.inf)
            return self.fresh

    await org.changes(1)
    good = Expiring(TOKEN)
    async with running(harness.bridge(preset="EARLIEST", tokens=good)):
        assert len(await harness.records(1)) == 1
    assert good.refreshes == 1
    stale = Expiring("00DHp00000ConcoMAA!expired")
    with pytest.raises(BridgeError, match="twice"):
        await asyncio.wait_for(harness.bridge(preset="EARLIEST", tokens=stale).run(), 10)
    assert stale.refreshes == 1
