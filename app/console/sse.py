"""Server-sent events, framed as the HTML standard reads them (pure: text in, bytes out).

An event is `field: value` lines and a blank line: `id:` (what the browser sends back as `Last-Event-ID`
when it reconnects), `event:` (the listener it reaches), one `data:` line per line of the data. A line
starting with `:` is a comment the browser ignores: the heartbeat that keeps proxies from closing a quiet
stream. `retry:` tells the browser how long to wait before reconnecting.

The ids here are the change log's stream ids (`<ms>-<seq>`, connectors/drift_changes.py); `resume_from`
picks where a (re)connecting board reads on from.
"""

from __future__ import annotations

import re
from typing import Final

from concord.connectors.drift_changes import stream_id

HEARTBEAT_SECONDS: Final = 15.0
RETRY_MS: Final = 3000
_LINES: Final = re.compile(r"\r\n|\r|\n")


def event(data: str, *, name: str | None = None, id: str | None = None) -> bytes:
    """One event: `data` (any text; each of its lines a `data:` line), its type `name`, its `id`."""
    lines = []
    if id is not None:
        if _LINES.search(id) or "\x00" in id:
            raise ValueError(f"an event id is one line without NUL: {id!r}")
        lines.append(f"id: {id}")
    if name is not None:
        if _LINES.search(name):
            raise ValueError(f"an event name is one line: {name!r}")
        lines.append(f"event: {name}")
    lines.extend(f"data: {line}" for line in _LINES.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str) -> bytes:
    """A comment line (ignored by the browser): `text` on one line."""
    return f": {_LINES.sub(' ', text)}\n\n".encode()


def retry(ms: int = RETRY_MS) -> bytes:
    """How long the browser waits before it reconnects."""
    return f"retry: {int(ms)}\n\n".encode()


HEARTBEAT: Final = comment("keep-alive")


def resume_from(last_event_id: str | None, after: str | None) -> str | None:
    """Where a connecting board reads on from: after the `Last-Event-ID` it sends when it reconnects, else
    after the id its page was rendered at (`?after=`); None (start with what comes next) when neither is
    a stream id."""
    for candidate in (last_event_id, after):
        if candidate and stream_id(candidate) is not None:
            return candidate.strip()
    return None
