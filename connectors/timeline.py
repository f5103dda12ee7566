"""Each customer's timeline in Redis: the checkpoints of `<prefix>.audit`, the last `entries` per customer.

What goes to the audit topic, each record with the customer key and a correlation id (`AuditRecord`):

* `events.applied` (the state agent): the canonical events that changed a customer's state, one
  record per customer and Faust event (a batch of many events of one customer is one record listing
  the first `EVENTS_LISTED`); events that changed nothing (duplicates, stale changes) are not recorded;
* `drift.<status>` (the state agent): every transition of a finding;
* `command.issued` (the state agent): every corrective command, with its id and target;
* `command.<status>` (the command agents): what became of a command of a customer (done,
  already_done, dead_lettered, skipped_failed), with the error's kind and reason;
* `resync_required` (the ingest agent): records to read again, when the customer is known;
* `action.<kind>` (the state agent): what a person did to a finding from the console or the API (`accept`),
  with their name (`by`), their note and what came of it (`outcome`);
* `saga.<what>` (the state agent): a quote-to-cash saga's checkpoints (started, step_done, paused, resumed,
  compensating, completed, ...: docs/saga.md), their correlation id the opportunity id.

`checkpoint_of` turns a record into a `Checkpoint` (with a one-line summary for a person), and the store
keeps them per customer in a sorted set `<prefix>:timeline:c:<customer key>` (member: the checkpoint,
msgpack, its summary derived when read; score: its time, then its stage, so that an event, the finding
it opened and the command that followed keep that order within one millisecond), trimmed to the newest
`entries` on every write (about 320 bytes of Redis memory a checkpoint). A checkpoint written twice
is one member: the agent feeding the store (agents/timeline.py) may write a batch again after a crash
or a rebalance, and the timeline does not change. A customer's timeline expires `ttl` after its newest
checkpoint, so customers gone quiet stop taking memory.

The agent's read positions are in Redis too (hash `<prefix>:timeline:offsets`, partition -> next
offset), written in the pipeline that writes the checkpoints: the timelines and the positions cannot
disagree, and a Redis that lost the timelines lost the positions with them, so the audit topic is read
again from its beginning (its retention) and the timelines are rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from msgspec import Struct

from concord.codecs.model import CanonicalEvent
from concord.connectors.executor import CommandResult
from concord.core.messages import AuditRecord, Command

EVENTS_APPLIED: Final = "events.applied"
COMMAND_ISSUED: Final = "command.issued"
ACTION: Final = "action."
#: The prefix of a saga's checkpoints (drift/saga.py).
SAGA: Final = "saga."
#: Events listed in one `events.applied` record (the rest are only counted).
EVENTS_LISTED: Final = 10
#: Order within one millisecond: events in, then findings, then commands issued, then their results.
_STAGES: Final = (("events.", 0), ("resync", 0), ("drift.", 1), (COMMAND_ISSUED, 2), ("command.", 3))


# ---------------------------------------------------------------- what goes to the audit topic


def events_applied(customer_key: str, events: Sequence[CanonicalEvent], at: int) -> AuditRecord:
    """The audit record of the events that changed a customer's state in one Faust event (at least one)."""
    last = events[-1]
    return AuditRecord(
        kind=EVENTS_APPLIED, at=at, correlation_id=last.correlation_id or last.event_id,
        platform=last.source.value if all(e.source is last.source for e in events) else "",
        customer_key=customer_key,
        detail={"count": len(events), "events": [
            {"event_id": e.event_id, "change": type(e).__name__, "platform": e.source.value, "record": e.entity.id,
             "record_kind": e.entity.kind, "occurred_at": e.occurred_at, "correlation_id": e.correlation_id}
            for e in events[:EVENTS_LISTED]
        ]},
    )


def action_taken(kind: str, customer_key: str, fingerprint: str, by: str, at: int, outcome: str,
                 note: str = "") -> AuditRecord:
    """The audit record of a person's action on a finding (`kind`: accept): who, why and what came of it."""
    return AuditRecord(
        kind=f"{ACTION}{kind}", at=at, correlation_id=f"{kind}:{by}", platform="concord", customer_key=customer_key,
        detail={"fingerprint": fingerprint, "by": by, "note": note, "outcome": outcome},
    )


def command_issued(command: Command) -> AuditRecord:
    return AuditRecord(
        kind=COMMAND_ISSUED, at=command.created_at, correlation_id=command.correlation_id, platform=command.platform,
        customer_key=command.customer_key,
        detail={"command_id": command.command_id, "action": command.action, "fingerprint": command.fingerprint,
                "rule": command.rule, "generation": command.generation, "target": command.target},
    )


def command_result(result: CommandResult) -> AuditRecord | None:
    """The audit record of what became of a customer's command (None for a command of no customer)."""
    if not result.customer_key:
        return None
    return AuditRecord(
        kind=f"command.{result.status}", at=result.finished_at, correlation_id=result.correlation_id,
        platform=result.platform, customer_key=result.customer_key,
        detail={"command_id": result.command_id, "action": result.action, "fingerprint": result.fingerprint,
                "rule": result.rule, "attempts": result.attempts, "record_id": result.record_id,
                "error_kind": result.error_kind, "reason": result.reason[:500], "replay": result.replay},
    )


# ---------------------------------------------------------------- checkpoints


class Checkpoint(Struct, frozen=True, kw_only=True):
    """One step of a customer's timeline, as `/api/customers/{key}/timeline` shows it."""

    at: int  # epoch ms
    kind: str  # events.applied, drift.<status>, command.issued, command.<status>, resync_required
    correlation_id: str
    platform: str
    summary: str
    detail: dict[str, Any] = {}


def _summary(kind: str, platform: str, d: Mapping[str, Any]) -> str:
    if kind == EVENTS_APPLIED:
        listed = ", ".join(f"{e.get('platform')} {e.get('record_kind')} {e.get('record')}" for e in d.get("events", ()))
        count = int(d.get("count", 0))
        more = f" and {count - EVENTS_LISTED} more" if count > EVENTS_LISTED else ""
        return f"{count} event{'s' if count != 1 else ''} applied: {listed}{more}"
    if kind.startswith("drift."):
        resolution = f" ({d['resolution']})" if d.get("resolution") else ""
        return f"{d.get('rule')} {kind.removeprefix('drift.')}{resolution}: finding {d.get('fingerprint')}"
    if kind == COMMAND_ISSUED:
        return f"{d.get('action')} sent to {platform} (generation {d.get('generation')})"
    if kind.startswith("command."):
        attempts = int(d.get("attempts") or 0)
        reason = f": {d['reason']}" if d.get("reason") else ""
        return (f"{d.get('action')} {kind.removeprefix('command.')} after {attempts} "
                f"attempt{'s' if attempts != 1 else ''}{reason}")
    if kind.startswith(ACTION):
        note = f" ({d['note']})" if d.get("note") else ""
        return f"{kind.removeprefix(ACTION)} by {d.get('by')}{note}: {d.get('outcome')}, finding {d.get('fingerprint')}"
    if kind.startswith(SAGA):
        what = kind.removeprefix(SAGA).replace("_", " ")
        reason = f": {d.get('reason')}" if d.get("reason") else ""
        by = f" by {d.get('by')}" if d.get("by") else ""
        return f"saga of opportunity {d.get('opportunity_id')} {what}{by} (step {d.get('step')}){reason}"
    if kind == "resync_required":
        return f"{platform} {d.get('object_type')} {', '.join(d.get('record_ids', ()))} to read again " \
               f"({d.get('reason')})"
    return kind


def checkpoint_of(record: AuditRecord) -> tuple[str, Checkpoint] | None:
    """The customer and the checkpoint of an audit record; None for a record of no customer."""
    if not record.customer_key:
        return None
    return record.customer_key, Checkpoint(
        at=record.at, kind=record.kind, correlation_id=record.correlation_id, platform=record.platform,
        summary=_summary(record.kind, record.platform, record.detail), detail=record.detail)


def score(checkpoint: Checkpoint) -> int:
    """Where a checkpoint sorts: its time, then its stage (`_STAGES`) within the millisecond."""
    stage = next((rank for prefix, rank in _STAGES if checkpoint.kind.startswith(prefix)), 4)
    return checkpoint.at * 10 + stage


class _Stored(Struct, frozen=True, array_like=True):
    """A checkpoint as its timeline holds it: msgpack, positional, without the summary (derived when read).
    The same audit record always gives the same bytes: a member written twice is one member."""

    at: int
    kind: str
    correlation_id: str
    platform: str
    detail: dict[str, Any]


_encode = msgspec.msgpack.Encoder().encode
_decode_stored = msgspec.msgpack.Decoder(_Stored).decode


def _member(checkpoint: Checkpoint) -> bytes:
    return _encode(_Stored(checkpoint.at, checkpoint.kind, checkpoint.correlation_id, checkpoint.platform,
                           checkpoint.detail))


def _read(member: bytes) -> Checkpoint:
    s = _decode_stored(member)
    return Checkpoint(at=s.at, kind=s.kind, correlation_id=s.correlation_id, platform=s.platform,
                      summary=_summary(s.kind, s.platform, s.detail), detail=s.detail)


def bounded(checkpoints: Iterable[tuple[str, Checkpoint]], entries: int,
            oldest: int) -> dict[str, dict[bytes, int]]:
    """Per customer, the newest `entries` checkpoints from `oldest` (epoch ms) on, as members -> scores.

    A checkpoint given twice is one member; what would be trimmed at once is not written.
    """
    out: dict[str, dict[bytes, int]] = {}
    for key, checkpoint in checkpoints:
        if checkpoint.at >= oldest:
            out.setdefault(key, {})[_member(checkpoint)] = score(checkpoint)
    for key, members in out.items():
        if len(members) > entries:
            out[key] = dict(sorted(members.items(), key=lambda m: m[1], reverse=True)[:entries])
    return out


class TimelineStore:
    """The timelines in Redis: written in batches by the timeline agent, read by the API."""

    def __init__(self, client: aioredis.Redis, prefix: str, entries: int, ttl_ms: int) -> None:
        self._redis: Any = client  # the worker's one client (`Concord.redis`), closed by its owner
        self._p = f"{prefix}:timeline:"
        self.entries = entries
        self.ttl_ms = ttl_ms

    def _key(self, customer_key: str) -> str:
        return f"{self._p}c:{customer_key}"

    async def write(self, checkpoints: Iterable[tuple[str, Checkpoint]], positions: Mapping[int, int],
                    now: int) -> int:
        """Add the checkpoints (trimming each timeline to `entries`) and note the read `positions`
        (partition -> next offset) in the same pipeline; how many checkpoints were kept."""
        kept = bounded(checkpoints, self.entries, now - self.ttl_ms)
        async with self._redis.pipeline(transaction=False) as pipe:
            for customer_key, members in kept.items():
                key = self._key(customer_key)
                pipe.zadd(key, members)
                pipe.zremrangebyrank(key, 0, -(self.entries + 1))
                expires = max(members.values()) // 10 + self.ttl_ms
                pipe.pexpireat(key, expires, nx=True)  # a new timeline
                pipe.pexpireat(key, expires, gt=True)  # a later checkpoint pushes it further
            if positions:
                pipe.hset(f"{self._p}offsets", mapping={str(p): offset for p, offset in positions.items()})
            await pipe.execute()
        return sum(map(len, kept.values()))

    async def positions(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """The next offset to read of each audit partition (None: read none yet, or Redis lost them)."""
        wanted = list(partitions)
        if not wanted:
            return {}
        stored = await self._redis.hmget(f"{self._p}offsets", [str(p) for p in wanted])
        return {p: int(v) if v is not None else None for p, v in zip(wanted, stored, strict=True)}

    async def read(self, customer_key: str, limit: int) -> list[Checkpoint]:
        """The customer's newest checkpoints, newest first."""
        raws = await self._redis.zrevrange(self._key(customer_key), 0, max(limit, 1) - 1)
        return [_read(raw) for raw in raws]
