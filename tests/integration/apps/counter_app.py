"""A tiny Concord app for the harness proof: counts events per key into a changelogged table.

Run as a worker process by tests: `python tests/integration/apps/counter_app.py` with CONCORD_* env.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from faust.web import Request, Response, View  # noqa: E402

from concord.agents.context import Concord  # noqa: E402
from concord.app import access  # noqa: E402
from concord.app.main import build  # noqa: E402
from concord.app.worker import run  # noqa: E402
from concord.core import settings as settings_mod  # noqa: E402


def make() -> Concord:
    settings = settings_mod.load()
    concord = build(settings)
    app = concord.app
    source = concord.topic(f"{settings.topic_prefix}.test-counts")
    counts = app.Table("counts", default=int, partitions=settings.topic_partitions)

    @app.agent(source, concurrency=1)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for key, _value in stream.items():
            counts[key.decode()] += 1

    access.allow("/counts", access.READ)  # the harness reads with the worker's read token

    @app.page("/counts")
    class Counts(View):
        async def get(self, request: Request) -> Response:
            return self.json(dict(counts.items()))

    return concord


if __name__ == "__main__":
    concord = make()
    concord.prepare()
    run(concord.app, loglevel="info", on_started=concord.started, loop=concord.settings.event_loop)
