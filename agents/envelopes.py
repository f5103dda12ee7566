"""Forwarding as envelopes: what the ingest and identity agents read goes on as one Kafka record per
destination partition, not one per event.

Every Kafka record a Faust agent reads costs it a per-message delivery (tasks, acks, a stream step)
however small the record: the state agent passes 20k events/s on envelopes and 3-4k on single events
(docs/benchmarks.md). So only the first hop pays per message: the ingest agent gathers the canonical
events it decodes from a bounded batch of raw records (`forward_batch_max` records, or what came within
`forward_linger_ms`) into one `IdentityBatch` per identity partition and one `CanonicalBatch` per
canonical partition; the identity agent does the same with what it resolves.

Order and delivery:
* An envelope goes to the partition of its events' keys (the same partition a keyed record of each
  would reach: `partition_for`), and holds them in the order they were read, so every key's events
  stay in order. An event that cannot ride in an envelope (its record key is not the key the reader
  routes it by: a merge told to the losers' states) goes alone, after its partition's envelope so
  far, which keeps the partition's order.
* A partition with a single event gets the plain keyed record, as before envelopes.
* The batch's input is acknowledged only after every envelope of it is acknowledged by Kafka
  (`Forwarder.send` awaits each delivery, retrying until Kafka takes it): a crash before that reads
  the batch again (at-least-once; the state agent drops events it has applied).

`Envelopes` is pure (no I/O): it says what goes out; `Forwarder` sends it; `forwarded_batches` is the loop
both agents run around them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from msgspec import Struct

from concord.agents.faust_internals.commits import leave_unacknowledged
from concord.agents.faust_internals.streams import as_current, batches
from concord.codecs.model import CanonicalEvent
from concord.codecs.model import encode as encode_event
from concord.codecs.records import CanonicalBatch, IdentityBatch
from concord.core import messages
from concord.core.partitioning import partition_for

log = logging.getLogger("concord.envelopes")

R = TypeVar("R")

#: Seconds between two attempts to hand an envelope to Kafka, at most (doubling from a tenth of a second).
_RETRY_MAX_S: Final = 5.0


class Outgoing(Struct, frozen=True, kw_only=True):
    """One Kafka record to send: an envelope (to an explicit partition) or a single keyed event."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None  # None: the producer picks it by key
    events: int = 1


class Route(Struct, frozen=True, kw_only=True):
    """A destination topic: its partitions, and the key its reader routes an event by."""

    topic: str
    partitions: int
    key_of: Callable[[CanonicalEvent], str | None]
    envelope: Callable[[list[CanonicalEvent]], Struct]


def identity_route(topic: str, partitions: int) -> Route:
    return Route(topic=topic, partitions=partitions, key_of=lambda e: e.local_customer,
                 envelope=lambda events: IdentityBatch(events=events))


def canonical_route(topic: str, partitions: int) -> Route:
    return Route(topic=topic, partitions=partitions, key_of=lambda e: e.customer_key,
                 envelope=lambda events: CanonicalBatch(events=events))


class Envelopes:
    """The events of one batch, gathered per destination topic and partition (pure)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = {route.topic: route for route in routes}
        self._pending: dict[tuple[str, int], list[CanonicalEvent]] = {}

    def add(self, topic: str, key: str, event: CanonicalEvent) -> list[Outgoing]:
        """Gather `event`, bound for `topic` under the record key `key`; what must go out now, in order: nothing
        for an event its envelope holds, else its partition's envelope so far and then the event alone."""
        route = self._routes[topic]
        partition = partition_for(key.encode(), route.partitions)
        if route.key_of(event) == key:
            self._pending.setdefault((topic, partition), []).append(event)
            return []
        before = self._pending.pop((topic, partition), [])
        return [*self._out(route, partition, before), Outgoing(topic=topic, key=key.encode(),
                                                               value=encode_event(event))]

    def drain(self) -> list[Outgoing]:
        """Every envelope gathered so far (one per topic and partition), and forget them."""
        out = [record for (topic, partition), events in self._pending.items()
               for record in self._out(self._routes[topic], partition, events)]
        self._pending.clear()
        return out

    def __len__(self) -> int:
        return sum(len(events) for events in self._pending.values())

    @staticmethod
    def _out(route: Route, partition: int, events: list[CanonicalEvent]) -> list[Outgoing]:
        if not events:
            return []
        if len(events) == 1:
            key = route.key_of(events[0])
            assert key is not None
            return [Outgoing(topic=route.topic, key=key.encode(), value=encode_event(events[0]))]
        return [Outgoing(topic=route.topic, key=None, value=messages.encode(route.envelope(events)),
                         partition=partition, events=len(events))]


class Forwarder:
    """Sends what `Envelopes` says on the agent's Faust topics, and waits until Kafka has every record."""

    def __init__(self, topics: Mapping[str, Any], sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self._topics = topics
        self._sleep = sleep

    async def send(self, records: Sequence[Outgoing]) -> None:
        """Hand every record to the producer in order, then wait for Kafka to acknowledge each. A record Kafka
        refuses (a broker away longer than the producer's own retries) is sent again, in order, until it
        is taken: the batch's input is not acknowledged before, so a duplicate is the worst outcome."""
        delay = 0.1
        remaining = list(records)
        while remaining:
            futures = []
            try:
                for record in remaining:
                    futures.append(await self._topics[record.topic].send(
                        key=record.key, value=record.value, partition=record.partition))
            except Exception as exc:  # noqa: BLE001 (any producer failure: try again, never lose the batch)
                log.warning("handing %d record(s) to Kafka failed (%s: %s); again in %.1fs", len(remaining),
                            type(exc).__name__, exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            failed = 0
            for n, future in enumerate(futures):
                try:
                    await future
                except Exception as exc:  # noqa: BLE001
                    failed = n
                    log.warning("Kafka did not take %d record(s) (%s: %s); sent again in %.1fs",
                                len(remaining) - n, type(exc).__name__, exc, delay)
                    break
            else:
                return
            # From the first record not taken on (those after it may have been taken: a duplicate, never a loss).
            remaining = remaining[failed:]
            await self._sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)


async def forwarded_batches(stream: Any, max_records: int, linger_seconds: float, routes: Sequence[Route],
                            forwarder: Forwarder, read: Callable[[Any, Envelopes], Awaitable[R]],
                            ) -> AsyncIterator[tuple[Sequence[Any], list[R]]]:
    """`stream`'s records in batches, each `read` (as the current event: a table write goes to its record's
    partition) into the batch's envelopes, which are then forwarded; yields each batch with what `read` said of
    every record, once Kafka has every envelope of it. The batch is acknowledged when the next one is asked
    for; one interrupted half-way (cancelled) is left unacknowledged, to be read again."""
    async for batch in batches(stream, max_records, linger_seconds):
        out = Envelopes(routes)
        results: list[R] = []
        try:
            for event in batch:
                as_current(event)
                results.append(await read(event, out))
            await forwarder.send(out.drain())
        except BaseException:
            leave_unacknowledged(batch)
            raise
        yield batch, results
