from __future__ import annotations

import pytest

from concord.drift.finding import REVIEW
from concord.drift.rules.case_without_paid_entitlement import RULE
from tests.unit.drift.builders import HOUR, case, entitlement, only, run, state_of, subscription, systems


def test_fires_for_an_open_case_without_any_entitlement_or_subscription() -> None:
    state = state_of(case("42", "open", 2 * HOUR, created_at=2 * HOUR))
    finding = only(run(RULE, state))
    assert finding.subject == "42"
    assert finding.since == 2 * HOUR
    assert finding.action == REVIEW
    assert [(o.system, o.record, o.value) for o in finding.evidence] == [
        ("zendesk", "42", "open"), ("zendesk", "", None), ("stripe", "", None)]


def test_fires_when_entitled_but_not_paying_since_the_lapse() -> None:
    state = state_of(case("42", "pending", 2 * HOUR, created_at=HOUR), entitlement("org_1", "active", HOUR),
                     subscription("sub_1", "canceled", 3 * HOUR))
    finding = only(run(RULE, state))
    assert finding.since == 3 * HOUR
    assert systems(finding) == {"zendesk", "stripe"}
    assert finding.evidence[2].value == "canceled"


@pytest.mark.parametrize("status", ["solved", "closed", "deleted"])
def test_silent_for_closed_cases(status: str) -> None:
    assert run(RULE, state_of(case("42", status, HOUR))) == []


def test_silent_when_entitled_and_paying() -> None:
    state = state_of(case("42", "open", HOUR), entitlement("org_1", "active", HOUR),
                     subscription("sub_1", "trialing", HOUR))
    assert run(RULE, state) == []


def test_converges_when_the_case_is_solved_or_the_customer_pays() -> None:
    state = state_of(case("42", "open", HOUR), entitlement("org_1", "active", HOUR))
    assert run(RULE, state)
    assert run(RULE, state_of(subscription("sub_1", "active", 2 * HOUR), base=state)) == []
    assert run(RULE, state_of(case("42", "solved", 2 * HOUR), base=state)) == []


def test_fingerprint_stable_while_the_case_is_worked() -> None:
    state = state_of(case("42", "new", HOUR))
    before = only(run(RULE, state))
    after = only(run(RULE, state_of(case("42", "open", 2 * HOUR, priority="urgent"), base=state)))
    assert after.fingerprint == before.fingerprint
    assert after.evidence[0].value == "open"
