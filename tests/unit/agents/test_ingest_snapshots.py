"""How the ingest agent reads a reconciliation's snapshot: correlated with its pass (a dry run's marked)."""

from __future__ import annotations

from concord.agents.ingest import as_listed
from concord.core import messages
from concord.drift import lifecycle
from tests.unit.tables import state_builders as sb


def test_a_snapshots_events_are_correlated_with_its_pass_and_a_dry_runs_are_marked() -> None:
    events = [sb.invoice(1_000), sb.invoice(2_000, "in_2")]
    assert as_listed([("x-other", b"1")], events) == events  # a live record: as it is
    listed = as_listed([(messages.SNAPSHOT, b"stripe-1")], events)
    assert {e.correlation_id for e in listed} == {f"{lifecycle.RECONCILE_PASS}stripe-1"}
    assert [e.event_id for e in listed] == [e.event_id for e in events]
    dry = as_listed({messages.SNAPSHOT: b"stripe-2", messages.SNAPSHOT_DRY_RUN: b"1"}, events)
    assert {e.correlation_id for e in dry} == {f"{lifecycle.RECONCILE_DRY_RUN}stripe-2"}
