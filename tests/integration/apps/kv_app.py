"""A tiny Concord app for the table recovery test: a key-value table written by an agent, shown whole.

`{prefix}.test-kv` records set their key to their value in the `kv` table, or delete it when the value is
empty; `/kv` shows the table's content. Run as a worker process by tests: `python
tests/integration/apps/kv_app.py` with CONCORD_* env.
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
    concord = build(settings, roles=["ingest"])
    app = concord.app
    source = concord.topic(f"{settings.topic_prefix}.test-kv")
    kv = concord.table("kv")

    @app.agent(source, concurrency=1)
    async def write(stream):  # type: ignore[no-untyped-def]
        async for key, value in stream.items():
            if value:
                kv[key.decode()] = value
            elif key.decode() in kv:
                del kv[key.decode()]

    access.allow("/kv", access.READ)  # the harness reads with the worker's read token

    @app.page("/kv")
    class Content(View):
        async def get(self, request: Request) -> Response:
            return self.json({key: value.decode() for key, value in kv.items()})

    return concord


if __name__ == "__main__":
    concord = make()
    concord.prepare()
    run(concord.app, loglevel="info", on_started=concord.started)
