from __future__ import annotations

from concord.codecs.model import Platform
from concord.drift.finding import REVIEW
from concord.drift.rules.customer_master_mismatch import RULE
from tests.unit.drift.builders import HOUR, KEY, account, customer, run, state_of

STRIPE, ZENDESK, NETSUITE = Platform.STRIPE, Platform.ZENDESK, Platform.NETSUITE


def test_pushes_the_owners_value_to_each_disagreeing_record() -> None:
    state = state_of(account(HOUR, name="Acme Inc", country="US"),
                     customer(STRIPE, "cus_1", 2 * HOUR, name="Acme Inc", country="CA"),
                     customer(NETSUITE, "9001", 3 * HOUR, name="Acme Incorporated", country="US"))
    findings = {f.subject: f for f in run(RULE, state)}
    assert set(findings) == {"country|stripe:cus_1", "name|netsuite:9001"}
    country = findings["country|stripe:cus_1"]
    assert country.action.name == "billing.update_customer"
    assert country.action.platform == "stripe"
    assert country.action.target == {"customer_id": "cus_1"}
    assert country.action.payload == {"country": "US"}
    assert country.since == 2 * HOUR
    assert [(o.system, o.record, o.value) for o in country.evidence] == [
        ("salesforce", KEY, "US"), ("stripe", "cus_1", "CA")]
    name = findings["name|netsuite:9001"]
    assert (name.action.name, name.action.payload) == ("erp.update_customer", {"name": "Acme Inc"})


def test_an_owner_outside_the_crm_corrects_the_crm() -> None:
    state = state_of(account(HOUR, currency="EUR"), customer(STRIPE, "cus_1", 2 * HOUR, currency="USD"))
    [finding] = run(RULE, state)
    assert finding.subject == f"currency|salesforce:{KEY}"
    assert (finding.action.name, finding.action.platform) == ("crm.update_customer", "salesforce")
    assert finding.action.target == {"customer_id": KEY}
    assert finding.action.payload == {"currency": "USD"}


def test_names_compare_ignoring_case_and_whitespace_and_missing_values_are_skipped() -> None:
    state = state_of(account(HOUR, name="Acme  Inc", tax_id=None),
                     customer(ZENDESK, "361", HOUR, name="ACME inc"),
                     customer(NETSUITE, "9001", HOUR, name=" acme inc", tax_id="DE123"))
    assert run(RULE, state) == []


def test_ambiguous_owner_records_are_skipped() -> None:
    state = state_of(customer(STRIPE, "cus_1", HOUR, currency="USD"), customer(STRIPE, "cus_2", HOUR, currency="EUR"),
                     customer(NETSUITE, "9001", HOUR, currency="GBP"))
    assert run(RULE, state) == []


def test_ownership_is_configuration() -> None:
    state = state_of(account(HOUR, name="Acme"), customer(NETSUITE, "9001", HOUR, name="Acme GmbH"))
    [finding] = run(RULE, state, ownership={"name": "netsuite", "bogus": "salesforce", "country": "sap"})
    assert finding.subject == f"name|salesforce:{KEY}"
    assert finding.action.payload == {"name": "Acme GmbH"}


def test_converges_when_the_record_takes_the_owners_value() -> None:
    state = state_of(account(HOUR, country="US"), customer(NETSUITE, "9001", HOUR, country="CA"))
    assert run(RULE, state)
    assert run(RULE, state_of(customer(NETSUITE, "9001", 2 * HOUR, country="us"), base=state)) == []


def test_fingerprint_stable_while_values_change() -> None:
    state = state_of(account(HOUR, country="US"), customer(NETSUITE, "9001", HOUR, country="CA"))
    [before] = run(RULE, state)
    state = state_of(account(2 * HOUR, country="DE"), customer(NETSUITE, "9001", 3 * HOUR, country="FR"), base=state)
    [after] = run(RULE, state)
    assert after.fingerprint == before.fingerprint
    assert after.action.payload == {"country": "DE"}


def test_review_when_configured() -> None:
    state = state_of(account(HOUR, country="US"), customer(NETSUITE, "9001", HOUR, country="CA"))
    assert [f.action for f in run(RULE, state, action="review")] == [REVIEW]
