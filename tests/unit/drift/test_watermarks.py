"""Watermarks: how far Concord has read each platform, in the platform's own time."""

from __future__ import annotations

from concord.drift import catalog
from concord.drift.watermarks import (
    PartitionMark,
    PartitionProgress,
    partition_watermark,
    platform_health,
    platforms_read,
)

NOW = 1_000_000_000
IDLE = 30_000


def progress(high: int = 0, last_read: int = 0, caught_up: bool = True) -> PartitionProgress:
    return PartitionProgress(platform="stripe", partition=0, high=high, last_read=last_read, caught_up=caught_up)


def test_while_events_come_the_watermark_is_the_latest_source_time_read() -> None:
    late = progress(high=NOW - 31_000, last_read=NOW - 1_000)  # webhooks delivered 31 s late
    assert partition_watermark(late, NOW, IDLE) == NOW - 31_000


def test_a_partition_behind_its_log_never_advances_by_the_clock() -> None:
    behind = progress(high=NOW - 600_000, last_read=NOW - 300_000, caught_up=False)
    assert partition_watermark(behind, NOW, IDLE) == NOW - 600_000


def test_an_idle_caught_up_partition_advances_with_the_clock() -> None:
    assert partition_watermark(progress(high=NOW - 600_000, last_read=NOW - IDLE), NOW, IDLE) == NOW - IDLE
    assert partition_watermark(progress(), NOW, IDLE) == NOW - IDLE  # nothing ever read, nothing waiting
    fresh = progress(high=NOW - 5_000, last_read=NOW - 40_000)  # a source time later than the idle allowance
    assert partition_watermark(fresh, NOW, IDLE) == NOW - 5_000


def mark(watermark: int, at: int = NOW) -> PartitionMark:
    return PartitionMark(watermark=watermark, at=at)


def test_a_platform_is_as_far_as_its_slowest_partition_and_behind_beyond_the_bound() -> None:
    marks = {"stripe": {0: mark(NOW - 1_000), 1: mark(NOW - 200_000), 2: mark(NOW - 5_000, at=NOW - 120_000)},
             "zendesk": {0: mark(NOW - 2_000)}}
    health = platform_health(marks, NOW, behind_ms=60_000, stale_ms=60_000, since={},
                             platforms=("stripe", "zendesk", "netsuite"))
    assert (health["stripe"].watermark, health["stripe"].lag_seconds, health["stripe"].behind) == (
        NOW - 200_000, 200.0, True)
    assert health["stripe"].behind_since == NOW and health["stripe"].stale_partitions == 1
    assert (health["zendesk"].behind, health["zendesk"].lag_seconds) == (False, 2.0)
    # No partition of NetSuite was read yet: nothing is known, and it is not reported behind.
    assert (health["netsuite"].watermark, health["netsuite"].behind, health["netsuite"].partitions) == (0, False, 0)


def test_behind_since_is_kept_while_behind_and_cleared_once_caught_up() -> None:
    marks = {"stripe": {0: mark(NOW - 200_000)}}
    earlier = NOW - 50_000
    kept = platform_health(marks, NOW, 60_000, 60_000, {"stripe": earlier}, ("stripe",))
    assert kept["stripe"].behind_since == earlier
    caught_up = platform_health({"stripe": {0: mark(NOW - 1_000)}}, NOW, 60_000, 60_000, {"stripe": earlier},
                                ("stripe",))
    assert (caught_up["stripe"].behind, caught_up["stripe"].behind_since) == (False, 0)


def test_each_rule_waits_for_the_platforms_whose_events_it_reads() -> None:
    by_id = {rule.id: platforms_read(rule.reads) for rule in catalog.RULES}
    assert by_id["D02"] == {"stripe", "zendesk"}  # paying without an entitlement
    assert by_id["D04"] >= {"stripe", "netsuite"}  # an invoice missing in the ERP
    assert by_id["D09"] >= {"salesforce"}
    assert all(by_id[rule] for rule in by_id if rule != "D14")  # D14 reads Concord's own findings
    assert platforms_read({"drift"}) == frozenset()
