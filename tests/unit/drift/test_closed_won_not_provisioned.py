from __future__ import annotations

import msgspec

from concord.drift.rules.closed_won_not_provisioned import RULE
from concord.tables.state import CustomerState
from tests.unit.drift.builders import HOUR, only, opportunity, run, state_of, subscription, systems, won


def test_fires_for_a_won_opportunity_without_subscription_since_it_was_won() -> None:
    state = state_of(opportunity("006A", HOUR, stage="Negotiation", amount=100), won("006A", 3 * HOUR))
    finding = only(run(RULE, state))
    assert finding.subject == "006A"
    assert finding.since == 3 * HOUR
    assert finding.action.name == "saga.resume"
    assert finding.action.platform == "concord"
    assert finding.action.target == {"opportunity_id": "006A"}
    assert systems(finding) == {"salesforce", "stripe"}
    assert (finding.evidence[1].record, finding.evidence[1].value) == ("", None)


def test_silent_for_open_lost_or_deleted_opportunities() -> None:
    assert run(RULE, state_of(opportunity("006A", HOUR, stage="Prospecting"))) == []
    assert run(RULE, state_of(opportunity("006A", HOUR, is_won=False, is_closed=True))) == []
    assert run(RULE, state_of(won("006A", HOUR), opportunity("006A", 2 * HOUR, deleted=True))) == []


def test_any_subscription_counts_even_a_canceled_one_stripe_reports_deleted() -> None:
    assert run(RULE, state_of(won("006A", HOUR), subscription("sub_1", "incomplete", 2 * HOUR))) == []
    # customer.subscription.deleted: the customer was provisioned, then canceled (D01 judges that).
    state = state_of(won("006A", HOUR), subscription("sub_1", "canceled", 2 * HOUR, deleted=True))
    assert run(RULE, state) == []
    assert only(run(RULE, state_of(won("006A", HOUR)))).subject == "006A"


def test_converges_when_billing_provisions() -> None:
    state = state_of(won("006A", HOUR))
    assert run(RULE, state)
    assert run(RULE, state_of(subscription("sub_1", "active", 2 * HOUR), base=state)) == []


def test_fingerprint_stable_while_the_opportunity_changes() -> None:
    state = state_of(won("006A", HOUR, amount=100))
    before = only(run(RULE, state))
    after = only(run(RULE, state_of(opportunity("006A", 2 * HOUR, amount=200), base=state)))
    assert after.fingerprint == before.fingerprint
    assert after.since == HOUR


def with_saga(state: CustomerState, saga_state: str) -> CustomerState:
    return msgspec.structs.replace(state, sagas={"006A": saga_state})


def test_a_saga_on_its_way_is_not_drift_a_stopped_one_is() -> None:
    state = state_of(won("006A", HOUR))
    for moving in ("running", "compensating", "completed", "compensated"):
        assert run(RULE, with_saga(state, moving)) == [], moving
    for stopped in ("paused", "failed"):
        finding = only(run(RULE, with_saga(state, stopped)))
        assert finding.evidence[-1].value == stopped and finding.action.name == "saga.resume"
        assert f"saga is {stopped}" in finding.summary
    # A saga paused after billing was provisioned (a later step timed out) is still reported.
    billed = state_of(subscription("sub_1", "active", 2 * HOUR), base=state)
    assert only(run(RULE, with_saga(billed, "paused"))).evidence[1].value == 1
    assert run(RULE, with_saga(billed, "completed")) == []
