"""Faust pass-through agent for the throughput bench: decode every event, count, report the rate.

Env: BENCH_TOPIC, BENCH_COUNT, BENCH_RESULT (file to write `{"events", "seconds"}` to), CONCORD_*.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import faust
import orjson

from concord.app import settings as settings_mod
from concord.app.factory import create_faust_app
from concord.app.worker import run


def make() -> faust.App:
    settings = settings_mod.load()
    app = create_faust_app(settings)
    topic = app.topic(os.environ["BENCH_TOPIC"], value_serializer="raw", key_serializer="raw")
    expected = int(os.environ["BENCH_COUNT"])
    result = Path(os.environ["BENCH_RESULT"])
    seen = 0
    first = 0.0

    @app.agent(topic, concurrency=1)
    async def passthrough(stream: faust.StreamT[bytes]) -> None:
        nonlocal seen, first
        async for value in stream:
            if seen == 0:
                first = time.perf_counter()
            orjson.loads(value)
            seen += 1
            if seen == expected:
                result.write_text(json.dumps({"events": seen, "seconds": time.perf_counter() - first}))

    return app


if __name__ == "__main__":
    run(make(), loglevel="warning")
