"""State + drift agent: canonical events -> customer state -> drift lifecycle -> drift/audit/commands.

Keyed by customer key on `concord.canonical`. Per Faust event (a single canonical event, a batch
of them, a deadline tick, or a person's action: accept, snooze, retry, approve or reject, each also a
checkpoint `action.<kind>` with their name): for each customer it touches, the state is loaded once, every
event applied (`tables.state.apply`), the rules reading what changed evaluated
(`drift.lifecycle.evaluate`), and the state written back once (`table[key] = ...`, which reaches
the changelog). Transitions go to `concord.drift`, commands to `concord.commands`, and checkpoints of
the events that changed the state, the transitions and the commands to `concord.audit` (one record
per customer and kind of step: connectors/timeline.py). The event is acknowledged only after the body
ran, and Faust flushes these writes before it commits the offset: after a crash the event is processed
again, and dedup plus deterministic command ids make that harmless.

The customers' reported findings are mirrored to the drift index and their ids, emails and names to the
search index (both in Redis, written in the background), each only when what it shows changed; after
recovery, a rebalance or a Redis that lost either index, every owned customer is mirrored again.

No record stops the stream (a poison pill would crash the agent again on every restart): one that
cannot be decoded (malformed, too deep, too large) goes to `concord.dlq.ingest` with its bytes,
original headers, a reason and where it was read; one whose processing raises (a bug) is logged with
its traceback and dead-lettered the same way (reason `state_error`), and the next record is processed.

Metrics of the findings (docs/metrics.md): `concord_findings_open` counts the reported, unresolved
findings of the customers this worker owns (`OpenFindings`), so summed across the state workers it is
the board; `concord_drift_time_to_resolve_seconds` is observed as each finding resolves. Transitions
worth a person's attention are offered to the notifier (connectors/notify.py), which never makes the
stream wait.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import faust

from concord.agents.faust_internals.changelog import ChangelogWriter, RecordBatchWriter
from concord.agents.faust_internals.recovery import recovery_finished
from concord.agents.ingest import dead_letter_headers
from concord.agents.saga import SagaRunner, Signal
from concord.codecs import records
from concord.codecs.errors import as_decode_error
from concord.codecs.model import AccountMerged, CanonicalEvent
from concord.codecs.model import encode as encode_event
from concord.connectors import timeline
from concord.connectors.executor import REDIS_ERRORS
from concord.connectors.reconcile import reconcile_changes_key
from concord.connectors.rereads import reread_unread
from concord.connectors.search_index import card_of, terms_changed
from concord.core import messages, metrics
from concord.core.messages import DriftItem, iso_minutes, now_ms
from concord.core.partitioning import partition_for
from concord.drift import lifecycle
from concord.drift.config import DriftConfig
from concord.drift.rule import Rule
from concord.drift.sections import sections_of
from concord.tables import state as st
from concord.tables.identity import merge_routing

if TYPE_CHECKING:
    from concord.agents.context import Concord
    from concord.connectors.notify import Notifier

#: How long the counts of what reconciliation passes changed are kept after the last one was written.
CHANGES_KEPT_S: Final = 7 * 86400
#: The correlation ids of a reconciliation's records (`reconcile:<pass id>`, `reconcile-dry-run:<pass id>`).
_LISTED: Final = (lifecycle.RECONCILE_PASS, lifecycle.RECONCILE_DRY_RUN)

log = logging.getLogger("concord.state")


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


def due_of(state: st.CustomerState) -> int:
    """When the customer must be looked at again without an event: its findings' or its sagas' deadline."""
    dues = [due for due in (state.next_due, state.saga_due) if due > 0]
    return min(dues) if dues else 0


class OpenFindings:
    """The reported, unresolved findings of the customers this worker owns, by (rule, severity, status).

    Kept up to date as a customer's findings change, and counted again from the table when the worker's
    partitions change (`rebuild`): a worker never counts a customer another worker owns, so the gauge
    summed across the workers is the whole board (in the seconds between a rebalance and the recount, a
    customer that moved may be counted by both). Published by the deadline timer, not per event.
    """

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._changed = False

    def add(self, items: Iterable[DriftItem], sign: int = 1) -> None:
        """Count the active ones among `items` (`sign` -1: no longer count them)."""
        for item in items:
            if item.status in lifecycle.ACTIVE:
                self._counts[(item.rule, item.severity, item.status)] += sign
                self._changed = True

    def change(self, before: Iterable[DriftItem], after: Iterable[DriftItem]) -> None:
        """A customer's findings went from `before` to `after`."""
        self.add(before, -1)
        self.add(after)

    def clear(self) -> None:
        """Count from zero (the series already published stay, at 0 until counted again)."""
        for key in self._counts:
            self._counts[key] = 0
        self._changed = True

    def counts(self) -> dict[tuple[str, str, str], int]:
        return dict(self._counts)

    def publish(self) -> None:
        """Bring `concord_findings_open` up to date (only when something changed since the last time)."""
        if not self._changed:
            return
        for labels, count in self._counts.items():
            metrics.findings_open.labels(*labels).set(count)
        self._changed = False


def _reported_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether what the board shows (non-pending findings) changed: pending ones are not mirrored."""
    if before is after:
        return False
    return {k: v for k, v in before.items() if v.status != "pending"} != {
        k: v for k, v in after.items() if v.status != "pending"}


def _group(message: records.StateMessage, key: str) -> dict[str, list[CanonicalEvent]]:
    if isinstance(message, records.CanonicalBatch):
        groups: dict[str, list[CanonicalEvent]] = {}
        for event in message.events:
            if event.customer_key is None:
                raise ValueError(f"batched event {event.event_id} has no customer key")
            groups.setdefault(event.customer_key, []).append(event)
        return groups
    assert not isinstance(message, messages.Tick | messages.AcceptFinding | messages.SnoozeFinding
                          | messages.RetryFinding | messages.DecideCorrection | messages.CorrectionFailed
                          | messages.SagaStepResult | messages.ResumeSaga)
    return {key: [message]}


# Customers processed between two turns of the event loop within one batch (see `process`).
_YIELD_EVERY = 64

# Young-generation GC threshold of a state worker (CPython's default is 700).
_GC_THRESHOLD0 = 50_000


def _tune_gc() -> None:
    """Collect cyclic garbage less often (never more often than configured before).

    A state batch allocates tens of thousands of short-lived objects (decoded events, new records)
    while the decoded-state cache keeps thousands of states alive. With CPython's default thresholds
    the young generations are collected every 700 allocations, the cached states are promoted into
    the old generation over and over, and full collections (each walking every cached state) ran
    every few batches: a quarter of the worker's time. With a larger young generation a batch's
    garbage is freed by reference counting before any collection sees it. Nothing here relies on
    the cyclic collector (states, events and records are acyclic); it still runs, only less often.
    """
    t0, t1, t2 = gc.get_threshold()
    if t0 > 0:  # 0: collection disabled by the operator; leave it so
        gc.set_threshold(max(t0, _GC_THRESHOLD0), max(t1, 20), t2)


def register(concord: Concord, config: DriftConfig, rules: Sequence[Rule],
             watermarks: Callable[[], Mapping[str, int]] | None = None, notifier: Notifier | None = None) -> None:
    """Add the state agent. `watermarks()` says how far Concord has read each platform (agents/watermarks.py):
    deadlines are judged only past it (drift/lifecycle.py); None judges on the clock alone. `notifier` is
    offered every transition published (agents/notify.py; None: no notifications)."""
    _tune_gc()
    app = concord.app
    settings = concord.settings
    names = concord.names
    customers = concord.table("customers")
    canonical = concord.topics[names.canonical]
    identity = concord.topics[names.identity]
    drift_topic = concord.topics[names.drift]
    commands = concord.topics[names.commands]
    dlq = concord.topics[names.dlq_ingest]
    limits = st.Limits(closed_invoices=settings.state_closed_invoices, payments=settings.state_payments,
                       refunds=settings.state_payments, closed_cases=settings.state_closed_cases)
    index = concord.drift_index
    search = concord.search_index
    deadlines = Deadlines()
    open_findings = OpenFindings()
    sagas = SagaRunner(concord, config, watermarks)

    def index_lost() -> None:
        deadlines.rebuild_needed = True  # the next scan re-mirrors every owned customer (see `rebuild`)
    index.on_lost = index_lost
    search.on_lost = index_lost
    concord.saga_index.on_lost = index_lost
    # Checkpoints go out with the event's changelog records, in one batch per partition (the customer's
    # partition: the audit topic has the canonical topic's partitions).
    audit = RecordBatchWriter(app, names.audit)

    def checkpoint(record: messages.AuditRecord, partition: int) -> None:
        audit.add((record.customer_key or "").encode(), messages.encode(record), partition)

    async def publish(verdict: lifecycle.Verdict, partition: int) -> None:
        for t in verdict.transitions:
            metrics.drift_transitions.labels(t.rule, t.status).inc()
            if t.status == lifecycle.RESOLVED and t.first_seen:
                metrics.drift_time_to_resolve.labels(t.rule).observe(max(0, t.at - t.first_seen) / 1000)
            if notifier is not None:
                notifier.offer(t)
            await drift_topic.send(key=t.customer_key.encode(), value=messages.encode(t))
            checkpoint(messages.AuditRecord(
                kind=f"drift.{t.status}", at=t.at, correlation_id=t.correlation_id, platform="concord",
                customer_key=t.customer_key,
                detail={"fingerprint": t.fingerprint, "rule": t.rule, "previous": t.previous,
                        "resolution": t.resolution, "generation": t.generation, "command_id": t.command_id},
            ), partition)
        blind = next((t for t in verdict.transitions if t.note.startswith(lifecycle.CANNOT_JUDGE)), None)
        rereads = [] if blind is None else reread_unread(
            verdict.state.key, verdict.state.support.unread, verdict.state.crm.unread, blind.at, blind.correlation_id)
        await send_commands((*verdict.commands, *rereads), partition)

    async def send_commands(sent: Iterable[messages.Command], partition: int) -> None:
        for c in sent:
            metrics.commands_emitted.labels(c.action).inc()
            await commands.send(key=messages.command_key(c), value=messages.encode(c))
            checkpoint(timeline.command_issued(c), partition)

    async def route_away(state: st.CustomerState, event: CanonicalEvent) -> bool:
        """Handle merges: re-point ids of a merged-away key, re-address its late events."""
        outcome = merge_routing(state, event)
        for repoint in outcome.repoints:
            metrics.identity_repoints.inc()
            await identity.send(key=repoint.local_id.encode(), value=messages.encode(repoint))
        for moved in outcome.readdressed:
            assert moved.customer_key is not None
            await canonical.send(key=moved.customer_key.encode(), value=encode_event(moved))
        return not outcome.keep

    cache: OrderedDict[str, st.CustomerState] = OrderedDict()
    applied, unchanged = metrics.state_events.labels("applied"), metrics.state_events.labels("unchanged")
    counts = [0, 0]  # events applied / unchanged since the metrics were last brought up to date

    def count_events() -> None:
        if counts[0]:
            applied.inc(counts[0])
        if counts[1]:
            unchanged.inc(counts[1])
        counts[0] = counts[1] = 0
    processed = metrics.events_processed.labels("state")
    changelog = ChangelogWriter(app, customers)
    # Per reconciliation pass: its records that changed what a customer's state holds (not only its versions),
    # not yet said to Redis (`publish_listed_changes`).
    listed_changes: Counter[str] = Counter()

    def load_state(key: str) -> st.CustomerState:
        """The decoded state, from the cache of recently used customers or from the table."""
        state = cache.get(key)
        if state is not None:
            cache.move_to_end(key)
            return state
        raw = customers.data.get(key)
        return st.load(raw) if raw else st.empty(key)

    def store(key: str, state: st.CustomerState, partition: int) -> None:
        cache[key] = state
        cache.move_to_end(key)
        if len(cache) > settings.state_cache_size:
            cache.popitem(last=False)
        changelog.put(key, st.dump(state), partition)

    async def process_customer(key: str, events: list[CanonicalEvent], now: int, tick: bool,
                               partition: int, signal: Signal | None = None) -> None:
        state = before = load_state(key)
        sections: set[str] = set()
        correlation = ""
        applied_events: list[CanonicalEvent] = []
        for event in events:
            correlation = event.correlation_id or event.event_id
            if (state.merged_into is not None or isinstance(event, AccountMerged)) and await route_away(state, event):
                continue
            prior = state
            state, changed = st.apply(state, event, limits)
            if changed:
                applied_events.append(event)
                sections |= sections_of(event)
                counts[0] += 1
                if event.correlation_id.startswith(_LISTED) and st.records_differ(prior, state):
                    listed_changes[event.correlation_id.split(":", 1)[1]] += 1
            else:
                counts[1] += 1
        dirty = bool(applied_events)
        moved = None
        if signal is not None or sagas.wanted(state, sections, tick, now):
            moved = sagas.move(state, now, partition, signal)
            if moved.state is not state:
                state, dirty = moved.state, True
            if moved.marks_changed:
                sections.add("sagas")
            for record in moved.checkpoints:
                checkpoint(record, partition)
        verdict = lifecycle.evaluate(state, now, rules, config, None if tick else sections, correlation,
                                     watermarks() if watermarks is not None else None)
        if verdict.state is not state:
            dirty = True
        state = verdict.state
        if dirty:
            store(key, state, partition)
        if applied_events:
            checkpoint(timeline.events_applied(key, applied_events, now), partition)
        if moved is not None:
            await send_commands(moved.commands, partition)
        await publish(verdict, partition)
        if verdict.transitions or _reported_changed(before.drift, state.drift):
            index.submit(key, state.drift.values())
            open_findings.change(before.drift.values(), state.drift.values())
        if terms_changed(before, state):
            search.submit(key, card_of(state))
        deadlines.set(key, due_of(state))

    async def settle(key: str, before: st.CustomerState, verdict: lifecycle.Verdict, partition: int) -> None:
        """Write, publish and mirror a verdict on one finding (an accept, a refused correction)."""
        store(key, verdict.state, partition)
        await publish(verdict, partition)
        index.submit(key, verdict.state.drift.values())
        open_findings.change(before.drift.values(), verdict.state.drift.values())
        deadlines.set(key, due_of(verdict.state))

    async def accept(message: messages.AcceptFinding, now: int, partition: int) -> None:
        state = load_state(message.customer_key)
        verdict = lifecycle.accept(state, message.fingerprint, now, message.by, config, note=message.note)
        verdict = lifecycle.then_rules_on_findings(verdict, now, rules, config,
                                                   watermarks=watermarks() if watermarks is not None else None)
        # The person's action is a checkpoint whatever came of it (a finding resolved meanwhile is no error).
        checkpoint(timeline.action_taken("accept", message.customer_key, message.fingerprint, message.by, now,
                                         "accepted" if verdict.transitions else "no active finding",
                                         message.note), partition)
        if not verdict.transitions:
            log.warning("accept of %s for %s: no such active finding here", message.fingerprint,
                        message.customer_key)
            return
        await settle(message.customer_key, state, verdict, partition)

    async def snooze(message: messages.SnoozeFinding, now: int, partition: int) -> None:
        state = load_state(message.customer_key)
        verdict = lifecycle.snooze(state, message.fingerprint, now, message.until, message.by, config, message.note)
        moved = verdict.state is not state
        outcome = f"snoozed until {iso_minutes(message.until)}" if moved else "no active finding"
        checkpoint(timeline.action_taken("snooze", message.customer_key, message.fingerprint, message.by, now,
                                         outcome, message.note), partition)
        if moved:
            await settle(message.customer_key, state, verdict, partition)

    async def retry(message: messages.RetryFinding, now: int, partition: int) -> None:
        state = load_state(message.customer_key)
        verdict = lifecycle.retry(state, message.fingerprint, now, rules, config, f"retry:{message.by}",
                                  watermarks() if watermarks is not None else None)
        sent = [c for c in verdict.commands if c.fingerprint == message.fingerprint]
        after = verdict.state.drift.get(message.fingerprint)
        if sent:
            outcome = f"commanded generation {sent[0].generation}"
        elif after is not None and after.awaiting:
            outcome = f"command {after.awaiting} awaiting approval"
        else:
            outcome = "no correction to retry (no active finding, a review, a dry run, or resolved now)"
        checkpoint(timeline.action_taken("retry", message.customer_key, message.fingerprint, message.by, now,
                                         outcome, message.note), partition)
        if verdict.state is not state or verdict.transitions:
            await settle(message.customer_key, state, verdict, partition)

    async def decide(message: messages.DecideCorrection, now: int, partition: int) -> None:
        state = load_state(message.customer_key)
        awaiting = state.drift[message.fingerprint].awaiting if message.fingerprint in state.drift else ""
        read = watermarks() if watermarks is not None else None
        if message.approve:
            verdict = lifecycle.approve(state, message.fingerprint, now, rules, config, f"approve:{message.by}", read)
            sent = [c for c in verdict.commands if c.fingerprint == message.fingerprint]
            outcome = (f"command {sent[0].command_id} sent" if sent else
                       "nothing sent (no correction waiting, or the finding resolved now)")
        else:
            verdict = lifecycle.reject(state, message.fingerprint, now, message.by, config, message.note)
            verdict = lifecycle.then_rules_on_findings(verdict, now, rules, config, watermarks=read)
            outcome = f"command {awaiting} not sent: escalated" if verdict.transitions else "no correction waiting"
        checkpoint(timeline.action_taken("approve" if message.approve else "reject", message.customer_key,
                                         message.fingerprint, message.by, now, outcome, message.note), partition)
        if verdict.state is not state or verdict.transitions:
            await settle(message.customer_key, state, verdict, partition)

    async def correction_failed(message: messages.CorrectionFailed, now: int, partition: int) -> None:
        state = load_state(message.customer_key)
        verdict = lifecycle.correction_failed(state, message, now, config)
        verdict = lifecycle.then_rules_on_findings(verdict, now, rules, config,
                                                   watermarks=watermarks() if watermarks is not None else None)
        if not verdict.transitions:
            return  # an older generation's command, or the finding moved on: nothing to escalate
        log.warning("finding %s of %s escalated: its correction %s was dead-lettered (%s)", message.fingerprint,
                    message.customer_key, message.command_id, message.reason)
        await settle(message.customer_key, state, verdict, partition)

    async def dead_letter(event: Any, reason: str, detail: str, value: bytes | None = None) -> None:
        """The record, as read (or `value`: the part of it that failed), to the ingest dead-letter topic (platform
        `internal`), where a person looks."""
        message = event.message
        pending = await dlq.send(
            key=message.key, value=event.value if value is None else value, headers=dead_letter_headers(
                message.headers, "internal", reason, detail, message.topic, message.partition, message.offset))
        await pending  # acknowledged before this record's offset can be committed

    @app.agent(canonical, name="concord.state", concurrency=1)
    async def process(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            key = event.message.key.decode(errors="replace") if event.message.key else ""
            try:
                message = records.decode_state(event.value)
            except Exception as exc:  # only Concord writes here: a bug or a foreign producer (any error: too deep)
                failure = as_decode_error(exc, "canonical record")
                reason = failure.reason if failure.reason in ("too_deep", "too_large") else "bad_canonical_record"
                log.error("unreadable canonical record at %s[%d]@%d (dead-lettered): %s: %s", event.message.topic,
                          event.message.partition, event.message.offset, failure.reason, failure.detail)
                metrics.state_events.labels("unreadable").inc()
                metrics.ingest_dead_letters.labels("internal", reason).inc()
                await dead_letter(event, reason, failure.detail)
                continue
            try:
                await handle(event, message, key)
            except Exception as exc:  # a bug: loud, but one record must not stop every customer's state
                log.exception("canonical record at %s[%d]@%d failed in the state agent (dead-lettered as "
                              "state_error)", event.message.topic, event.message.partition, event.message.offset)
                metrics.state_events.labels("failed").inc()
                metrics.ingest_dead_letters.labels("internal", "state_error").inc()
                await dead_letter(event, "state_error", f"{type(exc).__name__} while applying the record")

    async def process_enveloped(event: Any, customer_key: str, events: list[CanonicalEvent], now: int,
                                partition: int) -> None:
        """One customer's events of an envelope: a failure (a bug) dead-letters only that customer's events, as an
        envelope of their own, and the envelope's other customers go on."""
        try:
            await process_customer(customer_key, events, now, False, partition)
        except Exception as exc:
            log.exception("customer %s of the envelope at %s[%d]@%d failed in the state agent (its %d event(s) "
                          "dead-lettered as state_error)", customer_key, event.message.topic, event.message.partition,
                          event.message.offset, len(events))
            metrics.state_events.labels("failed").inc(len(events))
            metrics.ingest_dead_letters.labels("internal", "state_error").inc()
            await dead_letter(event, "state_error", f"{type(exc).__name__} while applying customer {customer_key}",
                              messages.encode(records.CanonicalBatch(events=events)))

    async def handle(event: Any, message: records.StateMessage, key: str) -> None:
        now = now_ms()
        started = time.perf_counter()
        partition = event.message.partition
        try:
            if isinstance(message, messages.Tick):
                metrics.deadline_ticks.inc()
                await process_customer(message.customer_key, [], now, True, partition)
            elif isinstance(message, messages.AcceptFinding):
                await accept(message, now, partition)
            elif isinstance(message, messages.SnoozeFinding):
                await snooze(message, now, partition)
            elif isinstance(message, messages.RetryFinding):
                await retry(message, now, partition)
            elif isinstance(message, messages.DecideCorrection):
                await decide(message, now, partition)
            elif isinstance(message, messages.CorrectionFailed):
                await correction_failed(message, now, partition)
            elif isinstance(message, messages.SagaStepResult | messages.ResumeSaga):
                await process_customer(message.customer_key, [], now, False, partition, message)
            else:
                groups = _group(message, key)
                for n, (customer_key, events) in enumerate(groups.items(), 1):
                    if isinstance(message, records.CanonicalBatch):
                        await process_enveloped(event, customer_key, events, now, partition)
                    else:
                        await process_customer(customer_key, events, now, False, partition)
                    if n % _YIELD_EVERY == 0:
                        # A large batch would otherwise hold the event loop for its whole run:
                        # Faust could not move fetched records into the stream meanwhile, and
                        # the Kafka client, finding them unconsumed, long-polls the broker for
                        # the other (idle) topics, which held up the next fetch of this one for
                        # up to 1.5 s. Nothing is acknowledged here (the event is acknowledged
                        # when the next one is taken), and the states written so far are in
                        # the table already.
                        await asyncio.sleep(0)
                processed.inc(len(message.events) if isinstance(message, records.CanonicalBatch) else 1)
        finally:
            count_events()
            # The states written above reach the producer before the event is acknowledged (when
            # the next one is taken), and even if the body failed half-way, as they did one by one.
            await changelog.flush()
            await sagas.flush()
            await audit.flush()
        metrics.agent_batch_seconds.labels("state").observe(time.perf_counter() - started)

    @app.on_rebalance_complete.connect
    async def _rebalanced(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        deadlines.rebuild_needed = True

    @app.on_partitions_revoked.connect
    async def _revoked(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Keys may move to another worker and come back changed: the table (recovered) is the truth.
        cache.clear()

    def rebuild() -> None:
        """Deadlines, the Redis indexes and the open findings' counts from the states this worker owns (after
        recovery/rebalance)."""
        deadlines.clear()
        open_findings.clear()
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == names.canonical}
        count = 0
        for key, raw in list(customers.data.items()):
            if partition_for(key.encode(), settings.topic_partitions) not in owned:
                # A partition that moved away keeps its states here until recovery completes (the store
                # drops them then): their new owner mirrors, counts and ticks them.
                continue
            state = st.load(raw)
            deadlines.set(key, due_of(state))
            if state.drift:
                index.submit(key, state.drift.values())
                open_findings.add(state.drift.values())
            search.submit(key, card_of(state))
            count += 1
        sagas.rebuild(owned)
        deadlines.rebuild_needed = False
        log.info("rebuilt deadline index (%d due), drift and search indexes from %d customers", len(deadlines),
                 count)

    @app.timer(interval=1.0)
    async def publish_listed_changes() -> None:
        """What each reconciliation pass changed, for its summary (`<prefix>:reconcile:changes`) and the metric."""
        if not listed_changes:
            return
        pending = dict(listed_changes)
        listed_changes.clear()
        key = reconcile_changes_key(settings.topic_prefix)
        try:
            for pass_id, count in pending.items():
                await concord.redis.hincrby(key, pass_id, count)  # type: ignore[misc]
                metrics.reconcile_changes.labels(pass_id.split("-", 1)[0]).inc(count)
            await concord.redis.expire(key, CHANGES_KEPT_S)  # a week after the last pass that changed something
        except REDIS_ERRORS:
            listed_changes.update(pending)  # said next time

    @app.timer(interval=settings.deadline_scan_seconds)
    async def scan_deadlines() -> None:
        if not recovery_finished(app):
            return
        if deadlines.rebuild_needed:
            rebuild()
        now = now_ms()
        # A customer due while a platform is read only up to before its deadline would be looked at
        # again on every scan and wait still: its tick goes once every platform is read past it.
        read = watermarks() if watermarks is not None else {}
        for key in deadlines.pop_due(min(now, *read.values()) if read else now):
            await canonical.send(key=key.encode(), value=messages.encode(messages.Tick(customer_key=key,
                                                                                       due=now_ms())))
        metrics.drift_index_backlog.set(index.backlog)
        open_findings.publish()
        metrics.search_index_backlog.set(search.backlog)

    @app.task
    async def mirror_drift() -> None:
        await index.run()

    @app.task
    async def mirror_search() -> None:
        await search.run()

    @app.task
    async def mirror_sagas() -> None:
        await sagas.mirror()

