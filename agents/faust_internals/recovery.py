"""Faust state its ABCs do not expose: whether table recovery has finished, a committed offset, a consumer's
lag; and a plain consumer's metadata refresh."""

from __future__ import annotations

from typing import Any

import faust

from concord.agents.faust_internals.commits import log_start


def recovery_finished(app: faust.App) -> bool:
    """Every assigned table partition recovered from its changelog (and no recovery under way)."""
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # TableManager, not in the ABC
    return bool(recovery.completed.is_set() and not recovery.in_recovery)


async def force_metadata_update(consumer: object) -> None:
    """Refresh a plain aiokafka consumer's cluster metadata now (its own client's, which
    `partitions_for_topic` reads; the public `topics()` fetches metadata without storing it)."""
    await consumer._client.force_metadata_update()  # type: ignore[attr-defined]


def committed_offset(app: faust.App, tp: object) -> int | None:
    """The next offset Faust has committed for `tp` (None when it has committed none yet)."""
    committed = app.consumer._committed_offset  # type: ignore[attr-defined]  # Consumer, not in the ABC
    value = committed.get(tp)
    return None if value is None else int(value)


def consumer_lag(app: faust.App, tp: Any) -> int | None:
    """Messages of `tp` the app's consumer group has not committed: the partition's high watermark less the
    committed offset, or less where the log begins while nothing is committed (a new group reads it from
    there). None while the high watermark is unknown (no fetch answered for `tp` since it was assigned)."""
    high = app.consumer.highwater(tp)
    if high is None:
        return None
    done = committed_offset(app, tp)
    if done is None:
        done = log_start(tp) or 0
    return max(0, int(high) - done)
