"""Throughput on the real broker: raw aiokafka `getmany` against a Faust pass-through agent.

Same topic, same run: N events are produced once, then read by the raw consumer and by the
pass-through agent in four variants: Faust's own per-message delivery or Concord's fast path
(agents/faust_internals/delivery.py), each on asyncio's loop and on uvloop (CONCORD_EVENT_LOOP).
With `--repeat N` the four run in turn N times (noise on a shared machine hits each alike); the
table shows each variant's median rate, and its median CPU time per event (the worker's process, all
threads: less moved by other work on the machine than the rate). Prints a table and writes JSON
under bench/results/. `make bench` runs it with the local infra.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from concord.bench.common import (
    bootstrap,
    counting_app_result,
    delete_run_topics,
    kafka_options,
    print_table,
    produce_events,
    unique,
    write_result,
)

PASSTHROUGH = Path(__file__).resolve().parent / "apps" / "passthrough.py"
#: (name, delivery, event loop): BENCH_DELIVERY of the pass-through app and CONCORD_EVENT_LOOP.
VARIANTS = (
    ("faust delivery, asyncio", "faust", "asyncio"),
    ("faust delivery, uvloop", "faust", "uvloop"),
    ("fast path, asyncio", "fast", "asyncio"),
    ("fast path, uvloop (the default)", "fast", "uvloop"),
)


async def raw_consume(topic: str, count: int) -> float:
    """Consume `count` events with getmany batches and orjson; return events/s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap(), **kafka_options(), group_id=None,
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
    parser.add_argument("--timeout", type=float, default=600, help="seconds each Faust run may take")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each Faust variant (default %(default)s)")
    args = parser.parse_args(argv)

    topic = unique("throughput")
    print(f"kafka throughput: {args.events:,} events to {topic} ({args.partitions} partitions) "
          f"on {bootstrap()}", flush=True)
    produce_rate = await produce_events(topic, args.events, args.partitions)
    print("  reading with raw aiokafka getmany ...", flush=True)
    raw = await raw_consume(topic, args.events)
    rates: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    cpu_us: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    for round_ in range(1, args.repeat + 1):
        for name, delivery, loop in VARIANTS:
            print(f"  reading with a Faust pass-through agent: {name} ({round_}/{args.repeat}) ...", flush=True)
            run = counting_app_result(PASSTHROUGH, topic, args.events, args.timeout, "faust",
                                      BENCH_DELIVERY=delivery, CONCORD_EVENT_LOOP=loop)
            rates[name].append(run["events"] / run["seconds"])
            cpu_us[name].append(run["cpu_seconds"] / run["events"] * 1e6)
    medians = {name: statistics.median(runs) for name, runs in rates.items()}
    print_table([("raw aiokafka getmany + orjson", raw),
                 *((f"faust pass-through agent, {name}", rate) for name, rate in medians.items())], raw)
    print("\nper variant: events/s of each run; median CPU µs per event (worker process, all threads)")
    for name, runs in rates.items():
        print(f"  {name}: {', '.join(f'{r:,.0f}' for r in runs)}; {statistics.median(cpu_us[name]):.1f} µs")
    default = medians[VARIANTS[-1][0]]
    print(f"\nfaust (default) / raw ratio: {default / raw:.3f}   (produce rate {produce_rate:,.0f}/s)")
    path = write_result("kafka_throughput", {
        "events": args.events, "partitions": args.partitions, "repeat": args.repeat,
        "produce_per_s": round(produce_rate), "raw_aiokafka_per_s": round(raw),
        "faust_passthrough_per_s": round(default), "ratio_faust_to_raw": round(default / raw, 4),
        "variants_per_s": {name: [round(r) for r in runs] for name, runs in rates.items()},
        "variants_cpu_us_per_event": {name: [round(c, 1) for c in runs] for name, runs in cpu_us.items()},
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
