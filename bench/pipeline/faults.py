"""Faults and scale-out: the final state and findings of a run with a fault equal those of a run without.

On the same raw records (`raw.py`), each run on a fresh app id and topic prefix, `concord worker --roles
ingest,state` processes everything and the run's outcome is snapshotted once it is quiet:

1. **baseline**: one worker process;
2. **two**: two worker processes in one consumer group, no fault (the scale-out figure);
3. **kill**: two worker processes; once the state agents applied about half of the baseline's canonical
   events, one is SIGKILLed (no shutdown, no final commit: a crash) and started again `--restart-after`
   seconds later on its data dir, as a supervisor would;
4. **kafka-stop**: one worker on a private Kafka (`concord.infra.kafka`, its own port and data folder under
   a temp dir, so the shared broker is never touched); after about a third, that Kafka is stopped for
   `--kafka-down` seconds and started again. A worker that exits meanwhile is counted and restarted.

Runs 2-4 are compared with the baseline; the step exits non-zero (`SystemExit`) when any differs, after
printing the differences and writing them to the result file (`pipeline-faults`).

**The snapshot** is read from the state table's changelog (`<app_id>-customers-changelog`, the latest value
per key, decoded by `tables.state.load`): every customer's state, and every finding the states hold
(pending ones included: the drift index and the API only mirror the reported ones). A run is quiet when the
group has committed every record of the raw, identity and canonical topics and the changelog has not
grown for `--settle` seconds.

**What depends on processing time or on the interleaving of platforms, and how it is kept out** (the outcome
must be a function of the events; the runs differ in how one customer's events from different platforms
interleave on the canonical topic even without a fault):

* A rule's grace: every rule runs with `grace_seconds: 0` (a rules file of the run's own).
* A quiet run has settled its findings: the workers run with the shortest watermark allowance
  (`CONCORD_WATERMARK_IDLE_SECONDS=1`), so within seconds of the last record every platform counts as read
  past every due time and each finding is judged on the final state; `--faults-settle` is longer than that.
* Only unresolved findings are compared. Which transient disagreements a run saw (and resolved) on the way,
  how often a finding came back (`generation`), and the wall-clock stamps of the lifecycle (`due`,
  `first_seen`, `last_seen`, `since`, `command_id`, `correlation_id`, ...) are its history, not its outcome.
* A finding of a rule that reads a part of the customer's state Concord could not read is left out (counted:
  `blind`). A Zendesk organization webhook carries no entitlements, and no worker of these runs re-reads
  them, so a customer's entitlements stay unknown from its first such webhook on: what its rules found
  before that point is held, neither resolved nor reported (drift/lifecycle.py, "unknown is not absent"),
  then reported as "cannot judge" once the bound passes. Which findings are held so depends on where that
  webhook fell among the customer's other events. The unread parts themselves are state, compared.
* A finding's evidence is compared without versions: a rule runs when its inputs change, so which change
  last refreshed an observation's version depends on the order the events came in.
* A customer's state is compared without its duplicate ring (`recent`: the newest event ids of equal
  versions it keeps depend on arrival order) and its schedule, and with each stamp's tie-break (the hash of
  the event that made a change) zeroed: two events of one record at one version that carry the same values
  are the same outcome, whichever came through this customer.
* A retired state (an account merged away in the CRM: `merged_into`) is compared only on where it went:
  whether a record's change reached it before the merge was read or went straight to the survivor depends
  on the interleaving; the survivor holds the change either way.

Compared per live customer: the whole state but `drift`, `next_due` and `recent`, stamps untied; per
unresolved finding: fingerprint, customer, rule, status and evidence values. Pure parts (`latest_values`,
`state_view`, `snapshot_of`, `compare`) do no I/O.

Scale-out: each run's rate is raw records / seconds from the first record produced to the last canonical
event the state agents processed (`concord_events_processed_total{agent="state"}`, sampled every 0.25 s;
the findings judged after it as the watermarks pass are left out); the two-process run's rate over the
baseline's is the figure (issue "Faster", part 4 asks for 1.7x on two cores; the throughput step measures
it too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final, Literal, cast

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.serializers import codecs

from concord.bench.common import bootstrap, free_port, unique, worker_env, write_result
from concord.bench.pipeline.raw import RawRecord, produce_raw
from concord.bench.pipeline.throughput import read_counters
from concord.core.kafka_security import KafkaSecurity, kafka_client_options
from concord.core.messages import DriftItem
from concord.core.settings import Settings
from concord.core.topics import topic_names
from concord.drift import catalog
from concord.drift.lifecycle import UNREAD_SECTIONS
from concord.infra import kafka, redis
from concord.infra.cli import default_cache
from concord.sandbox.traffic import PLAN_TIERS
from concord.tables import state as st

#: The state agent's table (agents/state.py: `concord.table("customers")`).
TABLE: Final = "customers"
SCALE_OUT_GOAL: Final = 1.7
#: An idle raw partition counts as read up to the clock less this (the setting's minimum): every deadline is
#: judged within seconds of the last record, so a quiet run has settled its findings.
WATERMARK_IDLE_S: Final = 1
PLAINTEXT: Final = KafkaSecurity()  # the broker this benchmark starts for itself listens in plaintext
POLL_S: Final = 0.25
_KEY_CODEC: Final = codecs.get_codec("json")
WORKER_ARGV: Final = [sys.executable, "-m", "concord.app.cli", "worker", "-l", "info", "--roles", "ingest,state"]

E_NOT_QUIET = "{run}: not quiet within {timeout:.0f} s (still moving: {what}); worker logs:\n{logs}"


# ---------------------------------------------------------------- snapshot and comparison (pure)


class Seen(msgspec.Struct, frozen=True, order=True, array_like=True):
    """An observation of a finding's evidence without its version: which change last refreshed it depends on
    which events the rule ran after (it runs when its inputs change), not on the final state."""

    system: str
    record: str
    field: str
    value: str | int | float | bool | None


class FindingView(msgspec.Struct, frozen=True, kw_only=True):
    """What is compared of an unresolved finding: the parts that are a function of the events (see the module)."""

    fingerprint: str
    customer_key: str
    rule: str
    status: str
    evidence: tuple[Seen, ...]


class Snapshot(msgspec.Struct, frozen=True):
    """A run's outcome: every customer's state without its findings and schedule, and every unresolved finding
    but the blind ones (`blind`: how many, left out; see the module)."""

    customers: dict[str, st.CustomerState]
    findings: dict[str, FindingView]
    blind: int = 0


class StateDifference(msgspec.Struct, frozen=True):
    """A customer both runs hold, with the fields of its state that differ."""

    customer_key: str
    fields: list[str]


class FindingDifference(msgspec.Struct, frozen=True):
    """A finding both runs hold, with the compared fields that differ, as (field, baseline, run)."""

    fingerprint: str
    customer_key: str
    rule: str
    fields: list[tuple[str, object, object]]


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """How a run's snapshot differs from the baseline's (missing: only in the baseline; extra: only in the run)."""

    customers: int
    findings: int
    customers_missing: list[str] = []
    customers_extra: list[str] = []
    customers_different: list[StateDifference] = []
    findings_missing: list[FindingView] = []
    findings_extra: list[FindingView] = []
    findings_different: list[FindingDifference] = []

    @property
    def equal(self) -> bool:
        return not (self.customers_missing or self.customers_extra or self.customers_different
                    or self.findings_missing or self.findings_extra or self.findings_different)


def latest_values(records: Iterable[tuple[bytes, bytes | None]]) -> dict[bytes, bytes]:
    """The latest value per key of a changelog's records, in log order; a tombstone (None) deletes the key."""
    latest: dict[bytes, bytes] = {}
    for key, value in records:
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return latest


def finding_view(customer_key: str, item: DriftItem) -> FindingView:
    evidence = tuple(sorted(Seen(o.system, o.record, o.field, _plain(o.value)) for o in item.evidence))
    return FindingView(fingerprint=item.fingerprint, customer_key=customer_key, rule=item.rule, status=item.status,
                       evidence=evidence)


def _plain(value: object) -> str | int | float | bool | None:
    return value if value is None or isinstance(value, str | int | float | bool) else repr(value)


def state_view(state: st.CustomerState) -> st.CustomerState:
    """What is compared of a customer's state (see the module): a retired one, only where it was merged into."""
    if state.merged_into is not None:
        return st.CustomerState(key=state.key, merged_into=state.merged_into)
    return cast(st.CustomerState, st.untied(msgspec.structs.replace(state, drift={}, next_due=0, recent=())))


def snapshot_of(latest: Mapping[bytes, bytes]) -> Snapshot:
    """The snapshot of a changelog's latest values (JSON-encoded customer key -> `tables.state.dump`)."""
    customers: dict[str, st.CustomerState] = {}
    findings: dict[str, FindingView] = {}
    blind = 0
    for raw_key, value in latest.items():
        key: str = _KEY_CODEC.loads(raw_key)
        state = st.load(value)
        customers[key] = state_view(state)
        unjudged = blind_rules(state)
        for fp, item in state.drift.items():
            if item.status == "resolved":
                continue
            if item.rule in unjudged:
                blind += 1
            else:
                findings[fp] = finding_view(key, item)
    return Snapshot(customers=customers, findings=findings, blind=blind)


def blind_rules(state: st.CustomerState) -> frozenset[str]:
    """The rules that read a part of `state` Concord could not read (a pending re-read: drift/lifecycle.py)."""
    unread = {section for section, since in UNREAD_SECTIONS.items() if since(state)}
    return frozenset(rule.id for rule in catalog.RULES if rule.reads & unread) if unread else frozenset()


def _differing(a: msgspec.Struct, b: msgspec.Struct) -> list[str]:
    return [name for name in a.__struct_fields__ if getattr(a, name) != getattr(b, name)]


def compare(baseline: Snapshot, run: Snapshot) -> Comparison:
    """Every difference of `run` from `baseline`, sorted by customer key and fingerprint."""
    states = [StateDifference(key, _differing(baseline.customers[key], run.customers[key]))
              for key in sorted(baseline.customers.keys() & run.customers.keys())
              if baseline.customers[key] != run.customers[key]]
    findings = []
    for fp in sorted(baseline.findings.keys() & run.findings.keys()):
        before, after = baseline.findings[fp], run.findings[fp]
        if before != after:
            fields = [(name, getattr(before, name), getattr(after, name)) for name in _differing(before, after)]
            findings.append(FindingDifference(fp, before.customer_key, before.rule, fields))
    return Comparison(
        customers=len(run.customers), findings=len(run.findings),
        customers_missing=sorted(baseline.customers.keys() - run.customers.keys()),
        customers_extra=sorted(run.customers.keys() - baseline.customers.keys()),
        customers_different=states,
        findings_missing=[baseline.findings[fp] for fp in sorted(baseline.findings.keys() - run.findings.keys())],
        findings_extra=[run.findings[fp] for fp in sorted(run.findings.keys() - baseline.findings.keys())],
        findings_different=findings,
    )


def describe(name: str, comparison: Comparison, limit: int = 20) -> list[str]:
    """Operator-readable lines of a comparison (at most `limit` per kind of difference)."""
    if comparison.equal:
        return [f"{name}: equal to the baseline ({comparison.customers:,} customers, "
                f"{comparison.findings:,} findings)"]
    lines = [f"{name}: DIFFERS from the baseline ({comparison.customers:,} customers, {comparison.findings:,} "
             "findings)"]
    kinds: list[tuple[str, Sequence[object]]] = [
        ("customers only in the baseline", comparison.customers_missing),
        ("customers only in this run", comparison.customers_extra),
        ("customers whose state differs", [f"{d.customer_key}: {', '.join(d.fields)}"
                                           for d in comparison.customers_different]),
        ("findings only in the baseline", [f"{f.fingerprint} {f.rule} {f.customer_key} {f.status}"
                                           for f in comparison.findings_missing]),
        ("findings only in this run", [f"{f.fingerprint} {f.rule} {f.customer_key} {f.status}"
                                       for f in comparison.findings_extra]),
        ("findings that differ", [f"{d.fingerprint} {d.rule} {d.customer_key}: "
                                  + "; ".join(f"{field} {a!r} -> {b!r}" for field, a, b in d.fields)
                                  for d in comparison.findings_different]),
    ]
    for title, items in kinds:
        if items:
            lines.append(f"  {len(items):,} {title}:")
            lines += [f"    {item}" for item in items[:limit]]
            if len(items) > limit:
                lines.append(f"    ... and {len(items) - limit:,} more (in the result file)")
    return lines


# ---------------------------------------------------------------- workers, Kafka and quiet (I/O)


class Worker:
    """One `concord worker --roles ingest,state` process of a run: its own data dir, port and log."""

    def __init__(self, env: dict[str, str], folder: Path, name: str) -> None:
        self.env = env
        self.folder = folder
        self.name = name
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"

    def start(self) -> None:
        """Start (or start again, on the same data dir and a new port: a supervisor restarting it)."""
        self.env = {**self.env, "CONCORD_WEB_PORT": str(free_port())}
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(WORKER_ARGV, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.log}\n{self.log.read_text(errors='replace')[-chars:]}" if self.log.exists() else ""

    async def metrics(self, session: aiohttp.ClientSession) -> tuple[float, bool]:
        """Canonical events its state agent applied since it started, and whether it is ready (0, False: down)."""
        if not self.alive():
            return 0.0, False
        try:
            async with session.get(f"http://127.0.0.1:{self.env['CONCORD_WEB_PORT']}/metrics") as resp:
                if resp.status != 200:
                    return 0.0, False
                counters, ready = read_counters(await resp.read())
                return counters.state, ready
        except (TimeoutError, aiohttp.ClientError):
            return 0.0, False


class Progress(msgspec.Struct, frozen=True):
    """Where a run's group stands: records not committed yet on its input topics, and the changelog's size."""

    behind: int
    changelog: int


async def progress(broker: str, app_id: str) -> Progress:
    """How far group `app_id` is from the end of its raw, identity and canonical topics, and the changelog's end."""
    names = topic_names(msgspec.structs.replace(Settings(), topic_prefix=app_id))
    inputs = {*names.raw.values(), names.identity, names.canonical}
    changelog = f"{app_id}-{TABLE}-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=5000, **kafka_client_options(PLAINTEXT))
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None, request_timeout_ms=5000,
                                **kafka_client_options(PLAINTEXT))
    await admin.start()
    try:
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()  # the topics Faust made after this client started
            tps = [TopicPartition(topic, p) for topic in (*inputs, changelog)
                   for p in consumer.partitions_for_topic(topic) or ()]
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(app_id)
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    behind = sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                 for tp, end in ends.items() if tp.topic in inputs)
    return Progress(behind=behind, changelog=sum(end for tp, end in ends.items() if tp.topic == changelog))


async def read_changelog(broker: str, app_id: str) -> dict[bytes, bytes]:
    """The latest value per key of the run's state table changelog, read from the beginning to its end."""
    topic = f"{app_id}-{TABLE}-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024, **kafka_client_options(PLAINTEXT))
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pairs: list[tuple[bytes, bytes | None]] = []
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            for tp, batch in (await consumer.getmany(*left, timeout_ms=1000)).items():
                pairs += [(record.key, record.value) for record in batch if record.key is not None]
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return latest_values(pairs)
    finally:
        await consumer.stop()


class Infra(msgspec.Struct, frozen=True):
    """The run's Redis (private), and the folder for its rules file and worker data."""

    redis_url: str
    folder: str


def rules_file(path: Path) -> Path:
    """Every rule with no grace; the sandbox's plan-to-tier map (the records are its traffic)."""
    path.write_text(json.dumps({"rules": {rule.id: {"grace_seconds": 0} for rule in catalog.RULES},
                                "plan_tiers": PLAN_TIERS}))
    return path


def run_env(infra: Infra, app_id: str, data: Path, broker: str) -> dict[str, str]:
    """The environment of a worker of a run (see the module for why the watermark allowance is an hour)."""
    data.mkdir(parents=True, exist_ok=True)
    return worker_env(app_id, str(data), CONCORD_KAFKA_URL=f"kafka://{broker}",
                      CONCORD_REDIS_URL=infra.redis_url,
                      CONCORD_RULES_FILE=str(Path(infra.folder) / "rules.json"),
                      CONCORD_WATERMARK_IDLE_SECONDS=str(WATERMARK_IDLE_S),
                      # The broker's minimum: the survivor takes over a killed worker's partitions quickly.
                      CONCORD_KAFKA_SESSION_TIMEOUT="6", PYTHONUNBUFFERED="1")


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """One run: its processes, rate (first record produced to last event applied), faults, and outcome."""

    name: str
    app_id: str
    processes: int
    raw_records: int
    canonical_applied: float  # by the state agents, summed over the processes' lifetimes (replays included)
    seconds: float
    raw_per_s: float
    worker_starts: int
    worker_exits: int  # exits this harness did not cause (a worker that died on its own)
    notes: list[str]


class Run:
    """A run of workers on one broker: start them, produce, sample, inject faults, wait until quiet."""

    def __init__(self, name: str, workers: list[Worker], broker: str, app_id: str, records: Sequence[RawRecord],
                 partitions: int) -> None:
        self.name, self.workers, self.broker, self.app_id = name, workers, broker, app_id
        self.records, self.partitions = records, partitions
        self.applied_before = 0.0  # state counts of processes that are gone (their counters went with them)
        self.seen: dict[int, float] = {}  # pid -> its last state count read
        self.exits = 0
        self.notes: list[str] = []

    def logs(self) -> str:
        return "\n".join(worker.tail() for worker in self.workers)

    async def applied(self, session: aiohttp.ClientSession) -> float:
        """Canonical events applied by this run's state agents so far (every process, gone ones included)."""
        total = 0.0
        for worker in self.workers:
            count, _ = await worker.metrics(session)
            if worker.proc is not None and count:
                self.seen[worker.proc.pid] = count
            total += self.seen.get(worker.proc.pid, 0.0) if worker.proc is not None else 0.0
        return self.applied_before + total

    def restart(self, worker: Worker) -> None:
        if worker.proc is not None:
            self.applied_before += self.seen.pop(worker.proc.pid, 0.0)
        worker.start()

    def supervise(self) -> None:
        """Restart a worker that exited on its own, as a supervisor would, and count it."""
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is not None:
                self.exits += 1
                self.notes.append(f"{worker.name} exited with {worker.proc.returncode} at "
                                  f"{time.strftime('%H:%M:%S')}; restarted")
                print(f"    {self.notes[-1]}", flush=True)
                self.restart(worker)

    async def ready(self, session: aiohttp.ClientSession, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = [await worker.metrics(session) for worker in self.workers]
            if all(ready for _, ready in states):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name}: workers not ready in {timeout:.0f} s:\n{self.logs()}")
            for worker in self.workers:
                if not worker.alive():
                    raise SystemExit(f"{self.name}: a worker exited before it was ready:\n{self.logs()}")
            await asyncio.sleep(0.5)

    async def until(self, session: aiohttp.ClientSession, applied: float, timeout: float) -> None:
        """Until the state agents applied `applied` canonical events."""
        deadline = time.monotonic() + timeout
        while await self.applied(session) < applied:
            self.supervise()
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name}: {applied:.0f} canonical events not applied in {timeout:.0f} s:\n"
                                 f"{self.logs()}")
            await asyncio.sleep(POLL_S)

    async def quiet(self, session: aiohttp.ClientSession, settle: float, timeout: float) -> float:
        """Until every input record is committed and the changelog has not grown for `settle` s; when
        (monotonic) the state agents last processed an event (the findings judged after it, once the
        watermarks pass their due times, are not processing of the input)."""
        deadline = time.monotonic() + timeout
        last: Progress | None = None
        grew_at = applied_at = time.monotonic()
        applied = -1.0
        while True:
            self.supervise()
            now_applied = await self.applied(session)
            if now_applied != applied:
                applied, applied_at = now_applied, time.monotonic()
            try:
                now = await progress(self.broker, self.app_id)
            except Exception as exc:  # noqa: BLE001 (a broker still coming back: try again)
                now = Progress(behind=-1, changelog=-1)
                self.notes.append(f"progress not readable: {exc!r}")
            if last is None or now.changelog != last.changelog:
                grew_at = time.monotonic()
            last = now
            if now.behind == 0 and time.monotonic() - grew_at >= settle:
                return applied_at
            if time.monotonic() > deadline:
                raise SystemExit(E_NOT_QUIET.format(run=self.name, timeout=timeout, what=now, logs=self.logs()))
            await asyncio.sleep(POLL_S)

    def result(self, seconds: float, applied: float) -> RunResult:
        return RunResult(name=self.name, app_id=self.app_id, processes=len(self.workers),
                         raw_records=len(self.records), canonical_applied=applied, seconds=round(seconds, 2),
                         raw_per_s=round(len(self.records) / seconds, 1) if seconds else 0.0,
                         worker_starts=sum(w.starts for w in self.workers), worker_exits=self.exits,
                         notes=self.notes)


Fault = Literal["none", "kill", "kafka-stop"]


async def scenario(name: str, fault: Fault, processes: int, records: Sequence[RawRecord], infra: Infra,
                   args: argparse.Namespace, baseline_applied: float) -> tuple[RunResult, Snapshot]:
    """One run on a fresh app id (and, for `kafka-stop`, a private Kafka), with its fault; its result and snapshot."""
    app_id = unique(f"faults-{name}")
    folder = Path(infra.folder) / name
    node: kafka.KafkaNode | None = None
    broker = bootstrap()
    if fault == "kafka-stop":
        node = kafka.KafkaNode(cache=default_cache() / "kafka", port=free_port(), controller_port=free_port(),
                               sasl_port=free_port(),
                               data_dir=folder / "kafka-data")
        kafka.start(node)
        broker = node.bootstrap
    workers = [Worker(run_env(infra, app_id, folder / f"worker-{n}", broker), folder, f"worker-{n}")
               for n in range(processes)]
    run = Run(name, workers, broker, app_id, records, args.partitions)
    print(f"  {name}: {processes} process(es), fault: {fault}, app id {app_id}, on {broker}", flush=True)
    try:
        for worker in workers:
            worker.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await run.ready(session, args.timeout)
            started = time.monotonic()
            await produce_raw(broker, PLAINTEXT, app_id, records, args.partitions)
            if fault == "kill":
                await run.until(session, baseline_applied / 2, args.timeout)
                victim = workers[-1]
                victim.kill()
                run.notes.append(f"{victim.name} SIGKILLed at {await run.applied(session):.0f} canonical events "
                                 f"applied; restarted {args.restart_after:.0f} s later")
                print(f"    {run.notes[-1]}", flush=True)
                await asyncio.sleep(args.restart_after)
                run.restart(victim)
            elif node is not None:
                await run.until(session, baseline_applied / 3, args.timeout)
                stopped = time.monotonic()
                kafka.stop(node)
                await asyncio.sleep(max(0.0, args.kafka_down - (time.monotonic() - stopped)))
                kafka.start(node)
                run.notes.append(f"Kafka stopped at {await run.applied(session):.0f} canonical events applied, "
                                 f"started again {time.monotonic() - stopped:.0f} s later")
                print(f"    {run.notes[-1]}", flush=True)
            last_applied = await run.quiet(session, args.faults_settle, args.timeout)
            applied = await run.applied(session)
        snapshot = snapshot_of(await read_changelog(broker, app_id))
    finally:
        for worker in workers:
            worker.stop()
        if node is not None:
            kafka.stop(node)
    result = run.result(last_applied - started, applied)
    print(f"    {result.raw_per_s:,.0f} raw records/s ({result.seconds:.1f} s), {len(snapshot.customers):,} "
          f"customers, {len(snapshot.findings):,} unresolved findings (and {snapshot.blind:,} blind ones, not "
          "compared)", flush=True)
    return result, snapshot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faults", default="two,kill,kafka-stop",
                        help="runs compared with the one-process baseline, of two, kill, kafka-stop "
                        "(default: %(default)s)")
    parser.add_argument("--restart-after", type=float, default=3.0,
                        help="seconds a killed worker stays down (default: %(default)s)")
    parser.add_argument("--kafka-down", type=float, default=20.0,
                        help="seconds the private Kafka is down (default: %(default)s)")
    parser.add_argument("--faults-settle", type=float, default=6.0,
                        help="a run is quiet once the changelog did not grow for this many seconds "
                        "(default: %(default)s)")


SCENARIOS: Final[dict[str, tuple[Fault, int]]] = {"two": ("none", 2), "kill": ("kill", 2),
                                                  "kafka-stop": ("kafka-stop", 1)}


async def run(args: argparse.Namespace, records: Sequence[RawRecord]) -> Path:
    """The baseline and the chosen fault runs on `records`; prints the comparisons, writes the result file and
    returns its path, or raises SystemExit (after writing it) when a run differs from the baseline."""
    chosen = [name.strip() for name in args.faults.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"--faults: unknown run(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    print(f"pipeline faults: {len(records):,} raw records (seed {args.seed}), {args.partitions} partitions",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="concord-faults-") as tmp:
        node = redis.RedisNode(cache=Path(tmp) / "redis", port=free_port())
        redis.start(node)
        try:
            infra = Infra(redis_url=f"redis://127.0.0.1:{node.port}/0", folder=tmp)
            rules_file(Path(tmp) / "rules.json")
            base, baseline = await scenario("baseline", "none", 1, records, infra, args, 0.0)
            runs = [base]
            comparisons: dict[str, Comparison] = {}
            for name in chosen:
                fault, processes = SCENARIOS[name]
                result, snapshot = await scenario(name, fault, processes, records, infra, args,
                                                  base.canonical_applied)
                runs.append(result)
                comparisons[name] = compare(baseline, snapshot)
                print("\n".join(describe(name, comparisons[name])), flush=True)
        finally:
            redis.stop(node)
    two = [r for r in runs if r.processes == 2]
    scale = {r.name: round(r.raw_per_s / base.raw_per_s, 3) for r in two if base.raw_per_s}
    for name, factor in scale.items():
        print(f"scale-out: {name} (2 processes) at {factor:.2f}x the one-process rate "
              f"(goal {SCALE_OUT_GOAL}x; {os.cpu_count()} CPUs, shared)", flush=True)
    path = write_result("pipeline-faults", {
        "kafka": bootstrap(), "seed": args.seed, "customers": args.customers, "partitions": args.partitions,
        "raw_records": len(records), "baseline": {"customers": len(baseline.customers),
                                                  "findings": len(baseline.findings),
                                                  "blind_findings": baseline.blind,
                                                  "findings_by_status": _by_status(baseline.findings.values())},
        "runs": msgspec.to_builtins(runs), "scale_out": scale, "scale_out_goal": SCALE_OUT_GOAL,
        "comparisons": {name: {"equal": c.equal, **msgspec.to_builtins(c)} for name, c in comparisons.items()},
    })
    differing = [name for name, c in comparisons.items() if not c.equal]
    if differing:
        raise SystemExit(f"pipeline faults: {', '.join(differing)} differ from the baseline (details: {path})")
    return path


def _by_status(findings: Iterable[FindingView]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.status] = counts.get(finding.status, 0) + 1
    return counts


if __name__ == "__main__":
    # Alone: the pipeline bench's options (records, partitions, timeout) with this step only. Imported here:
    # that module imports this one.
    from concord.bench.pipeline.__main__ import main

    sys.exit(asyncio.run(main([*sys.argv[1:], "--only", "faults"])))
