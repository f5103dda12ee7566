from __future__ import annotations

from concord.codecs.model import AccountMerged, CustomerUpserted, EntityRef, Platform, Version
from concord.drift.rules.merged_account_reference import RULE
from tests.unit.drift.builders import HOUR, KEY, customer, run, state_of

STRIPE, ZENDESK, NETSUITE = Platform.STRIPE, Platform.ZENDESK, Platform.NETSUITE
LOSER = "001LOSER"


def absorbed(at: int) -> AccountMerged:
    """LOSER merged into this customer (KEY), as the winner's state receives it."""
    return AccountMerged(event_id=f"merge@{at}", source=Platform.SALESFORCE, entity=EntityRef("account", LOSER),
                         occurred_at=at, version=Version(at), customer_key=KEY, winner_id=KEY, loser_ids=(LOSER,))


def records(crm: str = LOSER) -> tuple[CustomerUpserted, ...]:
    """The loser's records, re-pointed to the winner by identity, still naming the loser."""
    return (customer(STRIPE, "cus_1", HOUR, crm_account_id=crm), customer(ZENDESK, "361", HOUR, crm_account_id=crm),
            customer(NETSUITE, "9001", HOUR, crm_account_id=crm))


def test_every_record_still_naming_the_merged_away_account_is_repointed() -> None:
    state = state_of(*records(), absorbed(2 * HOUR))
    findings = {f.subject: f for f in run(RULE, state)}
    assert set(findings) == {"stripe:cus_1", "zendesk:361", "netsuite:9001"}
    stripe = findings["stripe:cus_1"]
    assert stripe.since == 2 * HOUR
    assert stripe.action.name == "billing.update_customer"
    assert stripe.action.platform == "stripe"
    assert stripe.action.target == {"customer_id": "cus_1"}
    assert stripe.action.payload == {"crm_account_id": KEY}
    assert [(o.system, o.value) for o in stripe.evidence] == [("salesforce", KEY), ("stripe", LOSER)]
    assert findings["zendesk:361"].action.name == "support.update_customer"
    assert findings["netsuite:9001"].action.name == "erp.update_customer"


def test_silent_without_a_merge_and_for_records_naming_this_account() -> None:
    assert run(RULE, state_of(*records())) == []
    assert run(RULE, state_of(*records(crm=KEY), absorbed(2 * HOUR))) == []


def test_converges_per_record_as_references_move() -> None:
    state = state_of(*records(), absorbed(2 * HOUR))
    state = state_of(customer(STRIPE, "cus_1", 3 * HOUR, crm_account_id=KEY),
                     customer(ZENDESK, "361", 3 * HOUR, crm_account_id=LOSER, deleted=True), base=state)
    assert [f.subject for f in run(RULE, state)] == ["netsuite:9001"]


def test_fingerprint_stable_while_the_record_changes() -> None:
    state = state_of(*records(), absorbed(2 * HOUR))
    before = {f.subject: f.fingerprint for f in run(RULE, state)}
    state = state_of(customer(NETSUITE, "9001", 3 * HOUR, name="Acme", crm_account_id=LOSER), base=state)
    assert {f.subject: f.fingerprint for f in run(RULE, state)} == before
