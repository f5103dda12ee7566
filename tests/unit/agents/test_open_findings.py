"""`concord_findings_open`: a worker counts the reported, unresolved findings of the customers it owns."""

from __future__ import annotations

from concord.agents.state import OpenFindings
from concord.core.messages import DriftItem
from concord.core.metrics import REGISTRY


def item(fp: str, status: str, rule: str = "D01", severity: str = "high") -> DriftItem:
    return DriftItem(fingerprint=fp, rule=rule, subject=fp, status=status, severity=severity, since=1, due=2)


def gauge(rule: str, severity: str, status: str) -> float | None:
    return REGISTRY.get_sample_value("concord_findings_open", {"rule": rule, "severity": severity, "status": status})


def test_counts_follow_each_customer_s_findings_and_leave_pending_and_resolved_out() -> None:
    counts = OpenFindings()
    a = [item("a1", "pending"), item("a2", "open", "D14", "medium")]
    counts.add(a)
    b_before = [item("b1", "commanded")]
    counts.add(b_before)
    b_after = [item("b1", "escalated")]
    counts.change(b_before, b_after)
    a_after = [item("a1", "open"), item("a2", "resolved", "D14", "medium")]
    counts.change(a, a_after)
    assert {k: v for k, v in counts.counts().items() if v} == {
        ("D01", "high", "escalated"): 1, ("D01", "high", "open"): 1}
    counts.publish()
    assert gauge("D01", "high", "open") == 1
    assert gauge("D14", "medium", "open") == 0  # published once, now zero: the series stays, at 0
    assert gauge("D01", "high", "commanded") == 0


def test_a_recount_starts_from_zero_and_publishes_only_after_a_change() -> None:
    counts = OpenFindings()
    counts.add([item("c1", "open", "D07", "critical"), item("c2", "open", "D07", "critical")])
    counts.publish()
    assert gauge("D07", "critical", "open") == 2
    counts.clear()  # the partitions moved: count the customers owned now
    counts.add([item("c2", "open", "D07", "critical")])
    counts.publish()
    assert gauge("D07", "critical", "open") == 1
    counts.publish()  # nothing changed: nothing to do
    assert gauge("D07", "critical", "open") == 1
