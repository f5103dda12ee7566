"""Fixes to faust-streaming's offset commits: never commit past a message that was not processed.

Written for faust-streaming 0.15.3 (`check_versions` in this package refuses others at start).

Found by the closed-loop test, which SIGKILLs a worker mid-run: raw events produced in the seconds
around the restart were committed with no output, no dead letter and no log line (faust-streaming
0.15.3). The restarted worker gets a second rebalance when the killed member's session expires, and
Faust loses messages then in these ways, each fixed here:

1. **The commit guard is off by one.** Faust commits, per partition, the end of the first run of
   consecutive acknowledged offsets. Its guard against a hole at the head of that run compares the
   smallest acknowledged offset with the committed one, but the committed offset is Kafka's *next*
   offset to read: with 4 committed (0-3 done), 4 not acknowledged and 5, 6 acknowledged, `5 - 4 > 1`
   is false and Faust commits 7. `_new_offset` is wrapped (`_guard_head`): while the next offset to
   commit is neither acknowledged nor a gap in the log, nothing is committed for that partition. A
   partition without a committed offset is guarded from where its log begins (read on assignment).
2. **A dropped message is taken for a gap in the log.** `getmany` stops handing out a fetched batch
   when the consumer generation changes or flow control stops, the stream skips messages fetched
   for an older generation, and after a seek messages of an older fetch still come: the offsets
   delivered then jump. Faust takes every jump for offsets the broker skips (transaction markers,
   compaction) and commits past it, and for messages delivered before the jump it adds duplicates
   to its acknowledged list, which slow its commits to one offset per interval. Every fetched
   offset is now noted (`note_fetched`), and a jump's gap holds only offsets no fetch returned
   (`_true_gap`); a head offset no fetch returned while later ones came is a gap for the guard too.
3. **Skipped messages are redelivered**: a timer seeks a partition back to a next offset to commit
   that stays unprocessed while later offsets are processed (`redeliver_skipped`); the later ones are
   processed again and Concord drops the duplicates.
4. **The pure-Python stream acknowledges what it skips** (the compiled stream iterator, used when
   present, does not): a message fetched for an older generation, or taken while flow control is
   off, is dropped before the agent sees it and then acknowledged as if processed. `Event.ack` is
   wrapped (`_no_ack_when_skipped`) to leave such a message unacknowledged.

Each wrapper is installed once, and only when the Faust internals it relies on are there.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from faust.events import Event
from faust.transport.consumer import Consumer
from faust.types.tuples import Message

from concord.agents.faust_internals import PATCHED, wrap_once

log = logging.getLogger(__name__)

# Where each assigned partition's log begins (`record_log_starts`): the first offset to guard while a
# partition has no committed offset yet (its first messages, in a new consumer group).
_log_start: dict[Any, int] = {}


def log_start(tp: Any) -> int | None:
    """Where `tp`'s log began when it was last assigned to this worker (None: not read, or not assigned yet)."""
    return _log_start.get(tp)


def _skipped_head(consumer: Any, tp: Any) -> int | None:
    """The next offset to commit of `tp` when it holds a message not processed while later ones are.

    None when it is processed, when no fetch returned a message there while later offsets came (an
    offset the broker skips: a transaction marker, a compacted record), when Faust knows it for a
    gap, or when it is not known (no committed offset and no log start read yet).
    """
    committed = consumer._committed_offset.get(tp)
    head = committed if committed is not None else _log_start.get(tp)
    acked = consumer._acked.get(tp)
    if head is None or not acked or min(acked) <= head:
        return None
    if head not in _fetched(consumer).get(tp, ()):
        return None
    gap = consumer._gap.get(tp)
    return None if gap is not None and gap.overlaps_point(head) else head


def _guard_head(original: Callable[[Any, Any], int | None]) -> Callable[[Any, Any], int | None]:
    @functools.wraps(original)
    def new_offset(self: Any, tp: Any) -> int | None:
        _prune_fetched(self, tp)  # here, once per commit, not on every fetch
        if _skipped_head(self, tp) is not None:
            return None  # the next offset to commit is still unprocessed: commit nothing beyond it
        return original(self, tp)

    setattr(new_offset, PATCHED, True)
    return new_offset


_told: set[tuple[Any, int]] = set()


def _skipped_by_stream(event: Any) -> bool:
    """Whether the stream is acknowledging `event` without having processed it (see the module doc)."""
    message = event.message
    if message.tracked:  # taken for processing: the stream tracks a message before it reaches the agent
        return False
    app = event.app
    if not app.topics.acks_enabled_for(message.topic):
        return False
    return not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id


# Messages an agent did not finish (`leave_unacknowledged`): (partition, offset), until their ack is refused.
_unfinished: set[tuple[Any, int]] = set()


def leave_unacknowledged(events: Iterable[Any]) -> None:
    """Refuse the coming acknowledgement of each of `events` (a batch whose body was interrupted): read again."""
    _unfinished.update((event.message.tp, event.message.offset) for event in events)


def _no_ack_when_skipped(original: Callable[[Any], bool]) -> Callable[[Any], bool]:
    @functools.wraps(original)
    def ack(self: Any) -> bool:
        if _unfinished and (self.message.tp, self.message.offset) in _unfinished:
            _unfinished.discard((self.message.tp, self.message.offset))
            return False
        if _skipped_by_stream(self):
            message = self.message
            if (message.tp, message.generation_id) not in _told:  # once per partition and generation
                if len(_told) > 10_000:
                    _told.clear()
                _told.add((message.tp, message.generation_id))
                log.info("%s[%d]@%d, fetched before a rebalance, was skipped by the stream: left unacknowledged, "
                         "it is delivered again", message.topic, message.partition, message.offset)
            return False
        return original(self)

    setattr(ack, PATCHED, True)
    return ack


# Per consumer: the offsets of the messages each partition's fetches returned, from the committed one on.
_FETCHED = "_concord_fetched"
# Fetched offsets kept per partition before those below the committed offset are let go.
_FETCHED_PRUNE = 10_000


def _fetched(consumer: Any) -> dict[Any, set[int]]:
    found = consumer.__dict__.get(_FETCHED)
    if found is None:
        found = consumer.__dict__[_FETCHED] = {}
    return found


def note_fetched(consumer: Any, records: Any) -> None:
    """Remember the offsets of a fetched batch (`{tp: [record, ...]}`): each is a message in the log."""
    fetched = _fetched(consumer)
    for tp, batch in records.items():
        fetched.setdefault(tp, set()).update(record.offset for record in batch)


def _prune_fetched(consumer: Any, tp: Any) -> None:
    """Let go of the noted offsets of `tp` below its committed offset, once there are many."""
    offsets = _fetched(consumer).get(tp)
    committed = consumer._committed_offset.get(tp)
    if offsets is not None and committed is not None and len(offsets) > _FETCHED_PRUNE:
        offsets.difference_update([o for o in offsets if o < committed])


def _note_batches(original: Callable[..., Any]) -> Callable[..., Any]:
    """`Consumer._wait_next_records` (what `getmany` hands out from), noting every offset fetched."""
    @functools.wraps(original)
    async def wait_next_records(self: Any, timeout: float) -> Any:
        records, active = await original(self, timeout)
        if records:
            note_fetched(self, records)
        return records, active

    setattr(wait_next_records, PATCHED, True)
    return wait_next_records


def _true_gap(original: Callable[..., Any]) -> Callable[..., Any]:
    """`Consumer._add_gap`, taking for a gap only the offsets of the jump that no fetch returned.

    Faust calls it when the offsets it delivers jump (from `offset_from` to the message at
    `offset_to`), and commits past the whole jump: right for offsets the broker skips (transaction
    markers, compaction), a loss for messages it fetched and dropped around a rebalance, and, for
    messages delivered before a seek back, duplicates in its acknowledged list that slow its commits
    to one offset per interval. Here a fetched message is never a gap: processed, it is acknowledged
    anyway; not processed, it stays a hole where the commit stops (`_guard_head`) until it is
    delivered again (`redeliver_skipped`).
    """
    @functools.wraps(original)
    async def add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        fetched = _fetched(self).get(tp, ())
        committed = self._committed_offset.get(tp)
        start = offset_from if committed is None else max(offset_from, committed)
        gap = self._gap[tp]
        run_start: int | None = None
        for offset in range(start, offset_to + 1):
            if offset < offset_to and offset not in fetched:
                if run_start is None:
                    run_start = offset
            elif run_start is not None:
                gap.addi(run_start, offset)
                run_start = None

    setattr(add_gap, PATCHED, True)
    return add_gap


def apply() -> None:
    """Install the fixes (once); a Faust whose internals they rely on changed is left alone, with a warning."""
    if all(name in Consumer.__init__.__code__.co_names for name in ("_committed_offset", "_acked", "_gap")):
        wrap_once(Consumer, "_new_offset", _guard_head)
    else:
        log.warning("faust consumer internals changed: the commit head guard is not applied (%s)", __file__)
    if all(hasattr(Consumer, name) for name in ("_wait_next_records", "_add_gap")):
        wrap_once(Consumer, "_wait_next_records", _note_batches)
        wrap_once(Consumer, "_add_gap", _true_gap)
    else:
        log.warning("faust consumer internals changed: dropped messages may be taken for gaps (%s)", __file__)
    slots = getattr(Message, "__slots__", ())
    if "tracked" in slots and "generation_id" in slots:
        wrap_once(Event, "ack", _no_ack_when_skipped)
    else:
        log.warning("faust message internals changed: skipped messages may be acknowledged (%s)", __file__)


# How long the next offset of a partition may stay skipped while later ones are processed.
STALL_SECONDS: Final = 10.0


class SkippedOffsets:
    """Finds partitions whose next offset to commit the stream skipped: they need a seek back.

    Around a rebalance Faust's stream drops messages fetched for an older consumer generation, and
    the fetch position can already be past them: the message is never delivered, later ones are. With
    the guard above the commit then stays at the skipped offset (a restart would process it), but
    the running worker would not. A partition whose next offset to commit is neither acknowledged nor
    a gap while later offsets are, for `STALL_SECONDS`, is sought back to it: the skipped message is
    delivered, and the later ones again (Concord drops the duplicates). A message still being
    processed never looks like this: a partition's messages are acknowledged in order.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._since: dict[Any, float] = {}

    def due(self, consumer: Any) -> list[tuple[Any, int]]:
        """(partition, offset) to seek back to now."""
        now = self._clock()
        skipped: dict[Any, int] = {}
        for tp in consumer.assignment():
            head = _skipped_head(consumer, tp)
            if head is not None:
                skipped[tp] = head
        for tp in list(self._since):
            if tp not in skipped:
                del self._since[tp]
        due = []
        for tp, offset in skipped.items():
            first = self._since.setdefault(tp, now)
            if now - first >= STALL_SECONDS:
                due.append((tp, offset))
                del self._since[tp]
        return due


def redeliver_skipped(app: Any, interval: float = 5.0) -> None:
    """Add a timer to `app` that seeks back to messages the stream skipped (see `SkippedOffsets`)."""
    finder = SkippedOffsets(time.monotonic)

    @app.on_partitions_assigned.connect
    async def record_log_starts(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = list(args[0]) if args else []
        if not assigned:
            return
        try:
            _log_start.update(await asyncio.wait_for(app.consumer.earliest_offsets(*assigned), timeout=10.0))
        except Exception as exc:  # a failure here would crash the rebalance: without it, only this guard is off
            log.warning("could not read where the assigned partitions begin (%s: %s): their first messages are "
                        "not guarded until their first commit", type(exc).__name__, exc)

    @app.timer(interval=interval)
    async def _redeliver_skipped() -> None:
        consumer = app.consumer
        for tp, offset in finder.due(consumer):
            log.warning("%s[%d]: offset %d was skipped by the stream while later ones were processed (a "
                        "rebalance); seeking back to it, the later ones are processed again", tp.topic,
                        tp.partition, offset)
            await consumer.seek(tp, offset)
