"""Faust's web server, where its driver keeps things private: a second listener, and `/` for Concord.

Faust serves its web application on one site (`web_bind`:`web_port`); its aiohttp driver keeps the
`AppRunner` private (`Web._runner`). A second `TCPSite` on that runner serves the very same routes
and middleware on another interface and port, which is how the public webhook listener is made
(`app/access.py` decides per listener what each route answers).

With its statistics off, Faust mounts a placeholder index page at `/` (blueprint `production_index`),
added when the web server starts, so a view of Concord's own at `/` (the board) would clash with it.
Faust has no setting for it; `free_index` takes it out of the blueprints still to be applied.

When the web server stops, aiohttp waits (up to Faust's `handler_shutdown_timeout`, 60 s) for the
handlers still running: a long-lived response (the board's event stream) must end first. aiohttp's
`on_shutdown` signal comes before that wait; `on_server_shutdown` adds to it through the driver's
aiohttp application (`Web.web_app`, which Faust's base `Web` type does not declare).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiohttp.web import Application, AppRunner, TCPSite


async def add_listener(app: faust.App, host: str, port: int) -> TCPSite:
    """Serve `app`'s web application on `host`:`port` too (after Faust's web server started)."""
    runner = app.web._runner  # type: ignore[attr-defined]  # the aiohttp driver's AppRunner
    if not isinstance(runner, AppRunner) or runner.server is None:
        raise RuntimeError("Faust's web server is not running: the webhook listener cannot be added")
    site = TCPSite(runner, host, port)
    await site.start()
    return site


#: Faust's placeholder index page at `/` (faust/web/base.py, PRODUCTION_BLUEPRINTS).
PRODUCTION_INDEX = "faust.web.apps.production_index:blueprint"


def free_index(app: faust.App) -> None:
    """Leave `/` to the app: Faust's placeholder index is not mounted when its web server starts."""
    manager = app.web.blueprints
    if manager.applied:
        raise RuntimeError("Faust's web server already started: its index page is mounted")
    manager._enabled = [(prefix, bp) for prefix, bp in manager._enabled if bp != PRODUCTION_INDEX]


def on_server_shutdown(app: faust.App, closer: Callable[[], Awaitable[None]]) -> None:
    """Await `closer` when the web server begins to stop, before it waits for running handlers."""
    web_app = getattr(app.web, "web_app", None)
    if not isinstance(web_app, Application):
        raise RuntimeError("Faust's web driver is not aiohttp's: cannot end long-lived responses at shutdown")

    async def _signal(_: Any) -> None:
        await closer()

    web_app.on_shutdown.append(_signal)
