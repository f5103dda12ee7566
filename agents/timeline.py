"""Timeline agent: the checkpoints on `<prefix>.audit` -> each customer's timeline in Redis.

Runs in every worker with the state role, as a plain aiokafka consumer of a group of its own
(`<app id>.timeline`), not as a Faust agent: about one checkpoint is written per Faust event of the
state agent, and Faust's stream machinery costs more per message than the checkpoint's whole write (a
Faust pass-through agent tops out at ~4k messages/s on the bench machine, aiokafka's batches read
hundreds of thousands): read through Faust, the timeline would have taken a good part of a state
worker's CPU.

Each batch read (up to `BATCH` records) goes to Redis in one pipeline together with the batch's read
positions (connectors/timeline.py); the group's committed offsets are not used. When partitions are
assigned the consumer seeks each to the position Redis holds, or to the beginning of the topic when it
holds none (a new deployment, or a Redis that lost the timelines: they are rebuilt from the topic's
retention). A checkpoint read twice (a crash before its position was written, a rebalance) is written
as the same member: the timeline does not change. While Redis is unreachable the batch is retried with
backoff and nothing more is read. Every `CHECK_SECONDS` the positions of the assigned partitions are
read back: one that this consumer wrote and Redis no longer holds means Redis lost the timelines
meanwhile, and that partition is read again from its beginning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Final

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from concord.connectors.executor import REDIS_ERRORS
from concord.connectors.timeline import Checkpoint, TimelineStore, checkpoint_of
from concord.core import metrics
from concord.core.kafka_security import KafkaSecurity, kafka_client_options, kafka_security
from concord.core.messages import AuditRecord, now_ms
from concord.core.settings import kafka_bootstrap

if TYPE_CHECKING:
    from concord.agents.context import Concord

log = logging.getLogger("concord.timeline")

#: Audit records read and written to Redis at once.
BATCH: Final = 2000
#: How often the read positions are checked against Redis (a Redis that lost the timelines).
CHECK_SECONDS: Final = 5.0
#: How long a newly assigned partition waits for Redis to say where to read from, before reading it all.
SEEK_WAIT_SECONDS: Final = 5.0

_decode_audit = msgspec.json.Decoder(AuditRecord).decode


def checkpoints_of(values: list[bytes]) -> tuple[list[tuple[str, Checkpoint]], int]:
    """The customers' checkpoints among audit record values, and how many values could not be read."""
    out: list[tuple[str, Checkpoint]] = []
    unreadable = 0
    for value in values:
        try:
            record = _decode_audit(value)
        except msgspec.DecodeError:
            unreadable += 1
            continue
        found = checkpoint_of(record)
        if found is not None:
            out.append(found)
    return out, unreadable


class TimelineReader(ConsumerRebalanceListener):
    """Reads the audit topic into the timeline store (see the module docstring)."""

    def __init__(self, store: TimelineStore, bootstrap: str, group: str, topic: str,
                 session_timeout_ms: int, security: KafkaSecurity) -> None:
        self._store = store
        self._bootstrap = bootstrap
        self._security = security
        self._group = group
        self._topic = topic
        self._session_timeout_ms = session_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._written: set[int] = set()  # partitions whose position this reader wrote since assigned

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self._written -= {tp.partition for tp in revoked}

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None or not assigned:
            return
        positions = await self._positions([tp.partition for tp in assigned])
        for tp in assigned:
            offset = positions.get(tp.partition)
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    async def _positions(self, partitions: list[int]) -> dict[int, int | None]:
        deadline = time.monotonic() + SEEK_WAIT_SECONDS
        while True:
            try:
                return await self._store.positions(partitions)
            except REDIS_ERRORS as exc:
                if time.monotonic() > deadline:
                    log.warning("timeline: Redis unreachable (%s): reading audit partitions %s from their beginning",
                                exc, partitions)
                    return {}
                await asyncio.sleep(0.5)

    async def run(self) -> None:
        """Read and write until cancelled; a Kafka failure restarts the consumer after a pause."""
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, group_id=self._group, enable_auto_commit=False,
                auto_offset_reset="earliest", session_timeout_ms=self._session_timeout_ms,
                heartbeat_interval_ms=max(1000, self._session_timeout_ms // 3),
                **kafka_client_options(self._security),
            )
            self._consumer = consumer
            self._written.clear()
            consumer.subscribe([self._topic], listener=self)
            try:
                await consumer.start()
                await self._consume(consumer)
            except KafkaError as exc:
                log.warning("timeline: Kafka error (%s: %s); reading the audit topic again in 5 s",
                            type(exc).__name__, exc)
                await asyncio.sleep(5.0)
            finally:
                self._consumer = None
                await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        check_due = time.monotonic() + CHECK_SECONDS
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            if batch:
                values = [record.value for records in batch.values() for record in records]
                checkpoints, unreadable = checkpoints_of(values)
                if unreadable:
                    log.error("timeline: %d audit records could not be read (skipped)", unreadable)
                positions = {tp.partition: records[-1].offset + 1 for tp, records in batch.items() if records}
                await self._write(checkpoints, positions)
            if time.monotonic() >= check_due:
                check_due = time.monotonic() + CHECK_SECONDS
                await self._check(consumer)

    async def _write(self, checkpoints: list[tuple[str, Checkpoint]], positions: dict[int, int]) -> None:
        delay, said = 0.2, False
        while True:
            try:
                kept = await self._store.write(checkpoints, positions, now_ms())
            except REDIS_ERRORS as exc:
                if not said:
                    log.warning("timeline: Redis unreachable (%s); checkpoints wait, nothing more is read", exc)
                    said = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if said:
                log.info("timeline: Redis answers again; checkpoints written")
            metrics.timeline_checkpoints.inc(kept)
            self._written |= set(positions)
            return

    async def _check(self, consumer: AIOKafkaConsumer) -> None:
        """Read again from its beginning a partition whose position Redis no longer holds (lost)."""
        mine = [tp for tp in consumer.assignment() if tp.partition in self._written]
        try:
            stored = await self._store.positions([tp.partition for tp in mine])
        except REDIS_ERRORS:
            return  # the next write waits for Redis anyway
        lost = [tp for tp in mine if stored.get(tp.partition) is None]
        if lost:
            log.warning("timeline: Redis lost the timelines (restarted empty or flushed); reading audit "
                        "partitions %s again from their beginning", sorted(tp.partition for tp in lost))
            self._written -= {tp.partition for tp in lost}
            await consumer.seek_to_beginning(*lost)


def register(concord: Concord) -> None:
    """Add the timeline reader to the worker (a task: it starts and stops with it)."""
    settings = concord.settings
    reader = TimelineReader(concord.timeline, kafka_bootstrap(settings), f"{settings.app_id}.timeline",
                            concord.names.audit, int(settings.kafka_session_timeout * 1000), kafka_security(settings))

    @concord.app.task
    async def timeline() -> None:
        await reader.run()
