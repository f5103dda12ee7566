from __future__ import annotations

from concord.codecs.model import Platform
from concord.drift.finding import REVIEW
from concord.drift.rules.broken_cross_reference import RULE
from tests.unit.drift.builders import HOUR, KEY, customer, merged, only, run, state_of, systems

STRIPE, ZENDESK, NETSUITE = Platform.STRIPE, Platform.ZENDESK, Platform.NETSUITE


def test_two_live_records_in_one_system_since_the_second_appeared() -> None:
    state = state_of(customer(STRIPE, "cus_1", HOUR), customer(STRIPE, "cus_2", 3 * HOUR, crm_account_id=None),
                     customer(ZENDESK, "361", HOUR))
    finding = only(run(RULE, state))
    assert finding.subject == "duplicate|stripe"
    assert finding.since == 3 * HOUR
    assert finding.action == REVIEW
    assert systems(finding) == {"salesforce", "stripe"}
    assert sorted(o.record for o in finding.evidence) == [KEY, "cus_1", "cus_2"]


def test_a_record_naming_another_account() -> None:
    state = state_of(customer(NETSUITE, "9001", 2 * HOUR, crm_account_id="001OTHER"))
    finding = only(run(RULE, state))
    assert finding.subject == "foreign|netsuite:9001"
    assert finding.since == 2 * HOUR
    assert [(o.system, o.value) for o in finding.evidence] == [("salesforce", KEY), ("netsuite", "001OTHER")]


def test_silent_for_one_record_per_system_deleted_records_and_merge_winners() -> None:
    state = state_of(customer(STRIPE, "cus_1", HOUR), customer(STRIPE, "cus_2", HOUR, deleted=True),
                     customer(ZENDESK, "361", HOUR), customer(NETSUITE, "9001", HOUR))
    assert run(RULE, state) == []
    repointed = state_of(merged("001WIN", 2 * HOUR), customer(STRIPE, "cus_1", 3 * HOUR, crm_account_id="001WIN"),
                         base=state)
    assert run(RULE, repointed) == []


def test_converges_when_the_duplicate_is_deleted() -> None:
    state = state_of(customer(ZENDESK, "361", HOUR), customer(ZENDESK, "362", HOUR))
    assert run(RULE, state)
    assert run(RULE, state_of(customer(ZENDESK, "362", 2 * HOUR, deleted=True), base=state)) == []


def test_fingerprint_stable_while_records_change() -> None:
    state = state_of(customer(ZENDESK, "361", HOUR), customer(ZENDESK, "362", HOUR))
    before = only(run(RULE, state))
    after = only(run(RULE, state_of(customer(ZENDESK, "363", 2 * HOUR, name="Acme"), base=state)))
    assert after.fingerprint == before.fingerprint
    assert len(after.evidence) == 4


def test_the_evidence_is_the_same_whatever_order_the_records_arrived_in() -> None:
    one = state_of(customer(STRIPE, "cus_2", HOUR), customer(STRIPE, "cus_1", HOUR))
    other = state_of(customer(STRIPE, "cus_1", HOUR), customer(STRIPE, "cus_2", HOUR))
    assert only(run(RULE, one)).evidence == only(run(RULE, other)).evidence
    assert [o.record for o in only(run(RULE, one)).evidence] == [KEY, "cus_1", "cus_2"]
