"""Scheduled reconciliation: a worker with the commands role re-reads each platform on its schedule.

`CONCORD_<PLATFORM>_RECONCILE_EVERY_SECONDS` (0: never, the default) sets how often each platform is listed
and fed through the live path (connectors/reconcile.py, docs/reconcile.md). Every `TICK_S` every such
worker looks at the platforms' checkpoints in Redis; the platforms due (never reconciled, last pass started
an interval ago, a pass whose run died, or a pass requested of it: `<prefix>:reconcile:requested:<platform>`,
set by the Salesforce bridge after a gap, which a configured platform runs even with no schedule) are taken
by the first worker that locks them (`<prefix>:reconcile:lock:<platform>`, `SET NX` with a lease refreshed
while it runs), and listed as one pass: one barrier over them all, released once the workers applied what
was listed. A worker runs one pass at a time; a platform whose credentials are not configured is not
scheduled (said once at start).

Every such worker keeps the schedule's gauges current from Redis (the same in every worker: alert on
their max): `concord_reconcile_interval_seconds`, `concord_reconcile_last_complete_seconds`,
`concord_reconcile_overdue` (no complete pass within twice the interval) and `concord_reconcile_running`;
the worker that runs a pass counts `concord_reconcile_records_total` and `concord_reconcile_passes_total`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from concord.codecs.model import encode as encode_event
from concord.connectors.executor import REDIS_ERRORS
from concord.connectors.ratelimit import RedisRateLimiter, limits_from_settings
from concord.connectors.reconcile import (
    Checkpoint,
    RedisStore,
    begin,
    due,
    next_since,
    pacer,
    request_key,
    requested,
    run_group,
    schedule,
    snapshot_headers,
)
from concord.connectors.registry import configured
from concord.connectors.snapshots import READERS
from concord.core import metrics
from concord.core.messages import now_ms
from concord.core.settings import Settings
from concord.core.topics import PLATFORMS

if TYPE_CHECKING:
    from concord.agents.context import Concord

log = logging.getLogger("concord.reconcile")

TICK_S: Final = 5.0
#: The lease of a platform's lock, refreshed every third of it while its pass runs.
LOCK_MS: Final = 60_000
_RELEASE: Final = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"


def every(settings: Settings) -> dict[str, float]:
    """Each platform's reconciliation interval in seconds (0: never)."""
    return {p: float(getattr(settings, f"{p}_reconcile_every_seconds")) for p in PLATFORMS}


class FaustSink:
    """A page's records to the platform's raw topic through the worker's producer; returns once all are acked."""

    def __init__(self, concord: Concord) -> None:
        self._concord = concord

    async def send(self, platform: str, records: Sequence[Any], pass_id: str, dry_run: bool = False) -> None:
        topic = self._concord.topics[self._concord.names.raw[platform]]
        headers = snapshot_headers(pass_id, dry_run)
        pending = [await topic.send(key=record.key, value=record.value, headers=headers) for record in records]
        await asyncio.gather(*pending)

    async def send_events(self, events: Sequence[Any]) -> None:
        topic = self._concord.topics[self._concord.names.canonical]
        pending = [await topic.send(key=event.customer_key.encode(), value=encode_event(event)) for event in events]
        await asyncio.gather(*pending)


def register(concord: Concord) -> None:
    """Schedule the reconciliation of the platforms that have an interval, and of those requested (see the module)."""
    settings = concord.settings
    intervals = every(settings)
    for platform, seconds in intervals.items():
        metrics.reconcile_interval.labels(platform).set(seconds)
    wanted = [p for p, seconds in intervals.items() if seconds > 0]
    active = [p for p in wanted if configured(settings, p)]
    for platform in sorted(set(wanted) - set(active)):
        log.warning("%s: a reconciliation every %.0f s is set, but the platform's URL or credentials are not: it "
                    "is not scheduled", platform, intervals[platform])
    # A pass may be requested of any configured platform (the Salesforce bridge, after a gap), scheduled or not.
    requestable = [p for p in PLATFORMS if configured(settings, p)]
    if not requestable:
        return
    since = now_ms()
    me = uuid.uuid4().hex
    running: list[asyncio.Task[None]] = []

    @concord.app.timer(interval=TICK_S)
    async def reconcile_schedule() -> None:
        store = RedisStore(concord.redis, settings.topic_prefix)
        now = now_ms()
        try:
            checkpoints = {p: await store.load(p) for p in requestable}
            requested_at = {p: int(await concord.redis.get(request_key(settings.topic_prefix, p)) or 0)
                            for p in requestable}
        except REDIS_ERRORS:
            return  # Redis down: the watermarks timer says so; the schedule waits
        for platform in active:
            checkpoint = checkpoints[platform]
            shown = schedule(platform, checkpoint, intervals[platform], now, since)
            metrics.reconcile_last_complete.labels(platform).set(shown.last_complete_at / 1000)
            metrics.reconcile_overdue.labels(platform).set(1 if shown.overdue else 0)
            metrics.reconcile_running.labels(platform).set(1 if shown.listing else 0)
        if running and not running[-1].done():
            return
        chosen = [p for p in requestable if due(checkpoints[p], intervals[p], now, requested_at[p])]
        locked = [p for p in chosen if await concord.redis.set(_lock_key(settings, p), me, nx=True, px=LOCK_MS)]
        if locked:
            full = frozenset(p for p in locked if requested(checkpoints[p], requested_at[p]))
            running[:] = [asyncio.create_task(_run(concord, locked, {p: checkpoints[p] for p in locked}, me, full))]


def _lock_key(settings: Settings, platform: str) -> str:
    return f"{settings.topic_prefix}:reconcile:lock:{platform}"


async def _run(concord: Concord, platforms: list[str], previous: dict[str, Checkpoint | None], me: str,
               full: frozenset[str] = frozenset()) -> None:
    """One pass over `platforms`, behind one barrier (see the module); never raises. The platforms of `full`
    (a pass was requested: connectors/reconcile.py `requested`) are listed whole."""
    settings = concord.settings
    client = concord.redis
    store = RedisStore(client, settings.topic_prefix)
    limiter = RedisRateLimiter(client, settings.topic_prefix, limits_from_settings(settings))
    readers = {p: READERS[p](settings) for p in platforms}
    for platform, reader in readers.items():
        reader.http.pace = pacer(limiter, platform)
    passes = []
    for platform in platforms:
        since = None if platform in full else next_since(platform, previous[platform], settings.reconcile_full_every)
        checkpoint, resumed = begin(previous[platform], platform, since, False, False, now_ms())
        log.info("%s: reconciliation %s %s (%s)", platform, "resumed" if resumed else "started", checkpoint.pass_id,
                 "a full listing" if since is None else "what changed since the previous pass began")
        passes.append(checkpoint)
    sink = FaustSink(concord)
    started = time.monotonic()
    leases = asyncio.create_task(_keep_leases(concord, platforms, me))
    try:
        def counted(checkpoint: Checkpoint, part: str, read_now: int, remaining: int | None) -> None:
            metrics.reconcile_running.labels(checkpoint.platform).set(0 if checkpoint.finished_at else 1)

        outcome = await run_group(passes, readers, sink, store, client, settings, counted, log.info)
        for checkpoint, error in zip(passes, outcome.errors, strict=True):
            metrics.reconcile_records.labels(checkpoint.platform).inc(checkpoint.records)
            if error is not None:
                checkpoint.error = f"{type(error).__name__}: {error}"[:500]
                metrics.reconcile_passes.labels(checkpoint.platform, "failed").inc()
                log.warning("%s: reconciliation %s stopped after %d records: %s (the next one resumes it)",
                            checkpoint.platform, checkpoint.pass_id, checkpoint.records, checkpoint.error)
                await store.save(checkpoint)
            else:
                metrics.reconcile_passes.labels(checkpoint.platform, "complete").inc()
        log.info("reconciliation of %s: %d records listed in %.0f s, %s", ", ".join(platforms),
                 sum(c.records for c in passes), time.monotonic() - started,
                 "applied" if outcome.applied else "not applied in time: released anyway")
        for checkpoint in passes if outcome.applied else ():
            log.info("%s: reconciliation %s applied: %d of its %d records changed what Concord held",
                     checkpoint.platform, checkpoint.pass_id, checkpoint.changes, checkpoint.records)
    except Exception:  # never let the schedule's task die silently
        log.exception("reconciliation of %s failed", ", ".join(platforms))
    finally:
        leases.cancel()
        for reader in readers.values():
            await reader.close()
        try:
            for platform in platforms:
                await client.eval(_RELEASE, 1, _lock_key(settings, platform), me)  # type: ignore[misc]
        except REDIS_ERRORS as exc:
            log.warning("could not release the reconciliation's locks (%s); they expire", exc)
        for platform in platforms:
            metrics.reconcile_running.labels(platform).set(0)


async def _keep_leases(concord: Concord, platforms: list[str], me: str) -> None:
    while True:
        await asyncio.sleep(LOCK_MS / 3000)
        for platform in platforms:
            try:
                await concord.redis.set(_lock_key(concord.settings, platform), me, xx=True, px=LOCK_MS)
            except REDIS_ERRORS:
                continue
