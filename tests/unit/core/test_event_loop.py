"""Which event loop a Concord process runs on (core/event_loop.py), and the fallback without uvloop."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from concord.core import event_loop
from concord.core.settings import load


async def running_loop_name() -> str:
    return event_loop.loop_name(asyncio.get_running_loop())


def test_uvloop_is_the_default_and_asyncio_the_opt_out() -> None:
    assert load({}).event_loop == "uvloop"
    assert load({"CONCORD_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ValueError, match="CONCORD_EVENT_LOOP"):
        load({"CONCORD_EVENT_LOOP": "trio"})


@pytest.mark.parametrize("choice", event_loop.EVENT_LOOPS)
def test_run_runs_on_the_chosen_loop(choice: str) -> None:
    assert event_loop.run(running_loop_name(), choice) == choice


def test_install_makes_the_loop_the_threads_current_one() -> None:
    loop = event_loop.install("uvloop")
    try:
        assert asyncio.get_event_loop() is loop and event_loop.loop_name(loop) == "uvloop"
        assert loop.run_until_complete(running_loop_name()) == "uvloop"
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_without_uvloop_asyncio_runs_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with caplog.at_level(logging.WARNING, logger=event_loop.__name__):
        assert event_loop.run(running_loop_name(), "uvloop") == "asyncio"
    assert "uvloop is not installed" in caplog.text and "CONCORD_EVENT_LOOP=asyncio" in caplog.text


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        event_loop.new_event_loop("trio")
