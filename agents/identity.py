"""Identity: resolve platform-local ids ("stripe:cus_1") to the customer key (the CRM Account Id).

`concord.identity` is keyed by the local id, so every event naming one local id, and the event that
links it, meet on one partition in order. The `links` table maps local id -> customer key; events
whose local id has no link yet are parked (in order) and released when it arrives. Parking is bounded
three ways, each overflow a dead letter on the ingest DLQ (replayable, never dropped): events per id
(`identity_park_limit`, reason `identity_park_overflow`), ids with parked events per worker
(`identity_park_max_ids`, `identity_park_full`) and time parked (`identity_park_ttl_seconds`,
`identity_park_expired`: checked when the id's queue is next touched, and by a sweep timer that
scans this worker's `parked` table and sends a `ParkSweep` keyed by each id with expired events
through the identity topic, since only the stream may write the table).
A CRM merge re-points links: the loser's own id at once, and every other id known for the loser by
`Repoint` messages, which the state agent sends from the loser's customer state (its `local_ids`,
every platform id seen for that customer).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust

from concord.agents.envelopes import Envelopes, Forwarder, canonical_route, forwarded_batches
from concord.agents.faust_internals.recovery import recovery_finished
from concord.agents.ingest import dead_letter_headers
from concord.agents.watermarks import IDENTITY
from concord.codecs import records
from concord.codecs.errors import as_decode_error
from concord.codecs.model import AccountMerged, CanonicalEvent
from concord.codecs.records import IdentityBatch, IdentityMessage
from concord.core import messages, metrics
from concord.core.messages import ParkSweep, now_ms
from concord.tables.identity import ParkedQueue, expired_by, step

if TYPE_CHECKING:
    from concord.agents.context import Concord
    from concord.agents.watermarks import Progress

log = logging.getLogger("concord.identity")

# Longest detail of an unreadable record's dead letter (the exception's text, not a traceback).
_MAX_DETAIL = 500


def sweep_interval(ttl_seconds: float) -> float:
    """Seconds between sweeps: a tenth of the TTL (an event expires at most that late), 1 s to 10 min."""
    return min(max(ttl_seconds / 10, 1.0), 600.0)


def register(concord: Concord, progress: Progress | None = None) -> None:
    """Add the identity agent; `progress` notes what it reads of each identity partition (the hop's watermark)."""
    app = concord.app
    names = concord.names
    settings = concord.settings
    limit = settings.identity_park_limit
    max_ids = settings.identity_park_max_ids
    ttl = int(settings.identity_park_ttl_seconds * 1000)
    identity_topic = concord.topics[names.identity]
    canonical = concord.topics[names.canonical]
    dlq = concord.topics[names.dlq_ingest]
    links = concord.table("links", value_type=str)
    parked = concord.table("parked")

    forwarder = Forwarder({names.canonical: canonical})
    routes = (canonical_route(names.canonical, settings.topic_partitions),)
    linger = settings.forward_linger_ms / 1000

    async def forward(event: CanonicalEvent, out: Envelopes) -> None:
        assert event.customer_key is not None
        await forwarder.send(out.add(names.canonical, event.customer_key, event))
        if isinstance(event, AccountMerged):
            # The losers' state lives under their own keys: tell them, so they re-point their ids.
            for loser in event.loser_ids:
                await forwarder.send(out.add(names.canonical, loser, event))

    # Ids the sweep sent a ParkSweep for, with the parking time it found expired: not sent again
    # until the stream has handled it (a lagging stream would otherwise get one per sweep).
    swept: dict[str, int] = {}

    async def dead_letter(event: Any, local_id: str, value: bytes, reason: str, detail: str) -> None:
        # Keyed by the local id (an envelope's record has no key): a replay sends it back to that id's partition.
        await dlq.send(key=local_id.encode(), value=value, headers=dead_letter_headers(
            (), local_id.split(":", 1)[0], reason, detail, event.message.topic, event.message.partition,
            event.message.offset))

    @app.agent(identity_topic, name="concord.identity", concurrency=1)
    async def resolve(stream: faust.StreamT[bytes]) -> None:
        # As the ingest agent: a batch is acknowledged once Kafka has every envelope it forwarded.
        async for batch, _ in forwarded_batches(stream, settings.forward_batch_max, linger, routes, forwarder, read):
            if progress is not None:  # the batch is done (forwarded); what comes next is within moments
                for event in batch:
                    # Faust's record timestamp is in seconds; watermarks are epoch ms.
                    progress.read(event.message.tp, IDENTITY, event.message.offset,
                                  [int(event.message.timestamp * 1000)], now_ms())

    async def read(event: Any, out: Envelopes) -> None:
        """One identity record (an envelope of the ingest agent's, or one message): each event resolved."""
        try:
            local_id = event.message.key.decode() if event.message.key is not None else ""
            message = records.decode_identity(event.value)
            if isinstance(message, IdentityBatch):
                inner = [(e.local_customer, e) for e in message.events]
                if any(not key for key, _ in inner):
                    raise ValueError("an enveloped identity event has no local_customer")
            elif not local_id:
                raise ValueError("an identity record without a key")
        except Exception as exc:  # noqa: BLE001 (any: deep nesting raises RecursionError, a bad key ...)
            # Only Concord writes here: a bug or a foreign producer. The bytes go to the dead-letter
            # topic with the reason; the stream goes on.
            unreadable = as_decode_error(exc, "identity record")  # a reason with no payload value in it
            detail = f"{unreadable.reason}: {unreadable.detail}"[:_MAX_DETAIL]
            log.error("unreadable identity record at %s[%d]@%d: %s", event.message.topic,
                      event.message.partition, event.message.offset, detail)
            metrics.ingest_dead_letters.labels("internal", "bad_identity_record").inc()
            await dlq.send(key=event.message.key, value=event.value, headers=dead_letter_headers(
                event.message.headers, "internal", "bad_identity_record", detail, event.message.topic,
                event.message.partition, event.message.offset))
            return
        if isinstance(message, IdentityBatch):
            for key, one in inner:
                assert key is not None
                await resolve_one(event, key, one, out)
        else:
            await resolve_one(event, local_id, message, out)

    processed = metrics.events_processed.labels("identity")  # each event of an envelope, sweeps and links included

    async def resolve_one(event: Any, local_id: str, message: IdentityMessage, out: Envelopes) -> None:
        """One event (or control record) of `local_id`, read from the record `event`."""
        processed.inc()
        now = now_ms()
        stored = parked.get(local_id)
        queue = ParkedQueue.load(stored, now)
        current = links.get(local_id)
        if isinstance(message, ParkSweep):
            swept.pop(local_id, None)
        outcome = step(current, queue, message, limit, now=now, ttl=ttl,
                       room=stored is not None or len(parked) < max_ids)
        if outcome.link is not None and outcome.link != current:
            links[local_id] = outcome.link
        for resolved in outcome.forward:
            await forward(resolved, out)
        for link in outcome.alias_links:
            await identity_topic.send(key=link.local_id.encode(), value=messages.encode(link))
        platform = local_id.split(":", 1)[0]
        # The dead letters first: a crash after them and before the table write processes the
        # record again, which dead-letters the same events again (a duplicate, never a loss).
        # The source is the identity topic: `concord replay ingest` sends them back there, where
        # they park again or resolve once the link is known.
        for parked_at, expired in outcome.expired:
            metrics.identity_park_expired.labels(platform).inc()
            await dead_letter(event, local_id, expired, "identity_park_expired", (
                f"parked at {datetime.fromtimestamp(parked_at / 1000, UTC).isoformat()}, more than "
                f"{settings.identity_park_ttl_seconds:g}s waiting for a link of {local_id}"))
        for overflow in outcome.overflow:
            metrics.identity_park_overflow.inc()
            await dead_letter(event, local_id, overflow, "identity_park_overflow",
                              f"more than {limit} events waiting for a link of {local_id}")
        for refused in outcome.refused:
            metrics.identity_park_full.inc()
            await dead_letter(event, local_id, refused, "identity_park_full",
                              f"{max_ids} platform ids already wait for a link on this worker "
                              f"(identity_park_max_ids); {local_id} is not parked")
        if outcome.parked.dump() != (stored or b""):  # changed, or stored before parking times were kept
            if len(outcome.parked):
                parked[local_id] = outcome.parked.dump()
                if len(outcome.parked) > len(queue):
                    metrics.identity_parked.labels(platform).inc()
            elif stored is not None:
                del parked[local_id]
                released = len(queue) - len(outcome.expired)
                if released and outcome.link is not None and not isinstance(message, ParkSweep):
                    metrics.identity_released.labels(platform).inc(released)
            metrics.identity_parked_ids.set(len(parked))

    @app.on_partitions_revoked.connect
    async def _revoked(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        swept.clear()

    @app.timer(interval=sweep_interval(settings.identity_park_ttl_seconds))
    async def sweep_parked() -> None:
        """Send a `ParkSweep` for every id of this worker whose oldest parked event has expired."""
        if not recovery_finished(app):
            return
        now = now_ms()
        metrics.identity_parked_ids.set(len(parked))
        for local_id, stored in list(parked.data.items()):
            queue = ParkedQueue.load(stored, now)
            oldest = queue.oldest_at
            if oldest is None or swept.get(local_id) == oldest:
                continue
            # A queue stored before parking times were kept is rewritten once (timed from now).
            if expired_by(queue, now, ttl) or queue.dump() != stored:
                swept[local_id] = oldest
                await identity_topic.send(key=local_id.encode(), value=messages.encode(
                    ParkSweep(local_id=local_id, at=now)))
