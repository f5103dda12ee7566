"""`python -m concord.bench` (`make bench`): every benchmark, one after the other, with defaults."""

import asyncio
import sys

from concord.bench import codecs, kafka_throughput, state_cost, state_throughput, webhooks
from concord.bench.pipeline.__main__ import main as pipeline

steps = [
    ("kafka throughput", lambda: asyncio.run(kafka_throughput.main([]))),
    ("codecs", lambda: codecs.main([])),
    ("state cost and memory", lambda: state_cost.main([])),
    ("state agent throughput", lambda: asyncio.run(state_throughput.main([]))),
    ("webhook answer times beside a busy worker", lambda: asyncio.run(webhooks.main([]))),
    ("pipeline end to end", lambda: asyncio.run(pipeline([]))),
]
for title, run in steps:
    print(f"\n=== {title} ===", flush=True)
    if run() != 0:
        sys.exit(f"benchmark {title!r} failed")
