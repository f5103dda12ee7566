"""Customer histories through state and rules together, without Kafka: what a worker would report."""

from __future__ import annotations

import random

import msgspec

from concord.bench.workload import history
from concord.codecs.model import CanonicalEvent, InvoiceChanged, Platform, SubscriptionChanged, Version
from concord.core import messages
from concord.drift import catalog, lifecycle
from concord.drift.config import DriftConfig
from concord.drift.sections import sections_of
from concord.tables import state as st

GRACE_MS = 60_000
CONFIG = DriftConfig(rules={k: msgspec.structs.replace(v, grace_seconds=GRACE_MS // 1000)
                            for k, v in catalog.default_configs().items()})


class Worker:
    """The state agent's pure core: apply each event, evaluate what it changed, publish transitions."""

    def __init__(self) -> None:
        self.states: dict[str, st.CustomerState] = {}
        self.transitions: list[messages.Transition] = []
        self.commands: list[messages.Command] = []

    def feed(self, events: list[CanonicalEvent], now: int) -> None:
        for event in events:
            key = event.customer_key or ""
            state, changed = st.apply(self.states.get(key) or st.empty(key), event)
            self._evaluate(key, state, now, sections_of(event) if changed else set())

    def tick(self, now: int) -> None:
        for key, state in list(self.states.items()):
            if state.next_due and now >= state.next_due:
                self._evaluate(key, state, now, None)

    def _evaluate(self, key: str, state: st.CustomerState, now: int, sections: set[str] | None) -> None:
        verdict = lifecycle.evaluate(state, now, catalog.RULES, CONFIG, sections)
        self.states[key] = verdict.state
        self.transitions += verdict.transitions
        self.commands += verdict.commands

    def reported(self) -> set[tuple[str, str, str]]:
        return {(s.key, i.rule, i.status) for s in self.states.values() for i in s.drift.values()
                if i.status != "pending"}


def customer(i: int) -> list[CanonicalEvent]:
    return history(i, random.Random(i))


def now_after(events: list[CanonicalEvent]) -> int:
    return max(e.occurred_at for e in events) + 1


def test_a_consistent_customer_reports_nothing_even_after_every_grace() -> None:
    worker = Worker()
    events = customer(1)
    now = now_after(events)
    worker.feed(events, now)
    worker.tick(now + 10 * GRACE_MS)
    assert worker.reported() == set() and worker.commands == []


def test_arrival_order_disagreements_settle_inside_the_grace_and_are_never_reported() -> None:
    worker = Worker()
    events = customer(2)
    now = now_after(events)
    worker.feed(list(reversed(events)), now)  # invoices before customers, ERP before billing...
    worker.tick(now + 10 * GRACE_MS)
    assert worker.reported() == set() and worker.transitions == []


def test_canceled_subscription_with_active_entitlement_and_open_case() -> None:
    worker = Worker()
    events = customer(3)
    now = now_after(events)
    worker.feed(events, now)
    sub = next(e for e in events if isinstance(e, SubscriptionChanged))
    worker.feed([msgspec.structs.replace(sub, event_id="evt_cancel", status="canceled", occurred_at=now,
                                         version=Version(now, 9))], now)
    key = sub.customer_key
    assert worker.reported() == set()  # younger than the grace
    worker.tick(now + GRACE_MS)
    assert worker.reported() == {(key, "D01", "commanded"), (key, "D15", "open")}
    assert [c.action for c in worker.commands] == ["support.suspend_entitlement"]


def test_invoice_missing_in_the_erp_is_corrected_when_it_arrives() -> None:
    worker = Worker()
    events = customer(4)
    erp = [e for e in events if isinstance(e, InvoiceChanged) and e.system is Platform.NETSUITE]
    now = now_after(events)
    worker.feed([e for e in events if e is not erp[-1]], now)
    worker.tick(now + GRACE_MS)
    key = events[0].customer_key
    assert worker.reported() == {(key, "D04", "commanded")}
    worker.feed([erp[-1]], now + GRACE_MS + 1)
    assert worker.reported() == {(key, "D04", "resolved")}
    assert [(t.status, t.resolution) for t in worker.transitions][-1] == ("resolved", "corrected")
