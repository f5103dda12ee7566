"""The webhooks process (`concord webhooks`): the webhook ingress on its own, without Faust.

Why (issue 13): the platforms deliver a webhook again when it is answered slowly or not at all. In a
worker the ingress shares one event loop with decoding, identity, state, drift and commands; overloaded
(500-900 events/s end to end on two cores), the sandbox's deliveries failed with disconnects and were
retried, which added load where there already was too much. This process only writes to Kafka, so it
answers in milliseconds whatever the consumers do; a worker's `ingest` role reads what it wrote.

What it serves, behind the worker's access policy (`Access(settings).middleware()`, app/access.py):
* `POST /webhooks/{platform}`: `Ingress.handle` (app/ingress.py), the worker's very checks, answered
  200 only once Kafka acknowledged the bytes (one idempotent producer, acks=all);
* `/healthz` (the process is up), `/readyz` (200 once the producer has started and the broker answers,
  503 and why otherwise), `/metrics` (the registry of core/metrics.py; a token when the policy says so).

Where: `CONCORD_WEB_HOST`:`CONCORD_WEB_PORT` serves all four. With `CONCORD_WEBHOOK_PORT` set the
webhooks are served on `CONCORD_WEBHOOK_HOST`:`CONCORD_WEBHOOK_PORT` instead, as in a worker, and the
web port keeps readiness and metrics (the policy never serves those on the public listener).

Start: listen (so `/healthz` answers and `/readyz` says what it waits for), make sure the raw topics
exist, start the producer; a webhook that arrives before that is a 503 with `Retry-After`. Stop
(SIGINT, SIGTERM): stop accepting connections, let the requests in flight finish (up to the body read
timeout plus `ACK_GRACE_S` for Kafka's acknowledgement; answered with `Connection: close`), then close
the connections, flush and stop the producer; exit 0. The wait is ours (`InFlight`): aiohttp's own
shutdown drops the rest of a body still arriving, which would turn a delivery in flight into a 408.

One process per port. `SO_REUSEPORT` with several processes was left out: each process has its own
metrics registry, so `/metrics` would answer from whichever process the kernel picked. Run more
processes on their own ports behind the load balancer instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Final

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST

from concord.app import signatures
from concord.app.access import Access, Handler
from concord.app.ingress import Ingress, Send, Unavailable
from concord.app.probe import READINESS_SECONDS, KafkaProbe
from concord.core import event_loop, metrics
from concord.core.kafka_security import kafka_client_options, kafka_security
from concord.core.settings import Settings, kafka_bootstrap
from concord.core.topics import TopicSpec, ensure_topics, topic_names

log = logging.getLogger("concord.webhooks")

#: No linger: the producer already puts the deliveries that arrive while a produce request is in flight
#: into the next one. Measured once (bench/webhooks.py, 2,000 deliveries/s beside a busy worker, both
#: cores saturated): the median answer was 21 ms without a linger, 3.4 s with 5 ms.
LINGER_MS: Final = 0
#: At shutdown, how long past the body read timeout a request in flight may wait for Kafka's ack.
ACK_GRACE_S: Final = 5.0

E_NOT_STARTED: Final = "the Kafka producer has not started yet"


class RawTopics:
    """Writes deliveries, bytes and headers as given, to the platforms' raw topics: one producer,
    idempotent (a retry inside the client cannot write a record twice), acks=all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        raw = topic_names(settings).raw
        self.topics = {platform: raw[platform] for platform in signatures.PLATFORMS}  # those with webhooks
        self._producer: AIOKafkaProducer | None = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap(self.settings),
                                    client_id=f"{self.settings.app_id}-webhooks", acks="all",
                                    enable_idempotence=True, linger_ms=LINGER_MS,
                                    **kafka_client_options(self.settings))
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def send(self, platform: str, body: bytes, headers: list[tuple[str, bytes]]) -> Mapping[str, Any]:
        """Write one delivery; returns where Kafka stored it once every in-sync replica has it."""
        if self._producer is None:
            raise Unavailable(E_NOT_STARTED)
        metadata = await self._producer.send_and_wait(self.topics[platform], value=body, headers=headers)
        return {"topic": metadata.topic, "partition": metadata.partition, "offset": metadata.offset}

    async def stop(self) -> None:
        """Flush what is pending and stop; later sends are refused as `Unavailable`."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


class InFlight:
    """The requests being handled, so that a shutdown can wait until they are answered."""

    def __init__(self) -> None:
        self.count = 0
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.count += 1
        self._idle.clear()
        try:
            response = await handler(request)
            if self.stopping:
                response.force_close()  # the sender's next request opens a connection to another process
            return response
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Wait until no request is being handled, at most `timeout` seconds."""
        self.stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()


IN_FLIGHT: Final = web.AppKey("in_flight", InFlight)


class Readiness(msgspec.Struct, frozen=True):
    ready: bool
    kafka: bool
    producer_started: bool
    detail: str = ""


async def readiness(raw: RawTopics, probe: KafkaProbe) -> Readiness:
    """Ready once the producer has started and the broker answers (`concord_worker_ready`)."""
    kafka_ok, detail = await probe.reachable()
    if not raw.started:
        detail = (detail + "; " if detail else "") + E_NOT_STARTED
    metrics.worker_ready.set(1 if kafka_ok and raw.started else 0)
    return Readiness(ready=kafka_ok and raw.started, kafka=kafka_ok, producer_started=raw.started, detail=detail)


async def refresh_readiness(ready: Callable[[], Awaitable[Readiness]], interval: float = READINESS_SECONDS) -> None:
    """Keep the readiness gauges current whether or not anything polls `/readyz` (until cancelled)."""
    while True:
        await ready()
        await asyncio.sleep(interval)


def create_app(settings: Settings, send: Send, ready: Callable[[], Awaitable[Readiness]]) -> web.Application:
    """The process's aiohttp application: every route behind the access policy, the ingress writing
    through `send`, `/readyz` answering from `ready`; `app[IN_FLIGHT]` counts the requests being handled."""
    ingress = Ingress(settings, send)
    in_flight = InFlight()

    async def webhook(request: web.Request) -> web.Response:
        reply = await ingress.handle(request.match_info["platform"], request)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers or None)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        state = await ready()
        return web.Response(body=msgspec.json.encode(state), content_type="application/json",
                            status=200 if state.ready else 503)

    async def metrics_text(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(middlewares=[in_flight.middleware, Access(settings).middleware()])
    app[IN_FLIGHT] = in_flight
    app.router.add_post("/webhooks/{platform}", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_text)
    return app


def listeners(settings: Settings) -> list[tuple[str, int]]:
    """Where to listen: the web port, and the public webhook port when one is set."""
    internal = (settings.web_host, settings.web_port)
    return [(settings.webhook_host, settings.webhook_port), internal] if settings.webhook_port else [internal]


async def start_kafka(settings: Settings, raw: RawTopics, timeout: float = 60.0) -> None:
    """Make sure the raw topics exist (with the settings' partitions), then start the producer."""
    specs = [TopicSpec(name, settings.topic_partitions, settings.topic_replication_factor)
             for name in raw.topics.values()]
    created = await ensure_topics(kafka_bootstrap(settings), specs, timeout, security=kafka_security(settings))
    if created:
        log.info("created %d raw topics (%d partitions each)", len(created), settings.topic_partitions)
    await raw.start()


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `work` until it is done (True; its error raised) or `stop` is set first (False; work cancelled)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopped):
        pending.cancel()
    await asyncio.gather(task, stopped, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()
    return True


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then shut down cleanly (see the module's docstring)."""
    raw = RawTopics(settings)
    probe = KafkaProbe(kafka_bootstrap(settings), kafka_security(settings))
    ready = functools.partial(readiness, raw, probe)
    app = create_app(settings, raw.send, ready)
    # No access log: a line per delivery costs the CPU this process is there to save; the metrics count.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=ACK_GRACE_S)
    await runner.setup()
    gauges: asyncio.Future[None] | None = None
    try:
        for host, port in listeners(settings):
            await web.TCPSite(runner, host, port).start()
        where = settings.webhook_host if settings.webhook_port else settings.web_host
        log.info("webhooks on http://%s:%d/webhooks/<platform>, readiness and metrics on http://%s:%d/",
                 where, settings.webhook_port or settings.web_port, settings.web_host, settings.web_port)
        gauges = asyncio.ensure_future(refresh_readiness(ready))
        if await _unless_stopped(start_kafka(settings, raw), stop):
            log.info("ready: writing webhooks to %s", ", ".join(raw.topics.values()))
            await stop.wait()
    finally:
        if gauges is not None:
            gauges.cancel()
            await asyncio.gather(gauges, return_exceptions=True)
        for site in list(runner.sites):
            await site.stop()
        log.info("stopping: no new connections; requests in flight: %d", app[IN_FLIGHT].count)
        await app[IN_FLIGHT].drain(settings.webhook_read_timeout_seconds + ACK_GRACE_S)
        await runner.cleanup()  # closes the connections left
        await raw.stop()  # flushes anything still pending
        await probe.close()
    log.info("stopped")


async def main(settings: Settings) -> None:
    """`serve` until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    log.info("running on the %s event loop", event_loop.loop_name(loop))
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, stop)


def run(settings: Settings) -> None:
    """Run the webhooks process until a signal stops it (blocking), on `CONCORD_EVENT_LOOP`'s loop."""
    event_loop.run(main(settings), settings.event_loop)
