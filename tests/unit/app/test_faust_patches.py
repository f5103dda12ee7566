from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust.transport.consumer import Consumer
from intervaltree import IntervalTree

from concord.app import faust_patches

TP = ("raw", 0)


class Offsets:
    """The consumer state `_new_offset` reads, without a running consumer."""

    def __init__(self, committed: int | None, acked: list[int], gaps: tuple[tuple[int, int], ...] = ()) -> None:
        self._committed_offset: Any = defaultdict(lambda: None, {TP: committed})
        self._acked: Any = defaultdict(list, {TP: list(acked)})
        self._acked_index: Any = defaultdict(set, {TP: set(acked)})
        self._gap: Any = defaultdict(IntervalTree)
        for begin, end in gaps:
            self._gap[TP].addi(begin, end)


def new_offset(state: Offsets) -> int | None:
    faust_patches.apply()
    return Consumer._new_offset(state, TP)  # type: ignore[arg-type]


def test_nothing_is_committed_past_an_unprocessed_head_offset() -> None:
    # 0-3 committed (next offset 4); 4 not processed, 5 and 6 are: Faust alone would commit 7.
    assert new_offset(Offsets(committed=4, acked=[5, 6])) is None


def test_consecutive_offsets_from_the_committed_one_are_committed() -> None:
    assert new_offset(Offsets(committed=4, acked=[4, 5, 6])) == 7
    assert new_offset(Offsets(committed=4, acked=[4, 5, 7])) == 6  # up to the first hole
    assert new_offset(Offsets(committed=None, acked=[0, 1])) == 2


def test_offsets_the_broker_skipped_do_not_block_the_commit() -> None:
    # 4 is a known gap (no message there): 5 and 6 processed, the commit goes on to 7.
    assert new_offset(Offsets(committed=4, acked=[5, 6], gaps=((4, 5),))) == 7


def test_applying_twice_wraps_once() -> None:
    faust_patches.apply()
    first = Consumer._new_offset
    faust_patches.apply()
    assert Consumer._new_offset is first


class FakeConsumer:
    def __init__(self, committed: int | None, acked: list[int], gaps: tuple[tuple[int, int], ...] = ()) -> None:
        self.offsets = Offsets(committed, acked, gaps)
        self._committed_offset = self.offsets._committed_offset
        self._acked = self.offsets._acked
        self._gap = self.offsets._gap

    def assignment(self) -> set[Any]:
        return {TP}


def test_a_skipped_next_offset_is_sought_back_to_after_a_while() -> None:
    now = [100.0]
    finder = faust_patches.SkippedOffsets(lambda: now[0])
    consumer = FakeConsumer(committed=14, acked=[15, 16])  # 14 skipped, 15-16 processed
    assert finder.due(consumer) == []
    now[0] += faust_patches.STALL_SECONDS
    assert finder.due(consumer) == [(TP, 14)]
    assert finder.due(consumer) == []  # once; then it waits again


def test_in_order_progress_and_known_gaps_are_left_alone() -> None:
    now = [100.0]
    finder = faust_patches.SkippedOffsets(lambda: now[0])
    for consumer in (FakeConsumer(committed=14, acked=[14, 15]), FakeConsumer(committed=14, acked=[]),
                     FakeConsumer(committed=14, acked=[15], gaps=((14, 15),))):
        assert finder.due(consumer) == []
        now[0] += 2 * faust_patches.STALL_SECONDS
        assert finder.due(consumer) == []


def test_a_partition_without_a_committed_offset_is_guarded_from_where_its_log_begins() -> None:
    faust_patches._log_start[TP] = 0
    try:
        assert new_offset(Offsets(committed=None, acked=[1, 2])) is None  # offset 0 not processed yet
        assert new_offset(Offsets(committed=None, acked=[0, 1])) == 2
        now = [0.0]
        finder = faust_patches.SkippedOffsets(lambda: now[0])
        consumer = FakeConsumer(committed=None, acked=[1, 2])
        assert finder.due(consumer) == []
        now[0] += faust_patches.STALL_SECONDS
        assert finder.due(consumer) == [(TP, 0)]
    finally:
        del faust_patches._log_start[TP]
