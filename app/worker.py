"""Run a Faust worker for a Concord app, with logging fit for production."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from concord.core import event_loop

log = logging.getLogger("concord.app")

# Chatty client libraries: at debug they build a LogRecord per message (~12% of a worker's CPU).
_QUIET_LOGGERS = ("aiokafka", "faust", "mode", "kafka")


class Worker(faust.Worker):
    """faust.Worker that keeps the client libraries' loggers at WARNING unless we debug, and tells the
    app when it has started (Faust's Worker takes the app's own `on_startup_finished` for itself)."""

    def __init__(self, app: faust.App, *args: Any,
                 on_started: Callable[[], Awaitable[None]] | None = None, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self._on_started = on_started

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        log.info("running on the %s event loop", event_loop.loop_name(asyncio.get_running_loop()))
        if self._on_started is not None:
            await self._on_started()

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        # faust leaves the root logger at DEBUG and filters in the handler; set the level instead.
        logger.setLevel(level)
        if level > logging.DEBUG:
            for name in _QUIET_LOGGERS:
                logging.getLogger(name).setLevel(max(level, logging.WARNING))


def run(app: faust.App, loglevel: str = "info", on_started: Callable[[], Awaitable[None]] | None = None,
        loop: str = "uvloop", **kwargs: Any) -> None:
    """Run the worker until a signal stops it (blocking; exits the process like `faust worker`).

    `on_started` is awaited once the worker has started: tables recovered, web server listening. `loop`:
    `CONCORD_EVENT_LOOP` (core/event_loop.py); the app must not have taken a loop yet (nothing before the
    worker runs it does).
    """
    worker_loop = event_loop.install(loop)
    Worker(app, loglevel=loglevel, on_started=on_started, loop=worker_loop, **kwargs).execute_from_commandline()
