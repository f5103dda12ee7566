"""Faust state its ABCs do not expose: whether table recovery has finished, a committed offset; and a plain
consumer's metadata refresh."""

from __future__ import annotations

import faust


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
