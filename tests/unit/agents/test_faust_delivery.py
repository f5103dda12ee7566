"""The fast path of Faust's per-message delivery (agents/faust_internals/delivery.py), without Kafka.

The consumer here is a stand-in with the events `wait_first` reads; the methods under test are Faust's
own, wrapped, called on it. Every outcome is compared with what mode's `wait_first` gives.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer

from concord.agents.faust_internals import PATCHED, delivery


class FakeConsumer:
    """The state `wait_first`, `stop_flow`, `_stopped_set` and `_crash` read and write."""

    def __init__(self) -> None:
        self.suspend_flow = asyncio.Event()
        self.can_resume_flow = asyncio.Event()
        self.flow_active = True
        self._stopped = asyncio.Event()
        self._crashed = asyncio.Event()
        self._children: list[Any] = []
        self.loop = asyncio.get_running_loop()


class Callback:
    """A delivery callback that records the task it ran in and blocks until `release` when asked to."""

    def __init__(self, block: bool = False, fail: BaseException | None = None) -> None:
        self.block = block
        self.fail = fail
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False
        self.done = False

    async def __call__(self, message: str) -> str:
        self.task = asyncio.current_task()
        self.started.set()
        try:
            if self.block:
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.fail is not None:
            raise self.fail
        self.done = True
        return f"delivered {message}"


def wait_first(consumer: FakeConsumer, *coros: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
    delivery.apply()
    wait: Any = Consumer.wait_first
    return wait(consumer, *coros, **kwargs)


def deliver(consumer: FakeConsumer, callback: Callback, message: str = "m") -> Coroutine[Any, Any, Any]:
    """The drain loop's call: `wait_first(callback(message), suspend_flow.wait())`."""
    return wait_first(consumer, callback(message), consumer.suspend_flow.wait())


async def pending_delivery(consumer: FakeConsumer, callback: Callback) -> asyncio.Task[Any]:
    task = asyncio.create_task(deliver(consumer, callback))
    await asyncio.wait_for(callback.started.wait(), 5)
    return task


async def test_while_flow_runs_the_callback_is_awaited_in_the_callers_task() -> None:
    consumer, callback = FakeConsumer(), Callback()
    result = await deliver(consumer, callback)
    assert callback.task is asyncio.current_task()  # no task of its own
    assert result.results == ["delivered m"] and not result.stopped


async def test_a_suspended_flow_waits_as_faust_does() -> None:
    consumer, callback = FakeConsumer(), Callback(block=True)
    consumer.suspend_flow.set()
    result = await asyncio.wait_for(deliver(consumer, callback), 5)
    assert result.results == [True] and not result.stopped  # the suspension won
    assert callback.task is not asyncio.current_task()  # Faust's own way: a task per coroutine
    await asyncio.sleep(0)
    assert callback.cancelled


async def test_suspending_flow_cancels_a_blocked_callback_and_the_drain_goes_on() -> None:
    # Faust 0.15.3 sets `suspend_flow` in `stop_flow` only (a rebalance): that is where the wrapper listens.
    consumer, callback = FakeConsumer(), Callback(block=True)
    task = await pending_delivery(consumer, callback)
    Consumer.stop_flow(consumer)  # type: ignore[arg-type]
    result = await asyncio.wait_for(task, 5)
    assert callback.cancelled and not callback.done
    assert not result.stopped and result.results == [True]
    assert not task.cancelled() and task.cancelling() == 0  # the cancellation was taken back


async def test_stopping_or_crashing_the_consumer_cancels_a_blocked_callback() -> None:
    for end in (lambda c: Consumer._stopped_set(c), lambda c: Consumer._crash(c, RuntimeError("boom"))):
        consumer, callback = FakeConsumer(), Callback(block=True)
        task = await pending_delivery(consumer, callback)
        end(consumer)
        result = await asyncio.wait_for(task, 5)
        assert callback.cancelled and result.stopped and result.results == []


async def test_an_exception_in_the_callback_is_raised_to_the_drain_loop_as_before() -> None:
    for suspended in (False, True):
        consumer, callback = FakeConsumer(), Callback(fail=ValueError("bad message"))
        if suspended:
            consumer.suspend_flow.set()
            callback.block = True
            callback.release.set()
        result_or_error: Any
        try:
            result_or_error = await asyncio.wait_for(deliver(consumer, callback), 5)
        except ValueError as exc:
            result_or_error = exc
        if suspended:  # Faust's way: the suspension and the failure race; either is an outcome of wait_first
            assert isinstance(result_or_error, ValueError) or result_or_error.results == [True]
        else:
            assert isinstance(result_or_error, ValueError) and str(result_or_error) == "bad message"


async def test_a_cancellation_from_outside_is_not_swallowed() -> None:
    consumer, callback = FakeConsumer(), Callback(block=True)
    task = await pending_delivery(consumer, callback)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert callback.cancelled
    Consumer.stop_flow(consumer)  # type: ignore[arg-type]  # nothing in flight any more: nothing to cancel


async def test_other_waits_go_faust_s_way() -> None:
    consumer, callback = FakeConsumer(), Callback()
    other = asyncio.Event()
    # Not the suspend_flow event, a timeout, a single coroutine: mode's `wait_first` as it is.
    for coros, kwargs in (((callback("a"), other.wait()), {}), ((callback("b"), consumer.suspend_flow.wait()),
                                                                 {"timeout": 5.0}), ((callback("c"),), {})):
        result = await wait_first(consumer, *coros, **kwargs)
        assert callback.task is not asyncio.current_task()
        assert result.results[0].startswith("delivered")


async def test_the_fast_path_is_installed_on_faust_once() -> None:
    delivery.apply()
    installed = (Consumer.wait_first, Consumer.stop_flow, Consumer._stopped_set, Consumer._crash)
    delivery.apply()
    assert (Consumer.wait_first, Consumer.stop_flow, Consumer._stopped_set, Consumer._crash) == installed
    assert all(getattr(f, PATCHED, False) for f in installed)


class DrainingConsumer(FakeConsumer):
    """What Faust's own `Consumer._drain_messages` reads, fed with fetched batches of (partition, offset).

    `faust_delivery`: deliver through mode's `wait_first` as Faust does without the fast path.
    """

    def __init__(self, batches: list[list[tuple[int, int]]], callback: Callable[[Any], Awaitable[Any]],
                 faust_delivery: bool = False) -> None:
        super().__init__()
        self.callback = callback
        self.faust_delivery = faust_delivery
        self.batches = batches
        self.fetcher = SimpleNamespace(_stopped=asyncio.Event())
        self._read_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._commit_every = None
        self._n_acked = 0
        self.gaps: list[tuple[Any, int, int]] = []
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))
        self.should_stop = False
        self.consumer_stopped_errors = ()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def wait_first(self, *coros: Any, **kwargs: Any) -> Awaitable[Any]:
        delivery.apply()
        wait: Any = Consumer.wait_first
        return wait.__wrapped__(self, *coros, **kwargs) if self.faust_delivery else wait(self, *coros, **kwargs)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp, offset_from, offset_to))

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        if not self.batches:
            self.fetcher._stopped.set()
            return
        for partition, offset in self.batches.pop(0):
            if not self.flow_active:  # as Faust's getmany: a suspended flow ends the batch
                break
            tp = ("raw", partition)
            yield tp, SimpleNamespace(tp=tp, topic="raw", partition=partition, offset=offset, key=None, value=None)

    async def drain(self) -> None:
        await asyncio.wait_for(Consumer._drain_messages(self, self.fetcher), 10)  # type: ignore[arg-type]


BATCHES = [[(0, 0), (1, 0), (0, 1), (1, 1)], [(0, 2), (0, 5), (1, 2)]]  # 0@3-4: a jump (a gap, or a skip)


async def drain_all(faust_delivery: bool) -> tuple[list[tuple[int, int]], dict[Any, Any], list[Any], set[Any]]:
    """Every batch drained: what the callback saw, the read offsets, the gaps added, the tasks it ran in."""
    seen: list[tuple[int, int]] = []
    ran_in: set[Any] = set()

    async def callback(message: Any) -> None:
        seen.append((message.partition, message.offset))
        ran_in.add(asyncio.current_task())

    consumer = DrainingConsumer([list(b) for b in BATCHES], callback, faust_delivery)
    await consumer.drain()
    return seen, dict(consumer._read_offset), consumer.gaps, ran_in


async def test_faust_s_drain_loop_delivers_every_message_as_before() -> None:
    *before, tasks_before = await drain_all(faust_delivery=True)
    *after, tasks_after = await drain_all(faust_delivery=False)
    assert before == after
    seen, read, gaps = after
    assert seen == [m for batch in BATCHES for m in batch]
    assert read == {("raw", 0): 5, ("raw", 1): 2} and gaps == [(("raw", 0), 3, 5)]
    assert len(tasks_before) == 7 and len(tasks_after) == 1  # a task per message before; the drain's own now


async def drain_with_a_rebalance(faust_delivery: bool) -> tuple[list[Any], list[Any], dict[Any, Any]]:
    """The first batch drained, flow stopped while 0@1's callback blocks: seen, cancelled, read offsets."""
    seen: list[tuple[int, int]] = []
    cancelled: list[tuple[int, int]] = []

    async def callback(message: Any) -> None:
        if (message.partition, message.offset) == (0, 1):  # a full buffer, then a rebalance
            asyncio.get_running_loop().call_later(0.01, lambda: Consumer.stop_flow(consumer))  # type: ignore[arg-type]
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append((message.partition, message.offset))
                raise
        seen.append((message.partition, message.offset))

    consumer = DrainingConsumer([list(BATCHES[0])], callback, faust_delivery)
    await consumer.drain()
    await asyncio.sleep(0)  # Faust's own way lets the cancelled callback task finish on its own
    return seen, cancelled, dict(consumer._read_offset)


async def test_a_rebalance_during_a_blocked_delivery_ends_the_batch_as_before() -> None:
    after = await drain_with_a_rebalance(faust_delivery=False)
    assert await drain_with_a_rebalance(faust_delivery=True) == after
    # 0@1 was cancelled (never acknowledged: the commit fixes hold there) and counted as read; the batch ended.
    assert after == ([(0, 0), (1, 0)], [(0, 1)], {("raw", 0): 1, ("raw", 1): 0})


async def test_a_callback_that_swallows_the_cancellation_leaves_none_behind() -> None:
    consumer = FakeConsumer()
    gate = asyncio.Event()

    async def stubborn(message: str) -> str:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            return "finished anyway"
        return "released"

    task = asyncio.create_task(wait_first(consumer, stubborn("m"), consumer.suspend_flow.wait()))
    await asyncio.sleep(0)
    Consumer.stop_flow(consumer)  # type: ignore[arg-type]
    result = await asyncio.wait_for(task, 5)
    assert result.results == ["finished anyway"] and task.cancelling() == 0
