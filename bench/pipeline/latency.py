"""Detection latency: a raw platform record produced -> the finding it reveals on `<prefix>.drift`.

Goal (issue "Faster", part 1): p99 under 250 ms at a steady 2,000 raw records/s.

1. One Concord worker (`concord worker --roles ingest,state`, a fresh app id and topic prefix) is started
   and ready before anything is produced. Its rules file sets `grace_seconds: 0` on every rule, so a
   disagreement is reported by the very evaluation that finds it, and its deadline scan runs every
   `--scan` seconds. Its Redis is one nobody listens on: no watermarks are published or read, so the
   lifecycle judges on the clock alone (`drift/lifecycle.py`: a platform with no watermark holds nothing
   back). With Redis, a grace-0 finding would wait until every platform its rule reads had been read past
   the moment it was found, which records dated in the sandbox's past never are: the gate, not the
   pipeline, would be measured (in production it applies once the grace has run out).
2. `rate x seconds` raw records of the sandbox's traffic (`raw.py`, drift injected at `--drift-rate`)
   are produced to the worker's raw topics at `--rate` records/s; `produce_raw` returns when each was
   handed to the producer (`time.time()`).
3. Meanwhile a plain aiokafka consumer reads the drift topic. A finding opened is a transition from
   pending to open. The state agent stamps it with the correlation id of the canonical event it was
   applying (the source event's id: `correlation_id`, else `event_id`); every raw record is decoded
   with Concord's codecs, and each event id and correlation id it decodes to leads back to it (the first
   record, when several do). Latency = the drift record's Kafka timestamp (CreateTime, set by the
   worker's producer when the state agent sent it) - that record's produce time; the time this
   consumer received it is reported beside it. Findings whose id leads to no record are counted and
   listed, never dropped. When several events of one customer arrive in one envelope, the state agent
   stamps the last one's id: the latency is then measured from a record produced a little later than
   the one that revealed the finding (a few ms at this rate).
4. Where the time goes: the same kind of consumer reads the identity and canonical topics, and each
   finding's latency is cut at the forwarding hops by the Kafka timestamps of the first record that
   carried its event there: produced -> on the identity topic (the ingest hop), -> on the canonical
   topic (the identity hop, with its forwarding linger), -> the drift record (the state hop). A backlog
   shows up as the waiting of the hop it builds before. The state agent's own time per Faust event is
   read from its `concord_agent_batch_seconds` histogram at the end. `--worker-setting CONCORD_X=V`
   sets more of the worker's settings (e.g. `CONCORD_FORWARD_LINGER_MS`), to see what each costs.
5. After the last record, the run goes on until the worker's ingest has read every record and neither
   its counters nor the drift topic moved for `--settle` seconds (at most `--timeout`). Whether it
   kept up: its ingest counter when the last record was produced, against the records produced; and the
   CPU it used (`/proc/<pid>/stat`) from the first record to the end of the run, beside this process's
   own (it shares the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer

from concord.bench.common import bootstrap, free_port, kafka_options, security, unique, write_result
from concord.bench.pipeline.raw import RawRecord, produce_raw, raw_records
from concord.bench.pipeline.recovery import usage_of
from concord.bench.pipeline.throughput import Counters, Processes
from concord.codecs import records as envelopes
from concord.codecs.config import codec_config
from concord.codecs.model import CanonicalEvent
from concord.codecs.registry import decoder
from concord.core.messages import Transition
from concord.core.settings import Settings
from concord.core.topics import topic_names
from concord.drift import catalog
from concord.drift.lifecycle import OPEN, PENDING

GOAL_P99_MS: Final = 250.0
SAMPLE_S: Final = 0.25
#: Opened findings shown with their raw record, to check the correlation by eye.
EXAMPLES: Final = 3
#: Seconds of production per row of the latencies by produce time.
WINDOW_S: Final = 5.0
_STATE_BATCH: Final = re.compile(
    rb'^concord_agent_batch_seconds_(bucket|sum|count)\{agent="state"(?:,le="([^"]+)")?\} ([0-9.e+]+)$', re.M)
#: Kafka's timestamp types (a record's `timestamp_type`).
CREATE_TIME: Final = 0


class Opened(msgspec.Struct, frozen=True):
    """A finding opened (a pending -> open transition), as read on the drift topic."""

    correlation_id: str
    rule: str
    customer_key: str
    created_ms: int  # the drift record's Kafka timestamp
    seen_ms: int  # when this bench's consumer received it (epoch ms)


class Matched(msgspec.Struct, frozen=True):
    """An opened finding and the raw record behind it (index in the records produced, produce time)."""

    opened: Opened
    record: int
    produced_ms: float

    @property
    def created_latency_ms(self) -> float:
        return self.opened.created_ms - self.produced_ms

    @property
    def seen_latency_ms(self) -> float:
        return self.opened.seen_ms - self.produced_ms


class Latencies(msgspec.Struct, frozen=True):
    """Nearest-rank percentiles of a set of latencies (ms); a negative `min_ms` would mean a wrong match."""

    count: int
    min_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float


class Production(msgspec.Struct, frozen=True):
    """How the records went out, and whether the worker kept up."""

    records: int
    seconds: float  # first to last record handed to the producer
    per_s: float
    ingest_at_end: int  # raw records the worker's ingest had read when the last one was produced
    caught_up_s: float | None  # after the last record, until ingest had read them all (None: never, in the run)
    state_applied: int  # canonical events the state agent applied, at the end of the run
    worker_cpu_seconds: float  # CPU the worker used from the first record produced to the end of the run
    run_seconds: float  # that span, wall clock
    bench_cpu_seconds: float  # CPU this process used meanwhile (producing, reading and decoding three topics)


class BatchTimes(msgspec.Struct, frozen=True):
    """The state agent's time per Faust event (an envelope, a single event, a tick), from its
    `concord_agent_batch_seconds` histogram."""

    count: int
    mean_ms: float
    over_50ms: int
    over_100ms: int


def state_batches(exposition: bytes) -> BatchTimes:
    """The state agent's batch times in a worker's `/metrics` exposition (all zero when it has none)."""
    buckets: dict[str, float] = {}
    total = count = 0.0
    for kind, le, value in _STATE_BATCH.findall(exposition):
        if kind == b"bucket":
            buckets[le.decode()] = float(value)
        elif kind == b"sum":
            total = float(value)
        else:
            count = float(value)
    return BatchTimes(count=int(count), mean_ms=total / count * 1000 if count else 0.0,
                      over_50ms=int(count - buckets.get("0.05", count)),
                      over_100ms=int(count - buckets.get("0.1", count)))


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of `values`: the smallest value with at least q% of
    them at or below it."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


def latencies(values: Sequence[float]) -> Latencies:
    if not values:
        return Latencies(count=0, min_ms=0.0, p50_ms=0.0, p99_ms=0.0, max_ms=0.0)
    return Latencies(count=len(values), min_ms=min(values), p50_ms=percentile(values, 50),
                     p99_ms=percentile(values, 99), max_ms=max(values))


def record_of_events(decoded: Sequence[Sequence[CanonicalEvent]]) -> dict[str, int]:
    """Each event id and correlation id the records decode to -> the index of the first record decoding to it."""
    found: dict[str, int] = {}
    for index, events in enumerate(decoded):
        for event in events:
            for name in (event.event_id, event.correlation_id):
                if name:
                    found.setdefault(name, index)
    return found


def opened_of(value: bytes, created_ms: int, seen_ms: int) -> Opened | None:
    """The finding opened by a drift record's transition (None: another step of a lifecycle)."""
    transition = msgspec.json.decode(value, type=Transition)
    if transition.status != OPEN or transition.previous != PENDING:
        return None
    return Opened(correlation_id=transition.correlation_id, rule=transition.rule,
                  customer_key=transition.customer_key, created_ms=created_ms, seen_ms=seen_ms)


def match(opened: Sequence[Opened], record_of: dict[str, int],
          produced_at: Sequence[float]) -> tuple[list[Matched], list[Opened]]:
    """Each opened finding with the raw record its correlation id leads to (`produced_at`: each record's
    produce time, epoch seconds), and the findings it leads to none."""
    matched: list[Matched] = []
    unmatched: list[Opened] = []
    for finding in opened:
        index = record_of.get(finding.correlation_id)
        if index is None or index >= len(produced_at):
            unmatched.append(finding)
        else:
            matched.append(Matched(opened=finding, record=index, produced_ms=produced_at[index] * 1000))
    return matched, unmatched


def events_of(message: object) -> Iterable[CanonicalEvent]:
    """The canonical events a message of the identity or canonical topic carries (an envelope's, or itself)."""
    if isinstance(message, envelopes.IdentityBatch | envelopes.CanonicalBatch):
        return message.events
    return [message] if isinstance(message, CanonicalEvent) else []


def hop_split(matched: Sequence[Matched], identity_at: Mapping[str, int],
              canonical_at: Mapping[str, int]) -> dict[str, list[float]]:
    """Each matched finding's latency cut at the forwarding hops, by the Kafka timestamps of the records
    that carried its event (`*_at`: correlation id -> first such record's timestamp, ms): raw record
    produced -> on the identity topic (ingest), -> on the canonical topic (identity; from the produce time
    for an event ingest sent straight there), -> the drift record (state). Findings whose event was not
    seen on the canonical topic are left out."""
    hops: dict[str, list[float]] = {"ingest": [], "identity": [], "state": []}
    for m in matched:
        canonical = canonical_at.get(m.opened.correlation_id)
        if canonical is None:
            continue
        identity = identity_at.get(m.opened.correlation_id)
        if identity is not None:
            hops["ingest"].append(identity - m.produced_ms)
        hops["identity"].append(canonical - (m.produced_ms if identity is None else identity))
        hops["state"].append(m.opened.created_ms - canonical)
    return hops


def by_window(matched: Sequence[Matched], start_ms: float, window_s: float) -> list[Latencies]:
    """The latencies (Kafka timestamp) of the findings whose record was produced in each `window_s` seconds
    from `start_ms`, in order: a warm-up shows in the first, a growing backlog as a rise."""
    windows: dict[int, list[float]] = {}
    for m in matched:
        windows.setdefault(int((m.produced_ms - start_ms) / 1000 // window_s), []).append(m.created_latency_ms)
    return [latencies(windows.get(n, [])) for n in range(max(windows, default=-1) + 1)]


class TopicReader:
    """A plain consumer of one topic from its start, handing each record's value, Kafka timestamp and
    timestamp type, and when it was received (epoch ms), to `handle`."""

    def __init__(self, topic: str, handle: Callable[[bytes, int, int, int], None]) -> None:
        self.topic = topic
        self.handle = handle
        self.records = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=bootstrap(), **kafka_options(), group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=50)
        await consumer.start()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                seen_ms = int(time.time() * 1000)
                for batch in batches.values():
                    for record in batch:
                        assert record.value is not None
                        self.records += 1
                        self.handle(record.value, record.timestamp, record.timestamp_type, seen_ms)
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self._stop.set()


class ForwardTimes:
    """When each correlation id was first forwarded on a topic (the Kafka timestamp of the record)."""

    def __init__(self, decode: Callable[[bytes], object]) -> None:
        self.decode = decode
        self.at: dict[str, int] = {}

    def handle(self, value: bytes, timestamp: int, timestamp_type: int, seen_ms: int) -> None:
        for event in events_of(self.decode(value)):
            self.at.setdefault(event.correlation_id or event.event_id, timestamp)


class DriftFindings:
    """The drift topic's records: the findings opened, and the timestamp types seen."""

    def __init__(self) -> None:
        self.opened: list[Opened] = []
        self.timestamp_types: set[int] = set()

    def handle(self, value: bytes, timestamp: int, timestamp_type: int, seen_ms: int) -> None:
        self.timestamp_types.add(timestamp_type)
        finding = opened_of(value, timestamp, seen_ms)
        if finding is not None:
            self.opened.append(finding)


def _rules_file(path: Path) -> Path:
    """Every rule of the catalog with no grace."""
    path.write_text(json.dumps({"rules": {rule.id: {"grace_seconds": 0} for rule in catalog.RULES}}))
    return path


async def _drain(workers: Processes, session: aiohttp.ClientSession, drift: TopicReader, produced: int,
                 settle: float, deadline: float) -> tuple[Counters, float | None]:
    """Sample the worker until it has read every record and nothing moved for `settle` seconds (or the
    deadline passed); its last counters and when its ingest had read every record (perf_counter)."""
    last: tuple[Counters, int] | None = None
    moved_at = time.monotonic()
    caught_up_at: float | None = None
    while True:
        workers.check()
        counters, _ = await workers.read(session)
        now = time.monotonic()
        if caught_up_at is None and counters.ingest >= produced:
            caught_up_at = time.perf_counter()
        if (counters, drift.records) != last:
            last, moved_at = (counters, drift.records), now
        if (caught_up_at is not None and now - moved_at >= settle) or now > deadline:
            return counters, caught_up_at
        await asyncio.sleep(SAMPLE_S)


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("CONCORD_"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected CONCORD_<SETTING>=<value>")
    return name, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=2000.0,
                        help="latency: raw records produced per second (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="latency: seconds of steady production (default: %(default)s)")
    parser.add_argument("--drift-rate", type=float, default=0.01,
                        help="latency: the traffic's probability that a lifecycle step is broken "
                        "(default: %(default)s)")
    parser.add_argument("--scan", type=float, default=0.1,
                        help="latency: the worker's deadline scan, seconds (default: %(default)s)")
    parser.add_argument("--worker-setting", type=_setting, action="append", default=[], metavar="CONCORD_X=V",
                        help="latency: a setting of the worker's environment (repeatable), e.g. "
                        "CONCORD_FORWARD_LINGER_MS=0")


async def run(args: argparse.Namespace, shared: Sequence[RawRecord]) -> Path:
    """The latency run (its own records: `rate x seconds` of them, drift at `--drift-rate`; `shared`, the
    other steps' records, are not used); prints the tables and writes the result file, whose path it returns."""
    os.environ["BENCH_PARTITIONS"] = str(args.partitions)  # the worker's own topics (bench.common.worker_env)
    count = int(args.rate * args.seconds)
    started = time.perf_counter()
    records = raw_records(args.seed, args.customers, count, drift_rate=args.drift_rate)[:count]
    config = codec_config(Settings())
    record_of = record_of_events([decoder(record.platform)(record.value, config) for record in records])
    settings = dict(args.worker_setting)
    print(f"pipeline latency: {count:,} raw records (seed {args.seed}, drift rate {args.drift_rate}) built and "
          f"decoded in {time.perf_counter() - started:.1f} s; {args.rate:,.0f}/s for {args.seconds:.0f} s, "
          f"{args.partitions} partitions, on {bootstrap()}", flush=True)
    print("  every rule with grace_seconds 0 (a finding is reported by the evaluation that finds it), deadline "
          f"scan {args.scan} s, no Redis (no watermark gate: see bench/pipeline/latency.py)"
          + "".join(f", {name}={value}" for name, value in settings.items()), flush=True)
    app_id = unique("pipe-latency")
    names = topic_names(msgspec.structs.replace(Settings(), topic_prefix=app_id))
    findings = DriftFindings()
    identity, canonical = ForwardTimes(envelopes.decode_identity), ForwardTimes(envelopes.decode_state)
    readers = [TopicReader(names.drift, findings.handle), TopicReader(names.identity, identity.handle),
               TopicReader(names.canonical, canonical.handle)]
    argv = [sys.executable, "-m", "concord.app.cli", "worker", "-l", "warning", "--roles", "ingest,state"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {"CONCORD_RULES_FILE": str(_rules_file(Path(tmp) / "rules.json")),
               "CONCORD_DEADLINE_SCAN_SECONDS": str(args.scan),
               "CONCORD_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", **settings}
        workers = Processes(argv, app_id, 1, Path(tmp), readiness=True, env=env)
        try:
            deadline = time.monotonic() + args.timeout
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                await workers.wait_ready(session, "latency", deadline, args.timeout)
                reading = [asyncio.create_task(reader.run()) for reader in readers]
                cpu_before, began = usage_of(workers.procs[0].pid).cpu_seconds, time.perf_counter()
                own_before = time.process_time()
                produced_at = await produce_raw(bootstrap(), security(), app_id, records, args.partitions,
                                                rate=args.rate)
                ended = time.perf_counter()
                at_end, _ = await workers.read(session)
                counters, caught_up_at = await _drain(workers, session, readers[0], count, args.settle, deadline)
                cpu, run_seconds = usage_of(workers.procs[0].pid).cpu_seconds - cpu_before, time.perf_counter() - began
                own_cpu = time.process_time() - own_before
                async with session.get(f"http://127.0.0.1:{workers.ports[0]}/metrics") as response:
                    batches = state_batches(await response.read())
                for reader in readers:
                    reader.stop()
                await asyncio.gather(*reading)
        finally:
            workers.stop()
    seconds = produced_at[-1] - produced_at[0]
    production = Production(records=count, seconds=seconds, per_s=(count - 1) / seconds if seconds else 0.0,
                            ingest_at_end=int(at_end.ingest), state_applied=int(counters.state),
                            worker_cpu_seconds=cpu, run_seconds=run_seconds, bench_cpu_seconds=own_cpu,
                            caught_up_s=None if caught_up_at is None else max(caught_up_at - ended, 0.0))
    matched, unmatched = match(findings.opened, record_of, produced_at)
    rows = {"drift record's Kafka timestamp": latencies([m.created_latency_ms for m in matched]),
            "received by the bench's consumer": latencies([m.seen_latency_ms for m in matched])}
    hops = {f"{hop} hop": latencies(values) for hop, values in
            hop_split(matched, identity.at, canonical.at).items()}
    windows = by_window(matched, produced_at[0] * 1000, WINDOW_S)
    _print(production, rows, hops, windows, matched, unmatched, records, readers[0].records, findings)
    print(f"state agent: {batches.count:,} Faust events (envelopes, events, ticks), {batches.mean_ms:.1f} ms each "
          f"on average, {batches.over_50ms:,} over 50 ms, {batches.over_100ms:,} over 100 ms")
    return write_result("pipeline-latency", {
        "kafka": bootstrap(), "seed": args.seed, "customers": args.customers, "partitions": args.partitions,
        "drift_rate": args.drift_rate, "grace_seconds": 0, "deadline_scan_seconds": args.scan,
        "watermarks": "off (no Redis)", "worker_settings": settings, "target_rate": args.rate,
        "goal_p99_ms": GOAL_P99_MS, "production": msgspec.to_builtins(production),
        "drift_records": readers[0].records, "findings_opened": len(findings.opened),
        "timestamp_types": sorted(findings.timestamp_types),
        "latency_kafka_timestamp": msgspec.to_builtins(rows["drift record's Kafka timestamp"]),
        "latency_seen": msgspec.to_builtins(rows["received by the bench's consumer"]),
        "hops": msgspec.to_builtins(hops), "window_seconds": WINDOW_S,
        "by_produce_time": msgspec.to_builtins(windows), "state_batches": msgspec.to_builtins(batches),
        "unmatched": msgspec.to_builtins(unmatched),
    })


def _print(production: Production, rows: Mapping[str, Latencies], hops: Mapping[str, Latencies],
           windows: Sequence[Latencies], matched: Sequence[Matched], unmatched: Sequence[Opened],
           records: Sequence[RawRecord], transitions: int, findings: DriftFindings) -> None:
    caught = ("never, in the run" if production.caught_up_s is None else f"{production.caught_up_s:.1f} s after")
    print(f"\nproduced {production.records:,} raw records in {production.seconds:.1f} s: {production.per_s:,.0f}/s; "
          f"the worker's ingest had read {production.ingest_at_end:,} of them when the last was produced "
          f"({production.records - production.ingest_at_end:,} behind), all of them {caught}")
    print(f"worker CPU: {production.worker_cpu_seconds:.1f} s over the run's {production.run_seconds:.1f} s "
          f"({production.worker_cpu_seconds / production.run_seconds:.2f} cores; "
          f"{production.worker_cpu_seconds / production.records * 1e6:,.0f} us per raw record); this bench process: "
          f"{production.bench_cpu_seconds:.1f} s")
    kinds = ", ".join("CreateTime" if kind == CREATE_TIME else "LogAppendTime"
                      for kind in sorted(findings.timestamp_types))
    print(f"drift topic: {transitions:,} transitions, {len(findings.opened):,} findings opened, "
          f"{len(matched):,} matched to their raw record, {len(unmatched):,} not (timestamps: {kinds or 'none'})")
    for m in matched[:EXAMPLES]:
        record = records[m.record]
        print(f"  e.g. {m.opened.rule} for {m.opened.customer_key}: {m.opened.correlation_id} <- raw record "
              f"#{m.record} ({record.platform}), {m.created_latency_ms:,.0f} ms")
    for finding in unmatched[:EXAMPLES]:
        print(f"  unmatched: {finding.rule} for {finding.customer_key}, correlation id {finding.correlation_id!r}")
    print(f"\n{'raw record produced -> finding opened':40}  {'count':>6}  {'p50 ms':>8}  {'p99 ms':>8}  "
          f"{'max ms':>8}")
    for label, figures in [*rows.items(), *hops.items()]:
        print(f"{label:40}  {figures.count:6,}  {figures.p50_ms:8,.0f}  {figures.p99_ms:8,.0f}  {figures.max_ms:8,.0f}")
    for n, figures in enumerate(windows):
        label = f"  produced {n * WINDOW_S:.0f}-{(n + 1) * WINDOW_S:.0f} s into the run"
        print(f"{label:40}  {figures.count:6,}  {figures.p50_ms:8,.0f}  {figures.p99_ms:8,.0f}  {figures.max_ms:8,.0f}")
    p99 = rows["drift record's Kafka timestamp"]
    verdict = "met" if p99.count and p99.p99_ms < GOAL_P99_MS else "missed"
    print(f"goal p99 < {GOAL_P99_MS:.0f} ms: {verdict}")
