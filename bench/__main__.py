"""`python -m concord.bench` (`make bench`): every benchmark, one after the other."""

import asyncio
import sys

from concord.bench import kafka_throughput

sys.exit(asyncio.run(kafka_throughput.main(sys.argv[1:])))
