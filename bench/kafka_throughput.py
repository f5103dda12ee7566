"""Throughput on the real broker: raw aiokafka `getmany` against a Faust pass-through agent.

Same topic, same run: N events are produced once, then read by both. Prints a table and writes
JSON under bench/results/. `make bench` runs it with the local infra.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from concord.bench.common import bootstrap, free_port, print_table, produce_events, unique, write_result

PASSTHROUGH = Path(__file__).resolve().parent / "apps" / "passthrough.py"


async def raw_consume(topic: str, count: int) -> float:
    """Consume `count` events with getmany batches and orjson; return events/s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap(), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    seen = 0
    started = 0.0
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if seen == 0:
                    started = time.perf_counter()
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
    finally:
        await consumer.stop()
    return count / (time.perf_counter() - started)


def faust_passthrough(topic: str, count: int, timeout: float) -> float:
    """Run the pass-through agent in a worker process; return its events/s (first to last event)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        app_id = unique("faust")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
        env.update({
            "CONCORD_KAFKA_URL": f"kafka://{bootstrap()}", "CONCORD_APP_ID": app_id,
            "CONCORD_TOPIC_PREFIX": app_id, "CONCORD_WEB_PORT": str(free_port()), "CONCORD_DATA_DIR": tmp,
            "BENCH_TOPIC": topic, "BENCH_COUNT": str(count), "BENCH_RESULT": str(result),
        })
        log = Path(tmp) / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, str(PASSTHROUGH)], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not result.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"faust pass-through failed or timed out:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        data = orjson.loads(result.read_bytes())
        return float(data["events"]) / float(data["seconds"])


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concord.bench.kafka_throughput", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="events to produce (default %(default)s)")
    parser.add_argument("--partitions", type=int, default=4, help="topic partitions (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds the Faust run may take")
    args = parser.parse_args(argv)

    topic = unique("throughput")
    print(f"kafka throughput: {args.events:,} events to {topic} ({args.partitions} partitions) "
          f"on {bootstrap()}", flush=True)
    produce_rate = await produce_events(topic, args.events, args.partitions)
    print("  reading with raw aiokafka getmany ...", flush=True)
    raw = await raw_consume(topic, args.events)
    print("  reading with a Faust pass-through agent ...", flush=True)
    faust_rate = faust_passthrough(topic, args.events, args.timeout)
    print_table([("raw aiokafka getmany + orjson", raw), ("faust pass-through agent", faust_rate)], raw)
    print(f"\nfaust / raw ratio: {faust_rate / raw:.3f}   (produce rate {produce_rate:,.0f}/s)")
    path = write_result("kafka_throughput", {
        "events": args.events, "partitions": args.partitions, "produce_per_s": round(produce_rate),
        "raw_aiokafka_per_s": round(raw), "faust_passthrough_per_s": round(faust_rate),
        "ratio_faust_to_raw": round(faust_rate / raw, 4),
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
