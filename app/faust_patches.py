"""A fix to faust-streaming's offset commits: never commit past a message that was not processed.

Faust commits, per partition, the end of the first run of consecutive acknowledged offsets. Its guard
against a hole at the head of that run compares the smallest acknowledged offset with the last
committed one, but the committed offset is Kafka's *next* offset to read: with offset 4 committed
(0-3 done), offset 4 not acknowledged and 5, 6 acknowledged, `5 - 4 > 1` is false and Faust commits
7. Offset 4 was never processed (a message the stream did not get, around a rebalance), and a crash
now loses it: the closed-loop test found raw events committed without their output after a SIGKILL
(faust-streaming 0.15.3).

`_new_offset` is wrapped: while the next offset to commit is neither acknowledged nor a known gap in
the partition (offsets the broker skips, which Faust records as gaps), nothing is committed for that
partition. The message is then processed again after a restart or rebalance (at least once; Concord
drops duplicates), instead of never. A partition without a committed offset is guarded from where
its log begins, read when partitions are assigned; and a timer seeks a partition back to a skipped
offset so that the running worker delivers it too (`redeliver_skipped`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

_MARK = "_concord_head_guard"
# Where each assigned partition's log begins (`record_log_starts`): the first offset to guard while a
# partition has no committed offset yet (its first messages, in a new consumer group).
_log_start: dict[Any, int] = {}


def _skipped_head(consumer: Any, tp: Any) -> int | None:
    """The next offset to commit of `tp` when it is unprocessed while later offsets are acknowledged.

    None when it is processed, a known gap (offsets the broker skips, which Faust records as gaps),
    or not known (no committed offset and no log start read yet).
    """
    committed = consumer._committed_offset.get(tp)
    head = committed if committed is not None else _log_start.get(tp)
    acked = consumer._acked.get(tp)
    if head is None or not acked or min(acked) <= head:
        return None
    gap = consumer._gap.get(tp)
    return None if gap is not None and gap.overlaps_point(head) else head


def _guard_head(original: Callable[[Any, Any], int | None]) -> Callable[[Any, Any], int | None]:
    @functools.wraps(original)
    def new_offset(self: Any, tp: Any) -> int | None:
        if _skipped_head(self, tp) is not None:
            return None  # the next offset to commit is still unprocessed: commit nothing beyond it
        return original(self, tp)

    setattr(new_offset, _MARK, True)
    return new_offset


def apply() -> None:
    """Install the guard (once); a Faust whose consumer no longer has these internals is left alone."""
    current = getattr(Consumer, "_new_offset", None)
    if current is None or getattr(current, _MARK, False):
        return
    needed = ("_committed_offset", "_acked", "_gap")
    if not all(name in Consumer.__init__.__code__.co_names for name in needed):
        log.warning("faust consumer internals changed: the commit head guard (app/faust_patches.py) is not applied")
        return
    setattr(Consumer, "_new_offset", _guard_head(current))  # noqa: B010 (a method replaced on the class)


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
