"""The state+drift agent on the real broker, beside a raw consumer and a naive agent, same run.

1. A workload of typical customers (bench/workload.py) is produced twice: as batches of canonical
   events per partition (`CanonicalBatch`, what the state agent consumes in bulk) to the canonical
   topic of a fresh app, and as single events keyed by customer to a second topic.
2. A raw aiokafka consumer reads the batch topic (getmany + msgspec decode of every event).
3. Concord's state agent (`concord worker --roles state`) processes the batch topic: load, apply,
   rules, lifecycle, one table write per customer per batch; its rate is read from its
   `concord_events_processed_total{agent="state"}` counter (first to last event).
4. The same state agent processes the single events (the live path: Concord's own ingest and
   identity agents send one canonical event per Kafka message), one Faust event each.
5. A naive Faust agent processes the single events: one Faust event and one table write each.
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
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from concord.bench.common import (
    bootstrap,
    delete_run_topics,
    kafka_options,
    print_table,
    run_counting_app,
    unique,
    worker_env,
    write_result,
)
from concord.bench.workload import interleaved
from concord.codecs import records
from concord.codecs.model import CanonicalEvent
from concord.codecs.model import encode as encode_event
from concord.core import messages
from concord.core.partitioning import partition_for

APPS = Path(__file__).resolve().parent / "apps"
COUNTER = re.compile(rb'^concord_events_processed_total\{agent="state"\} ([0-9.e+]+)$', re.M)


async def produce(canonical: str, singles: str, events: list[CanonicalEvent], partitions: int, batch: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(), **kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                   for t in (canonical, singles)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), **kafka_options(), acks=1, linger_ms=20,
                                max_batch_size=512 * 1024, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        pending: dict[int, list[CanonicalEvent]] = {}
        for n, event in enumerate(events, 1):
            key = (event.customer_key or "").encode()
            await producer.send(singles, encode_event(event), key=key)
            part = partition_for(key, partitions)
            pending.setdefault(part, []).append(event)
            if len(pending[part]) >= batch:
                await producer.send(canonical, messages.encode(records.CanonicalBatch(events=pending.pop(part))),
                                    partition=part)
            if n % 25_000 == 0:
                print(f"  produced {n:,}/{len(events):,}", flush=True)
        for part, rest in pending.items():
            await producer.send(canonical, messages.encode(records.CanonicalBatch(events=rest)), partition=part)
        await producer.flush()
    finally:
        await producer.stop()


async def raw_consume(topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap(), **kafka_options(), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=1000)).values():
                if seen == 0:
                    started = time.perf_counter()
                for record in records:
                    message = records.decode_state(record.value)
                    seen += len(message.events) if isinstance(message, records.CanonicalBatch) else 1
    finally:
        await consumer.stop()
    return count / (time.perf_counter() - started)


async def concord_agent(app_id: str, count: int, timeout: float) -> float:
    """Run `concord worker --roles state` on the prefilled topic; events/s from its counter."""
    with tempfile.TemporaryDirectory() as tmp:
        env = worker_env(app_id, tmp)
        port = env["CONCORD_WEB_PORT"]
        log = Path(tmp) / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "concord.app.cli", "worker", "-l", "warning",
                                     "--roles", "state"], env=env, stdout=out, stderr=subprocess.STDOUT)
        first_at = first_count = 0.0
        try:
            deadline = time.monotonic() + timeout
            async with aiohttp.ClientSession() as session:
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        raise SystemExit(f"state worker exited:\n{log.read_text()[-3000:]}")
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                            match = COUNTER.search(await resp.read())
                    except aiohttp.ClientError:
                        match = None
                    done = float(match.group(1)) if match else 0.0
                    now = time.perf_counter()
                    if done > 0 and not first_at:
                        first_at, first_count = now, done
                    if done >= count:
                        return (done - first_count) / (now - first_at)
                    await asyncio.sleep(0.05)
            raise SystemExit(f"state worker did not finish in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


async def main(argv: list[str] | None = None) -> int:
    try:
        return await _main(argv)
    finally:
        await delete_run_topics()


async def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concord.bench.state_throughput", description=__doc__)
    parser.add_argument("--customers", type=int, default=6000, help="typical customers, 15 events each")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500, help="events per CanonicalBatch message")
    parser.add_argument("--naive-events", type=int, default=20_000,
                        help="single events the live-path and naive agents process (slow; their rates are steady)")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    os.environ["BENCH_PARTITIONS"] = str(args.partitions)
    events = list(interleaved(args.customers))
    app_id, live_id = unique("state"), unique("state-live")
    # The single events are the canonical topic of a second app: the live-path agent's input.
    canonical, singles = f"{app_id}.canonical", f"{live_id}.canonical"
    print(f"state throughput: {len(events):,} events of {args.customers:,} customers, batches of {args.batch}, "
          f"{args.partitions} partitions, on {bootstrap()}", flush=True)
    await produce(canonical, singles, events, args.partitions, args.batch)
    print("  raw aiokafka consumer ...", flush=True)
    raw = await raw_consume(canonical, len(events))
    print("  concord state agent ...", flush=True)
    agent = await concord_agent(app_id, len(events), args.timeout)
    naive_count = min(args.naive_events, len(events))
    print(f"  concord state agent on single events ({naive_count:,} events) ...", flush=True)
    live = await concord_agent(live_id, naive_count, args.timeout)
    print(f"  naive agent ({naive_count:,} events) ...", flush=True)
    naive = run_counting_app(APPS / "naive_state.py", singles, naive_count, args.timeout, "naive")
    print_table([("raw aiokafka getmany + msgspec decode", raw), ("concord state+drift agent", agent),
                 ("concord state+drift agent, single events (live path)", live),
                 ("naive agent (1 Faust event + 1 table write per event)", naive)], raw)
    path = write_result("state_throughput", {
        "events": len(events), "customers": args.customers, "partitions": args.partitions, "batch": args.batch,
        "raw_aiokafka_per_s": round(raw), "state_agent_per_s": round(agent), "state_agent_singles_per_s": round(live),
        "naive_agent_per_s": round(naive),
        "naive_events": naive_count,
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
