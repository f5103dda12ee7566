from __future__ import annotations

import pytest

from concord.codecs.model import Platform
from concord.drift.rules.paying_without_entitlement import RULE
from tests.unit.drift.builders import HOUR, KEY, customer, entitlement, only, run, state_of, subscription, systems

TIERS = {"pro_monthly": "gold"}


def test_fires_for_a_paying_subscription_without_entitlement() -> None:
    state = state_of(customer(Platform.ZENDESK, "org_1", HOUR), entitlement("org_1", "suspended", HOUR),
                     subscription("sub_1", "active", 2 * HOUR, plan="pro_monthly"))
    finding = only(run(RULE, state, plan_tiers=TIERS))
    assert finding.subject == KEY
    assert finding.since == 2 * HOUR
    assert finding.action.name == "support.grant_entitlement"
    assert finding.action.target == {"organization_id": "org_1"}
    assert finding.action.payload == {"tier": "gold"}
    assert systems(finding) == {"stripe", "zendesk"}
    assert [(o.record, o.value) for o in finding.evidence] == [("sub_1", "active"), ("org_1", "suspended")]


def test_without_an_organization_targets_the_account_and_an_unmapped_plan_has_no_tier() -> None:
    finding = only(run(RULE, state_of(subscription("sub_1", "trialing", HOUR, plan="other"))))
    assert finding.action.target == {"crm_account_id": KEY}
    assert finding.action.payload == {"tier": None}
    assert (finding.evidence[1].system, finding.evidence[1].record, finding.evidence[1].value) == ("zendesk", "", None)
    assert finding.since == HOUR


def test_since_is_when_the_entitlement_lapsed_if_later() -> None:
    state = state_of(subscription("sub_1", "active", HOUR), entitlement("org_1", "active", 2 * HOUR),
                     entitlement("org_1", "expired", 5 * HOUR))
    assert only(run(RULE, state)).since == 5 * HOUR


@pytest.mark.parametrize("status", ["past_due", "canceled", "incomplete", "unpaid"])
def test_silent_when_nothing_is_paying(status: str) -> None:
    assert run(RULE, state_of(subscription("sub_1", status, HOUR))) == []


def test_silent_with_an_active_entitlement_on_any_organization() -> None:
    state = state_of(subscription("sub_1", "active", HOUR), entitlement("org_1", "suspended", HOUR),
                     entitlement("org_2", "active", HOUR))
    assert run(RULE, state) == []


def test_converges_when_the_entitlement_is_granted() -> None:
    state = state_of(subscription("sub_1", "active", HOUR))
    assert run(RULE, state)
    assert run(RULE, state_of(entitlement("org_1", "active", 2 * HOUR), base=state)) == []


def test_fingerprint_stable_across_subscriptions_and_organizations() -> None:
    state = state_of(subscription("sub_1", "active", HOUR))
    before = only(run(RULE, state))
    state = state_of(customer(Platform.ZENDESK, "org_1", 2 * HOUR), subscription("sub_2", "active", 3 * HOUR),
                     base=state)
    after = only(run(RULE, state))
    assert after.fingerprint == before.fingerprint
    assert after.evidence[0].record == "sub_2"
    assert after.action.target == {"organization_id": "org_1"}
