"""Run a Faust worker for a Concord app, with logging fit for production."""

from __future__ import annotations

import logging
from typing import Any

import faust

# Chatty client libraries: at debug they build a LogRecord per message (~12% of a worker's CPU).
_QUIET_LOGGERS = ("aiokafka", "faust", "mode", "kafka")


class Worker(faust.Worker):
    """faust.Worker that keeps the client libraries' loggers at WARNING unless we debug."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        # faust leaves the root logger at DEBUG and filters in the handler; set the level instead.
        logger.setLevel(level)
        if level > logging.DEBUG:
            for name in _QUIET_LOGGERS:
                logging.getLogger(name).setLevel(max(level, logging.WARNING))


def run(app: faust.App, loglevel: str = "info", **kwargs: Any) -> None:
    """Run the worker until a signal stops it (blocking; exits the process like `faust worker`)."""
    Worker(app, loglevel=loglevel, **kwargs).execute_from_commandline()
