"""The global drift index in Redis: every reported finding of every worker, for `/api/drift`.

Workers own customers by partition; the board needs all of them. Each worker mirrors the reported
findings of the customers it owns into Redis, by customer snapshot: whenever a customer's findings
change, its current set replaces what Redis had for it (connectors/mirror.py: written in the
background, queued while Redis is down, mirrored again after recovery, a rebalance, or a Redis that
lost the index).

Keys (prefix `<topic_prefix>:drift:`): hash `f:<fingerprint>` (`json`: the finding; `status`,
`rule`, `severity`, `customer_key`, `first_seen`, `last_seen`); sorted sets (score =
first seen) `z:all`, `z:active`, `z:resolved`, `z:rule:<rule>`, `z:sev:<severity>`,
`z:status:<status>`, `z:sys:<system>` (findings with evidence from that system), and `z:cust:<customer>`
(fingerprints of one customer); `z:resolved_at` (score = when resolved, for the board's recent
resolutions); string `epoch`; and the stream `changes`, where each write also appends what changed, for the
board's live updates (connectors/drift_changes.py). Sets added later (`z:sys:*`, `z:resolved_at`) fill
when a worker re-mirrors its customers, which it does at every start.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from msgspec import Struct

from concord.connectors.drift_changes import NEW, REMOVED, RESOLVED, STATUS, UPDATED, FindingChange, changes_key, entry
from concord.connectors.mirror import RedisMirror
from concord.core.messages import DriftItem, Observation, now_ms

STATUSES: Final = ("open", "commanded", "escalated", "resolved")
SEVERITIES: Final = ("low", "medium", "high", "critical")
#: The systems evidence comes from (`Observation.system`), each with a set of its findings.
SYSTEMS: Final = ("salesforce", "stripe", "zendesk", "netsuite", "concord")
#: Finding changes kept in the change log by default (`CONCORD_DRIFT_CHANGES_KEPT`).
CHANGES_KEPT: Final = 10_000


class IndexedFinding(Struct, frozen=True, kw_only=True):
    """A finding as `/api/drift` shows it."""

    fingerprint: str
    rule: str
    customer_key: str
    status: str
    severity: str
    first_seen: int
    last_seen: int
    since: int
    subject: str
    summary: str = ""
    action: str = "review"
    dry_run: bool = False
    generation: int = 0
    command_id: str = ""
    resolution: str | None = None
    resolved_at: int = 0
    evidence: tuple[Observation, ...] = ()
    note: str = ""  # why it was escalated
    awaiting: str = ""  # the command waiting for a person's approval (a rule in `mode: approve`)


def indexed(customer_key: str, item: DriftItem) -> IndexedFinding:
    return IndexedFinding(
        fingerprint=item.fingerprint, rule=item.rule, customer_key=customer_key, status=item.status,
        severity=item.severity, first_seen=item.first_seen, last_seen=item.last_seen, since=item.since,
        subject=item.subject, summary=item.summary, action=item.action, dry_run=item.dry_run,
        generation=item.generation, command_id=item.command_id, resolution=item.resolution,
        resolved_at=item.resolved_at, evidence=item.evidence, note=item.note, awaiting=item.awaiting,
    )


def change_kind(before: IndexedFinding | None, after: IndexedFinding | None) -> str | None:
    """What changed for a person looking at the board, from the index's record to the new one; None: nothing.

    `last_seen` alone is no change: an active finding is seen again at every evaluation of its rule.
    """
    if after is None:
        return REMOVED if before is not None else None
    if before is None:
        return NEW
    if before.status != after.status:
        return RESOLVED if after.status == "resolved" else STATUS
    if _encode(msgspec.structs.replace(before, last_seen=after.last_seen)) != _encode(after):
        return UPDATED
    return None


def finding_change(kind: str, before: IndexedFinding | None, after: IndexedFinding | None, at: int) -> FindingChange:
    """The change log's entry for a finding that went from `before` to `after` (one of them is not None)."""
    now = after if after is not None else before
    assert now is not None
    return FindingChange(kind=kind, fingerprint=now.fingerprint, customer_key=now.customer_key, rule=now.rule,
                         severity=now.severity, status=now.status if after is not None else "",
                         previous=before.status if before is not None else "", at=at)


def reported(items: Iterable[DriftItem]) -> list[DriftItem]:
    """Items the board shows: everything but the pending ones (younger than their grace)."""
    return [i for i in items if i.status != "pending"]


class Page(Struct, frozen=True):
    total: int
    offset: int
    limit: int
    items: list[IndexedFinding]


_encode = msgspec.json.Encoder().encode
_decode_finding = msgspec.json.Decoder(IndexedFinding).decode


class DriftIndex(RedisMirror[list[DriftItem]]):
    """Mirror of reported findings in Redis (writes in the background) and the query behind the API."""

    name = "drift index"

    def __init__(self, client: aioredis.Redis, prefix: str, flush_interval: float = 0.2,
                 changes_kept: int = CHANGES_KEPT) -> None:
        super().__init__(client, f"{prefix}:drift:", flush_interval)
        self._changes = changes_key(prefix)
        self._changes_kept = changes_kept

    def submit(self, customer_key: str, items: Iterable[DriftItem]) -> None:
        """Queue the customer's current findings (the latest snapshot wins)."""
        super().submit(customer_key, reported(items))

    async def _write(self, batch: dict[str, list[DriftItem]]) -> None:
        p = self._p
        current = [indexed(key, item) for key, items in batch.items() for item in items]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.zrange(f"{p}z:cust:{key}", 0, -1)
            for f in current:  # what the index holds now, to tell what changed
                pipe.hget(f"{p}f:{f.fingerprint}", "json")
            replies = await pipe.execute()
        previous, before = replies[: len(batch)], replies[len(batch):]
        gone = [
            fp.decode()
            for (_, items), old in zip(batch.items(), previous, strict=True)
            for fp in old
            if fp.decode() not in {i.fingerprint for i in items}
        ]
        # Their records say which rule / severity / customer sets to leave.
        old_records = await self._fetch(gone)
        at = now_ms()
        changes: list[FindingChange] = []
        async with self._redis.pipeline(transaction=True) as pipe:
            for raw in old_records:
                if raw:
                    old = _decode_finding(raw)
                    self._remove(pipe, old)
                    changes.append(finding_change(REMOVED, old, None, at))
            for f, raw in zip(current, before, strict=True):
                self._add(pipe, f)
                old_finding = _decode_finding(raw) if raw else None
                kind = change_kind(old_finding, f)
                if kind is not None:
                    changes.append(finding_change(kind, old_finding, f, at))
            # In the same transaction: a reader of the change log never sees a change the index does not hold.
            for change in changes:
                pipe.xadd(self._changes, entry(change), maxlen=self._changes_kept, approximate=True)
            await pipe.execute()

    def _remove(self, pipe: Any, f: IndexedFinding) -> None:
        p, fp = self._p, f.fingerprint
        pipe.delete(f"{p}f:{fp}")
        pipe.zrem(f"{p}z:rule:{f.rule}", fp)
        pipe.zrem(f"{p}z:sev:{f.severity}", fp)
        pipe.zrem(f"{p}z:cust:{f.customer_key}", fp)
        pipe.zrem(f"{p}z:all", fp)
        pipe.zrem(f"{p}z:active", fp)
        pipe.zrem(f"{p}z:resolved", fp)
        pipe.zrem(f"{p}z:resolved_at", fp)
        for status in STATUSES:
            pipe.zrem(f"{p}z:status:{status}", fp)
        for system in {*SYSTEMS, *(o.system for o in f.evidence)}:
            pipe.zrem(f"{p}z:sys:{system}", fp)

    def _add(self, pipe: Any, f: IndexedFinding) -> None:
        p = self._p
        score = {f.fingerprint: f.first_seen}
        for sev in SEVERITIES:  # severity may change by configuration: leave the old set
            if sev != f.severity:
                pipe.zrem(f"{p}z:sev:{sev}", f.fingerprint)
        # A hash per finding: the full record as JSON, plus the fields an operator greps for.
        pipe.hset(f"{p}f:{f.fingerprint}", mapping={
            "json": _encode(f), "status": f.status, "rule": f.rule, "severity": f.severity,
            "customer_key": f.customer_key, "first_seen": f.first_seen, "last_seen": f.last_seen,
        })
        pipe.zadd(f"{p}z:all", score)
        pipe.zadd(f"{p}z:rule:{f.rule}", score)
        pipe.zadd(f"{p}z:sev:{f.severity}", score)
        pipe.zadd(f"{p}z:cust:{f.customer_key}", score)
        for status in STATUSES:
            if status != f.status:
                pipe.zrem(f"{p}z:status:{status}", f.fingerprint)
        pipe.zadd(f"{p}z:status:{f.status}", score)
        systems = {o.system for o in f.evidence}
        for system in SYSTEMS:
            if system not in systems:
                pipe.zrem(f"{p}z:sys:{system}", f.fingerprint)
        for system in systems:
            pipe.zadd(f"{p}z:sys:{system}", score)
        if f.status == "resolved":
            pipe.zrem(f"{p}z:active", f.fingerprint)
            pipe.zadd(f"{p}z:resolved", score)
            pipe.zadd(f"{p}z:resolved_at", {f.fingerprint: f.resolved_at})
        else:
            pipe.zrem(f"{p}z:resolved", f.fingerprint)
            pipe.zrem(f"{p}z:resolved_at", f.fingerprint)
            pipe.zadd(f"{p}z:active", score)

    async def query(self, status: str = "open", rule: str | None = None, customer_key: str | None = None,
                    severity: str | None = None, offset: int = 0, limit: int = 50,
                    rules: Collection[str] | None = None, system: str | None = None) -> Page:
        """Findings newest first. status: open (not resolved), resolved, all, or an exact status; `rules`:
        any of these rules (an owner's, say; empty: none); `system`: with evidence from that system."""
        p = self._p
        sets = [{"open": f"{p}z:active", "resolved": f"{p}z:resolved", "all": f"{p}z:all"}.get(
            status, f"{p}z:status:{status}")]
        if rule:
            sets.append(f"{p}z:rule:{rule}")
        if customer_key:
            sets.append(f"{p}z:cust:{customer_key}")
        if severity:
            sets.append(f"{p}z:sev:{severity}")
        if system:
            sets.append(f"{p}z:sys:{system}")
        if rules is not None and not rules:
            return Page(total=0, offset=offset, limit=limit, items=[])
        if rules is not None and len(rules) == 1:
            sets.append(f"{p}z:rule:{next(iter(rules))}")
        if rules is not None and len(rules) > 1:
            # Any of several rules: their union, held in a key of this query's own for the intersection.
            union = f"{p}tmp:{uuid.uuid4().hex}"
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zunionstore(union, [f"{p}z:rule:{r}" for r in sorted(rules)], aggregate="MAX")
                pipe.zinter([*sets, union], withscores=True, aggregate="MAX")
                pipe.delete(union)
                _, scored, _ = await pipe.execute()
            ordered = [fp for fp, _ in sorted(scored, key=lambda pair: (-pair[1], pair[0]))]
            total = len(ordered)
            ids = ordered[offset: offset + limit]
        elif len(sets) == 1:
            total = await self._redis.zcard(sets[0])
            ids = await self._redis.zrevrange(sets[0], offset, offset + limit - 1)
        else:
            scored = await self._redis.zinter(sets, withscores=True, aggregate="MAX")
            ordered = [fp for fp, _ in sorted(scored, key=lambda pair: (-pair[1], pair[0]))]
            total = len(ordered)
            ids = ordered[offset: offset + limit]
        raws = await self._fetch([fp.decode() for fp in ids])
        return Page(total=total, offset=offset, limit=limit, items=[_decode_finding(r) for r in raws if r])

    async def _fetch(self, fingerprints: list[str]) -> list[bytes | None]:
        if not fingerprints:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for fp in fingerprints:
                pipe.hget(f"{self._p}f:{fp}", "json")
            return list(await pipe.execute())

    async def get(self, fingerprint: str) -> IndexedFinding | None:
        raw = await self._redis.hget(f"{self._p}f:{fingerprint}", "json")
        return _decode_finding(raw) if raw else None

    async def open_counts(self, customer_keys: Iterable[str]) -> dict[str, int]:
        """How many reported findings of each customer are not resolved (open, commanded, escalated)."""
        keys = list(customer_keys)
        if not keys:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zintercard(2, [f"{self._p}z:cust:{key}", f"{self._p}z:active"])
            counts = await pipe.execute()
        return {key: int(count) for key, count in zip(keys, counts, strict=True)}

    async def counts(self, rules: Sequence[str]) -> dict[str, dict[str, int]]:
        """Open (not resolved) findings per rule and severity: rule -> severity -> count (zeros left out)."""
        p = self._p
        pairs = [(rule, sev) for rule in rules for sev in SEVERITIES]
        async with self._redis.pipeline(transaction=False) as pipe:
            for rule, sev in pairs:
                pipe.zintercard(3, [f"{p}z:active", f"{p}z:rule:{rule}", f"{p}z:sev:{sev}"])
            found = await pipe.execute()
        out: dict[str, dict[str, int]] = {}
        for (rule, sev), count in zip(pairs, found, strict=True):
            if count:
                out.setdefault(rule, {})[sev] = int(count)
        return out

    async def recently_resolved(self, limit: int) -> list[IndexedFinding]:
        """The `limit` findings resolved last, the newest first."""
        ids = await self._redis.zrevrange(f"{self._p}z:resolved_at", 0, limit - 1)
        raws = await self._fetch([fp.decode() for fp in ids])
        return [_decode_finding(r) for r in raws if r]
