"""End-to-end throughput: raw platform records in, per-customer state out, on the real broker, same records.

The records are the sandbox's seeded traffic as the raw topics hold them (`raw.py`: Stripe, Zendesk and
NetSuite webhooks as the ingress stores them, Salesforce CDC as the customer's pipeline produces it). One
raw record decodes to one or more canonical events, so two units are reported: raw records in (what
the platforms sent) and canonical events out (what the state agent applied).

1. The ceiling: a raw aiokafka consumer over the raw topics, `getmany` + the Concord codec's decode of
   every record, first to last record.
2. Concord's worker (`concord worker --roles ingest,state`: the ingest role runs the ingest and identity
   agents, the state role the state+drift agent), with one process, then with several in one consumer
   group (a fresh app id and topic prefix each). The workers are started and ready before the records
   are produced to their raw topics, so a second process never joins in the middle of a run. Rates come
   from their `/metrics` (summed over the processes), sampled every `SAMPLE_S`:
   `concord_events_processed_total{agent="ingest"}` raw records read, `concord_ingest_events_total`
   canonical events decoded, `{agent="identity"}` identity events (each of an envelope), `{agent="state"}`
   canonical events applied. The run is over when ingest has read every record, identity every event that names a
   platform-local id (counted by the ceiling's decode), the state agent has begun, and no counter moved for
   `--settle` seconds (events whose platform id never gets a link stay parked: the state count is not
   known up front).
   End to end = raw records / (last change of the state counter - first change of the ingest counter).
3. The naive pipeline (`bench/apps/naive_pipeline.py`): the same three hops as plain Faust agents, one
   Faust event and one table write per message, measured the same way.
4. Per hop, for each run: each counter's rate from its first to its last change, and when it started and
   finished (seconds from the first ingest change). In a process the hops share one event loop and take
   turns message by message, so a hop fed as fast as it reads goes at the pace of the slowest one after
   it. Hence one more run (`--skip-split` leaves it out): the ingest role alone (ingest and identity, no
   state agent), one process. Its time against the full run's is what the state role costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer

from concord.bench.common import bootstrap, kafka_options, security, unique, worker_env, write_result
from concord.bench.pipeline.raw import RawRecord, produce_raw
from concord.codecs.config import codec_config
from concord.codecs.registry import decoder
from concord.core.settings import Settings
from concord.core.topics import topic_names

APPS: Final = Path(__file__).resolve().parent.parent / "apps"
SAMPLE_S: Final = 0.25
#: The counters followed per run, in pipeline order (`Counters`).
HOPS: Final = ("ingest", "decoded", "identity", "state")
_PROCESSED: Final = re.compile(rb'^concord_events_processed_total\{agent="(\w+)"\} ([0-9.e+]+)$', re.M)
_DECODED: Final = re.compile(rb"^concord_ingest_events_total\{[^}]*\} ([0-9.e+]+)$", re.M)
_READY: Final = re.compile(rb"^concord_worker_ready ([0-9.e+]+)$", re.M)


class Counters(msgspec.Struct, frozen=True):
    """One reading of the counters, summed over a run's processes."""

    ingest: float = 0.0  # raw records read by ingest
    decoded: float = 0.0  # canonical events ingest decoded
    identity: float = 0.0  # identity events resolved (each of an envelope; links, sweeps)
    state: float = 0.0  # canonical events the state agent applied


class Sample(msgspec.Struct, frozen=True):
    at: float  # time.perf_counter()
    counters: Counters


class HopRate(msgspec.Struct, frozen=True):
    """A counter's rate from its first to its last change, and when those were (s from the run's start)."""

    count: int
    per_s: float
    first_s: float
    last_s: float


class PipelineRun(msgspec.Struct, frozen=True):
    """One measured run of a pipeline on the raw records."""

    name: str
    processes: int
    raw_records: int
    canonical_events: int  # applied by the state hop
    seconds: float  # first ingest change to the last change (of the state counter, unless no state role)
    raw_per_s: float
    canonical_per_s: float
    hops: dict[str, HopRate]


def read_counters(text: bytes) -> tuple[Counters, bool]:
    """The counters of one `/metrics` exposition, and whether it says the worker is ready (`concord_worker_ready`)."""
    processed = {name.decode(): float(value) for name, value in _PROCESSED.findall(text)}
    ready = _READY.search(text)
    counters = Counters(ingest=processed.get("ingest", 0.0), identity=processed.get("identity", 0.0),
                        state=processed.get("state", 0.0),
                        decoded=sum(float(value) for value in _DECODED.findall(text)))
    return counters, ready is not None and float(ready.group(1)) == 1.0


def hop_rate(samples: Sequence[Sample], field: str, origin: float) -> HopRate:
    """`field`'s rate from the first sample where it had moved to the last change."""
    values = [(s.at, getattr(s.counters, field)) for s in samples]
    moved = [(at, value) for at, value in values if value > 0]
    if not moved:
        return HopRate(count=0, per_s=0.0, first_s=0.0, last_s=0.0)
    first_at, first_value = moved[0]
    final = moved[-1][1]
    last_at = next(at for at, value in moved if value == final)
    rate = (final - first_value) / (last_at - first_at) if last_at > first_at else 0.0
    return HopRate(count=int(final), per_s=rate, first_s=first_at - origin, last_s=last_at - origin)


def summarize(name: str, processes: int, samples: Sequence[Sample], raw_count: int) -> PipelineRun:
    """End-to-end and per-hop rates of a run's samples (see the module)."""
    origin = next(s.at for s in samples if s.counters.ingest > 0)
    before = next(s.counters for s in samples if s.counters.ingest > 0)
    hops = {hop: hop_rate(samples, hop, origin) for hop in HOPS}
    seconds = max(rate.last_s for rate in hops.values())  # the state hop's, unless the run has none
    done = hops["state"].count
    return PipelineRun(name=name, processes=processes, raw_records=raw_count, canonical_events=done,
                       seconds=seconds, raw_per_s=(raw_count - before.ingest) / seconds if seconds else 0.0,
                       canonical_per_s=(done - before.state) / seconds if seconds else 0.0, hops=hops)


class Ceiling(msgspec.Struct, frozen=True):
    raw_per_s: float
    canonical_per_s: float
    canonical_events: int
    via_identity: int  # of those, the ones naming a platform-local id: ingest sends them through identity


async def ceiling(prefix: str, count: int) -> Ceiling:
    """Raw aiokafka consumer over the raw topics of `prefix`, decoding every record with Concord's codecs,
    first to last record."""
    raw = topic_names(msgspec.structs.replace(Settings(), topic_prefix=prefix)).raw
    platform_of = {topic: platform for platform, topic in raw.items()}
    config = codec_config(Settings())
    consumer = AIOKafkaConsumer(*raw.values(), bootstrap_servers=bootstrap(), **kafka_options(), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    seen = events = via_identity = 0
    started = 0.0
    try:
        while seen < count:
            for tp, batch in (await consumer.getmany(timeout_ms=1000, max_records=1000)).items():
                if not started:
                    started = time.perf_counter()
                decode = decoder(platform_of[tp.topic])
                for record in batch:
                    assert record.value is not None
                    decoded = decode(record.value, config)
                    events += len(decoded)
                    via_identity += sum(1 for event in decoded if event.local_customer is not None)
                seen += len(batch)
    finally:
        await consumer.stop()
    seconds = time.perf_counter() - started
    return Ceiling(raw_per_s=count / seconds, canonical_per_s=events / seconds, canonical_events=events,
                   via_identity=via_identity)


class Processes:
    """Worker processes of one run: started together, each with its own data dir, web port and log.
    `readiness`: they report `concord_worker_ready` (a Concord worker); else ready once `/metrics` answers.
    `env`: settings of their environment besides `worker_env`'s (CONCORD_...)."""

    def __init__(self, argv: list[str], app_id: str, count: int, tmp: Path, readiness: bool,
                 env: Mapping[str, str] | None = None) -> None:
        self.readiness = readiness
        self.logs: list[Path] = []
        self.ports: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        for n in range(count):
            data = tmp / f"worker-{n}"
            data.mkdir()
            settings = worker_env(app_id, str(data), **(env or {}))
            self.ports.append(settings["CONCORD_WEB_PORT"])
            log = tmp / f"worker-{n}.log"
            self.logs.append(log)
            with log.open("wb") as out:
                self.procs.append(subprocess.Popen(argv, env=settings, stdout=out, stderr=subprocess.STDOUT))

    def check(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise SystemExit(f"a worker exited ({proc.returncode}):\n{log.read_text()[-3000:]}")

    def tail(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in self.logs)

    async def read(self, session: aiohttp.ClientSession) -> tuple[Counters, bool]:
        """The counters summed over the processes, and whether all of them are ready."""
        total = Counters()
        all_ready = True
        for port in self.ports:
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    counters, ready = read_counters(await resp.read()) if resp.status == 200 else (Counters(), False)
                    ready = ready or (resp.status == 200 and not self.readiness)
            except aiohttp.ClientError:
                counters, ready = Counters(), False
            all_ready = all_ready and ready
            total = Counters(*(a + b for a, b in zip(msgspec.structs.astuple(total),
                                                     msgspec.structs.astuple(counters), strict=True)))
        return total, all_ready

    async def wait_ready(self, session: aiohttp.ClientSession, name: str, deadline: float, timeout: float) -> None:
        """Until all of them are ready, and still so 2 s later; SystemExit past `deadline` (`time.monotonic()`)."""
        ready_since = 0.0
        while not ready_since or time.monotonic() - ready_since < 2.0:
            self.check()
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: workers not ready in {timeout:.0f} s:\n{self.tail()}")
            ready = (await self.read(session))[1]
            ready_since = (ready_since or time.monotonic()) if ready else 0.0
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def measure(name: str, argv: list[str], records: Sequence[RawRecord], processes: int, partitions: int,
                  settle: float, timeout: float, via_identity: int, with_state: bool = True,
                  readiness: bool = True) -> PipelineRun:
    """Start `processes` workers of `argv` on a fresh prefix, wait until they are all ready, produce the
    records to their raw topics, and sample their counters until the run is over: ingest has read every
    record, identity at least the `via_identity` events, the state agent has begun (`with_state`), and no
    counter moved for `settle` seconds (a hop may pause for a moment at its start)."""
    app_id = unique(re.sub(r"[^A-Za-z0-9]+", "-", name))
    with tempfile.TemporaryDirectory() as tmp:
        workers = Processes(argv, app_id, processes, Path(tmp), readiness)
        try:
            deadline = time.monotonic() + timeout
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                await workers.wait_ready(session, name, deadline, timeout)
                await produce_raw(bootstrap(), security(), app_id, records, partitions)
                samples: list[Sample] = []
                moved_at = time.monotonic()
                while True:
                    workers.check()
                    counters, _ = await workers.read(session)
                    now = time.monotonic()
                    if samples and counters != samples[-1].counters:
                        moved_at = now
                    samples.append(Sample(at=time.perf_counter(), counters=counters))
                    over = (counters.ingest >= len(records) and counters.identity >= via_identity
                            and (counters.state > 0 or not with_state))
                    if over and now - moved_at >= settle:
                        break
                    if now > deadline:
                        raise SystemExit(f"{name}: not done in {timeout:.0f} s ({counters}):\n{workers.tail()}")
                    await asyncio.sleep(SAMPLE_S)
        finally:
            workers.stop()
    return summarize(name, processes, samples, len(records))


def _print(ceiling_raw: float, ceiling_canonical: float, runs: Sequence[PipelineRun]) -> None:
    units = {"ingest": "raw records", "decoded": "canonical out of ingest", "identity": "identity events",
             "state": "canonical events"}
    hop_rows = [(f"{run.name}: {hop} ({unit})", run.hops[hop]) for run in runs for hop, unit in units.items()]
    width = max(len(label) for label, _ in hop_rows)
    print(f"\n{'path':{width}}  {'raw records/s':>13}  {'canonical ev/s':>14}  {'vs ceiling':>10}")
    print(f"{'ceiling: aiokafka getmany + codec decode':{width}}  {ceiling_raw:13,.0f}  {ceiling_canonical:14,.0f}  "
          f"{1:10.3f}")
    for run in runs:
        print(f"{run.name + ', end to end':{width}}  {run.raw_per_s:13,.0f}  {run.canonical_per_s:14,.0f}  "
              f"{run.raw_per_s / ceiling_raw:10.4f}")
    print(f"\n{'per hop, first to last change':{width}}  {'count':>8}  {'per s':>9}  {'from s':>7}  {'to s':>7}")
    for label, rate in hop_rows:
        print(f"{label:{width}}  {rate.count:8,}  {rate.per_s:9,.0f}  {rate.first_s:7.1f}  {rate.last_s:7.1f}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", default="1,2",
                        help="Concord worker processes per run, comma-separated (default: %(default)s)")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive Faust pipeline")
    parser.add_argument("--skip-split", action="store_true",
                        help="leave out the run of the ingest role alone (ingest and identity, no state)")
    parser.add_argument("--settle", type=float, default=4.0,
                        help="a run is over once no counter moved for this many seconds (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run (default: %(default)s)")


async def run(args: argparse.Namespace, records: Sequence[RawRecord]) -> Path:
    """The throughput runs on `records` (args: the pipeline bench's options); prints the tables and writes
    the result file, whose path it returns."""
    os.environ["BENCH_PARTITIONS"] = str(args.partitions)  # the workers' own topics (bench.common.worker_env)
    processes = [int(n) for n in args.processes.split(",") if n.strip()]
    print(f"pipeline throughput: {len(records):,} raw records (seed {args.seed}, {args.customers:,} customers), "
          f"{args.partitions} partitions, on {bootstrap()}", flush=True)
    ceiling_prefix = unique("pipe-ceiling")
    await produce_raw(bootstrap(), security(), ceiling_prefix, records, args.partitions)
    print("  ceiling: raw aiokafka consumer + codec decode ...", flush=True)
    top = await ceiling(ceiling_prefix, len(records))
    worker = [sys.executable, "-m", "concord.app.cli", "worker", "-l", "warning", "--roles"]
    runs: list[PipelineRun] = []
    setups = [(f"concord worker x{count}", count, "ingest,state") for count in processes]
    if not args.skip_split:
        setups.append(("concord worker x1, ingest role only", 1, "ingest"))
    for name, count, roles in setups:
        print(f"  {name} ...", flush=True)
        runs.append(await measure(name, [*worker, roles], records, count, args.partitions, args.settle,
                                  args.timeout, top.via_identity, with_state="state" in roles))
        print(f"    {runs[-1].raw_per_s:,.0f} raw records/s, {runs[-1].canonical_per_s:,.0f} canonical events/s",
              flush=True)
    if not args.skip_naive:
        print("  naive Faust pipeline ...", flush=True)
        naive = [sys.executable, str(APPS / "naive_pipeline.py")]
        runs.append(await measure("naive faust pipeline", naive, records, 1, args.partitions, args.settle,
                                  args.timeout, top.via_identity, readiness=False))
    _print(top.raw_per_s, top.canonical_per_s, runs)
    return write_result("pipeline-throughput", {
        "kafka": bootstrap(), "seed": args.seed, "customers": args.customers, "partitions": args.partitions,
        "raw_records": len(records), "canonical_events_decoded": top.canonical_events,
        "canonical_events_via_identity": top.via_identity,
        "ceiling_raw_per_s": round(top.raw_per_s), "ceiling_canonical_per_s": round(top.canonical_per_s),
        "runs": msgspec.to_builtins(runs),
    })
