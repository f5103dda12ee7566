"""The global drift index in Redis: every reported finding of every worker, for `/api/drift`.

Workers own customers by partition; the board needs all of them. Each worker mirrors the reported
findings of the customers it owns into Redis, by customer snapshot: whenever a customer's findings
change, its current set replaces what Redis had for it (connectors/mirror.py: written in the
background, queued while Redis is down, mirrored again after recovery, a rebalance, or a Redis that
lost the index).

Keys (prefix `<topic_prefix>:drift:`): hash `f:<fingerprint>` (`json`: the finding; `status`,
`rule`, `severity`, `customer_key`, `first_seen`, `last_seen`); sorted sets (score =
first seen) `z:all`, `z:active`, `z:resolved`, `z:rule:<rule>`, `z:sev:<severity>`,
`z:status:<status>`, and `z:cust:<customer>` (fingerprints of one customer); string `epoch`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from msgspec import Struct

from concord.connectors.mirror import RedisMirror
from concord.core.messages import DriftItem, Observation

STATUSES: Final = ("open", "commanded", "escalated", "resolved")
SEVERITIES: Final = ("low", "medium", "high", "critical")


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


def indexed(customer_key: str, item: DriftItem) -> IndexedFinding:
    return IndexedFinding(
        fingerprint=item.fingerprint, rule=item.rule, customer_key=customer_key, status=item.status,
        severity=item.severity, first_seen=item.first_seen, last_seen=item.last_seen, since=item.since,
        subject=item.subject, summary=item.summary, action=item.action, dry_run=item.dry_run,
        generation=item.generation, command_id=item.command_id, resolution=item.resolution,
        resolved_at=item.resolved_at, evidence=item.evidence, note=item.note,
    )


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

    def __init__(self, client: aioredis.Redis, prefix: str, flush_interval: float = 0.2) -> None:
        super().__init__(client, f"{prefix}:drift:", flush_interval)

    def submit(self, customer_key: str, items: Iterable[DriftItem]) -> None:
        """Queue the customer's current findings (the latest snapshot wins)."""
        super().submit(customer_key, reported(items))

    async def _write(self, batch: dict[str, list[DriftItem]]) -> None:
        p = self._p
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.zrange(f"{p}z:cust:{key}", 0, -1)
            previous = await pipe.execute()
        gone = [
            fp.decode()
            for (_, items), old in zip(batch.items(), previous, strict=True)
            for fp in old
            if fp.decode() not in {i.fingerprint for i in items}
        ]
        # Their records say which rule / severity / customer sets to leave.
        old_records = await self._fetch(gone)
        async with self._redis.pipeline(transaction=True) as pipe:
            for raw in old_records:
                if raw:
                    self._remove(pipe, _decode_finding(raw))
            for key, items in batch.items():
                for item in items:
                    self._add(pipe, indexed(key, item))
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
        for status in STATUSES:
            pipe.zrem(f"{p}z:status:{status}", fp)

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
        if f.status == "resolved":
            pipe.zrem(f"{p}z:active", f.fingerprint)
            pipe.zadd(f"{p}z:resolved", score)
        else:
            pipe.zrem(f"{p}z:resolved", f.fingerprint)
            pipe.zadd(f"{p}z:active", score)

    async def query(self, status: str = "open", rule: str | None = None, customer_key: str | None = None,
                    severity: str | None = None, offset: int = 0, limit: int = 50) -> Page:
        """Findings newest first. status: open (not resolved), resolved, all, or an exact status."""
        p = self._p
        sets = [{"open": f"{p}z:active", "resolved": f"{p}z:resolved", "all": f"{p}z:all"}.get(
            status, f"{p}z:status:{status}")]
        if rule:
            sets.append(f"{p}z:rule:{rule}")
        if customer_key:
            sets.append(f"{p}z:cust:{customer_key}")
        if severity:
            sets.append(f"{p}z:sev:{severity}")
        if len(sets) == 1:
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
