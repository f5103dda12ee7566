"""The tables' bulk-recovering store: applying changelog records, the offsets it holds, what it forgets."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import faust
from faust.tables.recovery import Recovery
from faust.types import TP

from concord.agents.faust_internals import table_store
from concord.app.main import build
from concord.core.settings import Settings

P0 = TP("app-customers-changelog", 0)
P1 = TP("app-customers-changelog", 1)


def decode_key(raw: bytes | None) -> Any:
    return json.loads(raw) if raw is not None else None


def record(key: str, value: bytes | None) -> tuple[bytes, bytes | None]:
    return json.dumps(key).encode(), value


def test_records_apply_in_order_the_latest_value_wins_and_a_tombstone_deletes() -> None:
    data: dict[Any, Any] = {"stale": b"x"}
    key_partition: dict[Any, int] = {"stale": 2}
    table_store.apply_records(data, key_partition, 2, [
        record("a", b"1"), record("b", b"1"), record("a", b"2"), record("stale", None),
        record("b", None), record("b", b"3"), record("gone", None),
    ], decode_key, lambda raw: raw)
    assert data == {"a": b"2", "b": b"3"}
    assert key_partition == {"a": 2, "b": 2}


def test_a_partition_resumes_after_what_is_held_only_where_the_log_continues_it() -> None:
    assert table_store.resume_from(None, 0, 10) is None  # nothing held: all of it
    assert table_store.resume_from(4, 0, 10) == 5
    assert table_store.resume_from(9, 0, 10) == 10  # held to the end: nothing to read
    assert table_store.resume_from(-1, 0, 0) == 0  # an empty partition, held empty
    assert table_store.resume_from(12, 0, 10) is None  # beyond the end: the topic was recreated
    assert table_store.resume_from(2, 5, 10) is None  # records after it were deleted: read it again


def store() -> table_store.Store:
    table_store.apply()
    concord = build(Settings(topic_prefix="bulk-store"), roles=["state"])
    table = concord.tables["customers"]
    data = table.data
    assert isinstance(data, table_store.Store)
    return data


async def test_the_store_decodes_the_changelog_as_the_table_does() -> None:
    data = store()
    key = data._decode_key_for_table(faust.serializers.codecs.get_codec("json").dumps("sf:001"))
    assert key == "sf:001"
    assert data._decode_value_for_table(b"\x00raw") == b"\x00raw"


async def test_offsets_are_held_only_for_assigned_active_partitions() -> None:
    data = store()
    assert data.persisted_offset(P0) is None  # nothing loaded: Faust reads all of it
    data._loaded(P0, 41, lambda tp, offset: None)
    data._loaded(P1, 7, lambda tp, offset: None)
    assert data.persisted_offset(P0) == 41
    await data.on_rebalance({P0}, {P1}, set())
    assert data.persisted_offset(P1) is None  # revoked: read again from the start when it comes back
    data._loaded(P1, 7, lambda tp, offset: None)
    await data.on_rebalance({P0, P1}, set(), set())
    assert data.persisted_offset(P1) == 7
    data.put("a", b"1", 0)
    data.put("b", b"1", 1)
    await data.on_recovery_completed({P0}, {P1})  # P1 a standby now: Faust drops its keys, its offset goes
    assert data.persisted_offset(P1) is None and data.persisted_offset(P0) == 41
    assert dict(data.data) == {"a": b"1"}


async def test_a_partition_read_again_from_its_start_loses_what_was_held_of_it() -> None:
    data = store()
    data.put("a", b"1", 0)
    data.put("b", b"1", 1)
    del data["a"]
    assert data._key_partition == {"b": 1}
    data.put("c", b"1", 1)
    data._drop_partitions({1})
    assert dict(data.data) == {} and data._key_partition == {}


class FakeStore(table_store.Store):
    """Loads by reporting fixed offsets, without a broker."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.loads: list[list[TP]] = []

    async def load(self, tps: Any, progress: Any) -> None:
        self.loads.append(list(tps))
        for tp in tps:
            progress(tp, 99)


async def test_recovery_of_active_partitions_starts_after_what_the_stores_loaded() -> None:
    table_store.apply()
    assert getattr(Recovery._build_offsets, "_concord_patched", False)
    table_store.apply()  # once only
    assert not getattr(Recovery._build_offsets.__wrapped__, "_concord_patched", False)  # type: ignore[attr-defined]

    built: list[str] = []

    async def original(self: Any, consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        built.append(title)
        for tp in tps:
            destination[tp] = -1

    loaded = FakeStore.__new__(FakeStore)
    loaded.__post_init__()

    class Table:
        data = loaded

    class Plain:
        data: dict[Any, Any] = {}

    other = TP("app-other-changelog", 0)
    recovery = type("R", (), {})()
    recovery.active_offsets = Counter()
    recovery.standby_offsets = Counter()
    recovery.tp_to_table = {P0: Table(), P1: Table(), other: Plain()}
    build_offsets = table_store._load_actives(original)
    await build_offsets(recovery, None, {P0, P1, other}, recovery.active_offsets, "active")
    assert loaded.loads == [[P0, P1]]
    assert recovery.active_offsets == {P0: 99, P1: 99, other: -1}
    await build_offsets(recovery, None, {P0}, recovery.standby_offsets, "standby")
    assert loaded.loads == [[P0, P1]] and recovery.standby_offsets == {P0: -1}  # standbys: Faust's way
    assert built == ["active", "standby"]
