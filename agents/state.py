"""State + drift agent: canonical events -> customer state -> drift lifecycle -> drift/audit/commands.

Keyed by customer key on `concord.canonical`. Per Faust event (a single canonical event, a batch
of them, a deadline tick or an accept): for each customer it touches, the state is loaded once, every
event applied (`tables.state.apply`), the rules reading what changed evaluated
(`drift.lifecycle.evaluate`), and the state written back once (`table[key] = ...`, which reaches
the changelog). Transitions go to `concord.drift` and `concord.audit`, commands to
`concord.commands`. The event is acknowledged only after the body ran, and Faust flushes these
writes before it commits the offset: after a crash the event is processed again, and dedup plus
deterministic command ids make that harmless.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import faust
import msgspec
from faust.serializers import codecs

from concord.app import metrics
from concord.app.drift_index import DriftIndex
from concord.app.web import recovery_finished
from concord.codecs import internal
from concord.codecs.model import AccountMerged, CanonicalEvent
from concord.codecs.model import encode as encode_event
from concord.drift import lifecycle
from concord.drift.config import DriftConfig
from concord.drift.rule import Rule
from concord.drift.sections import sections_of
from concord.tables import state as st
from concord.tables.identity import merge_routing

# The customers table's key serializer (Concord.table): JSON, as Faust encodes it.
_KEY_CODEC = codecs.get_codec("json")

if TYPE_CHECKING:
    from concord.app.factory import Concord

log = logging.getLogger("concord.state")


def now_ms() -> int:
    return int(time.time() * 1000)


class ChangelogWriter:
    """Writes a table value the way Faust does, without Faust's per-write machinery.

    The value goes into the table's local store and, as one record, to the table's changelog topic
    partition (the partition of the event being processed, as Faust's own writes do), through the
    app's producer: Faust flushes that producer before it commits the event's offset, so a crash
    never acknowledges an event whose state was not written. Recovery reads these records like any
    other changelog record. (Faust's `table[key] = value` schedules each write through a buffer and
    several tasks; at one write per customer it cost more than all of the state logic.)
    """

    def __init__(self, app: faust.App, table: Any) -> None:
        self._app = app
        self._table = table
        self._topic = table.changelog_topic.get_topic_name()

    async def put(self, key: str, value: bytes, partition: int) -> None:
        self._table.data[key] = value
        await self._app.producer.send(self._topic, _KEY_CODEC.dumps(key), value, partition, None, None)


class Deadlines:
    """Per-worker index of when each owned customer must be evaluated again (a heap; lazy deletion).

    Derived from the recovered table (each state carries its `next_due`), so it needs no changelog
    of its own: after recovery or a rebalance it is rebuilt from the states this worker owns.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}
        self.rebuild_needed = True

    def set(self, key: str, due: int) -> None:
        if due <= 0:
            self._due.pop(key, None)  # converged: cancelled (heap entry skipped when popped)
            return
        if self._due.get(key) != due:
            self._due[key] = due
            heapq.heappush(self._heap, (due, key))

    def pop_due(self, now: int) -> list[str]:
        out: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:
                del self._due[key]
                out.append(key)
        return out

    def clear(self) -> None:
        self._heap.clear()
        self._due.clear()

    def __len__(self) -> int:
        return len(self._due)


def _reported_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether what the board shows (non-pending findings) changed: pending ones are not mirrored."""
    if before is after:
        return False
    return {k: v for k, v in before.items() if v.status != "pending"} != {
        k: v for k, v in after.items() if v.status != "pending"}


def _group(message: internal.StateMessage, key: str) -> dict[str, list[CanonicalEvent]]:
    if isinstance(message, internal.CanonicalBatch):
        groups: dict[str, list[CanonicalEvent]] = {}
        for event in message.events:
            if event.customer_key is None:
                raise ValueError(f"batched event {event.event_id} has no customer key")
            groups.setdefault(event.customer_key, []).append(event)
        return groups
    assert not isinstance(message, internal.Tick | internal.AcceptFinding)
    return {key: [message]}


def register(concord: Concord, config: DriftConfig, rules: Sequence[Rule]) -> None:
    app = concord.app
    settings = concord.settings
    names = concord.names
    customers = concord.table("customers")
    canonical = concord.topics[names.canonical]
    identity = concord.topics[names.identity]
    drift_topic = concord.topics[names.drift]
    audit = concord.topics[names.audit]
    commands = concord.topics[names.commands]
    limits = st.Limits(closed_invoices=settings.state_closed_invoices, payments=settings.state_payments,
                       refunds=settings.state_payments, closed_cases=settings.state_closed_cases)
    index = DriftIndex(settings.redis_url, settings.topic_prefix)
    deadlines = Deadlines()

    async def publish(verdict: lifecycle.Verdict) -> None:
        for t in verdict.transitions:
            metrics.drift_transitions.labels(t.rule, t.status).inc()
            await drift_topic.send(key=t.customer_key.encode(), value=internal.encode(t))
            await audit.send(key=t.customer_key.encode(), value=internal.encode(internal.AuditRecord(
                kind=f"drift.{t.status}", at=t.at, correlation_id=t.correlation_id, platform="concord",
                customer_key=t.customer_key,
                detail={"fingerprint": t.fingerprint, "rule": t.rule, "previous": t.previous,
                        "resolution": t.resolution, "generation": t.generation, "command_id": t.command_id},
            )))
        for c in verdict.commands:
            metrics.commands_emitted.labels(c.action).inc()
            await commands.send(key=lifecycle.command_key(c), value=internal.encode(c))

    async def route_away(state: st.CustomerState, event: CanonicalEvent) -> bool:
        """Handle merges: re-point ids of a merged-away key, re-address its late events."""
        outcome = merge_routing(state, event)
        for repoint in outcome.repoints:
            metrics.identity_repoints.inc()
            await identity.send(key=repoint.local_id.encode(), value=internal.encode(repoint))
        for moved in outcome.readdressed:
            assert moved.customer_key is not None
            await canonical.send(key=moved.customer_key.encode(), value=encode_event(moved))
        return not outcome.keep

    cache: OrderedDict[str, st.CustomerState] = OrderedDict()
    applied, unchanged = metrics.state_events.labels("applied"), metrics.state_events.labels("unchanged")
    processed = metrics.events_processed.labels("state")
    changelog = ChangelogWriter(app, customers)

    def load_state(key: str) -> st.CustomerState:
        """The decoded state, from the cache of recently used customers or from the table."""
        state = cache.get(key)
        if state is not None:
            cache.move_to_end(key)
            return state
        raw = customers.data.get(key)
        return st.load(raw) if raw else st.empty(key)

    async def store(key: str, state: st.CustomerState, partition: int) -> None:
        cache[key] = state
        cache.move_to_end(key)
        if len(cache) > settings.state_cache_size:
            cache.popitem(last=False)
        await changelog.put(key, st.dump(state), partition)

    async def process_customer(key: str, events: list[CanonicalEvent], now: int, tick: bool,
                               partition: int) -> None:
        state = load_state(key)
        before_drift = state.drift
        sections: set[str] = set()
        correlation = ""
        dirty = False
        for event in events:
            correlation = event.correlation_id or event.event_id
            if (state.merged_into is not None or isinstance(event, AccountMerged)) and await route_away(state, event):
                continue
            state, changed = st.apply(state, event, limits)
            (applied if changed else unchanged).inc()
            if changed:
                dirty = True
                sections |= sections_of(event)
        verdict = lifecycle.evaluate(state, now, rules, config, None if tick else sections, correlation)
        if verdict.state is not state:
            dirty = True
        state = verdict.state
        if dirty:
            await store(key, state, partition)
        await publish(verdict)
        if verdict.transitions or _reported_changed(before_drift, state.drift):
            index.submit(key, state.drift.values())
        deadlines.set(key, state.next_due)

    async def accept(message: internal.AcceptFinding, now: int, partition: int) -> None:
        state = load_state(message.customer_key)
        verdict = lifecycle.accept(state, message.fingerprint, now, message.by)
        if not verdict.transitions:
            log.warning("accept of %s for %s: no such active finding here", message.fingerprint,
                        message.customer_key)
            return
        await store(message.customer_key, verdict.state, partition)
        await publish(verdict)
        index.submit(message.customer_key, verdict.state.drift.values())

    @app.agent(canonical, name="concord.state", concurrency=1)
    async def process(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            key = event.message.key.decode() if event.message.key else ""
            try:
                message = internal.decode_state(event.value)
            except msgspec.DecodeError as exc:  # only Concord writes here: a bug or a foreign producer
                log.error("unreadable canonical record at %s[%d]@%d: %s", event.message.topic,
                          event.message.partition, event.message.offset, exc)
                metrics.state_events.labels("unreadable").inc()
                continue
            now = now_ms()
            started = time.perf_counter()
            partition = event.message.partition
            if isinstance(message, internal.Tick):
                metrics.deadline_ticks.inc()
                await process_customer(message.customer_key, [], now, True, partition)
            elif isinstance(message, internal.AcceptFinding):
                await accept(message, now, partition)
            else:
                groups = _group(message, key)
                for customer_key, events in groups.items():
                    await process_customer(customer_key, events, now, False, partition)
                processed.inc(sum(map(len, groups.values())))
            metrics.agent_batch_seconds.labels("state").observe(time.perf_counter() - started)

    @app.on_rebalance_complete.connect
    async def _rebalanced(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        deadlines.rebuild_needed = True

    @app.on_partitions_revoked.connect
    async def _revoked(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Keys may move to another worker and come back changed: the table (recovered) is the truth.
        cache.clear()

    def rebuild() -> None:
        """Deadlines and the Redis index from the states this worker owns (after recovery/rebalance)."""
        deadlines.clear()
        count = 0
        for key, raw in list(customers.data.items()):
            state = st.load(raw)
            deadlines.set(key, state.next_due)
            if state.drift:
                index.submit(key, state.drift.values())
            count += 1
        deadlines.rebuild_needed = False
        log.info("rebuilt deadline index (%d due) and drift index from %d customers", len(deadlines), count)

    @app.timer(interval=settings.deadline_scan_seconds)
    async def scan_deadlines() -> None:
        if not recovery_finished(app):
            return
        if deadlines.rebuild_needed:
            rebuild()
        for key in deadlines.pop_due(now_ms()):
            await canonical.send(key=key.encode(), value=internal.encode(internal.Tick(customer_key=key,
                                                                                       due=now_ms())))
        metrics.drift_index_backlog.set(index.backlog)

    @app.task
    async def mirror_drift() -> None:
        await index.run()

    @app.on_before_shutdown.connect
    async def _close(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await index.close()

