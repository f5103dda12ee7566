"""The event loop every long-running Concord process runs on: uvloop when installed, else asyncio's own.

Much of a Faust worker's CPU goes to the event loop's own work (scheduling tasks and futures, socket
reads), which uvloop does in C (libuv): on Faust's own per-message delivery it took ~18% of the CPU
per message off (docs/benchmarks.md; with Concord's fast path the difference was within the noise of
that run). `concord webhooks` and the sandbox do little but socket I/O and task switching.
`CONCORD_EVENT_LOOP` chooses (`uvloop`, the default, or `asyncio` to opt out). uvloop is a dependency of Concord but is
not built for every platform (Windows): there the choice of uvloop falls back to asyncio's loop, and
the process says so at start rather than refusing to run.

Each entry point gets its loop from here, once, at start: `run` for a process that runs one coroutine
(webhooks, sandbox), `install` for Faust's worker, which runs its own loop and takes the thread's
current one. No event loop policy is changed: a loop made here is the only one of its kind, so
nothing else in the process (tests, a library's own `asyncio.run`) changes loop behind its back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The values of `CONCORD_EVENT_LOOP` (core/settings.py).
EVENT_LOOPS: Final = ("uvloop", "asyncio")

W_NO_UVLOOP: Final = ("CONCORD_EVENT_LOOP=uvloop but uvloop is not installed (not built for this platform?): "
                      "running on asyncio's own loop. Install it (pip install uvloop), or set "
                      "CONCORD_EVENT_LOOP=asyncio to choose asyncio's loop and silence this warning.")


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """A new event loop of `choice` (`uvloop` or `asyncio`); asyncio's own when uvloop is not installed."""
    if choice not in EVENT_LOOPS:
        raise ValueError(f"unknown event loop {choice!r}: choose one of {', '.join(EVENT_LOOPS)}")
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning(W_NO_UVLOOP)
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """`uvloop` or `asyncio`: the kind of `loop`, for the start-up log line."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """`asyncio.run(main)` on a new loop of `choice`."""
    with asyncio.Runner(loop_factory=functools.partial(new_event_loop, choice)) as runner:
        return runner.run(main)


def install(choice: str) -> asyncio.AbstractEventLoop:
    """A new loop of `choice`, made the current loop of this thread: the one a Faust worker started next runs on."""
    loop = new_event_loop(choice)
    asyncio.set_event_loop(loop)
    return loop


def stop_on_signals() -> asyncio.Event:
    """An event set on SIGINT or SIGTERM, for a process whose main coroutine runs until it is set. Where the loop
    cannot take signal handlers (not the main thread, Windows), the event is only set by its caller."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return stop
