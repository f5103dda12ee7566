"""The board's health strip (app/console/health.py): from the platforms' health, the breakers and metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from concord.app.console.health import Rates, gauge_value, health_strip, totals_by
from concord.app.console.render import render
from concord.connectors.breaker import BreakerStatus
from concord.drift.watermarks import PlatformHealth


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
                         dead_letters={"stripe": 2, "internal": 9}, parked_ids=3, read_at=5)
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
    strip = health_strip(platforms={}, breakers=None, rates=None, dead_letters={}, parked_ids=0, read_at=0,
                         detail="redis: ConnectionError")
    assert all(p.breaker == "" and p.events_per_second is None for p in strip.platforms)
    html = render("_health.html", health=strip)
    assert "this worker runs no commands" in html and "this worker does not ingest" in html
    assert "redis: ConnectionError" in html
