"""`concord bridge salesforce`: Salesforce Change Data Capture from the Pub/Sub API into `<prefix>.raw.salesforce`.

Without it, how CDC reaches the raw topic is left to the customer (a CometD or Kafka Connect pipeline).
This process is that pipeline: one subscription per channel of `CONCORD_SALESFORCE_CDC_CHANNELS`, at
`CONCORD_SALESFORCE_PUBSUB_URL`, authenticated as the connectors are (`CONCORD_SALESFORCE_ACCESS_TOKEN`,
`CONCORD_SALESFORCE_INSTANCE_URL`, the org id); the logic, and what it guarantees, is
connectors/salesforce_pubsub.py's. Here: the wiring.

* Kafka: one idempotent producer with acks=all; a batch counts as produced once every send is
  acknowledged. The raw topic is created first if it is missing (as the webhooks process does).
* Redis (`CONCORD_REDIS_URL`): the replay id of each channel, written after its batch is in Kafka; after a
  gap, the request for a Salesforce reconciliation pass (connectors/reconcile.py `request_key`).
* Metrics (core/metrics.py, `concord_bridge_*`), served on `--metrics-port` when given.
* Stop: SIGINT/SIGTERM cancel the subscriptions (a batch in flight is not stored, so it is produced again
  at the next start: a duplicate, never a hole) and close the producer; exit 0. A `BridgeError` (the
  token refused twice, a channel Salesforce refuses) exits 1 with its message.

`tokens` is where the access token comes from: by default the process's Salesforce token source
(`token_source`, connectors/tokens.py), the same flow and renewals as the connectors'.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from concord.connectors.reconcile import request_key
from concord.connectors.salesforce_pubsub import (
    BridgeConfig,
    BridgeError,
    BridgeHooks,
    ChannelBridge,
    RawRecord,
    RedisReplayStore,
    ReplayStore,
    channel,
    stub,
)
from concord.connectors.tokens import AccessTokens, auth_configured, salesforce_token_source
from concord.core import event_loop, metrics
from concord.core.kafka_security import kafka_client_options, kafka_security
from concord.core.settings import Settings, kafka_bootstrap
from concord.core.topics import TopicSpec, ensure_topics, topic_names

log = logging.getLogger("concord.bridge")

E_NO_TOKEN: Final = ("concord bridge salesforce: Salesforce has no credentials: set CONCORD_SALESFORCE_AUTH_FLOW and "
                     "its settings (docs/platform-auth.md), or CONCORD_SALESFORCE_ACCESS_TOKEN")


def token_source(settings: Settings) -> AccessTokens:
    """The bridge's access tokens: the process's Salesforce token source (connectors/tokens.py), renewed by its
    flow before it expires and after Salesforce refuses it."""
    if not auth_configured(settings, "salesforce"):
        raise SystemExit(E_NO_TOKEN)
    return salesforce_token_source(settings)


def channels(settings: Settings) -> list[str]:
    """The CDC channels to bridge, in the order configured, each once."""
    return list(dict.fromkeys(name.strip() for name in settings.salesforce_cdc_channels.split(",") if name.strip()))


def hooks() -> BridgeHooks:
    """The bridge's reports, counted in core/metrics.py."""
    return BridgeHooks(
        bridged=lambda name, count: metrics.bridge_events.labels(name).inc(count),
        stored=lambda name: metrics.bridge_replay_stored.labels(name).set(time.time()),
        gap=lambda name, entity: metrics.bridge_gaps.labels(name, entity).inc(),
        reconnect=lambda name, reason: metrics.bridge_reconnects.labels(name, reason).inc(),
    )


def kafka_producer(settings: Settings) -> Any:
    from aiokafka import AIOKafkaProducer

    # acks=all: a batch is produced once every in-sync replica has it, and only then is its replay id stored.
    return AIOKafkaProducer(bootstrap_servers=kafka_bootstrap(settings), acks="all", enable_idempotence=True,
                            request_timeout_ms=15_000, retry_backoff_ms=200, **kafka_client_options(settings))


def producing(producer: Any, topic: str) -> Any:
    """`Produce` over an aiokafka producer: send the batch, then wait for every acknowledgement."""

    async def produce(records: Sequence[RawRecord]) -> None:
        sent = [await producer.send(topic, value=record.value, key=record.key) for record in records]
        await asyncio.gather(*sent)

    return produce


async def bridge(settings: Settings, *, tokens: AccessTokens | None = None, store: ReplayStore | None = None,
                 stop: asyncio.Event | None = None) -> int:
    """Run the bridge until `stop` is set (SIGINT/SIGTERM by default); 0 when stopped, 1 on a `BridgeError`."""
    import redis.asyncio as aioredis

    tokens = tokens if tokens is not None else token_source(settings)
    topic = topic_names(settings).raw["salesforce"]
    await ensure_topics(kafka_bootstrap(settings), [TopicSpec(topic, settings.topic_partitions,
                                                              settings.topic_replication_factor)],
                        security=kafka_security(settings))
    redis = aioredis.from_url(settings.redis_url)
    store = store if store is not None else RedisReplayStore(redis, settings.topic_prefix)
    producer = kafka_producer(settings)
    await producer.start()
    grpc_channel = channel(settings.salesforce_pubsub_url)
    config = BridgeConfig(instance_url=settings.salesforce_instance_url, org_id=settings.salesforce_org_id,
                          batch=settings.salesforce_pubsub_batch, preset=settings.salesforce_pubsub_replay_preset)
    if stop is None:
        stop = event_loop.stop_on_signals()

    async def request_pass(at_ms: int) -> None:
        await redis.set(request_key(settings.topic_prefix, "salesforce"), at_ms)

    bridges = [ChannelBridge(name, stub(grpc_channel), tokens=tokens, store=store, produce=producing(producer, topic),
                             config=config, hooks=hooks(), request_pass=request_pass)
               for name in channels(settings)]
    runs: list[asyncio.Task[Any]] = [asyncio.create_task(one.run(), name=f"bridge {one.channel}") for one in bridges]
    stopping: asyncio.Task[Any] = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*runs, stopping], return_when=asyncio.FIRST_COMPLETED)
        failed = [task for task in runs if task in done and task.exception() is not None]
        for task in failed:
            error = task.exception()
            if not isinstance(error, BridgeError):
                raise error  # type: ignore[misc]  # a bug: shown with its traceback
            log.error("%s", error)
        return 1 if failed else 0
    finally:
        for task in [*runs, stopping]:
            task.cancel()
        await asyncio.gather(*runs, stopping, return_exceptions=True)
        await producer.stop()
        await grpc_channel.close()
        await redis.aclose()


def run(settings: Settings, metrics_port: int = 0) -> int:
    """`concord bridge salesforce` (blocking), on `CONCORD_EVENT_LOOP`'s loop."""
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=metrics.REGISTRY)
    return event_loop.run(bridge(settings), settings.event_loop)
