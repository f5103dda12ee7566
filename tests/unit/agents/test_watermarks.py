"""The running side of watermarks: what the ingest agent notes, and the health every worker derives."""

from __future__ import annotations

from typing import Any, NamedTuple

from concord.agents.watermarks import HealthWatch, Progress, decode_holds, decode_marks, decode_overflow
from concord.drift.watermarks import PartitionMark

NOW = 1_000_000_000


class TP(NamedTuple):
    topic: str
    partition: int


def test_progress_notes_the_latest_source_time_and_whether_the_log_is_read_to_its_end() -> None:
    progress = Progress()
    tp = TP("c.raw.stripe", 2)
    progress.read(tp, "stripe", 41, [NOW - 9_000, NOW - 7_000], at=NOW - 100)
    progress.read(tp, "stripe", 42, [], at=NOW)  # dead-lettered: no source time, but read
    state = progress.progress(tp, "stripe", highwater=43, committed=40)
    assert (state.high, state.last_read, state.caught_up, state.partition) == (NOW - 7_000, NOW, True, 2)
    assert progress.progress(tp, "stripe", highwater=50, committed=40).caught_up is False
    assert progress.progress(tp, "stripe", highwater=None, committed=40).caught_up is False  # end not known yet


def test_a_partition_not_read_here_is_caught_up_when_its_committed_offset_is_at_the_end() -> None:
    progress = Progress()
    tp = TP("c.raw.zendesk", 0)
    assert progress.progress(tp, "zendesk", highwater=7, committed=7).caught_up is True  # nothing new since
    assert progress.progress(tp, "zendesk", highwater=9, committed=7).caught_up is False
    assert progress.progress(tp, "zendesk", highwater=0, committed=None).caught_up is True  # an empty log


def test_partitions_moved_to_another_worker_are_forgotten() -> None:
    progress = Progress()
    kept, moved = TP("t", 0), TP("t", 1)
    progress.read(kept, "stripe", 1, [NOW], at=NOW)
    progress.read(moved, "stripe", 1, [NOW], at=NOW)
    progress.forget({kept})
    assert progress.progress(moved, "stripe", highwater=9, committed=None).high == 0
    assert progress.progress(kept, "stripe", highwater=9, committed=None).high == NOW


def marks(watermark: int) -> dict[str, dict[int, PartitionMark]]:
    return {"stripe": {0: PartitionMark(watermark=watermark, at=NOW)}}


def test_one_log_line_when_a_platform_falls_behind_and_one_when_it_caught_up() -> None:
    watch = HealthWatch(behind_ms=60_000, stale_ms=60_000)
    assert watch.update(marks(NOW - 1_000), NOW) == []
    fell = watch.update(marks(NOW - 200_000), NOW)
    assert len(fell) == 1 and fell[0].startswith("stripe is behind")
    assert watch.update(marks(NOW - 210_000 + 1_000), NOW + 1_000) == []  # still behind: said once
    assert watch.platforms["stripe"].behind_since == NOW
    back = watch.update(marks(NOW + 2_000), NOW + 3_000)
    assert len(back) == 1 and back[0].startswith("stripe caught up") and str(NOW) in back[0]
    assert watch.platforms["stripe"].behind is False


def test_nothing_counts_as_read_before_the_watermarks_were_read_once() -> None:
    watch = HealthWatch(behind_ms=60_000, stale_ms=60_000)
    # Not the empty mapping (the lifecycle judges on the clock alone with that): every platform at 0.
    assert set(watch.read()) >= {"stripe", "salesforce", "zendesk", "netsuite"} and not any(watch.read().values())
    watch.update({}, NOW)  # read once, nobody publishes (a worker with the state role alone): on the clock
    assert watch.read() == {}
    watch.update(marks(NOW - 1_000), NOW + 1_000)
    assert watch.read() == {"stripe": NOW - 1_000}


def test_marks_that_do_not_parse_are_skipped() -> None:
    raw = {b"stripe:0": b'{"watermark": 5, "at": 6}', b"stripe:x": b"{}", b"zendesk:1": b"not json"}
    assert decode_marks(raw) == {"stripe": {0: PartitionMark(watermark=5, at=6)}}


def test_the_platforms_count_only_as_far_as_the_identity_hop_has_read() -> None:
    watch = HealthWatch(behind_ms=60_000, stale_ms=60_000)
    marks = {"stripe": {0: PartitionMark(watermark=NOW - 1_000, at=NOW)},
             "zendesk": {0: PartitionMark(watermark=NOW - 2_000, at=NOW)}}
    watch.update(marks, NOW)
    assert watch.read() == {"stripe": NOW - 1_000, "zendesk": NOW - 2_000}  # no identity hop known
    # The identity agent has read only the records written up to 30 s ago: an event forwarded
    # through it since may not have reached the customer's state yet.
    watch.update({**marks, "identity": {0: PartitionMark(watermark=NOW - 30_000, at=NOW)}}, NOW)
    assert watch.read() == {"stripe": NOW - 31_000, "zendesk": NOW - 32_000}
    assert "identity" in watch.platforms and "identity" not in watch.read()


def test_a_gap_naming_no_record_is_noted_once_per_platform_from_its_earliest_and_shown_in_the_health() -> None:
    progress = Progress()
    progress.gap_overflow("salesforce", NOW - 5_000)
    progress.gap_overflow("salesforce", NOW - 9_000)  # an earlier one read later (another partition)
    progress.gap_overflow("salesforce", NOW - 1_000)
    assert progress.take_overflows() == {"salesforce": NOW - 9_000}
    assert progress.take_overflows() == {}  # published once: a person may clear it after reconciling
    published = decode_overflow({b"salesforce": str(NOW - 9_000).encode(), b"stripe": b"soon"})
    assert published == {"salesforce": NOW - 9_000}
    watch = HealthWatch(behind_ms=60_000, stale_ms=60_000)
    watch.update(marks(NOW - 1_000), NOW, published)
    assert watch.platforms["salesforce"].gap_overflow_since == NOW - 9_000
    assert watch.platforms["stripe"].gap_overflow_since == 0
    watch.update(marks(NOW - 1_000), NOW)  # cleared in Redis: gone from the health
    assert watch.platforms["salesforce"].gap_overflow_since == 0


def test_a_platform_held_by_a_reconciliation_counts_as_read_up_to_nothing_until_released_or_expired() -> None:
    watch = HealthWatch(behind_ms=60_000, stale_ms=60_000)
    both = {"stripe": {0: PartitionMark(watermark=NOW - 1_000, at=NOW)},
            "netsuite": {0: PartitionMark(watermark=NOW - 1_000, at=NOW)}}
    lines = watch.update(both, NOW, holds={"netsuite": NOW + 30_000, "zendesk": NOW + 30_000})
    # Held, whether its partitions were read or not (a platform missing from the mapping holds nothing back).
    assert watch.read() == {"stripe": NOW - 1_000, "netsuite": 0, "zendesk": 0}
    assert sorted(line.split()[0] for line in lines) == ["netsuite", "zendesk"]
    assert watch.update(both, NOW + 1_000, holds={"netsuite": NOW + 30_000, "zendesk": NOW + 30_000}) == []
    # Released (the hash field deleted) and expired (a reconciliation that died): judged again.
    lines = watch.update(both, NOW + 40_000, holds={"zendesk": NOW + 30_000})
    assert watch.read() == {"stripe": NOW - 1_000, "netsuite": NOW - 1_000}
    assert sorted(line.split()[0] for line in lines) == ["netsuite", "zendesk"]
    assert all("no longer held" in line for line in lines)
    assert decode_holds({b"stripe": b"5", b"zendesk": b"soon"}) == {"stripe": 5}


def test_a_snapshot_reads_its_platform_as_of_when_it_was_written_not_as_of_its_records_last_change() -> None:
    from concord.agents.ingest import source_times
    from concord.core import messages
    from tests.unit.tables import state_builders as sb

    class Message(NamedTuple):
        headers: Any
        timestamp: float

    events = [sb.invoice(1_000), sb.invoice(2_000, "in_2")]
    assert source_times(Message([], 5.0), events) == [1_000, 2_000]
    assert source_times(Message([(messages.SNAPSHOT, b"stripe-1")], 1_793_491_200.5), events) == [1_793_491_200_500]
    assert source_times(Message({messages.SNAPSHOT: b"p"}, 7.0), events) == [7_000]
