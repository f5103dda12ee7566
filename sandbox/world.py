"""The sandbox's world: the records the four platforms hold, and what was applied to them.

Records are stored as each platform's own REST API returns them (plain JSON-able dicts in the
platform's field names: a Stripe `customer` object, a Salesforce `Account` sObject, a Zendesk
`organization`, a NetSuite `invoice` record), so API responses and event payloads are cut from the
same object. Every write goes through `World.put`, which notifies listeners with a `Change`: the
event emitter turns changes into each platform's native events (Stripe Event JSON, Salesforce
CDC, Zendesk webhooks, NetSuite record events). Writes made inside `World.at_rest(clock)` are the
exception: no listener hears of them, and they are dated by `clock`. That is how the sandbox's
history (`--history`) is laid down: records that were there, months old, before anyone listened, so
no event about them ever reaches Concord and only a reconciliation can find their drift.

`Effects` counts side effects per platform and key (the `Idempotency-Key`, or the external id of an
upsert), so a test can prove no command was applied twice (`GET /_sandbox/effects`).

Refusals (`World.refuse`) are a platform's own business rules that turn one record's writes away
every time (NetSuite refusing one opportunity's sales order, say): not records, so no listener hears
of them, but kept here because the world is all the generator and the routes share.

Pure in-memory state, no I/O: the HTTP routes, the traffic generator and the emitter sit around it.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from msgspec import Struct

Platform = Literal["stripe", "salesforce", "zendesk", "netsuite"]
Op = Literal["create", "update", "delete"]
Record = dict[str, Any]


class Change(Struct, frozen=True, kw_only=True):
    """One write to a platform record, as listeners see it."""

    platform: str
    type: str  # the platform's object name: customer, subscription, invoice, Account, organization, ...
    id: str  # the record's id in that platform
    op: str  # create | update | delete
    record: Record  # the record after the write (before it, for a delete)
    previous: Record | None = None  # the record before the write (None on create)
    changed: tuple[str, ...] = ()  # top-level fields that changed (all fields on create)
    event: str = ""  # the platform's own name for what happened: "invoice.paid", "organization.updated"
    at: int = 0  # epoch ms of the write (wall clock)


class Effect(Struct, kw_only=True):
    """How often the platform really changed something for one key."""

    platform: str
    key: str  # Idempotency-Key, or "<type>:<external id>" for upserts
    kind: str  # what was done: "POST /v1/customers/cus_1", "upsert invoice", ...
    applied: int = 0  # writes that changed state (a replayed idempotent request does not count)
    requests: int = 0  # requests seen with this key (retries included)


class Effects:
    """Side effects per (platform, key); `duplicates()` lists keys applied more than once."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Effect] = {}

    def request(self, platform: str, key: str, kind: str) -> Effect:
        """A request carrying `key` arrived (count it even if it is a replay)."""
        effect = self._by_key.get((platform, key))
        if effect is None:
            effect = self._by_key[(platform, key)] = Effect(platform=platform, key=key, kind=kind)
        effect.requests += 1
        return effect

    def applied(self, platform: str, key: str, kind: str) -> None:
        """The request with `key` changed the platform's state."""
        effect = self._by_key.get((platform, key))
        if effect is None:
            effect = self._by_key[(platform, key)] = Effect(platform=platform, key=key, kind=kind)
        effect.applied += 1

    def all(self) -> list[Effect]:
        return list(self._by_key.values())

    def duplicates(self) -> list[Effect]:
        return [e for e in self._by_key.values() if e.applied > 1]


Listener = Callable[[Change], None]


class World:
    """Every platform's records, keyed by (platform, type) then id."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.effects = Effects()
        self._records: dict[tuple[str, str], dict[str, Record]] = {}
        self._listeners: list[Listener] = []
        self._ids = itertools.count(1)
        self._at_rest = False
        self._refusals: dict[tuple[str, str, str], str] = {}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def new_id(self, prefix: str) -> str:
        """A fresh id in a platform's style: new_id("cus_") -> "cus_000017"."""
        return f"{prefix}{next(self._ids):06d}"

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @contextlib.contextmanager
    def at_rest(self, clock: Callable[[], float]) -> Iterator[None]:
        """Writes inside are dated by `clock` and heard by no listener (the records were simply there).

        Listeners miss them on purpose: the emitter must not send an event about them, and nothing
        else (the traffic's D14 watch) may react. Not re-entrant; the clock is restored on exit.
        """
        if self._at_rest:
            raise RuntimeError("World.at_rest is not re-entrant")
        wall_clock, self.clock, self._at_rest = self.clock, clock, True
        try:
            yield
        finally:
            self.clock, self._at_rest = wall_clock, False

    def get(self, platform: str, type_: str, id_: str) -> Record | None:
        return self._records.get((platform, type_), {}).get(id_)

    def all(self, platform: str, type_: str) -> Iterator[Record]:
        yield from list(self._records.get((platform, type_), {}).values())

    def find(self, platform: str, type_: str, field: str, value: Any) -> Record | None:
        """The first record of a type whose top-level `field` equals `value` (external id lookups)."""
        for record in self._records.get((platform, type_), {}).values():
            if record.get(field) == value:
                return record
        return None

    def put(self, platform: str, type_: str, id_: str, record: Record, event: str = "") -> Change | None:
        """Create or replace a record; listeners hear of it. Returns None when nothing changed."""
        table = self._records.setdefault((platform, type_), {})
        previous = table.get(id_)
        if previous == record:
            return None
        table[id_] = record
        changed = tuple(sorted(k for k in record if previous is None or previous.get(k) != record.get(k)))
        change = Change(platform=platform, type=type_, id=id_, op="create" if previous is None else "update",
                        record=record, previous=previous, changed=changed, event=event, at=self.now_ms())
        self._notify(change)
        return change

    def delete(self, platform: str, type_: str, id_: str, event: str = "") -> Change | None:
        previous = self._records.get((platform, type_), {}).pop(id_, None)
        if previous is None:
            return None
        change = Change(platform=platform, type=type_, id=id_, op="delete", record=previous, previous=previous,
                        event=event, at=self.now_ms())
        self._notify(change)
        return change

    def refuse(self, platform: str, type_: str, key: str, reason: str) -> None:
        """From now on `platform` refuses every write of its `type_` record keyed `key`, saying `reason`."""
        self._refusals[(platform, type_, key)] = reason

    def refusal(self, platform: str, type_: str, key: str) -> str | None:
        """Why `platform` refuses writes of that record, or None when it accepts them."""
        return self._refusals.get((platform, type_, key))

    def _notify(self, change: Change) -> None:
        if self._at_rest:
            return
        for listener in self._listeners:
            listener(change)
