"""The quote-to-cash saga in the state agent: glue around the pure saga (drift/saga.py).

The sagas of a customer live in the `sagas` table (key: customer key, value: `SagaBook`), co-partitioned
with the `customers` table: the state agent that owns a customer runs its sagas in the same step as its
events, so a saga sees every event of its customer in order, and its table write, its commands and its
checkpoints go out with the customer's (flushed before the record is acknowledged; after a crash the
record is processed again and the deterministic command ids make that harmless).

A saga is moved when one of its customer's opportunities changed, when its deadline came (a step timed
out, or a won deal waits for every platform to be read past the win: the state agent's deadline ticks),
and on a signal: a `SagaStepResult` (the command agents report every saga command's result on the
canonical topic) or a `ResumeSaga` (a person, or D10's `saga.resume`). Each change is mirrored to Redis
for the API and the console (connectors/saga_index.py); the customer state keeps what the rules see of
it (`CustomerState.sagas`, `saga_due`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import msgspec

from concord.agents.faust_internals.changelog import ChangelogWriter
from concord.core import metrics
from concord.core.messages import AuditRecord, Command, ResumeSaga, SagaStepResult
from concord.core.partitioning import partition_for
from concord.drift import saga as sg
from concord.drift.config import DriftConfig
from concord.drift.rules._common import is_won
from concord.tables.state import CustomerState

if TYPE_CHECKING:
    from concord.agents.context import Concord

Signal = SagaStepResult | ResumeSaga


def config_of(concord: Concord, drift: DriftConfig) -> sg.SagaConfig:
    settings = concord.settings
    # A dry run commands nothing: no saga provisions a deal (D10 reports the won deals billing has no subscription of).
    return sg.SagaConfig(enabled=settings.saga_enabled and not settings.dry_run, version=settings.saga_version,
                         step_timeout_ms=int(settings.saga_step_timeout_seconds * 1000),
                         step_retries=settings.saga_step_retries, plan_tiers=drift.plan_tiers,
                         start_within_ms=int(settings.saga_start_within_seconds * 1000))


class Moved(msgspec.Struct, frozen=True, kw_only=True):
    """What running a customer's sagas produced: the new state (its saga marks), commands and checkpoints."""

    state: CustomerState
    commands: tuple[Command, ...] = ()
    checkpoints: tuple[AuditRecord, ...] = ()
    marks_changed: bool = False


class SagaRunner:
    """Loads, advances, stores and mirrors one customer's sagas (used by agents/state.py)."""

    def __init__(self, concord: Concord, drift: DriftConfig,
                 watermarks: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.config = config_of(concord, drift)
        self.table = concord.table("sagas")
        self._changelog = ChangelogWriter(concord.app, self.table)
        self._index = concord.saga_index
        self._watermarks = watermarks
        self._partitions = concord.settings.topic_partitions
        self._stopped: dict[str, str] = {}  # opportunity -> state, of the sagas waiting for a person

    def wanted(self, state: CustomerState, sections: set[str], tick: bool, now: int) -> bool:
        """Whether this customer's sagas may move now (cheap: most events touch no deal)."""
        if tick:
            return 0 < state.saga_due <= now
        if "crm.opportunities" not in sections:
            return False
        return bool(state.sagas) or any(is_won(o) for o in state.crm.opportunities.values())

    def book(self, key: str) -> sg.SagaBook:
        raw = self.table.data.get(key)
        return sg.load(raw) if raw else sg.SagaBook()

    def move(self, state: CustomerState, now: int, partition: int, signal: Signal | None = None) -> Moved:
        """Advance the customer's sagas; store and mirror them when they changed."""
        # How far every platform was read: with no watermark published yet (no ingest worker), nothing is known
        # to be read, and no saga starts (a worker reading no platform would provision deals blindly).
        read = self._watermarks() if self._watermarks is not None else None
        read_past = None if read is None else min(read.values()) if read else sg.UNREAD
        progress = sg.advance(self.book(state.key), state, now, self.config, read_past, signal)
        if progress.changed:
            self._changelog.put(state.key, sg.dump(progress.book), partition)
            self._index.submit(state.key, progress.book)
            self._count(progress.book)
        for record in progress.checkpoints:
            metrics.saga_checkpoints.labels(record.kind.removeprefix("saga.")).inc()
        marks = sg.marks(progress.book)
        marks_changed = marks != state.sagas
        if marks_changed or progress.next_due != state.saga_due:
            state = msgspec.structs.replace(state, sagas=marks, saga_due=progress.next_due)
        return Moved(state=state, commands=progress.commands, checkpoints=progress.checkpoints,
                     marks_changed=marks_changed)

    def _count(self, book: sg.SagaBook) -> None:
        """`concord_sagas_stopped`: the stopped sagas' states, counted from the sagas this worker saw stop."""
        changed = False
        for opportunity, saga in book.sagas.items():
            now = saga.state if saga.state in sg.STOPPED else None
            if self._stopped.get(opportunity) == now:
                continue
            changed = True
            if now is None:
                del self._stopped[opportunity]
            else:
                self._stopped[opportunity] = now
        if changed:
            counts = Counter(self._stopped.values())
            for state in sg.STOPPED:
                metrics.sagas_stopped.labels(state).set(counts[state])

    async def flush(self) -> None:
        await self._changelog.flush()

    def rebuild(self, owned: set[int]) -> None:
        """Mirror and count every saga of the customers this worker owns (after recovery or a rebalance)."""
        self._stopped.clear()
        for state in sg.STOPPED:
            metrics.sagas_stopped.labels(state).set(0)
        for key, raw in list(self.table.data.items()):
            if partition_for(key.encode(), self._partitions) not in owned:
                continue
            book = sg.load(raw)
            self._index.submit(key, book)
            self._count(book)

    async def mirror(self) -> None:
        await self._index.run()
