"""Ingest agent: raw platform payloads -> codecs -> identity / canonical topics, bad input -> DLQ.

It reads raw records in batches (`forward_batch_max`, `forward_linger_ms`) and forwards the events it
decodes as envelopes, one per destination partition (agents/envelopes.py); a batch is acknowledged
only once Kafka has every envelope of it.

The stream never stops on bad input: a payload the codec cannot read goes to `concord.dlq.ingest`
with its original bytes and headers, the source topic/partition/offset, the reason and the codec
version, and the next record is processed. Whatever the decode raised (too deep, too large, a codec
bug), the reason and detail name the problem without a payload value or a traceback; a failure while
routing the decoded events (a bug) is logged with its traceback and dead-letters the payload the same way.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import faust
import msgspec

from concord.agents.envelopes import (
    Envelopes,
    Forwarder,
    Outgoing,
    canonical_route,
    forwarded_batches,
    identity_route,
)
from concord.codecs.config import codec_config
from concord.codecs.errors import DecodeError, as_decode_error
from concord.codecs.model import CanonicalEvent, Platform, ResyncRequired
from concord.codecs.registry import CODEC_VERSION, decoder
from concord.connectors.reconcile import gap_overflow_key
from concord.connectors.rereads import reread_commands
from concord.core import messages, metrics
from concord.core.messages import command_key, now_ms
from concord.drift.lifecycle import RECONCILE_DRY_RUN, RECONCILE_PASS

if TYPE_CHECKING:
    from concord.agents.context import Concord
    from concord.agents.watermarks import Progress

log = logging.getLogger("concord.ingest")

E_GAP_OVERFLOW: Final = (
    "%s %s on %s: changes were lost and no record is named, so none is re-read: any %s may be stale from %s on, "
    "until a reconciliation: the next complete one of the platform (its schedule, or `concord reconcile --platform` "
    "by hand) re-reads them and clears the mark (redis-cli HDEL %s %s). /api/health shows it (gap_overflow_since), "
    "concord_gap_overflow_total counts these; said once per worker and object"
)


def _headers(headers: Any) -> Any:
    return headers.items() if isinstance(headers, dict) else headers


def as_listed(headers: Any, events: list[CanonicalEvent]) -> list[CanonicalEvent]:
    """`events` of a reconciliation's snapshot (header `concord-snapshot`) correlated with its pass, as a dry-run
    pass's when the header `concord-snapshot-dry-run` says so (drift/lifecycle.py: what such a pass reveals is
    reported, not corrected); the events of any other record as they are."""
    pass_id = dry = None
    for name, value in _headers(headers):
        if name == messages.SNAPSHOT:
            pass_id = bytes(value).decode(errors="replace")
        elif name == messages.SNAPSHOT_DRY_RUN:
            dry = True
    if pass_id is None:
        return events
    correlation = f"{RECONCILE_DRY_RUN if dry else RECONCILE_PASS}{pass_id}"
    return [msgspec.structs.replace(e, correlation_id=correlation) for e in events]


def source_times(message: Any, events: list[CanonicalEvent]) -> list[int]:
    """How far reading `message` reads its platform (agents/watermarks.py): its events' source times, but
    for a reconciliation's snapshot (header `concord-snapshot`) when it was written to the raw topic. A
    snapshot says how the record stood when listed, whatever its last change: a pass through months-old
    records is not the platform's events running months behind (and no deadline is judged while a pass
    holds the platform anyway)."""
    if any(name == messages.SNAPSHOT for name, _ in _headers(message.headers or ())):
        return [int(message.timestamp * 1000)] if message.timestamp else []
    return [e.occurred_at for e in events]


def dead_letter_headers(
    original: Any, platform: str, reason: str, detail: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The original headers plus where the record came from and why it could not be used."""
    headers = [(k, v) for k, v in (original or [])]
    headers += [
        (messages.DLQ_PLATFORM, platform.encode()),
        (messages.DLQ_REASON, reason.encode()),
        (messages.DLQ_DETAIL, detail[:1000].encode()),
        (messages.DLQ_SOURCE_TOPIC, topic.encode()),
        (messages.DLQ_SOURCE_PARTITION, str(partition).encode()),
        (messages.DLQ_SOURCE_OFFSET, str(offset).encode()),
        (messages.DLQ_CODEC_VERSION, CODEC_VERSION.encode()),
        (messages.DLQ_FAILED_AT, str(int(time.time() * 1000)).encode()),
    ]
    return headers


def no_customer(event: CanonicalEvent) -> DecodeError:
    """Why a decoded event cannot be used: it names no customer in any system."""
    return DecodeError("no_customer_reference",
                       f"{type(event).__name__} ({event.entity.kind}) names no customer in any system")


def register(concord: Concord, progress: Progress | None = None) -> None:
    """Add the ingest agent; `progress` notes what it reads of each raw partition (for the watermarks)."""
    names = concord.names
    platform_of = {topic: Platform(platform) for platform, topic in names.raw.items()}
    settings = concord.settings
    config = codec_config(settings)
    reread_window_ms = {Platform.ZENDESK: int(settings.zendesk_reread_window_seconds * 1000),
                        Platform.SALESFORCE: int(settings.salesforce_reread_window_seconds * 1000)}
    overflow_key = gap_overflow_key(settings.topic_prefix)
    overflow_said: set[tuple[str, str]] = set()
    raw = concord.app.topic(*names.raw.values(), key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw")
    identity = concord.topics[names.identity]
    canonical = concord.topics[names.canonical]
    dlq = concord.topics[names.dlq_ingest]
    audit = concord.topics[names.audit]
    commands = concord.topics[names.commands]

    routes = (identity_route(names.identity, settings.topic_partitions),
              canonical_route(names.canonical, settings.topic_partitions))
    forwarder = Forwarder({names.identity: identity, names.canonical: canonical})
    linger = settings.forward_linger_ms / 1000

    async def route(event: CanonicalEvent, platform: Platform, out: Envelopes) -> list[Outgoing]:
        """Where `event` goes: gathered in `out`; what must be sent at once is returned."""
        metrics.ingest_events.labels(platform.value, type(event).__name__).inc()
        if isinstance(event, ResyncRequired):
            # The source says: read these records again. A connector re-reads what it can (a
            # command); the rest (events lost at the source) is said loudly for a person.
            metrics.resync_required.labels(platform.value, event.object_type).inc()
            now = int(time.time() * 1000)
            rereads = reread_commands(event, platform.value, now, reread_window_ms.get(platform, 0))
            if not event.record_ids:
                gap_overflow(event, platform)
            elif not rereads:
                log.warning("resync required: %s %s %s (%s)", platform.value, event.object_type,
                            ",".join(event.record_ids), event.reason)
            await audit.send(key=event.event_id.encode(), value=messages.encode(messages.AuditRecord(
                kind="resync_required", at=now, correlation_id=event.correlation_id,
                platform=platform.value, customer_key=event.customer_key,
                detail={"reason": event.reason, "object_type": event.object_type,
                        "record_ids": list(event.record_ids), "entity": event.entity.id,
                        "reread_commands": [c.command_id for c in rereads]},
            )))
            for command in rereads:
                metrics.commands_emitted.labels(command.action).inc()
                await commands.send(key=command_key(command), value=messages.encode(command))
            if event.local_customer is None and event.customer_key is None:
                return []  # no customer to tell: the records re-read will find theirs
            # The customer's state learns what it does not know until the re-read arrives (unknown is not
            # absent: tables/state.py `Support.unread`, `Crm.unread`), in order with the customer's other events.
        if event.local_customer is not None:
            return out.add(names.identity, event.local_customer, event)
        if event.customer_key is not None:
            return out.add(names.canonical, event.customer_key, event)
        raise no_customer(event)

    def gap_overflow(event: ResyncRequired, platform: Platform) -> None:
        """Changes to records of an object were lost and none is named (GAP_OVERFLOW): nothing to re-read or
        mark unread per customer; counted, said once, and published for /api/health (agents/watermarks.py)."""
        metrics.gap_overflow.labels(platform.value, event.object_type).inc()
        if progress is not None:
            progress.gap_overflow(platform.value, event.occurred_at)
        if (platform.value, event.object_type) not in overflow_said:
            overflow_said.add((platform.value, event.object_type))
            since = datetime.fromtimestamp(event.occurred_at / 1000, UTC).isoformat(timespec="seconds")
            log.warning(E_GAP_OVERFLOW, platform.value, event.reason, event.object_type, event.object_type, since,
                        overflow_key, platform.value)

    def note(message: Any, platform: Platform, events: list[CanonicalEvent]) -> None:
        if progress is not None:
            progress.read(message.tp, platform.value, message.offset, source_times(message, events), now_ms())

    processed = metrics.events_processed.labels("ingest")  # raw records, whatever became of them

    @concord.app.agent(raw, name="concord.ingest", concurrency=1)
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        # A batch is acknowledged once Kafka has every envelope it forwarded (agents/envelopes.py).
        async for batch, read_events in forwarded_batches(stream, settings.forward_batch_max, linger, routes,
                                                          forwarder, read):
            processed.inc(len(batch))
            # Read, as far as the watermarks go, once what was read is on its way (agents/watermarks.py).
            for event, events in zip(batch, read_events, strict=True):
                note(event.message, platform_of[event.message.topic], events)

    async def read(event: Any, out: Envelopes) -> list[CanonicalEvent]:
        """One raw record: decoded and its events gathered in `out` (an event that cannot ride in an envelope
        is sent at once, in order), or dead-lettered with the reason; the events decoded."""
        message = event.message
        platform = platform_of[message.topic]
        events: list[CanonicalEvent] = []
        try:
            events = decoder(platform)(event.value, config)
            if message.headers:
                events = as_listed(message.headers, events)
        except Exception as exc:  # codecs raise only DecodeError; whatever else, never stop the stream
            failure = as_decode_error(exc, f"{platform.value} payload")
            reason, detail = failure.reason, failure.detail
            log.warning("undecodable %s payload at %s[%d]@%d: %s: %s", platform.value, message.topic,
                        message.partition, message.offset, reason, detail)
        else:
            try:
                # All or nothing: a record with an event that names no customer is dead-lettered whole.
                for unusable in events:
                    if not isinstance(unusable, ResyncRequired) and unusable.local_customer is None \
                            and unusable.customer_key is None:
                        raise no_customer(unusable)
                for canonical_event in events:
                    await forwarder.send(await route(canonical_event, platform, out))
            except DecodeError as exc:  # decoded, but unusable (no customer reference)
                reason, detail = exc.reason, exc.detail
                log.warning("unusable %s payload at %s[%d]@%d: %s: %s", platform.value, message.topic,
                            message.partition, message.offset, reason, detail)
            except Exception as exc:  # a bug: loud, but it must not stop the stream nor lose the payload
                reason, detail = "ingest_error", f"{type(exc).__name__} while routing the decoded events"
                log.exception("ingest error on %s[%d]@%d", message.topic, message.partition, message.offset)
            else:
                return events
        metrics.ingest_dead_letters.labels(platform.value, reason).inc()
        await dlq.send(key=message.key, value=event.value, headers=dead_letter_headers(
            message.headers, platform.value, reason, detail, message.topic, message.partition, message.offset))
        return events
