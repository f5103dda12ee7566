"""Server-sent events framing and where a (re)connecting board resumes (app/console/sse.py)."""

from __future__ import annotations

import pytest

from concord.app.console import sse


def test_an_event_has_its_id_its_name_and_one_data_line_per_line() -> None:
    assert sse.event('{"a": 1}', name="finding", id="1700000000000-0") == \
        b'id: 1700000000000-0\nevent: finding\ndata: {"a": 1}\n\n'
    assert sse.event("one\ntwo\r\nthree\rfour") == b"data: one\ndata: two\ndata: three\ndata: four\n\n"
    assert sse.event("") == b"data: \n\n"


@pytest.mark.parametrize("bad", ["1-0\nevent: forged", "1-0\r", "1\x000"])
def test_an_id_cannot_smuggle_a_field(bad: str) -> None:
    with pytest.raises(ValueError):
        sse.event("x", id=bad)


def test_comments_heartbeat_and_retry() -> None:
    assert sse.HEARTBEAT == b": keep-alive\n\n"
    assert sse.comment("a\nb") == b": a b\n\n"
    assert sse.retry(2500) == b"retry: 2500\n\n"


@pytest.mark.parametrize(("last_event_id", "after", "expected"), [
    ("1700000000000-2", "1690000000000-0", "1700000000000-2"),  # the browser's reconnect wins
    (None, "1690000000000-0", "1690000000000-0"),  # first connection: after the page's render
    ("", "0-0", "0-0"),
    ("garbage", "1-1", "1-1"),
    ("garbage", "also garbage", None),  # start with what comes next
    (None, None, None),
    (" 5-1 ", None, "5-1"),
])
def test_resume_from(last_event_id: str | None, after: str | None, expected: str | None) -> None:
    assert sse.resume_from(last_event_id, after) == expected
