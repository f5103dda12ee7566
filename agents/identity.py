"""Identity: resolve platform-local ids ("stripe:cus_1") to the customer key (the CRM Account Id).

`concord.identity` is keyed by the local id, so every event naming one local id, and the event that
links it, meet on one partition in order. The `links` table maps local id -> customer key; events
whose local id has no link yet are parked (bounded per id, in order) and released when it arrives.
A CRM merge re-points links: the loser's own id at once, and every other id known for the loser by
`Repoint` messages, which the state agent sends from the loser's customer state (its `local_ids`,
every platform id seen for that customer).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import faust
import msgspec

from concord.agents.ingest import dead_letter_headers
from concord.codecs import records
from concord.codecs.model import AccountMerged, CanonicalEvent
from concord.codecs.model import encode as encode_event
from concord.core import messages, metrics
from concord.tables.identity import ParkedQueue, step

if TYPE_CHECKING:
    from concord.agents.context import Concord

log = logging.getLogger("concord.identity")


def register(concord: Concord) -> None:
    app = concord.app
    names = concord.names
    limit = concord.settings.identity_park_limit
    identity_topic = concord.topics[names.identity]
    canonical = concord.topics[names.canonical]
    dlq = concord.topics[names.dlq_ingest]
    links = concord.table("links", value_type=str)
    parked = concord.table("parked")

    async def forward(event: CanonicalEvent) -> None:
        assert event.customer_key is not None
        await canonical.send(key=event.customer_key.encode(), value=encode_event(event))
        if isinstance(event, AccountMerged):
            # The losers' state lives under their own keys: tell them, so they re-point their ids.
            for loser in event.loser_ids:
                await canonical.send(key=loser.encode(), value=encode_event(event))

    @app.agent(identity_topic, name="concord.identity", concurrency=1)
    async def resolve(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            local_id = event.message.key.decode()
            try:
                message = records.decode_identity(event.value)
            except msgspec.DecodeError as exc:  # only Concord writes here: a bug or a foreign producer
                log.error("unreadable identity record %s: %s", local_id, exc)
                metrics.ingest_dead_letters.labels("internal", "bad_identity_record").inc()
                await dlq.send(key=event.message.key, value=event.value, headers=dead_letter_headers(
                    event.message.headers, "internal", "bad_identity_record", str(exc), event.message.topic,
                    event.message.partition, event.message.offset))
                continue
            queue = ParkedQueue.load(parked.get(local_id))
            current = links.get(local_id)
            outcome = step(current, queue, message, limit)
            if outcome.link is not None and outcome.link != current:
                links[local_id] = outcome.link
            for resolved in outcome.forward:
                await forward(resolved)
            for link in outcome.alias_links:
                await identity_topic.send(key=link.local_id.encode(), value=messages.encode(link))
            if outcome.parked != queue:
                platform = local_id.split(":", 1)[0]
                if outcome.parked.events:
                    parked[local_id] = outcome.parked.dump()
                    metrics.identity_parked.labels(platform).inc()
                else:
                    del parked[local_id]
                    metrics.identity_released.labels(platform).inc(len(queue.events))
            for overflow in outcome.overflow:
                metrics.identity_park_overflow.inc()
                # The source is the identity topic: `concord replay ingest` sends it back there, where
                # it parks again or resolves once the link is known.
                await dlq.send(key=event.message.key, value=overflow, headers=dead_letter_headers(
                    (), local_id.split(":", 1)[0], "identity_park_overflow",
                    f"more than {limit} events waiting for a link of {local_id}", event.message.topic,
                    event.message.partition, event.message.offset))
