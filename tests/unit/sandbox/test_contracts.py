"""The published contracts the sandbox and Concord each implement on their own, checked against each other.

The sandbox shares no code with the engine (test_independence.py), so these tests are what notices a
change on either side: webhook signatures, finding fingerprints, the expected action of each rule,
and the Salesforce field names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from concord.app import signatures
from concord.codecs import salesforce as salesforce_codec
from concord.drift import catalog
from concord.drift.finding import fingerprint as engine_fingerprint
from concord.drift.rules._common import DOMAIN as ENGINE_DOMAIN
from concord.sandbox import injection, salesforce, signing
from concord.sandbox.emit import sign_headers
from concord.sandbox.events import WebhookDelivery

Verifier = Callable[[bytes, Mapping[str, str], str, float], None]

NOW = 1_780_000_000.0
SECRET = "whsec_contract_test"
BODY = b'{"id":"evt_1","object":"event","type":"invoice.paid","name":"Caf\xc3\xa9"}'
VERIFIERS: dict[str, Verifier] = {
    "stripe": signatures.verify_stripe,
    "zendesk": signatures.verify_zendesk,
    "netsuite": signatures.verify_netsuite,
}


def _signed(platform: str, body: bytes = BODY, now: float = NOW) -> dict[str, str]:
    delivery = WebhookDelivery(platform=platform, event_id="evt_1", path=f"/webhooks/{platform}", headers={},
                               body=body)
    return sign_headers(delivery, SECRET, now)


# --- (a) webhook signatures -------------------------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(VERIFIERS))
def test_a_webhook_the_sandbox_signs_passes_concords_check(platform: str) -> None:
    VERIFIERS[platform](BODY, _signed(platform), SECRET, NOW)


@pytest.mark.parametrize("platform", sorted(VERIFIERS))
def test_a_tampered_body_fails_concords_check(platform: str) -> None:
    headers = _signed(platform)
    with pytest.raises(signatures.SignatureError, match="bad_signature"):
        VERIFIERS[platform](BODY.replace(b"paid", b"void"), headers, SECRET, NOW)


@pytest.mark.parametrize("platform", sorted(VERIFIERS))
def test_another_secret_or_an_old_signature_fails_concords_check(platform: str) -> None:
    headers = _signed(platform)
    with pytest.raises(signatures.SignatureError, match="bad_signature"):
        VERIFIERS[platform](BODY, headers, "another secret", NOW)
    with pytest.raises(signatures.SignatureError, match="stale"):
        VERIFIERS[platform](BODY, headers, SECRET, NOW + 301)


def test_the_sandbox_uses_the_header_names_concord_reads() -> None:
    assert set(_signed("stripe")) == {signatures.STRIPE_HEADER}
    assert set(_signed("netsuite")) == {signatures.NETSUITE_HEADER}
    assert set(_signed("zendesk")) == {signatures.ZENDESK_HEADER, signatures.ZENDESK_TIMESTAMP_HEADER}


def test_the_zendesk_timestamp_is_iso_8601_utc() -> None:
    assert _signed("zendesk")[signing.ZENDESK_SIGNATURE_TIMESTAMP] == "2026-05-28T20:26:40Z"


# --- (b) finding fingerprints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "customer_key", "subject"),
    [
        ("D01", "001000000000001AAA", "12345"),
        ("D05", "001000000000002AAA", "in_1Pq|361"),
        ("D09", "001000000000003AAA", "name|netsuite:42"),
        ("D14", "001000000000004AAA", "3eac6d9513fd4530c747|escalated"),
        ("D12", "001Zürich", "duplicate|stripe"),
        ("D15", "", "チケット|🎫"),
    ],
)
def test_the_sandbox_fingerprint_is_concords(rule: str, customer_key: str, subject: str) -> None:
    assert injection.fingerprint(rule, customer_key, subject) == engine_fingerprint(rule, customer_key, subject)


def test_injections_carry_concords_fingerprint_of_their_subject() -> None:
    made = injection.make("D06", "001A", 0, "paid in Stripe only", invoice_id="in_1", erp_invoice_id="361")
    assert made.subject == "in_1|361|paid_in_billing"
    assert made.fingerprint == engine_fingerprint("D06", "001A", made.subject)


# --- (c) expected actions ---------------------------------------------------------------------------


def test_the_sandbox_expects_each_rules_default_action() -> None:
    assert {rule.id: rule.defaults.action for rule in catalog.RULES} == injection.DEFAULT_ACTION
    assert tuple(injection.DEFAULT_ACTION) == injection.RULES


def test_the_sandbox_names_the_domains_concord_prefixes_actions_with() -> None:
    assert injection.DOMAIN_OF == ENGINE_DOMAIN


def test_system_actions_and_escalations() -> None:
    assert injection.expected_action("D09", "netsuite") == "erp.update_customer"
    assert injection.expected_action("D13", "stripe") == "billing.update_customer"
    assert injection.expected_action("D14") == "review"  # the sandbox injects escalations, never probes


# --- (d) Salesforce field names ---------------------------------------------------------------------


def test_the_sandbox_org_names_the_account_fields_the_codec_reads() -> None:
    assert salesforce.TAX_ID_FIELD == salesforce_codec.ACCOUNT_TAX_ID_FIELD
    assert salesforce.PAYMENT_TERMS_FIELD == salesforce_codec.ACCOUNT_PAYMENT_TERMS_FIELD


def test_the_sandbox_org_has_every_field_a_re_read_asks_for() -> None:
    from concord.sandbox.world import World

    world = World(clock=lambda: NOW)
    account = salesforce.create_account(world, name="Acme")
    opportunity = salesforce.create_opportunity(world, account["Id"], name="Deal", amount=100)
    assert set(salesforce_codec.record_fields("Account")) <= set(account)
    assert set(salesforce_codec.record_fields("Opportunity", salesforce.PLAN_FIELD)) <= set(opportunity)
