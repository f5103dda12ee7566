"""`concord reconcile`: list every record of the platforms and feed them through the live path.

    concord reconcile --all                       # every platform, every record
    concord reconcile --platform stripe --since 7d
    concord reconcile --all --dry-run             # what it reveals is reported, never corrected
    concord reconcile --all --count-only          # read and count, write nothing

Each platform is listed through its own list API (connectors/snapshots.py), all platforms at once, each
paced by the same shared token bucket as the commands to that platform (connectors/ratelimit.py), so
live corrections keep their share of the platform's rate limit. Every record goes to the platform's
raw topic with the header `concord-snapshot: <pass id>` and takes the live path from there: the same
codec, identity and state, where the per-field watermarks decide (a snapshot never overwrites newer
live data; docs/reconcile.md).

**A pass is resumable.** After each page is in Kafka (acknowledged by every in-sync replica), the pass's
cursor is checkpointed in Redis (`<prefix>:reconcile:<platform>`, also what a status page reads). A run
that finds an unfinished pass of a platform with the same `--since` resumes it from its last page (after
a crash or Ctrl-C), and says so; `--restart` starts a new pass instead. At most one page is read twice.

**No drift from the order of listings**: from its first page until its records are applied, a pass holds
the platforms it lists (`<prefix>:reconcile:holds`, platform -> until when, refreshed every
`HOLD_REFRESH_S`; agents/watermarks.py): the workers judge no deadline of a rule reading a held platform,
so reading Stripe's invoices before NetSuite's does not make them "missing in the ERP" in between. Once
every listing has ended, the run waits until the workers' consumer group has committed every record
written before then, hop by hop (the raw topics, then identity, then canonical: `Drain`), and releases the
holds. A run that dies leaves holds that expire `HOLD_TTL_S` after their last refresh.

**Progress**: on a terminal one line per platform, redrawn in place (part, records read, rate, and the
elapsed time); otherwise a line per platform every `--progress` seconds. At the end a summary per
platform: records, pages, time, and whether the listing is complete (a `--since` listing never is: it
does not see records that did not change, so it can never tell that a record is gone).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TextIO

from concord.core.kafka_security import kafka_client_options
from concord.core.settings import Settings, kafka_bootstrap
from concord.core.topics import PLATFORMS

if TYPE_CHECKING:
    from concord.connectors.reconcile import Checkpoint

# aiokafka, redis, the readers and the pass (connectors/reconcile.py) are imported where used: `concord --help`
# builds this parser.

E_NO_PLATFORM: Final = "concord reconcile: name the platforms (--platform P, repeatable) or pass --all"
E_UNREADABLE: Final = "concord reconcile: {platform} is not readable yet (no list reader): choose from {known}"
E_SINCE: Final = ("concord reconcile: --since {value!r} is neither a date/time (2026-11-01, 2026-11-01T12:00:00Z) nor "
                  "a duration back from now (90m, 12h, 7d)")
E_KAFKA: Final = ("cannot reach Kafka at {bootstrap} ({error}). Is it running (`concord infra status`) and is "
                  "CONCORD_KAFKA_URL right?")
E_REDIS: Final = ("cannot reach Redis at {url} ({error}): the pass's cursor is checkpointed there. Is it running "
                  "(`concord infra status`) and is CONCORD_REDIS_URL right?")
#: The platforms a reader lists today (connectors/snapshots.py `READERS`).
READABLE: Final = ("stripe", "salesforce", "zendesk", "netsuite")
_UNITS: Final = {"m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float) -> int:
    """`--since` as epoch ms: an ISO date or date-time (UTC unless it says), or a duration back from `now`."""
    text = value.strip()
    if text and text[:-1].isdigit() and text[-1] in _UNITS:
        return int((now - int(text[:-1]) * _UNITS[text[-1]]) * 1000)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(E_SINCE.format(value=value)) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class KafkaSink:
    def __init__(self, producer: Any, raw_topics: Mapping[str, str], canonical: str) -> None:
        self._producer, self._topics, self._canonical = producer, raw_topics, canonical

    async def send_events(self, events: Sequence[Any]) -> None:
        from concord.codecs.model import encode

        sent = [await self._producer.send(self._canonical, encode(event), key=event.customer_key.encode())
                for event in events]
        await asyncio.gather(*sent)

    async def send(self, platform: str, records: Sequence[Any], pass_id: str, dry_run: bool = False) -> None:
        from concord.connectors.reconcile import snapshot_headers

        headers = snapshot_headers(pass_id, dry_run)
        topic = self._topics[platform]
        sent = [await self._producer.send(topic, record.value, key=record.key, headers=headers) for record in records]
        await asyncio.gather(*sent)


class Progress:
    """The progress display (see the module): `update` after each page, `done` at the end."""

    def __init__(self, platforms: Sequence[str], out: TextIO, every: float, clock: Callable[[], float]) -> None:
        self._platforms, self._out, self._every, self._clock = list(platforms), out, every, clock
        self._tty = out.isatty()
        self._lines: dict[str, str] = {p: f"{p:<11} waiting" for p in platforms}
        self._started = {p: clock() for p in platforms}
        self._drawn = False
        self._last_print = clock()

    def line(self, checkpoint: Checkpoint, part: str, read_now: int, remaining: int | None = None) -> str:
        """Part, records read, rate, elapsed time, and the part's ETA when the platform counts its list."""
        elapsed = self._clock() - self._started[checkpoint.platform]
        per_s = read_now / elapsed if elapsed >= 1.0 else 0.0
        rate = f"{per_s:,.0f}/s" if per_s else "-"
        state = "complete" if checkpoint.finished_at else f"[{part}]"
        eta = ""
        if remaining is not None and not checkpoint.finished_at:
            eta = f"  {part} ETA {remaining / per_s:,.0f} s ({remaining:,} left)" if per_s else f"  {remaining:,} left"
        return (f"{checkpoint.platform:<11} {state:<16} {checkpoint.records:>10,} records  {rate:>10}  "
                f"{elapsed:>6.0f} s{eta}")

    def update(self, checkpoint: Checkpoint, part: str, read_now: int, remaining: int | None = None) -> None:
        self._lines[checkpoint.platform] = self.line(checkpoint, part, read_now, remaining)
        if self._tty:
            if self._drawn:
                self._out.write(f"\x1b[{len(self._platforms)}F")
            self._out.write("".join(f"\x1b[2K{self._lines[p]}\n" for p in self._platforms))
            self._drawn = True
            self._out.flush()
        elif self._clock() - self._last_print >= self._every or checkpoint.finished_at:
            self._last_print = self._clock()
            print(self._lines[checkpoint.platform], file=self._out, flush=True)


def summary(checkpoints: Sequence[Checkpoint], seconds: float) -> list[str]:
    lines = [f"reconcile: {sum(c.records for c in checkpoints):,} records read in {seconds:,.1f} s"]
    for c in checkpoints:
        parts = ", ".join(f"{part} {count:,}" for part, count in c.by_part.items()) or "nothing"
        if c.count_only:
            what = "counted only: nothing written"
        elif c.dry_run and c.finished_at:
            what = "dry run: what it reveals is reported, not corrected"
        elif c.complete:
            what = "complete listing" + (f", {c.gone:,} record(s) gone from the platform fed as deletions"
                                         if c.gone else "")
        elif c.finished_at:
            what = "listed since the given time (not a complete listing)"
        else:
            what = "interrupted: run again to resume"
        changed = "" if c.changes is None else f"; {c.changes:,} of them changed Concord's state"
        lines.append(f"  {c.platform:<11} {c.records:>10,} records in {c.pages:,} pages ({parts}); {what}{changed}; "
                     f"pass {c.pass_id}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", action="append", default=[], choices=PLATFORMS, metavar="PLATFORM",
                        help=f"a platform to list (repeatable): {', '.join(PLATFORMS)}")
    parser.add_argument("--all", action="store_true", help="list every platform a reader exists for")
    parser.add_argument("--since", default="",
                        help="only records changed since then (Stripe: created since then): a date/time "
                        "(2026-11-01, 2026-11-01T12:00:00Z) or a duration back from now (90m, 12h, 7d); "
                        "such a listing is never complete")
    parser.add_argument("--dry-run", action="store_true",
                        help="feed the records as usual, but what this pass reveals is reported on the board and "
                        "never corrected, until a pass without --dry-run sees it (a new installation's first pass)")
    parser.add_argument("--count-only", action="store_true",
                        help="read every page and count the records, write nothing to Kafka or Redis")
    parser.add_argument("--restart", action="store_true",
                        help="start a new pass even where an unfinished one could be resumed")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds to wait, once the pass is applied and released, for the judgments it let "
                        "through, before counting the findings reported and resolved meanwhile; 0: no count "
                        "(default: %(default)s)")
    parser.add_argument("--progress", type=float, default=5.0,
                        help="seconds between progress lines when the output is not a terminal "
                        "(default: %(default)s)")


async def reconcile(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from concord.connectors.drift_changes import ChangeLog
    from concord.connectors.ledger import redis_client
    from concord.connectors.ratelimit import RedisRateLimiter, limits_from_settings
    from concord.connectors.reconcile import DRAIN_TIMEOUT_S, RedisStore, begin, pacer, run_group
    from concord.connectors.snapshots import READERS
    from concord.core.topics import topic_names

    platforms = list(READABLE) if args.all else list(dict.fromkeys(args.platform))
    if not platforms:
        print(E_NO_PLATFORM, file=sys.stderr)
        return 2
    unreadable = [p for p in platforms if p not in READERS]
    if unreadable:
        print(E_UNREADABLE.format(platform=", ".join(unreadable), known=", ".join(READABLE)), file=sys.stderr)
        return 2
    now = time.time()
    try:
        since_ms = parse_since(args.since, now) if args.since else None
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    client = redis_client(settings.redis_url)
    store = RedisStore(client, settings.topic_prefix)
    limiter = RedisRateLimiter(client, settings.topic_prefix, limits_from_settings(settings))
    try:
        previous = {p: await store.load(p) for p in platforms}
    except Exception as exc:  # noqa: BLE001 (any Redis failure: said plainly, no traceback)
        print(E_REDIS.format(url=settings.redis_url.split("@")[-1], error=exc), file=sys.stderr)
        await client.aclose()
        return 1
    bootstrap = kafka_bootstrap(settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, request_timeout_ms=30_000,
                                **kafka_client_options(settings))
    if not args.count_only:
        try:
            await producer.start()
        except KafkaError as exc:
            print(E_KAFKA.format(bootstrap=bootstrap, error=exc), file=sys.stderr)
            await client.aclose()
            return 1
    names = topic_names(settings)
    sink = KafkaSink(producer, names.raw, names.canonical)
    readers = {p: READERS[p](settings) for p in platforms}
    for platform, reader in readers.items():
        reader.http.pace = pacer(limiter, platform)
    checkpoints: list[Checkpoint] = []
    for platform in platforms:
        checkpoint, resumed = begin(previous[platform], platform, since_ms, args.restart, args.count_only,
                                    int(now * 1000), dry_run=args.dry_run)
        if resumed:
            print(f"{platform}: resuming pass {checkpoint.pass_id} after {checkpoint.records:,} records "
                  f"({checkpoint.pages:,} pages)", file=out, flush=True)
        checkpoints.append(checkpoint)
    progress = Progress(platforms, out, args.progress, time.monotonic)
    changes = ChangeLog(client, settings.topic_prefix)
    mark: str | None = None
    if not args.count_only and args.settle > 0:
        try:
            mark = await changes.last_id()
        except Exception:  # noqa: BLE001 (the summary's findings are a nicety: the pass goes on without them)
            mark = None
    findings: dict[str, int] | None = None
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"reconcile: {line}", file=out, flush=True)

    try:
        outcome = await run_group(checkpoints, readers, sink, store, client, settings, progress.update, say)
        if not args.count_only and not outcome.applied:
            print(f"reconcile: the workers did not apply the pass's records within {DRAIN_TIMEOUT_S:.0f} s; "
                  "released the platforms anyway (are the workers running? `concord worker`)",
                  file=sys.stderr, flush=True)
        if mark is not None:
            await asyncio.sleep(args.settle)  # the judgments the release let through
            findings = await changes.count_since(mark)
    finally:
        for reader in readers.values():
            await reader.close()
        if not args.count_only:
            await producer.stop()
        await client.aclose()
    failed = [(c, e) for c, e in zip(checkpoints, outcome.errors, strict=True) if e is not None]
    for line in summary(checkpoints, time.monotonic() - started):
        print(line, file=out, flush=True)
    if findings is not None:
        print(f"reconcile: while it ran and {args.settle:g} s after: {findings.get('new', 0):,} finding(s) reported, "
              f"{findings.get('resolved', 0):,} resolved, {findings.get('status', 0):,} changed status (by any event, "
              "live ones too: the board and /api/v1/drift show them)", file=out, flush=True)
    for checkpoint, error in failed:
        print(f"reconcile: {checkpoint.platform} stopped: {error}; run again to resume from the last page written",
              file=sys.stderr, flush=True)
    return 1 if failed else 0


def run(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        return asyncio.run(reconcile(settings, args, out))
    except KeyboardInterrupt:
        print("reconcile: interrupted; run the same command again to resume from the last page written",
              file=sys.stderr)
        return 130
