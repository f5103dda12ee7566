from __future__ import annotations

from concord.codecs.model import CustomerUpserted, Platform
from concord.drift.rules.merged_account_reference import RULE
from tests.unit.drift.builders import HOUR, KEY, customer, merged, run, state_of

STRIPE, ZENDESK, NETSUITE = Platform.STRIPE, Platform.ZENDESK, Platform.NETSUITE


def records() -> tuple[CustomerUpserted, ...]:
    return (customer(STRIPE, "cus_1", HOUR), customer(ZENDESK, "361", HOUR), customer(NETSUITE, "9001", HOUR))


def test_every_record_still_naming_the_loser_is_repointed() -> None:
    state = state_of(*records(), merged("001WIN", 2 * HOUR))
    findings = {f.subject: f for f in run(RULE, state)}
    assert set(findings) == {"stripe:cus_1", "zendesk:361", "netsuite:9001"}
    stripe = findings["stripe:cus_1"]
    assert stripe.since == 2 * HOUR
    assert stripe.action.name == "billing.update_customer"
    assert stripe.action.platform == "stripe"
    assert stripe.action.target == {"customer_id": "cus_1"}
    assert stripe.action.payload == {"crm_account_id": "001WIN"}
    assert [(o.system, o.value) for o in stripe.evidence] == [("salesforce", "001WIN"), ("stripe", KEY)]
    assert findings["zendesk:361"].action.name == "support.update_customer"
    assert findings["netsuite:9001"].action.name == "erp.update_customer"


def test_silent_without_a_merge() -> None:
    assert run(RULE, state_of(*records())) == []


def test_converges_per_record_as_references_move() -> None:
    state = state_of(*records(), merged("001WIN", 2 * HOUR))
    state = state_of(customer(STRIPE, "cus_1", 3 * HOUR, crm_account_id="001WIN"),
                     customer(ZENDESK, "361", 3 * HOUR, deleted=True), base=state)
    assert [f.subject for f in run(RULE, state)] == ["netsuite:9001"]


def test_fingerprint_stable_while_the_record_changes() -> None:
    state = state_of(*records(), merged("001WIN", 2 * HOUR))
    before = {f.subject: f.fingerprint for f in run(RULE, state)}
    state = state_of(customer(NETSUITE, "9001", 3 * HOUR, name="Acme"), base=state)
    assert {f.subject: f.fingerprint for f in run(RULE, state)} == before
