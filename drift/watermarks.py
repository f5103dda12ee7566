"""How far Concord has read each platform, in the platform's own time: watermarks. Pure.

A platform's **watermark** is a source time up to which Concord has read everything the platform
sent: every event with an earlier source time has been decoded and passed on. It is built per raw
topic partition, by the ingest agent that reads it:

* while events come, the partition's watermark is the latest source time read on it (a platform
  that delivers its webhooks 30 s late, or a Concord that reads them 30 s late, holds it 30 s back);
* an idle partition (caught up with its log, and nothing read for `idle_ms`) advances with the clock,
  to `now - idle_ms`: nothing is waiting in Kafka, and anything still in flight at the platform is
  older than that allowance, as event-time stream processors treat idle inputs;
* a partition behind its log never advances by the clock.

The platform's watermark is the lowest of its partitions'. A platform is **behind** when its
watermark trails the clock by more than a bound: `/api/health`, a metric and a log line say which
platform, how far behind, and since when. (The drift lifecycle is to judge a finding only once the
watermarks of the platforms its rule reads have passed its due time; see docs/reliability.md.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from msgspec import Struct

#: The platform whose events change each part of the customer state (drift/sections.py).
PLATFORM_OF_SECTION: Final = {
    "crm": "salesforce",
    "identity": "salesforce",  # merges come from the CRM
    "billing": "stripe",
    "support": "zendesk",
    "erp": "netsuite",
}


def platforms_read(reads: Iterable[str]) -> frozenset[str]:
    """The platforms whose events change the parts of the state a rule reads (`drift` is Concord's own)."""
    return frozenset(p for section in reads if (p := PLATFORM_OF_SECTION.get(section.split(".", 1)[0])))


class PartitionProgress(Struct, frozen=True, kw_only=True):
    """What the ingest agent knows of one raw partition it reads."""

    platform: str
    partition: int
    high: int = 0  # the latest source time read on it (epoch ms; 0: none yet)
    last_read: int = 0  # when (wall clock, epoch ms) the last record was read (0: none yet)
    caught_up: bool = False  # nothing left in the log after what was read


class PartitionMark(Struct, frozen=True, kw_only=True):
    """A raw partition's watermark as its reader published it, and when."""

    watermark: int
    at: int


def partition_watermark(progress: PartitionProgress, now: int, idle_ms: int) -> int:
    """The partition's watermark (epoch ms): its latest source time, or the clock less `idle_ms` when idle."""
    if progress.caught_up and now - progress.last_read >= idle_ms:
        return max(progress.high, now - idle_ms)
    return progress.high


class PlatformHealth(Struct, frozen=True, kw_only=True):
    """One platform as `/api/health` shows it."""

    platform: str
    watermark: int  # epoch ms; 0 when no partition of it was read yet
    lag_seconds: float  # how far the watermark trails the clock
    behind: bool  # lag beyond the bound
    behind_since: int = 0  # epoch ms the lag went beyond the bound (0: not behind)
    partitions: int = 0  # partitions with a published watermark
    stale_partitions: int = 0  # of those, not published again for `stale_ms` (a reader gone)
    # Source time of the first gap signal naming no record (Salesforce GAP_OVERFLOW: changes lost, none
    # named), 0 if none: any record of the platform may be stale until a reconciliation.
    gap_overflow_since: int = 0


def platform_health(
    marks: Mapping[str, Mapping[int, PartitionMark]],
    now: int,
    behind_ms: int,
    stale_ms: int,
    since: Mapping[str, int],
    platforms: Iterable[str],
    overflow: Mapping[str, int] | None = None,
) -> dict[str, PlatformHealth]:
    """Each platform's watermark (the lowest of its partitions'), its lag, and whether it is behind.

    `since` holds when each platform went behind, as last reported: kept while it stays behind, so
    the answer says since when. `overflow`: since when each platform's gap signals named no record.
    """
    overflow = overflow or {}
    out: dict[str, PlatformHealth] = {}
    for platform in platforms:
        parts = marks.get(platform, {})
        watermark = min((m.watermark for m in parts.values()), default=0)
        lag = max(0, now - watermark) if watermark else 0
        behind = bool(parts) and lag > behind_ms
        out[platform] = PlatformHealth(
            platform=platform, watermark=watermark, lag_seconds=round(lag / 1000, 3), behind=behind,
            behind_since=(since.get(platform) or now) if behind else 0, partitions=len(parts),
            stale_partitions=sum(1 for m in parts.values() if now - m.at > stale_ms),
            gap_overflow_since=overflow.get(platform, 0),
        )
    return out
