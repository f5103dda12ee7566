"""The drift index's change log: every change of a reported finding, of every worker, in one order.

The board (`app/console/`) shows findings live, on whichever worker a person opened it, while a finding
changes on the worker that owns its customer. The drift index already gathers every worker's findings in
Redis (connectors/drift_index.py); when it writes a customer's snapshot it also appends, in the same
transaction, one entry per finding that changed to a capped Redis Stream, `<prefix>:drift:changes`
(`XADD ... MAXLEN ~ <drift_changes_kept>`). Any worker reads the stream, so every board sees every change,
and an entry's id (`<epoch ms>-<seq>`, Redis' own, increasing) is the id of the board's server-sent event:
a board that reconnects with `Last-Event-ID` reads on from there (`since`), however long it was away, as
long as the stream still holds what followed; when it does not (trimmed, or Redis lost it), `lost_after`
says so and the board reloads instead of showing a list with holes.

Only what a person sees counts as a change (`connectors/drift_index.change_kind`): a finding that was only
seen again (`last_seen`) is not one, and re-mirroring an unchanged index (after a rebalance) adds nothing.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec
from msgspec import Struct
from redis.exceptions import ResponseError

# What happened to a finding (`FindingChange.kind`).
NEW: Final = "new"  # reported for the first time (or first seen by a rebuilt index)
STATUS: Final = "status"  # its status changed, other than to resolved (commanded, escalated, reopened)
RESOLVED: Final = "resolved"
UPDATED: Final = "updated"  # same status; what it shows changed (evidence, summary, severity, note)
REMOVED: Final = "removed"  # no longer kept for its customer (older than `resolved_kept`, or merged away)
KINDS: Final = (NEW, STATUS, RESOLVED, UPDATED, REMOVED)

#: The id a reader gives to start at the beginning (Redis' smallest stream id).
ORIGIN: Final = "0-0"
_ID: Final = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_FIELD: Final = b"change"


class FindingChange(Struct, frozen=True, kw_only=True):
    """One change of a finding, as the change log holds it: enough to update counts and find the row."""

    kind: str
    fingerprint: str
    customer_key: str
    rule: str
    severity: str
    status: str
    previous: str = ""  # the status before ("" when new)
    at: int = 0  # when the index wrote it (epoch ms)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(FindingChange).decode


def changes_key(prefix: str) -> str:
    """The Redis Stream of finding changes (under the drift index's keys, so it goes when the index goes)."""
    return f"{prefix}:drift:changes"


def entry(change: FindingChange) -> dict[bytes, bytes]:
    """The stream entry's fields for `change`."""
    return {_FIELD: _encode(change)}


def stream_id(text: str) -> tuple[int, int] | None:
    """`<ms>-<seq>` as a pair that orders like Redis does; None when `text` is not a stream id."""
    match = _ID.match(text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def _decoded(entries: list[Any]) -> list[tuple[str, FindingChange]]:
    out = []
    for raw_id, fields in entries:
        value = fields.get(_FIELD)
        if value is None:
            continue  # not written by the index: not a change
        try:
            out.append((raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id), _decode(value)))
        except msgspec.DecodeError:
            continue
    return out


class ChangeLog:
    """Reads the change log (the drift index writes it). Redis errors reach the caller."""

    def __init__(self, client: Any, prefix: str) -> None:
        # The worker's one client (`Concord.redis`); Any as in DriftIndex (redis-py's sync-or-async types).
        self._redis = client
        self.key = changes_key(prefix)

    async def last_id(self) -> str:
        """The id of the newest change (ORIGIN when there is none): a reader starting now reads after it."""
        newest = await self._redis.xrevrange(self.key, "+", "-", count=1)
        if not newest:
            return ORIGIN
        raw = newest[0][0]
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def since(self, after: str, count: int) -> list[tuple[str, FindingChange]]:
        """Up to `count` changes after `after`, oldest first (no waiting)."""
        return _decoded(await self._redis.xrange(self.key, f"({after}", "+", count=count))

    async def count_since(self, after: str, page: int = 1_000) -> dict[str, int]:
        """How many changes of each kind came after `after` (a reconciliation's summary)."""
        counts: dict[str, int] = {}
        while changes := await self.since(after, page):
            for _, change in changes:
                counts[change.kind] = counts.get(change.kind, 0) + 1
            after = changes[-1][0]
        return counts

    async def wait(self, after: str, block_ms: int, count: int) -> list[tuple[str, FindingChange]]:
        """The changes after `after`, waiting up to `block_ms` for one (empty when none came)."""
        found = await self._redis.xread({self.key: after}, count=count, block=block_ms)
        return _decoded(found[0][1]) if found else []

    async def lost_after(self, after: str) -> bool:
        """Whether changes after `after` may be gone (trimmed, or the stream itself lost): the reader must start
        over. Trimming leaves no mark of where it cut, so an `after` older than the oldest change kept counts as
        lost (a reload too many at worst, never a change missed)."""
        mark = stream_id(after)
        if mark is None:
            return False
        try:
            info = await self._redis.xinfo_stream(self.key)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return mark != (0, 0)  # it had changes once (`after`), now none: Redis lost the stream
            raise
        if mark == (0, 0):  # from the beginning: lost if anything was ever trimmed (Redis >= 7 counts)
            added = info.get("entries-added")
            return added is not None and int(added) > int(info.get("length", 0))
        first = info.get("first-entry")
        if not first:
            return False
        raw = first[0]
        oldest = stream_id(raw.decode() if isinstance(raw, bytes) else str(raw))
        return oldest is not None and oldest > mark
