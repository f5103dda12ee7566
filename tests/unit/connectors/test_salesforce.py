"""Salesforce connector against the sandbox's sObject API: Account updates, record re-reads, idempotency, faults."""

from __future__ import annotations

import time

import msgspec
import pytest

from concord.codecs import salesforce as salesforce_codec
from concord.codecs.model import AccountUpserted, OpportunityChanged
from concord.codecs.salesforce import record_fields
from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.salesforce import SalesforceConnector, _answered_at, tombstone
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


# ---- crm.fetch_record: the re-read after a gap event ---------------------------------------------

FETCH = "crm.fetch_record"


async def _fetch(box: Sandbox, object_type: str, record_id: str) -> Outcome:
    connector = SalesforceConnector(box.settings)
    try:
        return await connector.execute(command(FETCH, "salesforce", {"record_id": record_id, "object": object_type}))
    finally:
        await connector.close()


async def test_fetch_returns_the_record_as_salesforce_does_with_the_fields_the_codec_reads() -> None:
    async with running() as box:
        account_id = str(salesforce.create_account(box.world, name="Acme", country="DE", street="1 Main St",
                                                   city="Berlin", postal_code="10115", currency="EUR",
                                                   tax_id="DE1")["Id"])
        outcome = await _fetch(box, "Account", account_id)
        stored = box.world.get("salesforce", "Account", account_id)
        fetched = msgspec.json.decode(outcome.fetched)
        assert (outcome.status, outcome.record_id) == (200, account_id)
        assert fetched == {"attributes": stored["attributes"],
                           **{name: stored[name] for name in record_fields("Account")}}  # asked for, nothing more
        read = salesforce_codec.decode(outcome.fetched)[0]
        assert isinstance(read, AccountUpserted)
        assert (read.name, read.country, read.currency, read.tax_id, read.address, read.payment_terms) == (
            "Acme", "DE", "EUR", "DE1", "1 Main St, Berlin, 10115, DE", None)


async def test_fetch_reads_an_opportunity_with_the_configured_plan_field() -> None:
    async with running() as box:
        account_id = _account(box)
        opportunity = salesforce.create_opportunity(box.world, account_id, name="Deal", amount=12_345, plan="pro")
        salesforce.close_won(box.world, opportunity["Id"])
        outcome = await _fetch(box, "Opportunity", opportunity["Id"])
        read = salesforce_codec.decode(outcome.fetched)[0]
        assert isinstance(read, OpportunityChanged)
        assert (read.account_id, read.stage, read.is_won, read.amount, read.plan) == (
            account_id, "Closed Won", True, 12_345, "pro")


async def test_a_record_gone_comes_back_as_a_deletion_as_of_when_salesforce_said_so() -> None:
    async with running() as box:
        before = int(time.time()) * 1000
        outcome = await _fetch(box, "Account", "001Hp0000000404AAA")
        after = int(time.time() + 1) * 1000
        assert outcome.status == 404 and outcome.detail["deleted"] is True
        assert "NOT_FOUND" in outcome.detail["error"]
        [gone] = salesforce_codec.decode(outcome.fetched)
        assert isinstance(gone, AccountUpserted) and gone.deleted
        assert gone.entity.id == "001Hp0000000404AAA"
        assert before <= gone.occurred_at <= after  # the sandbox's Date header: Salesforce's clock, to the second


def test_a_tombstone_is_timed_by_the_date_header_else_by_the_clock() -> None:
    assert _answered_at("Mon, 31 Mar 2025 12:00:00 GMT", lambda: 0.0) == 1_743_422_400_000
    assert _answered_at(None, lambda: 1_743_422_400.25) == 1_743_422_400_250
    assert _answered_at("not a date", lambda: 1.0) == 1_000
    body = msgspec.json.decode(tombstone("Opportunity", "006Hp0000000001AAA", "/services/data/v60.0/sobjects",
                                         1_743_422_400_250))
    assert body == {"attributes": {"type": "Opportunity",
                                   "url": "/services/data/v60.0/sobjects/Opportunity/006Hp0000000001AAA"},
                    "Id": "006Hp0000000001AAA", "IsDeleted": True, "SystemModstamp": "2025-03-31T12:00:00.250+0000"}


async def test_a_field_the_org_does_not_have_is_data_naming_it() -> None:
    async with running(salesforce_plan_field="Product__c") as box:
        opportunity = salesforce.create_opportunity(box.world, _account(box), name="Deal", amount=100)
        with pytest.raises(ConnectorError) as caught:
            await _fetch(box, "Opportunity", opportunity["Id"])
        assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 400)
        assert "Product__c" in caught.value.reason and "INVALID_FIELD" in caught.value.reason


async def test_a_fetch_that_names_no_readable_record_is_data_before_any_call() -> None:
    async with running() as box:
        for object_type, record_id in (("Contact", "003Hp0000000001AAA"), ("Account", "001/../006Hp0000000001AAA"),
                                       ("Account", "")):
            with pytest.raises(ConnectorError) as caught:
                await _fetch(box, object_type, record_id)
            assert caught.value.kind is ErrorKind.DATA and caught.value.status is None


async def test_a_failing_fetch_is_transient() -> None:
    async with running() as box:
        box.faults.update(b'{"salesforce": {"error_rate": 1}}')
        with pytest.raises(ConnectorError) as caught:
            await _fetch(box, "Account", _account(box))
        assert caught.value.kind is ErrorKind.TRANSIENT
