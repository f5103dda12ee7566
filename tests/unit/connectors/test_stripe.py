"""Stripe connector against the sandbox's Stripe API: changes, idempotency, and every fault kind."""

from __future__ import annotations

import pytest

from concord.connectors.base import ConnectorError, ErrorKind
from concord.connectors.stripe import StripeConnector
from concord.sandbox import stripe
from tests.unit.connectors.platform_sandbox import Sandbox, command, running

UPDATE = "billing.update_customer"


async def _customer(box: Sandbox) -> str:
    customer = stripe.create_customer(box.world, name="Acme", country="US", salesforce_account_id="001OLD")
    return str(customer["id"])


async def test_update_name_changes_the_customer_once() -> None:
    async with running() as box:
        customer_id = await _customer(box)
        connector = StripeConnector(box.settings)
        try:
            outcome = await connector.execute(command(UPDATE, "stripe", {"customer_id": customer_id},
                                                      {"name": "Acme Corp"}))
        finally:
            await connector.close()
        assert outcome.status == 200
        assert outcome.record_id == customer_id
        assert box.world.get("stripe", "customer", customer_id)["name"] == "Acme Corp"
        assert box.effect("stripe", "cmd-1") == (1, 1)


async def test_the_same_command_twice_is_applied_once_and_replayed() -> None:
    async with running() as box:
        customer_id = await _customer(box)
        connector = StripeConnector(box.settings)
        cmd = command(UPDATE, "stripe", {"customer_id": customer_id}, {"crm_account_id": "001NEW"})
        try:
            first = await connector.execute(cmd)
            second = await connector.execute(cmd)
        finally:
            await connector.close()
        assert box.world.get("stripe", "customer", customer_id)["metadata"] == {"salesforce_account_id": "001NEW"}
        assert first.detail["replayed"] is False
        assert second.detail["replayed"] is True
        assert box.effect("stripe", "cmd-1") == (2, 1)
        assert box.world.effects.duplicates() == []


async def test_address_country_and_tax_id_map_to_stripe_fields() -> None:
    async with running() as box:
        customer_id = await _customer(box)
        connector = StripeConnector(box.settings)
        try:
            await connector.execute(command(UPDATE, "stripe", {"customer_id": customer_id},
                                            {"address": "1 Main St, Springfield, DE"}, command_id="a"))
            await connector.execute(command(UPDATE, "stripe", {"customer_id": customer_id},
                                            {"tax_id": "DE123456789"}, command_id="t"))
        finally:
            await connector.close()
        customer = box.world.get("stripe", "customer", customer_id)
        assert customer["address"]["line1"] == "1 Main St, Springfield"
        assert customer["address"]["country"] == "DE"
        assert customer["address"]["city"] is None
        assert [t["value"] for t in customer["tax_ids"]["data"]] == ["DE123456789"]


@pytest.mark.parametrize(("payload", "words"), [
    ({"currency": "EUR"}, "cannot change"),
    ({"payment_terms": "Net 30"}, "no payment terms"),
    ({"email": "a@b.c"}, "no field 'email'"),
])
async def test_fields_stripe_cannot_take_are_data_errors(payload: dict[str, str], words: str) -> None:
    async with running() as box:
        customer_id = await _customer(box)
        connector = StripeConnector(box.settings)
        with pytest.raises(ConnectorError) as caught:
            await connector.execute(command(UPDATE, "stripe", {"customer_id": customer_id}, payload))
        await connector.close()
        assert caught.value.kind is ErrorKind.DATA
        assert words in caught.value.reason
        assert box.world.effects.all() == []


async def test_missing_customer_is_data_with_stripes_message() -> None:
    async with running() as box:
        connector = StripeConnector(box.settings)
        with pytest.raises(ConnectorError) as caught:
            await connector.execute(command(UPDATE, "stripe", {"customer_id": "cus_nope"}, {"name": "X"}))
        await connector.close()
        assert caught.value.kind is ErrorKind.DATA
        assert caught.value.status == 404
        assert "No such customer: 'cus_nope'" in caught.value.reason


async def test_wrong_key_is_auth_and_the_key_is_not_in_the_reason() -> None:
    async with running(stripe_api_key="sk_test_wrong_secret_value") as box:
        customer_id = await _customer(box)
        connector = StripeConnector(box.settings)
        with pytest.raises(ConnectorError) as caught:
            await connector.execute(command(UPDATE, "stripe", {"customer_id": customer_id}, {"name": "X"}))
        await connector.close()
        assert caught.value.kind is ErrorKind.AUTH
        assert caught.value.status == 401
        assert "sk_test_wrong_secret_value" not in str(caught.value)


async def test_unknown_action_and_missing_target_are_data() -> None:
    async with running() as box:
        connector = StripeConnector(box.settings)
        with pytest.raises(ConnectorError) as unknown:
            await connector.execute(command("billing.refund", "stripe", {"customer_id": "cus_1"}))
        with pytest.raises(ConnectorError) as untargeted:
            await connector.execute(command(UPDATE, "stripe", {}, {"name": "X"}))
        await connector.close()
        assert unknown.value.kind is ErrorKind.DATA
        assert "unsupported action 'billing.refund'" in unknown.value.reason
        assert untargeted.value.kind is ErrorKind.DATA
        assert "customer_id" in untargeted.value.reason


async def test_unconfigured_stripe_is_auth_naming_the_setting() -> None:
    async with running(stripe_api_url="") as box:
        connector = StripeConnector(box.settings)
        with pytest.raises(ConnectorError) as caught:
            await connector.execute(command(UPDATE, "stripe", {"customer_id": "cus_1"}, {"name": "X"}))
        await connector.close()
        assert caught.value.kind is ErrorKind.AUTH
        assert caught.value.reason == "stripe is not configured: set CONCORD_STRIPE_API_URL"


async def test_injected_5xx_is_transient_and_applies_nothing() -> None:
    async with running() as box:
        customer_id = await _customer(box)
        box.faults.update(b'{"stripe": {"error_rate": 1.0}}')
        connector = StripeConnector(box.settings)
        with pytest.raises(ConnectorError) as caught:
            await connector.execute(command(UPDATE, "stripe", {"customer_id": customer_id}, {"name": "Acme Corp"}))
        await connector.close()
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert caught.value.status in (500, 502, 503)
        assert box.world.get("stripe", "customer", customer_id)["name"] == "Acme"
        assert box.effect("stripe", "cmd-1") == (0, 0)


async def test_429_burst_is_transient_with_retry_after() -> None:
    async with running() as box:
        customer_id = await _customer(box)
        box.faults.update(b'{"stripe": {"burst_429": 1, "retry_after": 2}}')
        connector = StripeConnector(box.settings)
        cmd = command(UPDATE, "stripe", {"customer_id": customer_id}, {"name": "Acme Corp"})
        with pytest.raises(ConnectorError) as caught:
            await connector.execute(cmd)
        outcome = await connector.execute(cmd)
        await connector.close()
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert caught.value.status == 429
        assert caught.value.retry_after == 2.0
        assert outcome.status == 200
        assert box.effect("stripe", "cmd-1") == (1, 1)


async def test_crash_after_apply_then_retry_applies_once() -> None:
    async with running() as box:
        customer_id = await _customer(box)
        box.faults.update(b'{"stripe": {"error_after_apply_rate": 1.0}}')
        connector = StripeConnector(box.settings)
        cmd = command(UPDATE, "stripe", {"customer_id": customer_id}, {"name": "Acme Corp"})
        with pytest.raises(ConnectorError) as caught:
            await connector.execute(cmd)
        assert box.world.get("stripe", "customer", customer_id)["name"] == "Acme Corp"
        box.faults.update(b'{"stripe": {"error_after_apply_rate": 0.0}}')
        outcome = await connector.execute(cmd)
        await connector.close()
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert outcome.detail["replayed"] is True
        assert box.effect("stripe", "cmd-1") == (2, 1)


async def test_timeout_is_transient() -> None:
    async with running(timeout=0.2) as box:
        customer_id = await _customer(box)
        box.faults.update(b'{"stripe": {"timeout_rate": 1.0, "hang_seconds": 0.4}}')
        connector = StripeConnector(box.settings)
        with pytest.raises(ConnectorError) as caught:
            await connector.execute(command(UPDATE, "stripe", {"customer_id": customer_id}, {"name": "Acme Corp"}))
        await connector.close()
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert "no answer within 0.2s" in caught.value.reason


async def test_a_traversal_customer_id_cannot_address_another_customer() -> None:
    # "cus_A/../cus_B" once normalized to cus_B's URL: the update landed on the other customer.
    async with running() as box:
        attacker, victim = await _customer(box), await _customer(box)
        connector = StripeConnector(box.settings)
        try:
            with pytest.raises(ConnectorError) as caught:
                await connector.execute(command(UPDATE, "stripe", {"customer_id": f"{attacker}/../{victim}"},
                                                {"name": "pwned", "tax_id": "DE1"}))
        finally:
            await connector.close()
        assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 404)
        assert f"/v1/customers/{attacker}%2F..%2F{victim}" in caught.value.reason
        assert f"No such customer: '{attacker}/../{victim}'" in caught.value.reason  # one id, decoded back
        assert [box.world.get("stripe", "customer", c)["name"] for c in (attacker, victim)] == ["Acme", "Acme"]
