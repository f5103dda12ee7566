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
