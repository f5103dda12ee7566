"""Salesforce connector against the sandbox's sObject API: Account updates, idempotency, faults."""

from __future__ import annotations

import pytest

from concord.connectors.base import ConnectorError, ErrorKind
from concord.connectors.salesforce import SalesforceConnector
from concord.sandbox import salesforce
from tests.unit.connectors.platform_sandbox import Sandbox, command, running

UPDATE = "crm.update_customer"


def _account(box: Sandbox) -> str:
    return str(salesforce.create_account(box.world, name="Acme", country="US", currency="USD")["Id"])


async def _run(box: Sandbox, account_id: str, payload: dict[str, str], command_id: str = "cmd-1") -> int:
    connector = SalesforceConnector(box.settings)
    try:
        outcome = await connector.execute(command(UPDATE, "salesforce", {"customer_id": account_id}, payload,
                                                  command_id=command_id))
    finally:
        await connector.close()
    assert outcome.record_id == account_id
    return outcome.status


async def test_master_fields_map_to_account_fields() -> None:
    async with running() as box:
        account_id = _account(box)
        assert await _run(box, account_id, {"name": "Acme Corp", "tax_id": "DE1", "payment_terms": "Net 30",
                                             "currency": "eur"}) == 204
        assert await _run(box, account_id, {"address": "1 Main St, Springfield, DE"}, "cmd-2") == 204
        account = box.world.get("salesforce", "Account", account_id)
        assert (account["Name"], account["Tax_Id__c"], account["Payment_Terms__c"], account["CurrencyIsoCode"]) == (
            "Acme Corp", "DE1", "Net 30", "EUR")
        assert (account["BillingStreet"], account["BillingCountry"]) == ("1 Main St, Springfield", "DE")
        assert account["BillingAddress"]["street"] == "1 Main St, Springfield"


async def test_the_same_patch_twice_applies_once() -> None:
    async with running() as box:
        account_id = _account(box)
        await _run(box, account_id, {"country": "fr"})
        await _run(box, account_id, {"country": "fr"})
        assert box.world.get("salesforce", "Account", account_id)["BillingCountry"] == "FR"
        assert box.effect("salesforce", f"Account:{account_id}") == (2, 1)


async def test_missing_account_is_data_with_salesforce_error_code() -> None:
    async with running() as box:
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "001Hp0000000404AAA", {"name": "X"})
        assert caught.value.kind is ErrorKind.DATA
        assert caught.value.status == 404
        assert "NOT_FOUND" in caught.value.reason


async def test_unknown_field_is_data_before_any_call() -> None:
    async with running() as box:
        account_id = _account(box)
        with pytest.raises(ConnectorError) as caught:
            await _run(box, account_id, {"crm_account_id": "001X"})
        assert caught.value.kind is ErrorKind.DATA
        assert "no field 'crm_account_id'" in caught.value.reason
        assert box.world.effects.all() == []


async def test_expired_token_is_auth() -> None:
    async with running(salesforce_access_token="expired") as box:
        account_id = _account(box)
        with pytest.raises(ConnectorError) as caught:
            await _run(box, account_id, {"name": "X"})
        assert caught.value.kind is ErrorKind.AUTH
        assert "INVALID_SESSION_ID" in caught.value.reason


async def test_5xx_and_429_are_transient_and_apply_nothing() -> None:
    async with running() as box:
        account_id = _account(box)
        box.faults.update(b'{"salesforce": {"burst_429": 1, "retry_after": 3}}')
        with pytest.raises(ConnectorError) as throttled:
            await _run(box, account_id, {"name": "X"})
        box.faults.update(b'{"salesforce": {"error_rate": 1}}')
        with pytest.raises(ConnectorError) as failed:
            await _run(box, account_id, {"name": "X"})
        assert (throttled.value.kind, throttled.value.retry_after) == (ErrorKind.TRANSIENT, 3.0)
        assert failed.value.kind is ErrorKind.TRANSIENT
        assert box.world.get("salesforce", "Account", account_id)["Name"] == "Acme"


async def test_crash_after_apply_then_retry_does_not_apply_again() -> None:
    async with running() as box:
        account_id = _account(box)
        box.faults.update(b'{"salesforce": {"error_after_apply_rate": 1}}')
        with pytest.raises(ConnectorError) as caught:
            await _run(box, account_id, {"name": "Acme Corp"})
        box.faults.reset()
        assert await _run(box, account_id, {"name": "Acme Corp"}) == 204
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert box.effect("salesforce", f"Account:{account_id}") == (2, 1)


async def test_timeout_is_transient() -> None:
    async with running(timeout=0.2) as box:
        account_id = _account(box)
        box.faults.update(b'{"salesforce": {"timeout_rate": 1, "hang_seconds": 0.4}}')
        with pytest.raises(ConnectorError) as caught:
            await _run(box, account_id, {"name": "X"})
        assert caught.value.kind is ErrorKind.TRANSIENT


async def test_a_traversal_account_id_cannot_address_another_account() -> None:
    async with running() as box:
        attacker, victim = _account(box), _account(box)
        with pytest.raises(ConnectorError) as caught:
            await _run(box, f"{attacker}/../{victim}", {"name": "pwned"})
        assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 404)
        assert f"/Account/{attacker}%2F..%2F{victim}" in caught.value.reason
        assert [box.world.get("salesforce", "Account", a)["Name"] for a in (attacker, victim)] == ["Acme", "Acme"]
