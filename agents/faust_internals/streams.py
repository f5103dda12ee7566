"""An agent that takes its records in batches (`Stream.take_events`, through `batches`) processes each as the
current event.

Faust finds the event being processed through a context variable (`faust.streams._current_event`): a table
write goes to the changelog partition of that event's record, and refuses outside of one. Its own iteration
sets the variable; `take_events` sets it in the task that fills the buffer, not in the agent's task that
processes the batch. `as_current(event)` sets it there, per event, as Faust's iteration would. Only the
context variable: the stream's `current_event` attribute is the filling task's, which reads it while
the batch is processed.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final, cast

from faust import streams
from faust.types import EventT, StreamT

#: The linger `batches` gives Faust when asked for none.
_SHORTEST_LINGER_S: Final = 0.0001


def as_current(event: Any) -> None:
    """Make `event` the current event of this task (table writes go to its record's partition)."""
    streams._current_event.set(weakref.ref(event))


def batches(stream: StreamT[Any], max_records: int, linger_seconds: float) -> AsyncIterator[Sequence[EventT]]:
    """`stream`'s events, `max_records` at most at a time, or what came within `linger_seconds`; each batch is
    acknowledged when the consumer asks for the next one (`Stream.take_events`: not on the typed interface)."""
    # Faust takes a `within` of 0 for "no timeout" (a batch only when `max_records` came): the shortest wait instead.
    within = max(linger_seconds, _SHORTEST_LINGER_S)
    return cast(AsyncIterator[Sequence[EventT]], cast(Any, stream).take_events(max_records, within=within))
