"""Records handed to the producer in one batch per partition: table values written to the changelog as
Faust writes them (`ChangelogWriter`), and any topic's records of one Faust event (`RecordBatchWriter`).

Relies on aiokafka's producer internals (`_producer`, `_message_accumulator`, `_compression_type`,
`_txn_manager`, `send_batch`): where they are not what this was written against, it writes record by
record through Faust's producer instead. Version range: see `concord.agents.faust_internals`.
"""

from __future__ import annotations

import functools
from typing import Any

import aiokafka
import faust
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.serializers import codecs

from concord.agents.faust_internals.table_store import Store

# The customers table's key serializer (Concord.table): JSON, as Faust encodes it.
_KEY_CODEC = codecs.get_codec("json")


@functools.lru_cache(maxsize=65_536)
def changelog_key(key: str) -> bytes:
    """A customer key as the table's changelog stores it (memoized: the same customers recur).

    Also what `bench/pipeline/recovery.py` writes, so that its changelog is the agent's own.
    """
    return _KEY_CODEC.dumps(key)


class RecordBatchWriter:
    """Records for one topic handed to the app's producer together, one record batch per partition.

    The agent `add`s the records of one Faust event and awaits `flush` before it takes the next
    event (so before this one is acknowledged): one request per partition, as large as a request
    allows, instead of one `producer.send` each. Faust flushes that producer before it commits the
    event's offset, so a crash never acknowledges an event whose records were not written.
    """

    def __init__(self, app: faust.App, topic: str) -> None:
        self._app = app
        self._topic = topic
        self._pending: dict[int, list[tuple[bytes, bytes]]] = {}

    def add(self, key: bytes, value: bytes, partition: int) -> None:
        """`value` goes to `partition` of the topic with the next `flush`."""
        records = self._pending.get(partition)
        if records is None:
            records = self._pending[partition] = []
        records.append((key, value))

    async def flush(self) -> None:
        """Hand every record added since the last flush to the producer (in order, per partition)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        producer = self._app.producer
        client = getattr(producer, "_producer", None)
        accumulator = getattr(client, "_message_accumulator", None)
        compression = getattr(accumulator, "_compression_type", None)
        if (not isinstance(client, aiokafka.AIOKafkaProducer) or client._txn_manager is not None
                or not isinstance(compression, int)):
            # Not the plain aiokafka producer this was written against (transactions, a threaded or
            # newer producer): record by record, as Faust would.
            for partition, records in pending.items():
                for key, value in records:
                    await producer.send(self._topic, key, value, partition, None, None)
            return
        # As large as a request may be (the producer's max_request_size, below the broker's limit).
        limit = max(int(self._app.conf.producer_max_request_size), 16384)
        for partition, records in pending.items():
            batch = BatchBuilder(limit, compression)
            for key, value in records:
                if batch.append(timestamp=None, key=key, value=value) is None:
                    await client.send_batch(batch, self._topic, partition=partition)
                    batch = BatchBuilder(limit, compression)
                    batch.append(timestamp=None, key=key, value=value)  # an empty batch takes any record
            await client.send_batch(batch, self._topic, partition=partition)


class ChangelogWriter(RecordBatchWriter):
    """Writes table values the way Faust does, without Faust's per-write machinery.

    A value goes into the table's local store at once and, as one record, to the table's changelog
    topic partition (the partition of the event being processed, as Faust's own writes do), in the
    batch of the next `flush`. Recovery reads these records like any other changelog record.

    (Faust's `table[key] = value` schedules each write through a buffer and several tasks, and even a
    plain `producer.send` per record fills the producer's 16 KiB batches after ten states or so: the
    agent then waited for a broker round trip every ten customers. One batch per partition and event
    takes one request.)
    """

    def __init__(self, app: faust.App, table: Any) -> None:
        super().__init__(app, table.changelog_topic.get_topic_name())
        self._table = table

    def put(self, key: str, value: bytes, partition: int) -> None:
        """Store `value` locally now; its changelog record goes out with the next `flush`."""
        store = self._table.data
        if isinstance(store, Store):
            store.put(key, value, partition)  # noted as `partition`'s: dropped with it when it is revoked
        else:
            store[key] = value
        self.add(changelog_key(key), value, partition)
