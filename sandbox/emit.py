"""Delivery of the sandbox's platform events to Concord: signed webhooks and Salesforce CDC on Kafka.

`Emitter` listens to the `World`, turns each change into native events (`events.NativeEvents`) and
delivers them the way each platform does:

* Stripe, Zendesk, NetSuite: an HTTP POST to Concord's `/webhooks/<platform>`, signed at send time
  by each platform's published scheme (`sandbox/signing.py`; a fresh timestamp for every attempt,
  so a retry is never refused as stale). A 2xx is delivered;
  a 5xx, 408, 429, timeout or refused connection is retried with exponential backoff, as Stripe and
  Zendesk retry webhooks (so Concord may start after the sandbox); any other 4xx means the payload
  or the signature is wrong: the event is counted as failed, with Concord's answer, and logged.
* Salesforce: a record on `<prefix>.raw.salesforce` (key = record id), produced with acks=all and
  idempotence, as the customer's CDC pipeline would; retriable Kafka errors (broker not up yet,
  leader moving, timeouts) are retried the same way.

Order: one queue and one sender per platform. An event is sent only after the one before it was
delivered or given up as failed, so retries never reorder a platform's events; a platform that is
failing does not hold the others back.

World listeners are synchronous and run inside the platform operation that wrote the record, so the
listener only builds and queues (it never raises into the operation); senders are asyncio tasks.
The world must therefore be written from the event loop's thread (the routes and the generator are).

`stripe_enabled_events` plays the Stripe endpoint's `enabled_events` (default: every event type).
`gaps` decides, per Salesforce change, whether its change event goes out as a gap event instead (the
`gap_rate` fault, sandbox/faults.py); `PlatformStats.gaps` counts those.

`lose` decides, per event of any platform, whether it is lost instead (the `lose_rate` fault): a lost
event is never queued, sent or retried; it is counted (`PlatformStats.lost`) and recorded as ground
truth (`Emitter.lost()`, a `LostEvent` of sandbox/lost.py, served at `GET /_sandbox/lost`). The
change itself stays in the world: only its event is missing, for a reconciliation to notice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import aiohttp
import msgspec
from msgspec import Struct

from concord.core.kafka_security import KafkaSecurity, kafka_client_options
from concord.sandbox import signing
from concord.sandbox.events import Delivery, EventConfig, KafkaDelivery, NativeEvents, WebhookDelivery
from concord.sandbox.lost import LostEvent, lost_event
from concord.sandbox.world import Change, World

log = logging.getLogger("concord.sandbox.emit")

PLATFORMS: Final = ("stripe", "salesforce", "zendesk", "netsuite")
# Client errors worth retrying: the server asks the sender to come back later.
_RETRY_STATUSES: Final = frozenset({408, 425, 429})
# Concord's answers are short JSON; keep what goes into stats and logs bounded all the same.
_MAX_ERROR_TEXT: Final = 300

# A local broker's security: the Salesforce CDC producer of an emitter not told otherwise.
PLAINTEXT: Final = KafkaSecurity()


class Producer(Protocol):
    """The part of `aiokafka.AIOKafkaProducer` the emitter uses (tests pass a fake)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any: ...


ProducerFactory = Callable[[], Producer]


class PlatformStats(Struct, kw_only=True):
    """Delivery counts of one platform's events."""

    queued: int = 0  # events accepted for delivery (all of them, delivered or not)
    delivered: int = 0
    failed: int = 0  # given up: refused by Concord (4xx), not buildable, or not sent before stop
    retries: int = 0  # attempts repeated after a transient failure
    pending: int = 0  # queued and not yet delivered or failed
    last_error: str | None = None
    gaps: int = 0  # of those queued, change events sent as gap events (Salesforce's `gap_rate` fault)
    lost: int = 0  # events dropped by the `lose_rate` fault: never queued, never delivered (`/_sandbox/lost`)


class EmitterStats(Struct, kw_only=True):
    platforms: dict[str, PlatformStats]
    # The most recent error of any platform, prefixed with the platform.
    last_error: str | None = None


class _Refused(Exception):
    """Concord answered with a client error: retrying the same request cannot succeed."""


class _Transient(Exception):
    """Concord answered 5xx (or asked to come back later): retry."""


class _Lane:
    """One platform's queue, its sender task and its counts."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.queue: deque[Delivery] = deque()
        self.wake = asyncio.Event()
        self.stats = PlatformStats()
        self.task: asyncio.Task[None] | None = None
        # Consecutive failed attempts of the head event (logged once per outage, not per attempt).
        self.failing = 0

    @property
    def finished(self) -> int:
        return self.stats.delivered + self.stats.failed


def sign_headers(delivery: WebhookDelivery, secret: str, now: float) -> dict[str, str]:
    """The signature headers of a webhook delivery at time `now`, as the platform would sign it."""
    signer = signing.SIGNERS.get(delivery.platform)
    if signer is None:
        raise ValueError(f"no webhook signature scheme for platform {delivery.platform!r}")
    return signer(delivery.body, secret, now)


def run_token(now: float) -> str:
    """A short token distinguishing one sandbox run's event ids from another's (base 36 seconds)."""
    value, digits = int(now), ""
    while value:
        value, digit = divmod(value, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
    return digits or "0"


class Emitter:
    """Delivers the world's changes to Concord as each platform's native events, in order per platform."""

    def __init__(
        self,
        world: World,
        *,
        concord_url: str,
        stripe_secret: str,
        zendesk_secret: str,
        netsuite_secret: str,
        kafka_bootstrap: str,
        salesforce_topic: str,
        kafka_security: KafkaSecurity = PLAINTEXT,
        clock: Callable[[], float] = time.time,
        producer_factory: ProducerFactory | None = None,
        request_timeout: float = 10.0,
        retry_base: float = 0.5,
        retry_max: float = 30.0,
        run: str | None = None,
        stripe_enabled_events: Iterable[str] = ("*",),
        gaps: Callable[[str], bool] | None = None,
        lose: Callable[[str], bool] | None = None,
    ) -> None:
        self.world = world
        self.concord_url = concord_url.rstrip("/")
        self._secrets: Mapping[str, str] = {"stripe": stripe_secret, "zendesk": zendesk_secret,
                                            "netsuite": netsuite_secret}
        self._clock = clock
        self._producer_factory = producer_factory or _kafka_producer(kafka_bootstrap, kafka_security)
        self._timeout = request_timeout
        self._retry_base = retry_base
        self._retry_max = retry_max
        self.events = NativeEvents(EventConfig(salesforce_topic=salesforce_topic,
                                               run=run if run is not None else run_token(clock()),
                                               stripe_enabled_events=frozenset(stripe_enabled_events)))
        self._lanes = {platform: _Lane(platform) for platform in PLATFORMS}
        self._gaps = gaps
        self._lose = lose
        self._lost: list[LostEvent] = []
        self._progress = asyncio.Condition()
        self._session: aiohttp.ClientSession | None = None
        self._producer: Producer | None = None
        self._listening = False
        self._accepting = False
        self._last_error: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to world changes and start one sender per platform (Concord and Kafka may be down)."""
        if self._accepting:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        for lane in self._lanes.values():
            lane.task = asyncio.create_task(self._send_all(lane), name=f"sandbox-emit-{lane.platform}")
        self._accepting = True
        if not self._listening:
            # World has no way to unsubscribe: one listener for the emitter's life, idle once stopped.
            self.world.listen(self._on_change)
            self._listening = True

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking changes, deliver what is queued for up to `timeout` seconds, then close.

        Events still queued after that are counted as failed (the log says how many).
        """
        if not self._accepting:
            return
        self._accepting = False
        delivered = await self.drain(timeout)
        pending = self._pending_summary()  # before the queues below are counted as failed and cleared
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in self._lanes.values() if lane.task is not None),
                             return_exceptions=True)
        for lane in self._lanes.values():
            lane.task = None
            if lane.queue:
                self._fail(lane, f"{len(lane.queue)} events not delivered before the emitter stopped",
                           count=len(lane.queue))
                lane.queue.clear()
        if not delivered:
            log.warning("sandbox emitter stopped with undelivered events: %s", pending)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._producer is not None:
            await _quietly_stop(self._producer)
            self._producer = None

    async def drain(self, timeout: float) -> bool:
        """Wait until every event queued so far is delivered or failed; False if `timeout` ran out first."""
        targets = {platform: lane.stats.queued for platform, lane in self._lanes.items()}

        def done() -> bool:
            return all(self._lanes[platform].finished >= target for platform, target in targets.items())

        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(done)
        except TimeoutError:
            return False
        return True

    def stats(self) -> EmitterStats:
        """Counts per platform (copies: safe to serialise while deliveries go on)."""
        platforms = {platform: msgspec.structs.replace(lane.stats, pending=lane.stats.queued - lane.finished)
                     for platform, lane in self._lanes.items()}
        return EmitterStats(platforms=platforms, last_error=self._last_error)

    def lost(self) -> list[LostEvent]:
        """Every event lost so far, in the order of the changes (the ground truth of `lose_rate`)."""
        return list(self._lost)

    # --- intake (synchronous: runs inside the platform operation) ----------------------------------

    def _on_change(self, change: Change) -> None:
        if not self._accepting:
            return
        lane = self._lanes.get(change.platform)
        if lane is None:
            log.error("sandbox emitter: change of unknown platform %r ignored", change.platform)
            return
        gap = change.platform == "salesforce" and self._gaps is not None and self._gaps(change.platform)
        try:
            deliveries = self.events.build(change, gap=gap)
        except Exception as exc:  # a bug in building must not break the operation that wrote the record
            log.exception("sandbox emitter: cannot build %s events of %s %s (%s)", change.platform, change.type,
                          change.id, change.op)
            lane.stats.queued += 1
            self._fail(lane, f"building the event of {change.type} {change.id} failed: {exc!r}")
            return
        queued = 0
        for delivery in deliveries:
            if self._lose is not None and self._lose(change.platform):
                self._lost.append(lost_event(self.world, change, delivery.event_id, delivery.event_type))
                lane.stats.lost += 1
                continue
            lane.queue.append(delivery)
            lane.stats.queued += 1
            queued += 1
        if gap:
            lane.stats.gaps += queued
        if queued:
            lane.wake.set()

    # --- senders -----------------------------------------------------------------------------------

    async def _send_all(self, lane: _Lane) -> None:
        while True:
            if not lane.queue:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            delivery = lane.queue[0]
            try:
                await self._deliver(lane, delivery)
                lane.stats.delivered += 1
            except _Refused as exc:
                self._fail(lane, str(exc))
                log.error("sandbox emitter: Concord refused %s event %s: %s", lane.platform, delivery.event_id, exc)
            lane.queue.popleft()
            async with self._progress:
                self._progress.notify_all()

    async def _deliver(self, lane: _Lane, delivery: Delivery) -> None:
        """Send until delivered (returns) or refused (raises _Refused); transient failures wait and retry."""
        attempt = 0
        while True:
            try:
                if isinstance(delivery, WebhookDelivery):
                    await self._post(delivery)
                else:
                    await self._produce(delivery)
            except _Refused:
                lane.failing = 0
                raise
            except Exception as exc:
                if not _transient(exc):
                    log.exception("sandbox emitter: unexpected error sending %s event %s", lane.platform,
                                  delivery.event_id)
                    lane.failing = 0
                    raise _Refused(f"unexpected error sending event {delivery.event_id}: {exc!r}") from exc
                error = _describe(exc)
                self._note_error(lane, error)
                if lane.failing == 0:
                    log.warning("sandbox emitter: %s delivery failing (%s); retrying with backoff", lane.platform,
                                error)
                lane.failing += 1
                lane.stats.retries += 1
                await asyncio.sleep(min(self._retry_max, self._retry_base * 2**attempt))
                attempt += 1
                continue
            if lane.failing:
                log.info("sandbox emitter: %s delivery recovered after %d failed attempts", lane.platform,
                         lane.failing)
                lane.failing = 0
            return

    async def _post(self, delivery: WebhookDelivery) -> None:
        if self._session is None:
            raise RuntimeError("emitter not started")
        headers = {**delivery.headers, **sign_headers(delivery, self._secrets[delivery.platform], self._clock())}
        async with self._session.post(self.concord_url + delivery.path, data=delivery.body, headers=headers) as resp:
            if 200 <= resp.status < 300:
                return
            text = (await resp.text())[:_MAX_ERROR_TEXT]
            message = f"HTTP {resp.status} from {delivery.path} for event {delivery.event_id}: {text}"
            if 400 <= resp.status < 500 and resp.status not in _RETRY_STATUSES:
                raise _Refused(message)
            raise _Transient(message)

    async def _produce(self, delivery: KafkaDelivery) -> None:
        producer = self._producer
        if producer is None:
            producer = self._producer_factory()
            try:
                await producer.start()
            except BaseException:
                # A producer whose start failed is not reused: the next attempt builds a new one.
                await _quietly_stop(producer)
                raise
            self._producer = producer
        try:
            await producer.send_and_wait(delivery.topic, value=delivery.value, key=delivery.key)
        except Exception as exc:
            if not _kafka_retriable(exc):
                raise _Refused(f"Kafka refused event {delivery.event_id} for {delivery.topic}: {exc!r}") from exc
            raise

    # --- bookkeeping -------------------------------------------------------------------------------

    def _note_error(self, lane: _Lane, error: str) -> None:
        lane.stats.last_error = error
        self._last_error = f"{lane.platform}: {error}"

    def _fail(self, lane: _Lane, error: str, count: int = 1) -> None:
        lane.stats.failed += count
        self._note_error(lane, error)

    def _pending_summary(self) -> str:
        return ", ".join(f"{p} {s.pending}" for p, s in self.stats().platforms.items() if s.pending) or "none"


def _describe(exc: Exception) -> str:
    """`Type: message`, without repeating the type when the message already starts with it (aiokafka's do)."""
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _transient(exc: Exception) -> bool:
    """Whether a failed attempt may succeed later: Concord or Kafka down, slow, or overloaded."""
    return isinstance(exc, _Transient | aiohttp.ClientError | TimeoutError | OSError) or _kafka_retriable(exc)


def _kafka_retriable(exc: Exception) -> bool:
    """Whether a Kafka send error may pass by itself (aiokafka flags most; a timeout is one too)."""
    from aiokafka.errors import KafkaTimeoutError

    return bool(getattr(exc, "retriable", False)) or isinstance(exc, KafkaTimeoutError)


def _kafka_producer(bootstrap: str, security: KafkaSecurity) -> ProducerFactory:
    def build() -> Producer:
        # Imported here: the webhook-only uses of the emitter (and its tests) need no Kafka client.
        from aiokafka import AIOKafkaProducer

        # acks=all: a record counts as delivered once every in-sync replica has it; idempotence keeps
        # the producer's own retries from duplicating or reordering records.
        return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                request_timeout_ms=15_000, retry_backoff_ms=200, **kafka_client_options(security))

    return build


async def _quietly_stop(producer: Producer) -> None:
    try:
        await producer.stop()
    except Exception as exc:  # closing a producer that never connected may fail; nothing is lost
        log.debug("sandbox emitter: stopping the Kafka producer: %r", exc)
