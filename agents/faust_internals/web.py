"""A second listener on Faust's web server: the same aiohttp application served on another port.

Faust serves its web application on one site (`web_bind`:`web_port`); its aiohttp driver keeps the
`AppRunner` private (`Web._runner`). A second `TCPSite` on that runner serves the very same routes
and middleware on another interface and port, which is how the public webhook listener is made
(`app/access.py` decides per listener what each route answers).
"""

from __future__ import annotations

import faust
from aiohttp.web import AppRunner, TCPSite


async def add_listener(app: faust.App, host: str, port: int) -> TCPSite:
    """Serve `app`'s web application on `host`:`port` too (after Faust's web server started)."""
    runner = app.web._runner  # type: ignore[attr-defined]  # the aiohttp driver's AppRunner
    if not isinstance(runner, AppRunner) or runner.server is None:
        raise RuntimeError("Faust's web server is not running: the webhook listener cannot be added")
    site = TCPSite(runner, host, port)
    await site.start()
    return site
