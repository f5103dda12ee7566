"""build_connectors: one connector per platform, together executing every platform action the rules emit."""

from __future__ import annotations

from concord.app.settings import Settings
from concord.connectors.registry import build_connectors

RULE_ACTIONS = {
    "zendesk": {"support.suspend_entitlement", "support.grant_entitlement", "support.set_tier",
                "support.update_customer", "support.fetch_organization"},
    "netsuite": {"erp.upsert_invoice", "erp.apply_payment", "erp.create_credit_memo", "erp.upsert_customer",
                 "erp.update_customer"},
    "stripe": {"billing.update_customer"},
    "salesforce": {"crm.update_customer"},
}


async def test_every_platform_has_a_connector_for_its_actions() -> None:
    connectors = build_connectors(Settings())
    try:
        assert {name: set(c.actions) for name, c in connectors.items()} == RULE_ACTIONS
        assert all(c.platform == name for name, c in connectors.items())
    finally:
        for connector in connectors.values():
            await connector.close()
