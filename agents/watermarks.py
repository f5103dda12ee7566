"""Watermarks in a running worker: ingest workers publish their partitions', every worker watches.

The ingest agent notes, per raw partition it reads, the latest source time and offset read
(`Progress.read`); the identity agent, per identity partition, when the records it reads were written
(the identity hop, watched as `identity`: the platforms' watermarks count only as far as it has read).
Every second an ingest worker publishes each assigned partition's watermark (`drift/watermarks.py`) to
one Redis hash, `<prefix>:watermarks` (`<platform>:<partition>` -> JSON), so every worker sees every
partition whichever worker reads it. Every worker then computes each platform's health from that hash
(`HealthWatch`): the `concord_platform_watermark_lag_seconds` gauge, one log line when a platform falls
behind (and one when it caught up), and `/api/health`.

Gap signals naming no record (Salesforce `GAP_OVERFLOW`: changes lost, none named) go the same way:
the ingest agent notes the first one's source time per platform (`Progress.gap_overflow`), the timer
publishes it to `<prefix>:gap-overflow` (platform -> epoch ms; the first one published stays), and every
worker's `/api/health` shows it as the platform's `gap_overflow_since` until a complete reconciliation of
the platform listed after it clears it (connectors/reconcile.py `clear_gap_overflow`), or a person does.

A reconciliation in progress holds the platforms it lists (`<prefix>:reconcile:holds`, platform -> until
when, epoch ms; written and released by app/reconcile.py): while held, a platform counts as read up to
nothing for the lifecycle (`HealthWatch.read`), so no deadline of a rule reading it is judged until the
pass's records are applied (docs/reconcile.md, "No drift from the order of listings"). A hold past its
time is ignored: a reconciliation that died does not stop judging for longer than that.

Redis unreachable: nothing is published or read; the last health stays, and says how old it is. The timer
is also what sets `concord_redis_up` (1 when its reads succeeded, 0 when they failed), in every worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from concord.agents.faust_internals.recovery import committed_offset, recovery_finished
from concord.connectors.executor import REDIS_ERRORS
from concord.connectors.reconcile import gap_overflow_key, reconcile_holds_key
from concord.core import metrics
from concord.core.messages import now_ms
from concord.core.topics import PLATFORMS
from concord.drift.watermarks import (
    PartitionMark,
    PartitionProgress,
    PlatformHealth,
    partition_watermark,
    platform_health,
)

if TYPE_CHECKING:
    from concord.agents.context import Concord

log = logging.getLogger("concord.watermarks")

PUBLISH_SECONDS: Final = 1.0
#: The identity hop, watched like a platform: its "source time" is when each record was written to the
#: identity topic, and a caught-up partition is read up to now (no idle allowance).
IDENTITY: Final = "identity"
_encode_mark = msgspec.json.Encoder().encode
_decode_mark = msgspec.json.Decoder(PartitionMark).decode


class Progress:
    """What this worker's ingest agent has read of each raw partition (and the gaps naming no record)."""

    def __init__(self) -> None:
        self._read: dict[Any, tuple[str, int, int, int]] = {}  # tp -> (platform, next offset, high, read at)
        self._overflow: dict[str, int] = {}  # platform -> source time of the first gap naming no record, to publish

    def gap_overflow(self, platform: str, at: int) -> None:
        """A gap signal naming no record was read (changes lost at `at`, source time): to publish."""
        self._overflow[platform] = min(at, self._overflow.get(platform, at))

    def take_overflows(self) -> dict[str, int]:
        """The gaps naming no record noted since the last call (put them back with `gap_overflow` if unpublished)."""
        taken, self._overflow = self._overflow, {}
        return taken

    def read(self, tp: Any, platform: str, offset: int, source_times: list[int], at: int) -> None:
        """A record at `offset` was read (decoded or dead-lettered); `source_times` of its events."""
        _, _, high, _ = self._read.get(tp, (platform, 0, 0, 0))
        self._read[tp] = (platform, offset + 1, max([high, *source_times]), at)

    def progress(self, tp: Any, platform: str, highwater: int | None, committed: int | None) -> PartitionProgress:
        """The partition's progress: caught up when what was read (or committed) reaches the log's end."""
        _, next_offset, high, at = self._read.get(tp, (platform, 0, 0, 0))
        done = max(next_offset, committed or 0)
        return PartitionProgress(platform=platform, partition=tp.partition, high=high, last_read=at,
                                 caught_up=highwater is not None and done >= highwater)

    def forget(self, keep: set[Any]) -> None:
        """Drop partitions no longer assigned (their next reader starts from the committed offset)."""
        for tp in [tp for tp in self._read if tp not in keep]:
            del self._read[tp]


#: `HealthWatch.read` before the watermarks were read once: every platform read up to nothing yet.
_NOTHING_READ: Final = {platform: 0 for platform in PLATFORMS}


class HealthWatch:
    """Every platform's health, from the published watermarks; remembers since when each is behind."""

    def __init__(self, behind_ms: int, stale_ms: int) -> None:
        self.behind_ms = behind_ms
        self.stale_ms = stale_ms
        self.platforms: dict[str, PlatformHealth] = {}
        self.read_at = 0  # when the watermarks were last read from Redis (0: never)
        self._read: dict[str, int] = {}
        self.held: frozenset[str] = frozenset()  # platforms a reconciliation holds now
        self.error = ""

    def read(self) -> dict[str, int]:
        """Each platform's watermark, of the platforms any partition of which was read (for the lifecycle).

        Less the identity hop's lag: an event the ingest agent forwarded through the identity topic
        reaches the customer's state only once the identity agent has read that far. Computed once per
        update: the state agent asks on every event.

        Before the watermarks were read from Redis once, every platform counts as read up to nothing: a
        worker that has just started judges no deadline in its first second, where it would otherwise judge
        on the clock alone (an empty mapping) and report a disagreement its platforms were about to resolve.
        """
        if not self.read_at:
            return _NOTHING_READ
        return self._read

    def update(self, marks: Mapping[str, Mapping[int, PartitionMark]], now: int,
               overflow: Mapping[str, int] | None = None, holds: Mapping[str, int] | None = None) -> list[str]:
        """Recompute from `marks` (and `overflow`: platform -> since when a gap named no record; `holds`:
        platform -> until when a reconciliation holds it); the log lines of platforms that fell behind or
        caught up, or whose hold began or ended."""
        since = {p: h.behind_since for p, h in self.platforms.items() if h.behind}
        health = platform_health(marks, now, self.behind_ms, self.stale_ms, since, (*PLATFORMS, IDENTITY),
                                 overflow or {})
        lines = []
        for platform, now_health in health.items():
            before = self.platforms.get(platform)
            if now_health.behind and not (before and before.behind):
                lines.append(f"{platform} is behind: Concord has read its events up to {now_health.lag_seconds:.0f} s "
                             f"ago (bound {self.behind_ms / 1000:.0f} s)")
            elif before and before.behind and not now_health.behind:
                lines.append(f"{platform} caught up (lag {now_health.lag_seconds:.0f} s; behind since "
                             f"{before.behind_since})")
        self.platforms = health
        self.read_at = now
        hop = health.get(IDENTITY)
        lag = max(0, now - hop.watermark) if hop is not None and hop.partitions else 0
        self._read = {p: h.watermark - lag for p, h in health.items() if h.partitions and p != IDENTITY}
        held = frozenset(p for p, until in (holds or {}).items() if until > now)
        for platform in sorted(held - self.held):
            lines.append(f"{platform} is held by a reconciliation: no deadline of a rule reading it is judged until "
                         "the pass's records are applied")
        for platform in sorted(self.held - held):
            lines.append(f"{platform} is no longer held by a reconciliation")
        self.held = held
        self._read.update(dict.fromkeys(held, 0))
        self.error = ""
        return lines


def decode_overflow(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    """The gap-overflow hash as platform -> epoch ms (entries that do not parse are skipped)."""
    out: dict[str, int] = {}
    for field, value in raw.items():
        try:
            out[field.decode(errors="replace")] = int(value)
        except ValueError:
            continue
    return out


def decode_holds(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    """The holds hash as platform -> until when (epoch ms); entries that do not parse are skipped."""
    return decode_overflow(raw)


def decode_marks(raw: Mapping[bytes, bytes]) -> dict[str, dict[int, PartitionMark]]:
    """The Redis hash as platform -> partition -> mark (entries that do not parse are skipped)."""
    out: dict[str, dict[int, PartitionMark]] = {}
    for field, value in raw.items():
        platform, _, partition = field.decode(errors="replace").partition(":")
        try:
            out.setdefault(platform, {})[int(partition)] = _decode_mark(value)
        except (ValueError, msgspec.DecodeError):
            continue
    return out


def register(concord: Concord, progress: Progress | None) -> HealthWatch:
    """Publish the watermarks of `progress` (an ingest worker's) and watch every platform's health."""
    app = concord.app
    settings = concord.settings
    key = f"{settings.topic_prefix}:watermarks"
    overflow_key = gap_overflow_key(settings.topic_prefix)
    holds_key = reconcile_holds_key(settings.topic_prefix)
    idle_ms = int(settings.watermark_idle_seconds * 1000)
    watch = HealthWatch(int(settings.platform_behind_seconds * 1000), stale_ms=max(10 * idle_ms, 60_000))
    read_topics = {topic: platform for platform, topic in concord.names.raw.items()}
    read_topics[concord.names.identity] = IDENTITY

    @app.timer(interval=PUBLISH_SECONDS)
    async def watermarks() -> None:
        now = now_ms()
        overflows = progress.take_overflows() if progress is not None else {}
        try:
            for platform, since in overflows.items():
                # The first one stays: the platform needs a reconciliation since then.
                await concord.redis.hsetnx(overflow_key, platform, str(since))  # type: ignore[misc]
            overflows = {}
            if progress is not None and recovery_finished(app):
                assigned = {tp for tp in app.consumer.assignment() if tp.topic in read_topics}
                progress.forget(assigned)
                marks = {}
                for tp in assigned:
                    platform = read_topics[tp.topic]
                    state = progress.progress(tp, platform, app.consumer.highwater(tp), committed_offset(app, tp))
                    idle = 0 if platform == IDENTITY else idle_ms
                    marks[f"{platform}:{tp.partition}"] = _encode_mark(
                        PartitionMark(watermark=partition_watermark(state, now, idle), at=now))
                if marks:
                    await concord.redis.hset(key, mapping=marks)  # type: ignore[misc]
            raw = await concord.redis.hgetall(key)  # type: ignore[misc]
            overflow = await concord.redis.hgetall(overflow_key)  # type: ignore[misc]
            holds = await concord.redis.hgetall(holds_key)  # type: ignore[misc]
        except REDIS_ERRORS as exc:
            metrics.redis_up.set(0)
            watch.error = f"redis: {type(exc).__name__}: {exc}"
            if progress is not None:
                for platform, since in overflows.items():  # not published: next time
                    progress.gap_overflow(platform, since)
            return
        metrics.redis_up.set(1)
        for line in watch.update(decode_marks(raw), now, decode_overflow(overflow), decode_holds(holds)):
            log.warning(line)
        for platform, health in watch.platforms.items():
            metrics.platform_watermark_lag.labels(platform).set(health.lag_seconds)

    return watch
