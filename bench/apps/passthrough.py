"""Faust pass-through agent for the throughput bench: decode every event, count, report the rate.

Env: BENCH_TOPIC, BENCH_COUNT, BENCH_RESULT (file to write `{"events", "seconds"}` to), CONCORD_*;
BENCH_TAKE=N reads the stream N events at a time (`stream.take_events`, acked after each batch).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import cast

import faust
import orjson

from concord.app.factory import create_faust_app
from concord.app.worker import run
from concord.core import settings as settings_mod


def make() -> faust.App:
    settings = settings_mod.load()
    app = create_faust_app(settings)
    topic = app.topic(os.environ["BENCH_TOPIC"], value_serializer="raw", key_serializer="raw")
    expected = int(os.environ["BENCH_COUNT"])
    result = Path(os.environ["BENCH_RESULT"])
    seen = 0
    first = 0.0

    take = int(os.environ.get("BENCH_TAKE", "0"))

    def count(value: bytes) -> None:
        nonlocal seen, first
        if seen == 0:
            first = time.perf_counter()
        orjson.loads(value)
        seen += 1
        if seen == expected:
            result.write_text(json.dumps({"events": seen, "seconds": time.perf_counter() - first}))

    @app.agent(topic, concurrency=1)
    async def passthrough(stream: faust.StreamT[bytes]) -> None:
        if take:
            # take_events is on the Stream class, not its StreamT protocol.
            async for events in cast(faust.Stream, stream).take_events(take, within=0.05):
                for event in events:
                    count(event.value)
        else:
            async for value in stream:
                count(value)

    return app


if __name__ == "__main__":
    run(make(), loglevel="warning")
