"""The board's health strip: per platform, how fast events come in, how far behind Concord reads, dead
letters, the circuit breaker; and the events parked for an identity link. Pure, from what is already
computed elsewhere, never computed a second way:

* lag, behind, gap overflow: the platforms' health of `/api/health` (agents/watermarks.py `HealthWatch`,
  from the watermarks every ingest worker publishes to Redis: the same on every worker);
* breakers: `/api/commands/status` (connectors/executor.py `Executor.status`): this worker's, when it
  runs the `commands` role (breakers are per worker);
* events/s, dead letters, parked ids: this worker's Prometheus counters (core/metrics.py), the same
  numbers `/metrics` serves; events/s is their rate over the last `RATE_WINDOW_SECONDS` (`Rates`).
  Across workers, sum them in Prometheus;
* reconciliation: each platform's schedule as `/api/v1/reconcile` shows it (connectors/reconcile.py
  `schedules`, from the checkpoints in Redis: the same on every worker), and the platforms a pass holds
  (`HealthWatch.held`, from the same holds hash).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Final

from msgspec import Struct
from prometheus_client.metrics import MetricWrapperBase

from concord.connectors.breaker import BreakerStatus
from concord.connectors.reconcile import Schedule
from concord.core.topics import PLATFORMS
from concord.drift.watermarks import PlatformHealth

#: Events per second are averaged over this long (samples every `SAMPLE_SECONDS`).
RATE_WINDOW_SECONDS: Final = 30.0
SAMPLE_SECONDS: Final = 5.0
#: The identity hop's entry in the platforms' health (agents/watermarks.py IDENTITY).
IDENTITY: Final = "identity"


class ReconcileShown(Struct, frozen=True, kw_only=True):
    """A platform's reconciliation on the strip."""

    scheduled: bool  # an interval is set (CONCORD_<PLATFORM>_RECONCILE_EVERY_SECONDS); a pass may also run by hand
    running: bool  # a pass lists the platform, or holds it until the workers have applied what it listed
    records: int  # what the running pass has listed so far (0 when none runs)
    last_complete_at: int  # when the last complete pass ended (epoch ms; 0: none yet)
    complete_age_seconds: float  # how long ago that was
    overdue: bool  # no complete pass within twice the interval (what the alert ConcordReconcileOverdue says)


class PlatformStrip(Struct, frozen=True, kw_only=True):
    platform: str
    events_per_second: float | None  # None: this worker does not ingest
    lag_seconds: float | None  # None: no partition of it read yet
    behind: bool
    behind_since: int
    breaker: str  # closed, half_open, open, halted; "" when this worker runs no commands
    retry_in: float  # seconds until the breaker lets a call or probe through
    dead_letters: int  # ingest and command dead letters of this worker since it started
    gap_overflow_since: int
    reconcile: ReconcileShown | None  # None: not read from Redis yet


class HealthStrip(Struct, frozen=True, kw_only=True):
    platforms: list[PlatformStrip]
    identity_lag_seconds: float | None
    parked_ids: int  # platform ids with events parked until their link is known (this worker)
    executing: bool  # this worker runs the commands role (its breakers are shown)
    ingesting: bool
    read_at: int  # when the watermarks were last read from Redis (epoch ms; 0: never)
    detail: str = ""  # why the health is not current (Redis unreachable)


def totals_by(counter: MetricWrapperBase, label: str) -> dict[str, float]:
    """A counter's totals summed by one of its labels (its other labels added up)."""
    out: dict[str, float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and label in sample.labels:
                key = sample.labels[label]
                out[key] = out.get(key, 0.0) + sample.value
    return out


def gauge_value(gauge: MetricWrapperBase) -> float:
    """The value of a gauge without labels."""
    return sum(s.value for family in gauge.collect() for s in family.samples)


class Rates:
    """Per-key rates of monotonically growing totals, over a sliding window of samples."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self._window = window
        self._samples: deque[tuple[float, dict[str, float]]] = deque()

    def sample(self, at: float, totals: Mapping[str, float]) -> None:
        """Note the totals at `at` (seconds, monotonic); samples older than the window go."""
        self._samples.append((at, dict(totals)))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self._window:
            self._samples.popleft()

    def per_second(self) -> dict[str, float]:
        """Each key's rate between the oldest and the newest sample (0 with fewer than two samples)."""
        if len(self._samples) < 2:
            return {key: 0.0 for key in (self._samples[0][1] if self._samples else {})}
        (start, old), (end, new) = self._samples[0], self._samples[-1]
        span = end - start
        if span <= 0:
            return {key: 0.0 for key in new}
        return {key: max(0.0, value - old.get(key, 0.0)) / span for key, value in new.items()}


def reconcile_shown(schedule: Schedule, held: bool, now: int) -> ReconcileShown:
    """`schedule` as the strip shows it at `now` (epoch ms); `held`: a pass holds the platform, listing or
    waiting for the workers to apply its records."""
    running = schedule.listing or held
    last = schedule.last_complete_at
    return ReconcileShown(
        scheduled=schedule.every_seconds > 0, running=running,
        records=schedule.last.records if running and schedule.last is not None else 0,
        last_complete_at=last, complete_age_seconds=max(0.0, (now - last) / 1000) if last else 0.0,
        overdue=schedule.overdue,
    )


def health_strip(*, platforms: Mapping[str, PlatformHealth], breakers: Sequence[BreakerStatus] | None,
                 rates: Mapping[str, float] | None, dead_letters: Mapping[str, float], parked_ids: float,
                 reconciles: Sequence[Schedule] | None, held: Collection[str], read_at: int, now: int,
                 detail: str = "") -> HealthStrip:
    """The strip, from the platforms' health, this worker's breakers (None: it runs no commands), its
    ingest rates (None: it does not ingest), dead letters per platform, parked ids, and the platforms'
    reconciliations (None: not read yet) with those a pass holds; `now` in epoch ms."""
    by_platform = {b.platform: b for b in breakers or ()}
    schedules = {s.platform: s for s in reconciles or ()}
    rows = []
    for name in PLATFORMS:
        health = platforms.get(name)
        breaker = by_platform.get(name)
        rows.append(PlatformStrip(
            platform=name,
            events_per_second=None if rates is None else round(rates.get(name, 0.0), 1),
            lag_seconds=round(health.lag_seconds, 1) if health is not None and health.partitions else None,
            behind=bool(health and health.behind), behind_since=health.behind_since if health else 0,
            breaker="" if breakers is None else (breaker.state if breaker else "closed"),
            retry_in=round(breaker.retry_in, 1) if breaker else 0.0,
            dead_letters=int(dead_letters.get(name, 0)),
            gap_overflow_since=health.gap_overflow_since if health else 0,
            reconcile=reconcile_shown(schedules[name], name in held, now) if name in schedules else None,
        ))
    identity = platforms.get(IDENTITY)
    return HealthStrip(
        platforms=rows,
        identity_lag_seconds=round(identity.lag_seconds, 1) if identity is not None and identity.partitions else None,
        parked_ids=int(parked_ids), executing=breakers is not None, ingesting=rates is not None, read_at=read_at,
        detail=detail,
    )
