"""`python -m concord.bench.pipeline`: Concord end to end, raw platform records in, customer state out.

The records (`raw.py`: the sandbox's seeded traffic as the raw topics hold it) are built once and every
sub-benchmark in `STEPS` runs on them, in order (`--only` picks some). Each writes its own result file
under bench/results/. The topics this process made are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from concord.bench.common import delete_run_topics
from concord.bench.pipeline import faults, latency, throughput
from concord.bench.pipeline.raw import RawRecord, raw_records

Step = Callable[[argparse.Namespace, Sequence[RawRecord]], Awaitable[Path]]

#: Sub-benchmark name -> its run, in order (recovery runs on its own: `python -m concord.bench.pipeline.recovery`).
STEPS: Final[dict[str, Step]] = {
    "throughput": throughput.run,
    "latency": latency.run,
    "faults": faults.run,
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m concord.bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000,
                        help="raw records to produce (at least; the traffic stops after the step reaching it) "
                        "(default: %(default)s)")
    parser.add_argument("--customers", type=int, default=700,
                        help="customers of the sandbox world (more are added when their lifecycles give fewer "
                        "records than --events; ~30 records each) (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="traffic seed (default: %(default)s)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default: %(default)s)")
    parser.add_argument("--only", default=",".join(STEPS),
                        help=f"comma-separated sub-benchmarks to run, of {', '.join(STEPS)} (default: all)")
    throughput.add_arguments(parser)
    latency.add_arguments(parser)
    faults.add_arguments(parser)
    return parser


async def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in STEPS]
    if unknown:
        print(f"unknown sub-benchmark(s) {', '.join(unknown)}: choose from {', '.join(STEPS)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    records = raw_records(args.seed, args.customers, args.events)
    print(f"{len(records):,} raw records of the sandbox's traffic built in {time.perf_counter() - started:.1f} s",
          flush=True)
    try:
        for name in chosen:
            path = await STEPS[name](args, records)
            print(f"result: {path}", flush=True)
    finally:
        await delete_run_topics()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
