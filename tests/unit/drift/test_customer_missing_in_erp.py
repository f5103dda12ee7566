from __future__ import annotations

import msgspec

from concord.codecs.model import Platform
from concord.drift.rules.customer_missing_in_erp import RULE
from tests.unit.drift.builders import HOUR, KEY, account, customer, only, opportunity, run, state_of, systems, won

STRIPE, NETSUITE = Platform.STRIPE, Platform.NETSUITE


def test_fires_for_a_won_account_without_erp_customer() -> None:
    state = state_of(account(HOUR, name="Acme", country="US", currency="USD"), won("006A", 2 * HOUR))
    finding = only(run(RULE, state))
    assert finding.subject == KEY
    assert finding.since == 2 * HOUR
    assert finding.action.name == "erp.upsert_customer"
    assert finding.action.target == {"external_id": KEY}
    assert finding.action.payload == {"name": "Acme", "currency": "USD", "country": "US"}
    assert systems(finding) == {"salesforce", "netsuite"}
    assert (finding.evidence[-1].record, finding.evidence[-1].value) == ("", None)


def test_fires_for_a_billing_customer_and_takes_each_field_from_its_owner() -> None:
    state = state_of(account(HOUR, name="Acme Inc", country="DE", currency="EUR"),
                     customer(STRIPE, "cus_1", 3 * HOUR, name="ACME", currency="USD", country="FR"))
    finding = only(run(RULE, state))
    assert finding.since == 3 * HOUR
    # name and country belong to the CRM, currency to billing (the default ownership)
    assert finding.action.payload == {"name": "Acme Inc", "currency": "USD", "country": "DE"}
    assert systems(finding) == {"stripe", "netsuite"}


def test_owner_without_a_value_falls_back() -> None:
    state = state_of(customer(STRIPE, "cus_1", HOUR, name="Acme", country="FR"))
    assert only(run(RULE, state)).action.payload == {"name": "Acme", "currency": None, "country": "FR"}


def test_since_is_the_first_trigger() -> None:
    state = state_of(customer(STRIPE, "cus_1", 5 * HOUR), won("006A", 2 * HOUR))
    assert only(run(RULE, state)).since == 2 * HOUR


def test_silent_without_a_won_deal_or_billing_customer() -> None:
    assert run(RULE, state_of(account(HOUR, name="Acme"), opportunity("006A", HOUR, stage="Prospecting"))) == []
    assert run(RULE, state_of(won("006A", HOUR), opportunity("006A", 2 * HOUR, deleted=True))) == []
    assert run(RULE, state_of(customer(STRIPE, "cus_1", HOUR, deleted=True))) == []


def test_converges_when_the_erp_customer_appears() -> None:
    state = state_of(won("006A", HOUR))
    assert run(RULE, state)
    assert run(RULE, state_of(customer(NETSUITE, "9001", 2 * HOUR), base=state)) == []


def test_fingerprint_stable_while_values_change() -> None:
    state = state_of(won("006A", HOUR), account(HOUR, name="Acme"))
    before = only(run(RULE, state))
    state = state_of(account(2 * HOUR, name="Acme Corp"), customer(STRIPE, "cus_1", 3 * HOUR), base=state)
    after = only(run(RULE, state))
    assert after.fingerprint == before.fingerprint
    assert after.action.payload["name"] == "Acme Corp"


def test_a_won_deal_a_saga_took_is_the_sagas_to_provision() -> None:
    state = state_of(won("006A", HOUR))
    assert run(RULE, state)
    for saga_state in ("running", "paused", "completed"):
        assert run(RULE, msgspec.structs.replace(state, sagas={"006A": saga_state})) == [], saga_state
