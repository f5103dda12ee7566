"""The command ledger in Redis: each command id is claimed before its platform call, so it applies once.

One hash per command, `<topic_prefix>:ledger:<command_id>` (expires `command_ledger_ttl_seconds`
after the last write): `state` (pending / done / failed), `attempts`, `replays`, `created_at`,
`updated_at` (epoch ms), what the command was (`action`, `platform`, `rule`, `customer_key`), and
the result: `outcome` (JSON: HTTP status, record id, detail) or `error_kind` + `error`.

The claim is one Lua script (atomic on the server), run before the call:

* no entry: create it `pending` -> `new`: execute.
* `done` -> skip: it was applied already (a redelivered message, a second replay).
* `pending` -> execute again: a previous run crashed between the call and the ledger write, or was
  killed mid-retry. Safe because the connector's Idempotency-Key or upsert makes the platform apply
  the command once, however often it is sent.
* `failed` -> skip, unless this is a replay: then it moves back to `pending` (atomically) with a
  fresh retry budget -> `replayed`: execute. A second replay arriving meanwhile finds it `pending`
  and executes too: the platform's idempotency key or upsert still applies it once.

`done` is final: a late write of another state (a slower duplicate run) never overwrites it.
"""

from __future__ import annotations

import enum
from typing import Any, Final, Protocol

import msgspec
import redis.asyncio as aioredis
from msgspec import Struct
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from concord.core.messages import Command

PENDING: Final = "pending"
DONE: Final = "done"
FAILED: Final = "failed"


class Verdict(enum.StrEnum):
    """What a claim found, and so what the executor does."""

    NEW = "new"  # execute
    PENDING = "pending"  # execute again (crash recovery)
    REPLAYED = "replayed"  # a failed command re-driven by `concord replay`: execute
    DONE = "done"  # skip: already applied
    FAILED = "failed"  # skip: dead-lettered, and this is not a replay

    @property
    def execute(self) -> bool:
        return self in (Verdict.NEW, Verdict.PENDING, Verdict.REPLAYED)


class StoredOutcome(Struct, frozen=True, kw_only=True):
    """What a successful call did (the part of `Outcome` worth remembering)."""

    status: int
    record_id: str = ""
    detail: dict[str, Any] = {}


class LedgerEntry(Struct, frozen=True, kw_only=True):
    """One command's ledger entry."""

    command_id: str
    state: str
    attempts: int = 0
    replays: int = 0
    created_at: int = 0
    updated_at: int = 0
    action: str = ""
    platform: str = ""
    rule: str = ""
    customer_key: str = ""
    outcome: StoredOutcome | None = None
    error_kind: str = ""
    error: str = ""


class Claim(Struct, frozen=True):
    verdict: Verdict
    entry: LedgerEntry


class Ledger(Protocol):
    """The ledger as the executor uses it (Redis here; an in-memory fake in unit tests)."""

    async def claim(self, command: Command, replay: bool, now_ms: int) -> Claim:
        """Claim `command` before calling the platform (see the module docstring for the verdicts)."""
        ...

    async def record_attempt(self, command: Command, attempts: int, now_ms: int) -> None:
        """Note that attempt number `attempts` is about to call the platform (survives a crash)."""
        ...

    async def record_done(self, command: Command, attempts: int, outcome: StoredOutcome, now_ms: int) -> None:
        ...

    async def record_failed(self, command: Command, attempts: int, error_kind: str, error: str,
                            now_ms: int) -> None:
        ...

    async def get(self, command_id: str) -> LedgerEntry | None:
        ...


_CLAIM: Final = """
local state = redis.call('HGET', KEYS[1], 'state')
local verdict
if not state then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'replays', 0, 'created_at', ARGV[1],
             'updated_at', ARGV[1], 'action', ARGV[4], 'platform', ARGV[5], 'rule', ARGV[6], 'customer_key', ARGV[7])
  verdict = 'new'
elseif state == 'failed' and ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'updated_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'error', 'error_kind')
  redis.call('HINCRBY', KEYS[1], 'replays', 1)
  verdict = 'replayed'
else
  verdict = state
end
if verdict ~= 'done' and verdict ~= 'failed' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return {verdict, redis.call('HGETALL', KEYS[1])}
"""

# ARGV: ttl, new state, now, then field/value pairs. `done` is final.
_RECORD: Final = """
if redis.call('HGET', KEYS[1], 'state') == 'done' and ARGV[2] ~= 'done' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[3], unpack(ARGV, 4))
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

_encode = msgspec.json.Encoder().encode
_decode_outcome = msgspec.json.Decoder(StoredOutcome).decode


def redis_client(url: str) -> aioredis.Redis:
    """A Redis client for the ledger and rate limits: short timeouts, one quick reconnect attempt.

    Longer outages are the executor's business (it pauses and retries with backoff), so the client
    must fail fast instead of hiding an outage in its own retries.
    """
    return aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 1))


def entry_from_hash(command_id: str, fields: dict[str, str]) -> LedgerEntry:
    """A ledger entry from the hash Redis stores (all values are strings there)."""
    raw: dict[str, Any] = dict(fields)
    outcome = raw.pop("outcome", None)
    entry = msgspec.convert({**raw, "command_id": command_id}, LedgerEntry, strict=False)
    if outcome:
        entry = msgspec.structs.replace(entry, outcome=_decode_outcome(outcome))
    return entry


def _pairs(flat: list[Any]) -> dict[str, str]:
    text = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
    return dict(zip(text[::2], text[1::2], strict=True))


class RedisLedger:
    """The ledger in Redis. Redis errors propagate: the executor decides to wait (fail closed)."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_seconds: int) -> None:
        self._redis = client
        self._prefix = f"{prefix}:ledger:"
        self._ttl = ttl_seconds
        self._claim = client.register_script(_CLAIM)
        self._record = client.register_script(_RECORD)

    def key(self, command_id: str) -> str:
        """The Redis key of a command's entry."""
        return self._prefix + command_id

    async def claim(self, command: Command, replay: bool, now_ms: int) -> Claim:
        verdict, flat = await self._claim(
            keys=[self.key(command.command_id)],
            args=[now_ms, self._ttl, "1" if replay else "0", command.action, command.platform, command.rule,
                  command.customer_key],
        )
        verdict = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        return Claim(Verdict(verdict), entry_from_hash(command.command_id, _pairs(flat)))

    async def _write(self, command: Command, state: str, now_ms: int, fields: dict[str, str | int]) -> None:
        identity = {"action": command.action, "platform": command.platform, "rule": command.rule,
                    "customer_key": command.customer_key}
        pairs = [item for kv in {**identity, **fields}.items() for item in kv]
        await self._record(keys=[self.key(command.command_id)], args=[self._ttl, state, now_ms, *pairs])

    async def record_attempt(self, command: Command, attempts: int, now_ms: int) -> None:
        await self._write(command, PENDING, now_ms, {"attempts": attempts})

    async def record_done(self, command: Command, attempts: int, outcome: StoredOutcome, now_ms: int) -> None:
        await self._write(command, DONE, now_ms, {"attempts": attempts, "outcome": _encode(outcome).decode()})

    async def record_failed(self, command: Command, attempts: int, error_kind: str, error: str,
                            now_ms: int) -> None:
        await self._write(command, FAILED, now_ms, {"attempts": attempts, "error_kind": error_kind,
                                                    "error": error[:2000]})

    async def get(self, command_id: str) -> LedgerEntry | None:
        flat = await self._redis.hgetall(self.key(command_id))  # type: ignore[misc]  # redis' stubs: sync|async
        if not flat:
            return None
        fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                  for k, v in flat.items()}
        return entry_from_hash(command_id, fields)

    async def ttl(self, command_id: str) -> int:
        """Seconds until the entry expires (-2: no entry)."""
        return int(await self._redis.ttl(self.key(command_id)))
