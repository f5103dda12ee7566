from __future__ import annotations

import pytest

from concord.drift.finding import REVIEW
from concord.drift.rules.entitlement_unpaid import RULE
from tests.unit.drift.builders import HOUR, entitlement, only, run, state_of, subscription, systems


def test_fires_when_every_subscription_has_ended() -> None:
    state = state_of(entitlement("org_1", "active", 1 * HOUR), subscription("sub_1", "canceled", 2 * HOUR))
    finding = only(run(RULE, state))
    assert finding.subject == "org_1"
    assert finding.since == 2 * HOUR
    assert finding.action.name == "support.suspend_entitlement"
    assert finding.action.platform == "zendesk"
    assert finding.action.target == {"organization_id": "org_1"}
    assert systems(finding) == {"zendesk", "stripe"}
    assert [(o.record, o.value, o.version) for o in finding.evidence] == [
        ("org_1", "active", 1 * HOUR), ("sub_1", "canceled", 2 * HOUR)]


def test_fires_without_any_subscription_since_the_entitlement() -> None:
    finding = only(run(RULE, state_of(entitlement("org_1", "Active", 3 * HOUR))))
    assert finding.since == 3 * HOUR
    missing = finding.evidence[1]
    assert (missing.system, missing.record, missing.value) == ("stripe", "", None)


@pytest.mark.parametrize("status", ["active", "trialing", "past_due", "incomplete"])
def test_silent_while_a_subscription_is_paying_or_in_dunning(status: str) -> None:
    state = state_of(entitlement("org_1", "active", HOUR), subscription("sub_1", "canceled", HOUR),
                     subscription("sub_2", status, 2 * HOUR))
    assert run(RULE, state) == []


@pytest.mark.parametrize("status", ["unpaid", "incomplete_expired", "paused"])
def test_each_ended_status_counts(status: str) -> None:
    state = state_of(entitlement("org_1", "active", HOUR), subscription("sub_1", status, 2 * HOUR))
    assert only(run(RULE, state)).evidence[1].value == status


def test_silent_when_the_entitlement_is_not_active() -> None:
    state = state_of(entitlement("org_1", "suspended", HOUR), subscription("sub_1", "canceled", HOUR))
    assert run(RULE, state) == []
    assert run(RULE, state_of(entitlement("org_1", "active", HOUR, deleted=True))) == []


def test_converges_when_support_suspends_or_billing_pays_again() -> None:
    state = state_of(entitlement("org_1", "active", HOUR), subscription("sub_1", "unpaid", 2 * HOUR))
    assert run(RULE, state)
    assert run(RULE, state_of(entitlement("org_1", "suspended", 3 * HOUR), base=state)) == []
    assert run(RULE, state_of(subscription("sub_1", "active", 3 * HOUR), base=state)) == []


def test_fingerprint_stable_while_values_change() -> None:
    state = state_of(entitlement("org_1", "active", HOUR, tier="gold"), subscription("sub_1", "unpaid", 2 * HOUR))
    before = only(run(RULE, state))
    state = state_of(entitlement("org_1", "active", 3 * HOUR, tier="silver"),
                     subscription("sub_1", "canceled", 4 * HOUR), base=state)
    after = only(run(RULE, state))
    assert after.fingerprint == before.fingerprint
    assert after.evidence[1].value == "canceled"


def test_review_when_configured() -> None:
    state = state_of(entitlement("org_1", "active", HOUR))
    assert only(run(RULE, state, action="review")).action == REVIEW
