"""Raw platform records as Concord's raw topics hold them, from the sandbox's own traffic, and producing them.

`raw_records(seed, customers, count)` plays the sandbox's seeded traffic (`sandbox/traffic.py`: the
customers' lifecycles, drift included) on a `World` offline, with no HTTP and no Kafka: the world's
clock is the simulated time (`start` + simulated seconds / `time_scale`, as the sandbox paces it), its
changes become native events through `sandbox/events.py`, and each delivery becomes the record that
reaches `<prefix>.raw.<platform>`:

* Stripe, Zendesk, NetSuite (webhooks): key None, the body as posted, and the headers the ingress stores
  (`app/ingress.py` `stored_headers`) for the request the sandbox's emitter sends: the aiohttp client's
  Host, the delivery's headers and signature (signed by `sandbox/signing.py` at the change's time), the
  client's automatic Accept, Accept-Encoding and Content-Length, then the received-at header (the
  change's time);
* Salesforce (CDC on Kafka): key = record id, the CometD message, no header (`sandbox/emit.py` produces it so);
* the re-read of a Zendesk organization, right after each of its webhooks but a deletion's: the webhooks
  carry no entitlement (the codec asks for a re-read), and the commands role feeds the organization, as
  `GET /api/v2/organizations/{id}.json` returns it, back to the raw topic (`agents/commands.py`: key = the
  id, the `concord-refetched-by` header). Here it is read at once, from the world as the webhook left it.

Deterministic for its arguments: the same seed, customers, count, start and scale give the same records,
byte for byte. The timeline stops at the step that reaches `count` records; when every customer's
lifecycle ends short of it, the world is played again with twice the customers (the first ones' scripts
are the same: the sandbox seeds each customer on its own).

`produce_raw` creates the raw topics of a prefix if missing and produces records to them, paced or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Final

import aiohttp
import msgspec
from aiohttp.http import SERVER_SOFTWARE
from aiokafka import AIOKafkaProducer

from concord.app.ingress import stored_headers
from concord.core.kafka_security import KafkaSecurity, kafka_client_options
from concord.core.messages import REFETCHED_BY
from concord.core.settings import Settings
from concord.core.topics import TopicSpec, ensure_topics, topic_names
from concord.sandbox.emit import sign_headers
from concord.sandbox.events import Delivery, EventConfig, NativeEvents, WebhookDelivery
from concord.sandbox.traffic import Traffic, TrafficConfig
from concord.sandbox.world import Change, World

#: Secret the webhooks are signed with (a worker's ingest does not check signatures; the ingress does).
SECRET: Final = "whsec_bench_pipeline"
#: Where the emitter posts by default (`http://<CONCORD_WEB_HOST>:<CONCORD_WEB_PORT>`): its Host header.
HOST: Final = f"{Settings().web_host}:{Settings().web_port}"
#: 2026-11-01T00:00:00Z: the world's clock at simulated time 0 (records are dated from it).
START_MS: Final = 1_793_491_200_000
#: Simulated seconds per real second: the sandbox's default pacing, so record times are as close as its.
TIME_SCALE: Final = 3600.0
#: The sandbox traffic's default drift rate (probability that a lifecycle step is broken).
DRIFT_RATE: Final = TrafficConfig().drift_rate


class RawRecord(msgspec.Struct, frozen=True):
    """One record of a raw topic: `platform` names the topic (`<prefix>.raw.<platform>`)."""

    platform: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def request_headers(delivery: WebhookDelivery, secret: str, now: float) -> dict[str, str]:
    """The headers of the sandbox emitter's POST of `delivery` at `now`, as the server receives them.

    The emitter passes the delivery's headers and its signature (`sandbox/emit.py` `_post`); the aiohttp
    client puts Host first and appends its defaults (Accept, Accept-Encoding, User-Agent when none is
    given) and the body's length: the order seen on the wire with aiohttp 3.14.
    """
    given = {**delivery.headers, **sign_headers(delivery, secret, now)}
    defaults = {str(name): value for name, value in aiohttp.ClientRequest.DEFAULT_HEADERS.items()}
    defaults["User-Agent"] = SERVER_SOFTWARE
    named = {name.lower() for name in given}
    automatic = {name: value for name, value in defaults.items() if name.lower() not in named}
    return {"Host": HOST, **given, **automatic, "Content-Length": str(len(delivery.body))}


def as_raw_record(delivery: Delivery, at_ms: int, secret: str = SECRET) -> RawRecord:
    """The raw-topic record of one delivery made at `at_ms` (epoch ms)."""
    if isinstance(delivery, WebhookDelivery):
        headers = stored_headers(request_headers(delivery, secret, at_ms / 1000), at_ms)
        return RawRecord(platform=delivery.platform, key=None, value=delivery.body, headers=headers)
    return RawRecord(platform=delivery.platform, key=delivery.key, value=delivery.value, headers=[])


def reread_record(change: Change, n: int) -> RawRecord:
    """The raw-topic record of re-reading the organization `change` wrote (`n`: makes the command id unique)."""
    body = msgspec.json.encode({"organization": change.record})
    return RawRecord(platform="zendesk", key=change.id.encode(), value=body,
                     headers=[(REFETCHED_BY, f"bench-reread-{change.id}-{n}".encode())])


def raw_records(seed: int, customers: int, count: int, *, start_ms: int = START_MS,
                time_scale: float = TIME_SCALE, drift_rate: float = DRIFT_RATE) -> list[RawRecord]:
    """At least `count` raw records of the sandbox's traffic for `seed`, in delivery order (see the module);
    `drift_rate`: the traffic's probability that a lifecycle step is broken (`TrafficConfig.drift_rate`)."""
    size = max(customers, 1)
    while True:
        records = _play(seed, size, count, start_ms, time_scale, drift_rate)
        if len(records) >= count:
            return records
        size *= 2


def _play(seed: int, customers: int, count: int, start_ms: int, time_scale: float,
          drift_rate: float) -> list[RawRecord]:
    now = [start_ms / 1000]
    world = World(clock=lambda: now[0])
    # The topic is chosen when the records are produced; the run token keeps event ids apart per seed.
    events = NativeEvents(EventConfig(salesforce_topic="raw.salesforce", run=f"b{seed}"))
    records: list[RawRecord] = []

    def deliver(change: Change) -> None:
        records.extend(as_raw_record(delivery, change.at) for delivery in events.build(change))
        if change.platform == "zendesk" and change.type == "organization" and change.op != "delete":
            records.append(reread_record(change, len(records)))

    world.listen(deliver)
    deferred: list[Callable[[], None]] = []
    config = TrafficConfig(seed=seed, customers=customers, drift_rate=drift_rate)
    traffic = Traffic(world, config, defer=deferred.append)
    for step in traffic.steps:
        now[0] = start_ms / 1000 + step.at / time_scale
        traffic.run_step(step)
        while deferred:  # what the sandbox runs right after the step (D14's re-breaks)
            deferred.pop(0)()
        if len(records) >= count:
            break
    return records


async def produce_raw(bootstrap: str, security: KafkaSecurity, prefix: str, records: Sequence[RawRecord],
                      partitions: int, rate: float | None = None) -> list[float]:
    """Produce `records` to the raw topics of `prefix` (created with `partitions` if missing), in order,
    at `rate` records/s when given, else as fast as the producer takes them; each one's `time.time()`
    when it was handed to the producer."""
    raw = topic_names(msgspec.structs.replace(Settings(), topic_prefix=prefix)).raw
    await ensure_topics(bootstrap, [TopicSpec(name, partitions, 1) for name in raw.values()], security=security)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5 if rate else 20,
                                max_batch_size=256 * 1024, **kafka_client_options(security))
    await producer.start()
    times: list[float] = []
    try:
        started = time.perf_counter()
        for n, record in enumerate(records):
            if rate:
                ahead = started + n / rate - time.perf_counter()
                if ahead > 0.001:
                    await asyncio.sleep(ahead)
            times.append(time.time())
            await producer.send(raw[record.platform], record.value, key=record.key, headers=record.headers)
        await producer.flush()
    finally:
        await producer.stop()
    return times
