from __future__ import annotations

from concord.drift.finding import REVIEW, Observation
from concord.drift.rules.correction_stuck import RULE
from concord.tables.state import DriftItem, empty
from tests.unit.drift.builders import HOUR, KEY, only, run, with_drift

SIDES = (Observation(system="zendesk", record="361", field="entitlement_status", value="active"),
         Observation(system="stripe", record="sub_1", field="status", value="canceled"))


def item(status: str, last_command_at: int, fingerprint: str = "fp1", rule: str = "D01") -> DriftItem:
    return DriftItem(fingerprint=fingerprint, rule=rule, subject="361", status=status, severity="high", since=HOUR,
                     due=2 * HOUR, action="support.suspend_entitlement", generation=1,
                     last_command_at=last_command_at, command_id="c1", evidence=SIDES)


def test_a_command_older_than_the_timeout_is_probed() -> None:
    state = with_drift(empty(KEY), item("commanded", 2 * HOUR))
    finding = only(run(RULE, state, now=4 * HOUR, correction_timeout_seconds=3600))
    assert finding.subject == "fp1"
    assert finding.since == 3 * HOUR
    assert finding.action.name == "concord.probe"
    assert finding.action.platform == "concord"
    assert finding.action.target == {"fingerprint": "fp1"}
    assert finding.action.payload["command_id"] == "c1"
    assert finding.evidence[0].system == "concord"
    assert finding.evidence[1:] == SIDES


def test_respects_the_correction_timeout() -> None:
    state = with_drift(empty(KEY), item("commanded", 2 * HOUR))
    assert run(RULE, state, now=3 * HOUR, correction_timeout_seconds=3600) == []
    assert run(RULE, state, now=3 * HOUR + 1, correction_timeout_seconds=3600)


def test_escalated_items_are_reviewed_under_their_own_subject() -> None:
    state = with_drift(empty(KEY), item("escalated", 2 * HOUR))
    finding = only(run(RULE, state, now=2 * HOUR, correction_timeout_seconds=3600))
    assert finding.subject == "fp1|escalated"
    assert finding.action == REVIEW
    assert finding.since == 3 * HOUR


def test_silent_for_other_states_and_for_its_own_items() -> None:
    state = with_drift(empty(KEY), item("open", 0), item("pending", 0, "fp2"), item("resolved", HOUR, "fp3"),
                       item("commanded", HOUR, "fp4", rule="D14"))
    assert run(RULE, state, now=100 * HOUR) == []


def test_converges_when_the_item_resolves_or_is_commanded_again() -> None:
    state = with_drift(empty(KEY), item("commanded", HOUR))
    before = only(run(RULE, state, now=10 * HOUR))
    recommanded = with_drift(state, item("commanded", 9 * HOUR + HOUR // 2))
    assert run(RULE, recommanded, now=10 * HOUR) == []
    assert run(RULE, with_drift(state, item("resolved", HOUR)), now=10 * HOUR) == []
    later = only(run(RULE, with_drift(state, item("commanded", 2 * HOUR)), now=20 * HOUR))
    assert later.fingerprint == before.fingerprint
