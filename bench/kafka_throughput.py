"""Throughput on the real broker: raw aiokafka `getmany` against a Faust pass-through agent.

Same topic, same run: N events are produced once, then read by both. Prints a table and writes
JSON under bench/results/. `make bench` runs it with the local infra.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from concord.bench.common import (
    bootstrap,
    delete_run_topics,
    print_table,
    produce_events,
    run_counting_app,
    unique,
    write_result,
)

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


async def main(argv: list[str] | None = None) -> int:
    try:
        return await _main(argv)
    finally:
        await delete_run_topics()


async def _main(argv: list[str] | None = None) -> int:
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
    faust_rate = run_counting_app(PASSTHROUGH, topic, args.events, args.timeout, "faust")
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
