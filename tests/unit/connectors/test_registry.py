"""build_connectors: one connector per platform, executing every platform action the rules and the saga emit."""

from __future__ import annotations

from concord.connectors.registry import build_connectors, configured, configured_connectors
from concord.core.settings import Settings

RULE_ACTIONS = {
    "zendesk": {"support.suspend_entitlement", "support.grant_entitlement", "support.set_tier",
                "support.update_customer", "support.fetch_organization"},
    "netsuite": {"erp.upsert_invoice", "erp.apply_payment", "erp.create_credit_memo", "erp.upsert_customer",
                 "erp.update_customer"},
    "stripe": {"billing.update_customer"},
    "salesforce": {"crm.update_customer", "crm.fetch_record"},
}
# The quote-to-cash saga's steps and compensations (issue 17).
SAGA_ACTIONS = {
    "stripe": {"billing.create_customer", "billing.create_subscription", "billing.update_subscription",
               "billing.cancel_subscription"},
    "netsuite": {"erp.upsert_sales_order", "erp.cancel_sales_order"},
}


async def test_every_platform_has_a_connector_for_its_actions() -> None:
    connectors = build_connectors(Settings())
    try:
        expected = {name: actions | SAGA_ACTIONS.get(name, set()) for name, actions in RULE_ACTIONS.items()}
        assert {name: set(c.actions) for name, c in connectors.items()} == expected
        assert all(c.platform == name for name, c in connectors.items())
    finally:
        for connector in connectors.values():
            await connector.close()


async def test_only_platforms_with_url_and_credentials_get_a_connector() -> None:
    # Stripe's URL has a default: without a key it is not configured (its commands are dead-lettered).
    assert configured_connectors(Settings()) == {}
    settings = Settings(stripe_api_key="sk_test_1", zendesk_url="https://acme.zendesk.com",
                        zendesk_api_email="ops@acme.test", netsuite_url="https://1.suitetalk.api.netsuite.com")
    connectors = configured_connectors(settings)
    try:
        assert set(connectors) == {"stripe"}  # Zendesk lacks its token, NetSuite its access token
        assert configured(settings, "stripe") and not configured(settings, "zendesk")
    finally:
        for connector in connectors.values():
            await connector.close()
