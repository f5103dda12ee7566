"""The board's health strip (app/console/health.py): from the platforms' health, the breakers, metrics and the
reconciliations."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from concord.app.console.board import when
from concord.app.console.health import Rates, gauge_value, health_strip, totals_by
from concord.app.console.render import render
from concord.app.console.views import Reconciles
from concord.connectors.breaker import BreakerStatus
from concord.connectors.reconcile import Checkpoint, RedisStore, Schedule, schedule
from concord.drift.watermarks import PlatformHealth

NOW = 1_700_000_000_000
HOUR_MS = 3_600_000
STARTED = NOW - HOUR_MS  # when the worker began the schedule


def test_totals_by_a_label_add_up_the_other_labels() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_events", "", ["platform", "kind"], registry=registry)
    counter.labels("stripe", "a").inc(3)
    counter.labels("stripe", "b").inc(2)
    counter.labels("zendesk", "a").inc()
    assert totals_by(counter, "platform") == {"stripe": 5.0, "zendesk": 1.0}
    gauge = Gauge("t_parked", "", registry=registry)
    gauge.set(7)
    assert gauge_value(gauge) == 7.0


def test_rates_over_a_sliding_window() -> None:
    rates = Rates(window=10)
    assert rates.per_second() == {}
    rates.sample(0, {"stripe": 0})
    assert rates.per_second() == {"stripe": 0.0}
    rates.sample(5, {"stripe": 50, "zendesk": 5})
    assert rates.per_second() == {"stripe": 10.0, "zendesk": 1.0}
    for t in range(10, 40, 5):
        rates.sample(t, {"stripe": 50 + (t - 5) * 2, "zendesk": 5})
    assert rates.per_second() == {"stripe": 2.0, "zendesk": 0.0}  # the burst has left the window


def test_the_strip_shows_each_platform_and_says_what_is_this_worker_s() -> None:
    platforms = {
        "stripe": PlatformHealth(platform="stripe", watermark=1, lag_seconds=3.27, behind=False, partitions=4),
        "netsuite": PlatformHealth(platform="netsuite", watermark=1, lag_seconds=900.0, behind=True,
                                   behind_since=1_700_000_000_000, partitions=4),
        "salesforce": PlatformHealth(platform="salesforce", watermark=1, lag_seconds=1.0, behind=False,
                                     partitions=2, gap_overflow_since=1_700_000_000_000),
        "identity": PlatformHealth(platform="identity", watermark=1, lag_seconds=0.5, behind=False, partitions=4),
    }
    breakers = [BreakerStatus(platform="netsuite", state="open", failures=5, opened_at=1.0, retry_in=12.345,
                              probe_in_flight=False)]
    strip = health_strip(platforms=platforms, breakers=breakers, rates={"stripe": 12.345},
                         dead_letters={"stripe": 2, "internal": 9}, parked_ids=3, reconciles=None, held=(),
                         read_at=5, now=NOW)
    by = {p.platform: p for p in strip.platforms}
    assert list(by) == ["stripe", "salesforce", "zendesk", "netsuite"]
    assert (by["stripe"].events_per_second, by["stripe"].lag_seconds, by["stripe"].dead_letters) == (12.3, 3.3, 2)
    assert by["stripe"].breaker == "closed"  # never opened on this worker
    assert (by["netsuite"].breaker, by["netsuite"].retry_in, by["netsuite"].behind) == ("open", 12.3, True)
    assert by["zendesk"].lag_seconds is None  # no partition of it read yet
    assert by["salesforce"].gap_overflow_since == 1_700_000_000_000
    assert (strip.identity_lag_seconds, strip.parked_ids, strip.executing, strip.ingesting) == (0.5, 3, True, True)

    html = render("_health.html", health=strip)
    assert '<tr class="platform-netsuite behind">' in html and "breaker-open" in html
    assert "reconciliation due" in html and "not read yet" in html
    assert "Events/s (this worker)" in html


def test_a_worker_without_commands_or_ingest_says_so() -> None:
    strip = health_strip(platforms={}, breakers=None, rates=None, dead_letters={}, parked_ids=0, reconciles=None,
                         held=(), read_at=0, now=NOW, detail="redis: ConnectionError")
    assert all(p.breaker == "" and p.events_per_second is None for p in strip.platforms)
    html = render("_health.html", health=strip)
    assert "this worker runs no commands" in html and "this worker does not ingest" in html
    assert "redis: ConnectionError" in html
    assert all(p.reconcile is None for p in strip.platforms) and "not read yet" in html


def reconcile_cells(reconciles: Sequence[Schedule], held: Collection[str] = ()) -> dict[str, tuple[str, str]]:
    """Each platform's reconciliation cell as rendered: its classes and its text (tags stripped)."""
    strip = health_strip(platforms={}, breakers=None, rates=None, dead_letters={}, parked_ids=0,
                         reconciles=reconciles, held=held, read_at=0, now=NOW)
    html = render("_health.html", health=strip)
    rows = re.findall(r'<tr class="platform-(\w+)[^"]*">.*?<td class="(reconcile[^"]*)">(.*?)</td>', html, re.S)
    return {platform: (classes, re.sub(r"<[^>]+>", "", text)) for platform, classes, text in rows}


def test_the_strip_shows_each_platform_s_reconciliation_off_listing_recent_or_overdue() -> None:
    listing = Checkpoint(pass_id="salesforce-1", platform="salesforce", started_at=NOW - 60_000,
                         updated_at=NOW - 5_000, cursor={"part": 1, "token": "x"}, records=12_345,
                         last_complete_at=NOW - 8 * HOUR_MS)
    recent = Checkpoint(pass_id="zendesk-1", platform="zendesk", started_at=NOW - 3 * HOUR_MS,
                        finished_at=NOW - 2 * HOUR_MS, records=800)
    old = Checkpoint(pass_id="netsuite-1", platform="netsuite", started_at=NOW - 74 * HOUR_MS,
                     finished_at=NOW - 72 * HOUR_MS, records=40)
    cells = reconcile_cells([
        schedule("stripe", None, 0, NOW, STARTED),
        schedule("salesforce", listing, 6 * 3600, NOW, STARTED),
        schedule("zendesk", recent, 6 * 3600, NOW, STARTED),
        schedule("netsuite", old, 3600, NOW, STARTED),
    ])
    assert cells == {
        "stripe": ("reconcile", "not scheduled"),
        "salesforce": ("reconcile", "reconciling (12,345 records)"),
        "zendesk": ("reconcile", "reconciled 2 h ago"),
        "netsuite": ("reconcile overdue", "reconciled 3 d ago, overdue"),
    }
    html = render("_health.html", health=health_strip(
        platforms={}, breakers=None, rates=None, dead_letters={}, parked_ids=0, held=(), read_at=0, now=NOW,
        reconciles=[schedule("netsuite", old, 3600, NOW, STARTED)]))
    assert '<strong class="reconcile-overdue">overdue</strong>' in html
    assert f'<span title="{when(NOW - 72 * HOUR_MS)}">reconciled 3 d ago</span>' in html


def test_a_pass_that_ended_its_listing_is_reconciling_while_it_holds_the_platform() -> None:
    listed = Checkpoint(pass_id="zendesk-2", platform="zendesk", started_at=NOW - 600_000,
                        finished_at=NOW - 60_000, records=800)
    shown = [schedule("zendesk", listed, 6 * 3600, NOW, STARTED)]
    assert reconcile_cells(shown, held={"zendesk"})["zendesk"] == ("reconcile", "reconciling (800 records)")
    assert reconcile_cells(shown)["zendesk"] == ("reconcile", "reconciled 1 min ago")  # applied: released


def test_a_platform_never_reconciled_or_reconciled_by_hand_says_so() -> None:
    by_hand = Checkpoint(pass_id="stripe-1", platform="stripe", started_at=NOW - 3 * HOUR_MS,
                         finished_at=NOW - 2 * HOUR_MS, records=5)
    cells = reconcile_cells([
        schedule("stripe", by_hand, 0, NOW, STARTED),
        schedule("salesforce", None, 3600, NOW, STARTED),
        schedule("zendesk", None, 600, NOW, STARTED),
    ])
    assert cells["stripe"] == ("reconcile", "reconciled 2 h ago · not scheduled")
    assert cells["salesforce"] == ("reconcile", "never reconciled")  # its first pass is due, not overdue yet
    assert cells["zendesk"] == ("reconcile overdue", "never reconciled, overdue")
    assert cells["netsuite"] == ("reconcile", "not read yet")


class FlakyRedis:
    """The GETs of the checkpoints, from a dict; unreachable while `down`."""

    def __init__(self, values: dict[str, bytes]) -> None:
        self.values, self.down = values, False

    async def get(self, key: str) -> bytes | None:
        if self.down:
            raise ConnectionError("redis went away")
        return self.values.get(key)


async def test_the_worker_reads_the_schedules_as_the_api_does_and_keeps_the_last_read_while_redis_is_down() -> None:
    done = Checkpoint(pass_id="zendesk-1", platform="zendesk", started_at=NOW - 3 * HOUR_MS,
                      finished_at=NOW - 2 * HOUR_MS, records=800)
    redis = FlakyRedis({"concord:reconcile:zendesk": msgspec.json.encode(done)})
    reconciles = Reconciles(RedisStore(redis, "concord"), {"stripe": 0.0, "zendesk": 21600.0}, since_ms=STARTED)
    assert reconciles.shown is None
    await reconciles.read(NOW)
    expected = [schedule("stripe", None, 0, NOW, STARTED), schedule("zendesk", done, 21600, NOW, STARTED)]
    assert reconciles.shown == expected
    redis.down = True
    await reconciles.read(NOW + 5_000)
    assert reconciles.shown == expected
