"""A fast path for Faust's per-message delivery: no tasks per message while flow is not suspended.

Written for faust-streaming 0.15.3 (`check_versions` in this package refuses others at start).

`Consumer._drain_messages` hands every fetched message to the conductor with
`await self.wait_first(callback(message), self.suspend_flow.wait())`: mode's `wait_first` makes a task
of each of the two, and two more for the consumer's `stopped` and `crashed` events, waits for the
first to finish, and cancels the others. Without those four tasks per message, a pass-through agent's
worker spends 42-49% less CPU per message and reads 1.4-1.8x as many per second (docs/benchmarks.md,
"The first hop cheaper").

The race matters only when the callback blocks (the stream's buffer is full, flow control or the
producer buffer holds it) and then flow is suspended (a rebalance), or the consumer stops or crashes:
the callback is cancelled and the drain loop goes on, counting the message as read (it is not
acknowledged). Here, when that call comes and none of the three events is set, the callback is awaited
directly in the fetcher's task, and whichever of `stop_flow`, `_stopped_set` or `_crash` sets one of
the events while it is pending cancels it (in 0.15.3 nothing else sets them); the cancellation is
taken back once the callback is out, as `asyncio.timeout` does. That is the outcome `wait_first`
gives, without the tasks. When an event is already set, with a timeout, or for any other call,
`wait_first` runs as it did.

Nothing that Concord's commit fixes rely on moves: the offsets of every fetch are still noted where
`getmany` takes its records (`commits.note_fetched`), gaps are still added by the drain loop before
the callback, and a message whose callback was cancelled stays unacknowledged, as before (the commit
stops at it, `redeliver_skipped` seeks back to it). The drain loop still gives the event loop one
turn per message (a bare `sleep(0)`, no task), as the tasks did: the streams take each message while
their buffers are short.

Each wrapper is installed once, and only when the Faust and mode internals it relies on are there.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from faust.transport.consumer import Consumer
from mode.services import WaitResults

from concord.agents.faust_internals import PATCHED, wrap_once

log = logging.getLogger(__name__)

# On a consumer while a callback is awaited directly: the delivery that `_interrupt` may cancel.
_IN_FLIGHT = "_concord_direct_delivery"
_EVENT_WAIT = asyncio.Event.wait.__code__


class _Delivery:
    """A callback awaited directly in `task`; `interrupted` once a suspend, stop or crash cancelled it."""

    __slots__ = ("interrupted", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.interrupted = False


def _waits_on(coro: object, event: object) -> bool:
    """Whether `coro` is an unstarted `event.wait()`."""
    return (type(coro) is CoroutineType and coro.cr_code is _EVENT_WAIT
            and coro.cr_frame is not None and coro.cr_frame.f_locals.get("self") is event)


def _direct(original: Callable[..., Any]) -> Callable[..., Any]:
    """`Service.wait_first` on the consumer, awaiting the drain loop's callback directly (see the module doc)."""
    @functools.wraps(original)
    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> WaitResults:
        task = asyncio.current_task()
        if (task is None or len(coros) != 2 or timeout is not None or type(coros[0]) is not CoroutineType
                or self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()
                or not _waits_on(coros[1], self.suspend_flow)):
            return await original(self, *coros, timeout=timeout)
        callback, suspended = coros
        suspended.close()  # never started: nothing to clean up, no "never awaited" warning
        delivery = _Delivery(task)
        cancelling = task.cancelling()
        self.__dict__[_IN_FLIGHT] = delivery
        try:
            result = await callback
        except asyncio.CancelledError:
            if delivery.interrupted and task.uncancel() <= cancelling:
                # As `wait_first` when an event won: the callback is cancelled, the drain loop goes on.
                if self._stopped.is_set() or self._crashed.is_set():
                    return WaitResults([], [], True)
                return WaitResults([suspended], [True], False)
            raise
        finally:
            self.__dict__[_IN_FLIGHT] = None
        if delivery.interrupted:  # the callback swallowed the cancellation: taken back all the same
            task.uncancel()
        # One turn of the loop per message, as with the tasks: without it the drain loop puts up to 100
        # messages (its own yield) in a stream's buffer at once, the buffer's high-pressure mark pauses
        # the partition's fetching, and the rate falls below Faust's own (docs/benchmarks.md).
        await asyncio.sleep(0)
        return WaitResults([callback], [result], False)

    setattr(wait_first, PATCHED, True)
    return wait_first


def _interrupt(consumer: Any) -> None:
    """Cancel the callback `consumer` awaits directly, if any (once).

    Not when the callback itself suspends the flow (Faust's never does): the cancellation could then land
    after it returned, in the drain loop; `wait_first` too would let it run to its next wait.
    """
    delivery = consumer.__dict__.get(_IN_FLIGHT)
    if delivery is None or delivery.interrupted:
        return
    try:
        running = asyncio.current_task()
    except RuntimeError:  # called outside the loop's thread: never the callback's own task
        running = None
    if delivery.task is not running:
        delivery.interrupted = True
        delivery.task.cancel()


def _interrupting(original: Callable[..., Any]) -> Callable[..., Any]:
    """`stop_flow`, `_stopped_set` or `_crash`: sets its event, then cancels a callback awaited directly."""
    @functools.wraps(original)
    def set_and_interrupt(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        _interrupt(self)
        return result

    setattr(set_and_interrupt, PATCHED, True)
    return set_and_interrupt


def _internals_present() -> bool:
    drain = getattr(Consumer, "_drain_messages", None)
    return (drain is not None and {"wait_first", "suspend_flow", "callback"} <= set(drain.__code__.co_names)
            and "suspend_flow" in Consumer.__init__.__code__.co_names
            and all(callable(getattr(Consumer, name, None))
                    for name in ("wait_first", "stop_flow", "_stopped_set", "_crash"))
            and hasattr(asyncio.Task, "uncancel"))


def apply() -> None:
    """Install the fast path (once); a Faust whose internals it relies on changed is left alone, with a warning."""
    if not _internals_present():
        log.warning("faust consumer internals changed: messages are delivered the slow way (%s)", __file__)
        return
    # The interrupts first: a fast path never runs without them.
    for name in ("stop_flow", "_stopped_set", "_crash"):
        wrap_once(Consumer, name, _interrupting)
    wrap_once(Consumer, "wait_first", _direct)
