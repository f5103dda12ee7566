"""Recovery of the state table after a restart: time to `/readyz`, and memory per customer.

For each size N (and once for an empty table, the baseline):

1. The changelog topic of the state agent's `customers` table, for a fresh app id, is created as Faust
   creates it (the table's partitions, one replica, `cleanup.policy=compact`) and filled with N typical
   customers' states (bench/workload.py, folded with `tables.state.apply`), as the agent writes them
   (`changelog_record`): key JSON-encoded by the agent's own `changelog_key`, value `tables.state.dump`,
   partition that of the customer's key on the canonical topic. Record batches per partition, produced
   with aiokafka directly.
2. A raw aiokafka consumer reads the whole changelog into a dict (JSON key decoded, value kept as bytes,
   what Faust's memory store holds): the floor for recovery without Faust's per-record machinery.
3. `concord worker --roles state` starts on a fresh data dir with that app id: seconds from process start
   to `/healthz` answering 200 (process up) and to `/readyz` answering 200 (the table recovered); then
   the CPU seconds it used so far (the rest of its time it waited) and its resident memory
   (`/proc/<pid>/status`: VmRSS now, VmHWM its peak). Memory per customer is
   (RSS with N customers - RSS of the empty table) / N.

The worker runs with a Redis nobody listens on and a deadline scan of 60 s: once recovered, a state
worker's first scan decodes every owned state and mirrors it to the search and drift indexes (~4 KB of
Redis memory each), which would blur the memory measured and put a million customers into the shared
Redis; readiness does not depend on Redis. The worker is
stopped as soon as it is measured. Goals (issue "Faster", part 1): 1M customers recovered in under
60 s, at most 2 KiB per customer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.serializers import codecs

from concord.agents.faust_internals.changelog import changelog_key
from concord.bench.common import (
    bootstrap,
    delete_run_topics,
    free_port,
    kafka_options,
    unique,
    worker_env,
    write_result,
)
from concord.bench.workload import customer_key, history
from concord.core.partitioning import partition_for
from concord.tables import state as st

#: The state agent's table (agents/state.py: `concord.table("customers")`).
TABLE: Final = "customers"
GOAL_SECONDS_1M: Final = 60.0
GOAL_BYTES_PER_CUSTOMER: Final = 2048
#: Faust's own changelog topic config for a table (compacting, no retention: faust/tables/base.py).
CHANGELOG_CONFIG: Final = {"cleanup.policy": "compact"}
_POLL_SECONDS: Final = 0.05
_KEY_CODEC: Final = codecs.get_codec("json")


class ChangelogRecord(msgspec.Struct, frozen=True):
    """One record of the table's changelog: what the state agent writes for a customer's state."""

    key: bytes
    value: bytes
    partition: int


class Memory(msgspec.Struct, frozen=True):
    """A process's resident memory, from `/proc/<pid>/status`."""

    rss_bytes: int
    peak_rss_bytes: int


class Usage(msgspec.Struct, frozen=True):
    """A process's resident memory and the CPU time it has used (user + system)."""

    memory: Memory
    cpu_seconds: float


class Fill(msgspec.Struct, frozen=True):
    """A filled changelog: how many states, their bytes, how long building and producing them took."""

    customers: int
    payload_bytes: int  # keys and values, without Kafka's record and batch framing
    seconds: float


class Startup(msgspec.Struct, frozen=True):
    """A worker's start: seconds from process start to /healthz and to /readyz answering 200."""

    healthz_seconds: float
    readyz_seconds: float
    usage: Usage  # as /readyz first answered 200


class SizeResult(msgspec.Struct, frozen=True):
    """The figures of one table size."""

    customers: int
    partitions: int
    changelog_bytes_per_customer: float
    fill_seconds: float
    raw_read_seconds: float
    healthz_seconds: float
    readyz_seconds: float
    recovery_seconds: float  # readyz less healthz: the table's recovery, without the process start
    worker_cpu_seconds: float  # CPU time the worker used up to /readyz: the rest of its time it waited
    rss_bytes: int
    peak_rss_bytes: int
    bytes_per_customer: float  # (RSS - RSS of the empty table) / customers


def changelog_topic(app_id: str) -> str:
    """The changelog topic of the state table of app `app_id`, as Faust names it."""
    return f"{app_id}-{TABLE}-changelog"


def changelog_record(state: st.CustomerState, partitions: int) -> ChangelogRecord:
    """`state` as the state agent writes it to the changelog (agents/state.py `store`, `ChangelogWriter.put`).

    The agent writes to the partition of the canonical event it processes, and the canonical topic is
    keyed by the customer key: the key's partition.
    """
    return ChangelogRecord(changelog_key(state.key), st.dump(state), partition_for(state.key.encode(), partitions))


def typical_state(i: int, rng: random.Random) -> st.CustomerState:
    """Typical customer `i` after its 15 events (bench/workload.py)."""
    state = st.empty(customer_key(i))
    for event in history(i, rng):
        state, _ = st.apply(state, event)
    return state


def parse_status(text: str) -> Memory:
    """VmRSS and VmHWM of a `/proc/<pid>/status` text, in bytes."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def kib(name: str) -> int:
        value, unit = fields[name].split()
        if unit != "kB":
            raise ValueError(f"/proc status field {name} in {unit!r}, expected kB")
        return int(value) * 1024
    return Memory(rss_bytes=kib("VmRSS"), peak_rss_bytes=kib("VmHWM"))


def parse_cpu_seconds(stat: str, ticks_per_second: int) -> float:
    """User + system CPU seconds of a `/proc/<pid>/stat` line (utime and stime are its 14th and 15th fields)."""
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


def usage_of(pid: int) -> Usage:
    """Resident memory and CPU time of process `pid` now."""
    proc = Path(f"/proc/{pid}")
    return Usage(memory=parse_status((proc / "status").read_text()),
                 cpu_seconds=parse_cpu_seconds((proc / "stat").read_text(), os.sysconf("SC_CLK_TCK")))


async def create_changelog(topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(), **kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                            topic_configs=CHANGELOG_CONFIG)])
    finally:
        await admin.close()


async def fill(topic: str, customers: int, partitions: int) -> Fill:
    """Create the changelog `topic` and write `customers` typical states to it; how many bytes, how long."""
    await create_changelog(topic, partitions)
    started = time.perf_counter()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), **kafka_options(), acks=1, max_batch_size=512 * 1024,
                                max_request_size=1024 * 1024)
    await producer.start()
    payload = 0
    try:
        rng = random.Random(5)
        batches = [producer.create_batch() for _ in range(partitions)]
        in_flight: list[asyncio.Future[object]] = []
        for i in range(customers):
            record = changelog_record(typical_state(i, rng), partitions)
            payload += len(record.key) + len(record.value)
            if batches[record.partition].append(key=record.key, value=record.value, timestamp=None) is None:
                in_flight.append(await producer.send_batch(batches[record.partition], topic,
                                                           partition=record.partition))
                batches[record.partition] = producer.create_batch()
                batches[record.partition].append(key=record.key, value=record.value, timestamp=None)
            if len(in_flight) >= 16:  # bounded: a million states would not wait in memory
                await asyncio.gather(*in_flight)
                in_flight.clear()
            if (i + 1) % 50_000 == 0:
                print(f"  filled {i + 1:,}/{customers:,} ({time.perf_counter() - started:.0f} s)", flush=True)
        for partition, batch in enumerate(batches):
            if batch.record_count():
                in_flight.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    return Fill(customers=customers, payload_bytes=payload, seconds=time.perf_counter() - started)


async def raw_read(topic: str, partitions: int) -> float:
    """Seconds a plain consumer takes to read the whole changelog into a dict, as the memory store holds it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), **kafka_options(), group_id=None,
                                enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        table: dict[str, bytes] = {}
        started = time.perf_counter()
        while left:
            for tp, batch in (await consumer.getmany(*left, timeout_ms=1000)).items():
                for record in batch:
                    table[_KEY_CODEC.loads(record.key)] = record.value
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def start_worker(app_id: str, partitions: int, timeout: float) -> Startup:
    """Start a state worker for `app_id` on a fresh data dir; seconds to /healthz and /readyz, then its memory."""
    with tempfile.TemporaryDirectory() as tmp:
        env = worker_env(app_id, tmp, CONCORD_TOPIC_PARTITIONS=str(partitions),
                         CONCORD_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", CONCORD_DEADLINE_SCAN_SECONDS="60")
        base = f"http://127.0.0.1:{env['CONCORD_WEB_PORT']}"
        log = Path(tmp) / "worker.log"
        healthz = 0.0
        with log.open("wb") as out:
            started = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "concord.app.cli", "worker", "-l", "warning",
                                     "--roles", "state"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                while time.perf_counter() - started < timeout:
                    if proc.poll() is not None:
                        raise SystemExit(f"state worker exited:\n{log.read_text()[-3000:]}")
                    path = "/readyz" if healthz else "/healthz"
                    try:
                        async with session.get(base + path) as resp:
                            ok = resp.status == 200
                    except (TimeoutError, aiohttp.ClientError):
                        ok = False
                    if ok and not healthz:
                        healthz = time.perf_counter() - started
                        continue  # /readyz at once: it may be ready already
                    if ok:
                        readyz = time.perf_counter() - started
                        return Startup(healthz_seconds=healthz, readyz_seconds=readyz, usage=usage_of(proc.pid))
                    await asyncio.sleep(_POLL_SECONDS)
            raise SystemExit(f"state worker not ready in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def measure(customers: int, partitions: int, timeout: float, empty_rss: int | None) -> SizeResult:
    """Fill a fresh app's changelog with `customers` states, read it raw, and recover a worker from it."""
    app_id = unique("recovery")
    topic = changelog_topic(app_id)
    print(f"{customers:,} customers: filling {topic} ...", flush=True)
    filled = await fill(topic, customers, partitions)
    raw = await raw_read(topic, partitions) if customers else 0.0
    print(f"  filled in {filled.seconds:.1f} s, raw read in {raw:.1f} s; starting the worker ...", flush=True)
    startup = await start_worker(app_id, partitions, timeout)
    memory = startup.usage.memory
    rss = memory.rss_bytes
    per_customer = (rss - empty_rss) / customers if customers and empty_rss is not None else 0.0
    return SizeResult(
        customers=customers, partitions=partitions,
        changelog_bytes_per_customer=round(filled.payload_bytes / customers, 1) if customers else 0.0,
        fill_seconds=round(filled.seconds, 2), raw_read_seconds=round(raw, 2),
        healthz_seconds=round(startup.healthz_seconds, 2), readyz_seconds=round(startup.readyz_seconds, 2),
        recovery_seconds=round(startup.readyz_seconds - startup.healthz_seconds, 2),
        worker_cpu_seconds=round(startup.usage.cpu_seconds, 2), rss_bytes=rss, peak_rss_bytes=memory.peak_rss_bytes,
        bytes_per_customer=round(per_customer),
    )


def print_results(rows: Sequence[SizeResult]) -> None:
    print(f"\n{'customers':>10} {'changelog B/cust':>16} {'raw read s':>10} {'healthz s':>9} {'readyz s':>8} "
          f"{'recovery s':>10} {'CPU s':>6} {'RSS MiB':>8} {'peak MiB':>8} {'B/customer':>10}")
    for r in rows:
        print(f"{r.customers:>10,} {r.changelog_bytes_per_customer:>16,.0f} {r.raw_read_seconds:>10.1f} "
              f"{r.healthz_seconds:>9.1f} {r.readyz_seconds:>8.1f} {r.recovery_seconds:>10.1f} "
              f"{r.worker_cpu_seconds:>6.1f} "
              f"{r.rss_bytes / 2**20:>8.0f} {r.peak_rss_bytes / 2**20:>8.0f} {r.bytes_per_customer:>10,.0f}")
    for r in rows:
        if r.customers >= 1_000_000:
            print(f"goal: 1M customers recovered in < {GOAL_SECONDS_1M:.0f} s: readyz {r.readyz_seconds:.1f} s "
                  f"({'met' if r.readyz_seconds < GOAL_SECONDS_1M else 'NOT met'})")
        if r.customers:
            met = r.bytes_per_customer <= GOAL_BYTES_PER_CUSTOMER
            print(f"goal: <= {GOAL_BYTES_PER_CUSTOMER:,} bytes per customer at {r.customers:,}: "
                  f"{r.bytes_per_customer:,.0f} ({'met' if met else 'NOT met'})")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--customers {text!r}: give comma-separated counts, e.g. 100000,1000000") from None
    if any(n <= 0 for n in sizes):
        raise argparse.ArgumentTypeError(f"--customers {text!r}: every count must be positive")
    return sizes


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m concord.bench.pipeline.recovery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=_sizes, default=[100_000, 1_000_000],
                        help="table sizes, comma-separated (default: 100000,1000000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the table (and canonical topic)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a worker may take to be ready")
    args = parser.parse_args(argv)
    print(f"state table recovery: {', '.join(f'{n:,}' for n in args.customers)} customers, "
          f"{args.partitions} partitions, on {bootstrap()}", flush=True)
    try:
        empty = await measure(0, args.partitions, args.timeout, None)
        rows = [empty]
        for customers in args.customers:
            rows.append(await measure(customers, args.partitions, args.timeout, empty.rss_bytes))
    finally:
        await delete_run_topics()
    print_results(rows)
    path = write_result("pipeline-recovery", {"partitions": args.partitions,
                                              "sizes": msgspec.to_builtins(rows)})
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
