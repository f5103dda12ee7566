"""Faust pass-through agent for the throughput bench: decode every event, count, report the rate.

Env: BENCH_TOPIC, BENCH_COUNT, BENCH_RESULT (file to write `{"events", "seconds", "cpu_seconds"}` to: wall
and process CPU time, all threads, from the first event to the last), CONCORD_*
(CONCORD_EVENT_LOOP: the worker's loop); BENCH_TAKE=N reads the stream N events at a time
(`stream.take_events`, acked after each batch); BENCH_DELIVERY=faust delivers each message Faust's own
way (mode's `wait_first`, a task pair per message), without Concord's fast path
(agents/faust_internals/delivery.py): the "before" of that patch, in the same tree.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import cast

import faust
import orjson
from faust.transport.consumer import Consumer

from concord.app.factory import create_faust_app
from concord.app.worker import run
from concord.core import settings as settings_mod


def make() -> faust.App:
    settings = settings_mod.load()
    app = create_faust_app(settings)
    if os.environ.get("BENCH_DELIVERY") == "faust":
        # create_faust_app installed the fast path; mode's own `wait_first` is what it wraps.
        Consumer.wait_first = Consumer.wait_first.__wrapped__  # type: ignore[attr-defined,method-assign]
    topic = app.topic(os.environ["BENCH_TOPIC"], value_serializer="raw", key_serializer="raw")
    expected = int(os.environ["BENCH_COUNT"])
    result = Path(os.environ["BENCH_RESULT"])
    seen = 0
    first = first_cpu = 0.0

    take = int(os.environ.get("BENCH_TAKE", "0"))

    def count(value: bytes) -> None:
        nonlocal seen, first, first_cpu
        if seen == 0:
            first, first_cpu = time.perf_counter(), time.process_time()
        orjson.loads(value)
        seen += 1
        if seen == expected:
            result.write_text(json.dumps({"events": seen, "seconds": time.perf_counter() - first,
                                          "cpu_seconds": time.process_time() - first_cpu}))

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
    run(make(), loglevel="warning", loop=settings_mod.load().event_loop)
