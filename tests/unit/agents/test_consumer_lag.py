"""`concord_consumer_lag`: the high watermark less the committed offset (or the log's start), from Faust's
bookkeeping."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from concord.agents.faust_internals import commits
from concord.agents.faust_internals.recovery import consumer_lag


def app(highwater: dict[Any, int | None], committed: dict[Any, int]) -> Any:
    consumer = SimpleNamespace(highwater=lambda tp: highwater.get(tp), _committed_offset=committed)
    return SimpleNamespace(consumer=consumer)


def test_lag_is_the_high_watermark_less_the_committed_offset() -> None:
    tp = TopicPartition("t.canonical", 3)
    assert consumer_lag(app({tp: 120}, {tp: 100}), tp) == 20
    assert consumer_lag(app({tp: 120}, {tp: 120}), tp) == 0
    assert consumer_lag(app({tp: 120}, {tp: 130}), tp) == 0  # never negative (a watermark read before the commit)


def test_without_a_commit_the_lag_counts_from_where_the_log_begins_and_unknown_is_none() -> None:
    tp = TopicPartition("t.canonical", 4)
    commits._log_start[tp] = 40  # recorded when the partition was assigned (a log whose start was deleted)
    try:
        assert consumer_lag(app({tp: 100}, {}), tp) == 60
    finally:
        del commits._log_start[tp]
    assert consumer_lag(app({tp: 100}, {}), tp) == 100
    assert consumer_lag(app({tp: None}, {tp: 5}), tp) is None  # no fetch answered yet
