"""Table recovery in bulk: Concord's tables restore their changelog with a plain consumer, not record by record.

Written for faust-streaming 0.15.3 and aiokafka 0.12-0.14 (`check_versions` in this package refuses others).

Why: Faust's memory store has no persisted offset, so every rebalance re-reads each assigned changelog
partition from its start through Faust's per-message path (fetcher, conductor, the recovery loop's
`wait_for` and `need_recovery` per record): ~95 µs per record, 1M customers in minutes. A plain consumer
reads the same changelog at ~13 µs per record.

The contract:

* `Store` (URL scheme `concord-memory://`) is Faust's memory store (same dict, same `_key_partition`, the
  same decoding: the table's key/value types and serializers, a `None` value deletes the key) that knows,
  per changelog partition, the offset up to which it holds that partition's data (`persisted_offset`:
  the last offset applied, Faust's convention). Faust's recovery starts reading there, so it reads only
  what was written after the bulk load (usually nothing).
* `Store.load` reads assigned changelog partitions from that offset (or, when it holds nothing of a
  partition, from the partition's start, after dropping the keys it still had of it) to the end offsets
  read when it starts, in large fetches, and applies them straight into the dict.
* `Recovery._build_offsets` is wrapped (`_load_actives`): before Faust computes where recovery of the
  active partitions starts, the stores of Concord's tables load those partitions, and Faust's offsets
  for them move to what was loaded, batch by batch (so an interrupted load, by a new rebalance or
  Faust's `broker_request_timeout` on that step, leaves Faust to read on from where it got).
* A partition is held only while it stays an assigned active one: revoked, unassigned, or not active
  when recovery completes (Faust's memory store drops those keys then), its offset is forgotten, and a
  later assignment loads it again from its start. Standby partitions are never bulk-loaded: their
  persisted offset stays `None` and Faust reads them as it would for a memory store.
* Faust's own `set_persisted_offset` (called for each acknowledged changelog write) is ignored: the
  offset only ever covers what was read from the changelog. Writes since the last load are read again
  on the next rebalance (the latest value per key is the same; anything written by another writer in
  between is applied in the changelog's order), so the store ends equal to the changelog.

`apply()` registers the store and installs the wrapper, once, only when the Faust internals they rely on
are there; `store_url()` is the store tables are declared with (Faust's memory store otherwise).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any, Final

import aiokafka
from faust import current_event
from faust.stores import STORES
from faust.stores import memory as faust_memory
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from concord.agents.faust_internals import PATCHED

log = logging.getLogger(__name__)

SCHEME: Final = "concord-memory"

#: The bulk loader's fetches: large, and answered at once (Faust's own consumer waits up to 1.5 s for
#: partitions with nothing new, which stalls the changelog's fetches behind them).
FETCH_MAX_WAIT_MS: Final = 10
PARTITION_FETCH_BYTES: Final = 8 * 1024 * 1024
FETCH_MAX_BYTES: Final = 64 * 1024 * 1024
MAX_RECORDS: Final = 50_000

_installed: set[str] = set()


def apply_records(
    data: MutableMapping[Any, Any],
    key_partition: MutableMapping[Any, int],
    partition: int,
    records: Iterable[tuple[bytes | None, bytes | None]],
    decode_key: Callable[[bytes | None], Any],
    decode_value: Callable[[bytes | None], Any],
) -> None:
    """Apply changelog records (raw key, raw value), in their order, to `data` as Faust's memory store does.

    A `None` value (a tombstone) deletes the key; any other value is decoded and set, and the key noted
    as `partition`'s (Faust's `_key_partition`, which its memory store drops keys by).
    """
    for raw_key, raw_value in records:
        key = decode_key(raw_key)
        if raw_value is None:
            data.pop(key, None)
            key_partition.pop(key, None)
        else:
            data[key] = decode_value(raw_value)
            key_partition[key] = partition


def resume_from(held: int | None, beginning: int, end: int) -> int | None:
    """The first offset to read of a partition whose data is held up to `held` (None: read it all, from
    `beginning`, after dropping what is held: nothing held, or the log no longer continues it)."""
    if held is None or not beginning <= held + 1 <= end:
        return None
    return held + 1


class Store(faust_memory.Store):
    """Faust's memory store that remembers up to which offset it holds each changelog partition."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._held: dict[TP, int] = {}  # changelog partition -> last offset applied from it

    def persisted_offset(self, tp: TP) -> int | None:
        """The last changelog offset of `tp` this store holds the data up to (None: none, read it all)."""
        return self._held.get(tp)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.data[key] = value
        event = current_event()  # a table write goes to its event's partition (Table.partition_for_key)
        if event is not None:
            self._key_partition[key] = event.message.partition

    def __delitem__(self, key: Any) -> None:
        del self.data[key]
        self._key_partition.pop(key, None)

    def put(self, key: Any, value: Any, partition: int) -> None:
        """Set `key` whose changelog record goes to `partition` (Concord's `ChangelogWriter`)."""
        self.data[key] = value
        self._key_partition[key] = partition

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        """Forget the partitions no longer assigned: a later assignment reads them again from the start."""
        for tp in [tp for tp in self._held if tp in revoked or tp not in assigned]:
            del self._held[tp]

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Faust drops the keys of partitions that are not active now; their offsets go with them."""
        await super().on_recovery_completed(active_tps, standby_tps)
        for tp in [tp for tp in self._held if tp not in active_tps]:
            del self._held[tp]

    def _drop_partitions(self, partitions: set[int]) -> None:
        stale = [key for key, partition in self._key_partition.items() if partition in partitions]
        for key in stale:
            self.data.pop(key, None)
            del self._key_partition[key]

    def _consumer(self) -> aiokafka.AIOKafkaConsumer:
        conf = self.app.conf
        return aiokafka.AIOKafkaConsumer(
            bootstrap_servers=faust_aiokafka.server_list(conf.broker, faust_aiokafka.Transport.default_port),
            client_id=f"{conf.broker_client_id}-table-load",
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_MAX_BYTES,
            request_timeout_ms=int(conf.broker_request_timeout * 1000),
            check_crcs=conf.broker_check_crcs,
            isolation_level="read_committed" if self.app.in_transaction else "read_uncommitted",
            **faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )

    async def load(self, tps: Sequence[TP], progress: Callable[[TP, int], None]) -> None:
        """Read `tps` (changelog partitions of this table) up to their end offsets now, into the store.

        `progress(tp, offset)` is called whenever the store holds `tp` up to `offset` (after each batch),
        and with the offset before a partition's start when the store drops what it held of it.
        """
        if not tps:
            return
        consumer = self._consumer()
        await consumer.start()
        try:
            parts = [aiokafka.TopicPartition(tp.topic, tp.partition) for tp in tps]
            consumer.assign(parts)
            beginnings = await consumer.beginning_offsets(parts)
            ends = await consumer.end_offsets(parts)
            pending: dict[aiokafka.TopicPartition, TP] = {}
            fresh: set[int] = set()
            for tp, part in zip(tps, parts, strict=True):
                start = resume_from(self._held.pop(tp, None), beginnings[part], ends[part])
                if start is None:  # read it all: Faust too, from its start, should this load be interrupted
                    fresh.add(tp.partition)
                    start = beginnings[part]
                    progress(tp, start - 1)
                if start < ends[part]:
                    consumer.seek(part, start)
                    pending[part] = tp
                else:
                    self._loaded(tp, ends[part] - 1, progress)
            self._drop_partitions(fresh)
            total = 0
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=MAX_RECORDS)
                for part, records in batches.items():
                    apply_records(self.data, self._key_partition, part.partition,
                                  ((record.key, record.value) for record in records),
                                  self._decode_key_for_table, self._decode_value_for_table)
                    total += len(records)
                    if part in pending:
                        self._loaded(pending[part], records[-1].offset, progress)
                for part in list(pending):
                    if await consumer.position(part) >= ends[part]:
                        self._loaded(pending.pop(part), ends[part] - 1, progress)
                        consumer.pause(part)
            log.info("table %s: %d changelog records loaded in bulk from %d partition(s)", self.table_name,
                     total, len(tps))
        finally:
            await consumer.stop()

    def _loaded(self, tp: TP, offset: int, progress: Callable[[TP, int], None]) -> None:
        self._held[tp] = offset
        progress(tp, offset)

    def _decode_key_for_table(self, raw: bytes | None) -> Any:
        return self.table._to_key(self._decode_key(raw))  # type: ignore[attr-defined]  # Collection

    def _decode_value_for_table(self, raw: bytes | None) -> Any:
        return self.table._to_value(self._decode_value(raw))  # type: ignore[attr-defined]  # Collection


def _load_actives(original: Callable[..., Any]) -> Callable[..., Any]:
    """`Recovery._build_offsets`, which, for the active partitions, first has Concord's stores load theirs."""
    @functools.wraps(original)
    async def build_offsets(self: Any, consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        await original(self, consumer, tps, destination, title)
        if destination is not self.active_offsets:
            return
        by_store: dict[Store, list[TP]] = {}
        for tp in tps:
            table = self.tp_to_table.get(tp)
            store = getattr(table, "data", None)
            if isinstance(store, Store):
                by_store.setdefault(store, []).append(tp)

        def progress(tp: TP, offset: int) -> None:
            destination[tp] = offset  # the last offset applied: Faust reads on from there

        for store, store_tps in by_store.items():
            await store.load(sorted(store_tps), progress)

    setattr(build_offsets, PATCHED, True)
    return build_offsets


def _store_internals_known() -> bool:
    memory_store = faust_memory.Store
    return ("_key_partition" in memory_store.__post_init__.__code__.co_names
            and callable(getattr(memory_store, "on_recovery_completed", None))
            and callable(getattr(memory_store, "_decode_key", None)))


def _recovery_internals_known() -> bool:
    build = getattr(Recovery, "_build_offsets", None)
    add = getattr(Recovery, "_add", None)
    return (build is not None and add is not None
            and build.__code__.co_varnames[:5] == ("self", "consumer", "tps", "destination", "title")
            and "persisted_offset" in add.__code__.co_names)


def apply() -> None:
    """Register the store and load active partitions in bulk (once); changed internals leave Faust's own."""
    if "store" not in _installed:
        if _store_internals_known():
            STORES.data[SCHEME] = f"{Store.__module__}:{Store.__qualname__}"
            _installed.add("store")
        else:
            log.warning("faust memory store internals changed: tables recover through Faust's path (%s)", __file__)
            return
    if getattr(Recovery._build_offsets, PATCHED, False):
        return
    if _recovery_internals_known():
        Recovery._build_offsets = _load_actives(Recovery._build_offsets)  # type: ignore[method-assign]
    else:
        log.warning("faust recovery internals changed: tables recover through Faust's path (%s)", __file__)


def store_url() -> str:
    """The app's store (Concord's tables use the app's): this one once `apply()` registered it."""
    return f"{SCHEME}://" if "store" in _installed else "memory://"
