"""The naive state agent, for comparison: one Faust event and one table write per business event.

Same pure work as Concord's state agent (load, apply, all rules' lifecycle, dump), none of its
batching. Env: BENCH_TOPIC (single canonical events keyed by customer), BENCH_COUNT, BENCH_RESULT, CONCORD_*.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import faust

from concord.agents.context import Concord
from concord.app.factory import create_concord
from concord.app.worker import run
from concord.codecs.model import decode as decode_event
from concord.core import settings as settings_mod
from concord.drift import catalog, lifecycle
from concord.drift.config import DriftConfig
from concord.drift.sections import sections_of
from concord.tables import state as st


def make() -> Concord:
    concord = create_concord(settings_mod.load(), roles=["state"])
    app = concord.app
    topic = concord.topic(os.environ["BENCH_TOPIC"])
    table = concord.table("naive-customers")
    expected = int(os.environ["BENCH_COUNT"])
    result = Path(os.environ["BENCH_RESULT"])
    config = DriftConfig(rules=catalog.default_configs())
    seen = 0
    first = 0.0

    @app.agent(topic, concurrency=1)
    async def naive(stream: faust.StreamT[bytes]) -> None:
        nonlocal seen, first
        async for value in stream:
            if seen == 0:
                first = time.perf_counter()
            event = decode_event(value)
            key = event.customer_key or ""
            raw = table.get(key)
            state, _ = st.apply(st.load(raw) if raw else st.empty(key), event)
            verdict = lifecycle.evaluate(state, int(time.time() * 1000), catalog.RULES, config,
                                         sections_of(event))
            table[key] = st.dump(verdict.state)
            seen += 1
            if seen == expected:
                result.write_text(json.dumps({"events": seen, "seconds": time.perf_counter() - first}))

    return concord


if __name__ == "__main__":
    concord = make()
    concord.prepare()
    run(concord.app, loglevel="warning", loop=concord.settings.event_loop)
