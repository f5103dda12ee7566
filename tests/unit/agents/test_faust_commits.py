from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust.events import Event
from faust.transport.consumer import Consumer
from faust.types.tuples import ConsumerMessage
from intervaltree import IntervalTree

from concord.agents.faust_internals import PATCHED, commits

TP = ("raw", 0)


class Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class Offsets:
    """The consumer state `_new_offset` reads, without a running consumer.

    Every offset from 0 to 99 was fetched (a message) unless listed in `never_fetched`.
    """

    def __init__(self, committed: int | None, acked: list[int], gaps: tuple[tuple[int, int], ...] = (),
                 never_fetched: tuple[int, ...] = ()) -> None:
        self._committed_offset: Any = defaultdict(lambda: None, {TP: committed})
        self._acked: Any = defaultdict(list, {TP: list(acked)})
        self._acked_index: Any = defaultdict(set, {TP: set(acked)})
        self._gap: Any = defaultdict(IntervalTree)
        for begin, end in gaps:
            self._gap[TP].addi(begin, end)
        commits.note_fetched(self, {TP: [Record(o) for o in range(100) if o not in never_fetched]})


def new_offset(state: Offsets) -> int | None:
    commits.apply()
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
    commits.apply()
    first = Consumer._new_offset
    commits.apply()
    assert Consumer._new_offset is first


class FakeConsumer(Offsets):
    """`Offsets` with an assignment, as the seek-back timer reads it."""

    def assignment(self) -> set[Any]:
        return {TP}


def test_a_skipped_next_offset_is_sought_back_to_after_a_while() -> None:
    now = [100.0]
    finder = commits.SkippedOffsets(lambda: now[0])
    consumer = FakeConsumer(committed=14, acked=[15, 16])  # 14 skipped, 15-16 processed
    assert finder.due(consumer) == []
    now[0] += commits.STALL_SECONDS
    assert finder.due(consumer) == [(TP, 14)]
    assert finder.due(consumer) == []  # once; then it waits again


def test_in_order_progress_and_known_gaps_are_left_alone() -> None:
    now = [100.0]
    finder = commits.SkippedOffsets(lambda: now[0])
    for consumer in (FakeConsumer(committed=14, acked=[14, 15]), FakeConsumer(committed=14, acked=[]),
                     FakeConsumer(committed=14, acked=[15], gaps=((14, 15),))):
        assert finder.due(consumer) == []
        now[0] += 2 * commits.STALL_SECONDS
        assert finder.due(consumer) == []


def test_a_partition_without_a_committed_offset_is_guarded_from_where_its_log_begins() -> None:
    commits._log_start[TP] = 0
    try:
        assert new_offset(Offsets(committed=None, acked=[1, 2])) is None  # offset 0 not processed yet
        assert new_offset(Offsets(committed=None, acked=[0, 1])) == 2
        now = [0.0]
        finder = commits.SkippedOffsets(lambda: now[0])
        consumer = FakeConsumer(committed=None, acked=[1, 2])
        assert finder.due(consumer) == []
        now[0] += commits.STALL_SECONDS
        assert finder.due(consumer) == [(TP, 0)]
    finally:
        del commits._log_start[TP]


class AckingConsumer:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: Any) -> bool:
        self.acked.append(message.offset)
        return True


class FlowControl:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


class Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return topic == "raw"


class App:
    def __init__(self, generation: int, flowing: bool) -> None:
        self.consumer = AckingConsumer()
        self.consumer_generation_id = generation
        self.flow_control = FlowControl(flowing)
        self.topics = Topics()


class StreamEvent:
    """What `Event.ack` reads: the app and a real Faust message."""

    def __init__(self, app: App, offset: int, generation: int, tracked: bool, topic: str = "raw") -> None:
        self.app = app
        self.message = ConsumerMessage(topic, 0, offset, 0.0, None, None, b"k", b"v", None, generation_id=generation)
        self.message.tracked = tracked


def ack(event: StreamEvent) -> bool:
    commits.apply()
    return bool(Event.ack(event))  # type: ignore[arg-type]


def test_a_message_the_stream_skipped_around_a_rebalance_is_not_acknowledged() -> None:
    app = App(generation=3, flowing=True)
    # Fetched for generation 2 and dropped by the stream before the agent saw it (never tracked).
    assert ack(StreamEvent(app, offset=6, generation=2, tracked=False)) is False
    # Taken while flow control was off (a rebalance under way): dropped the same way.
    app.flow_control.active = False
    assert ack(StreamEvent(app, offset=7, generation=3, tracked=False)) is False
    assert app.consumer.acked == []  # both stay holes: the commit stops there and they are delivered again


def test_processed_and_filtered_messages_are_acknowledged() -> None:
    app = App(generation=3, flowing=True)
    assert ack(StreamEvent(app, offset=6, generation=3, tracked=True)) is True  # processed by the agent
    app.flow_control.active = False  # a processed message acked during a rebalance: still acked
    assert ack(StreamEvent(app, offset=7, generation=2, tracked=True)) is True
    # A topic that does not commit (a table changelog read on recovery): left as Faust does it.
    assert ack(StreamEvent(app, offset=8, generation=2, tracked=False, topic="changelog")) is True
    assert app.consumer.acked == [6, 7, 8]


class Jumping(Offsets):
    """A consumer whose delivered offsets jump: `_add_gap` as Faust calls it then."""

    add_gap = commits._true_gap(Consumer._add_gap)


async def test_a_jump_over_fetched_messages_is_not_a_gap() -> None:
    # 6 was fetched and dropped around a rebalance; 7 is delivered next (Faust calls the jump 6..7).
    consumer = Jumping(committed=5, acked=[5])
    await consumer.add_gap(TP, 6, 7)
    assert not consumer._gap[TP]  # no gap: 6 stays a hole
    consumer._acked[TP].append(7)
    consumer._acked_index[TP].add(7)
    assert new_offset(consumer) == 6  # up to the hole
    consumer._committed_offset[TP] = 6
    assert commits._skipped_head(consumer, TP) == 6
    assert new_offset(consumer) is None  # held there until 6 is delivered again


async def test_a_jump_keeps_as_gaps_only_the_offsets_no_fetch_returned() -> None:
    # 11 and 12 never came back from a fetch (transaction markers); 10 and 13 are messages.
    consumer = Jumping(committed=10, acked=[10], never_fetched=(11, 12))
    await consumer.add_gap(TP, 10, 14)
    assert sorted((i.begin, i.end) for i in consumer._gap[TP]) == [(11, 13)]
    consumer._acked[TP] += [13, 14]
    consumer._acked_index[TP].update((13, 14))
    assert new_offset(consumer) == 15  # 10, the markers, 13 and 14: committed past the markers


def test_a_head_no_fetch_returned_does_not_hold_the_commit() -> None:
    # Committed 20 is a transaction marker: after a restart the first message delivered is 21.
    consumer = Offsets(committed=20, acked=[21, 22], never_fetched=(20,))
    assert commits._skipped_head(consumer, TP) is None
    assert new_offset(consumer) == 23
    # A head that was fetched and not processed holds it (see above): the message is real.
    assert commits._skipped_head(Offsets(committed=20, acked=[21, 22]), TP) == 20


def test_the_fixes_are_installed_on_faust_once() -> None:
    commits.apply()
    installed = (Consumer._new_offset, Consumer._wait_next_records, Consumer._add_gap, Event.ack)
    commits.apply()
    assert (Consumer._new_offset, Consumer._wait_next_records, Consumer._add_gap, Event.ack) == installed
    assert all(getattr(f, PATCHED, False) for f in installed)


def test_fetched_offsets_below_the_committed_one_are_let_go_at_commit_time() -> None:
    consumer = Offsets(committed=20_000, acked=[20_000])
    commits.note_fetched(consumer, {TP: [Record(o) for o in range(100, 20_010)]})
    assert len(commits._fetched(consumer)[TP]) > commits._FETCHED_PRUNE
    assert new_offset(consumer) == 20_001
    assert min(commits._fetched(consumer)[TP]) == 20_000  # what is below the commit is let go
