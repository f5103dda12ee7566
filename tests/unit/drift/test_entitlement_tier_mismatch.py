from __future__ import annotations

from concord.drift.rules.entitlement_tier_mismatch import RULE
from tests.unit.drift.builders import HOUR, entitlement, only, run, state_of, subscription, systems

TIERS = {"pro": "gold", "basic": "silver"}


def test_fires_when_the_tier_differs_from_the_plan_tier() -> None:
    state = state_of(entitlement("org_1", "active", HOUR, tier="silver"), subscription("sub_1", "active", 2 * HOUR,
                                                                                      plan="pro"))
    finding = only(run(RULE, state, plan_tiers=TIERS))
    assert finding.subject == "org_1"
    assert finding.since == 2 * HOUR
    assert finding.action.name == "support.set_tier"
    assert finding.action.target == {"organization_id": "org_1"}
    assert finding.action.payload == {"tier": "gold"}
    assert systems(finding) == {"zendesk", "stripe"}
    assert [o.value for o in finding.evidence] == ["silver", "gold"]


def test_an_active_entitlement_without_tier_disagrees() -> None:
    state = state_of(entitlement("org_1", "active", HOUR), subscription("sub_1", "active", HOUR, plan="pro"))
    assert only(run(RULE, state, plan_tiers=TIERS)).evidence[0].value is None


def test_silent_when_tiers_agree_ignoring_case() -> None:
    state = state_of(entitlement("org_1", "active", HOUR, tier="Gold "), subscription("sub_1", "active", HOUR,
                                                                                     plan="pro"))
    assert run(RULE, state, plan_tiers=TIERS) == []


def test_skips_unmapped_plans_and_no_map() -> None:
    state = state_of(entitlement("org_1", "active", HOUR, tier="bronze"), subscription("sub_1", "active", HOUR,
                                                                                      plan="enterprise"))
    assert run(RULE, state, plan_tiers=TIERS) == []
    assert run(RULE, state) == []


def test_any_paying_subscription_tier_is_accepted() -> None:
    state = state_of(entitlement("org_1", "active", HOUR, tier="silver"),
                     subscription("sub_1", "active", HOUR, plan="pro"),
                     subscription("sub_2", "active", 2 * HOUR, plan="basic"))
    assert run(RULE, state, plan_tiers=TIERS) == []


def test_converges_when_support_sets_the_tier() -> None:
    state = state_of(entitlement("org_1", "active", HOUR, tier="silver"), subscription("sub_1", "active", HOUR,
                                                                                      plan="pro"))
    assert run(RULE, state, plan_tiers=TIERS)
    assert run(RULE, state_of(entitlement("org_1", "active", 2 * HOUR, tier="gold"), base=state),
               plan_tiers=TIERS) == []


def test_fingerprint_stable_across_a_plan_change() -> None:
    state = state_of(entitlement("org_1", "active", HOUR, tier="bronze"), subscription("sub_1", "active", HOUR,
                                                                                      plan="pro"))
    before = only(run(RULE, state, plan_tiers=TIERS))
    state = state_of(subscription("sub_1", "active", 2 * HOUR, plan="basic"), base=state)
    after = only(run(RULE, state, plan_tiers=TIERS))
    assert after.fingerprint == before.fingerprint
    assert after.action.payload == {"tier": "silver"}
