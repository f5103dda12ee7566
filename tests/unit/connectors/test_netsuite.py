"""NetSuite connector against the sandbox's REST record service: upserts, payments, credit memos, faults."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.netsuite import NetSuiteConnector
from concord.sandbox import netsuite
from tests.unit.connectors.platform_sandbox import Sandbox, command, running

ACCOUNT = "001Hp00000ACMEAAA"


async def _run(box: Sandbox, action: str, target: dict[str, str], payload: dict[str, object] | None = None,
               command_id: str = "cmd-1") -> Outcome:
    connector = NetSuiteConnector(box.settings)
    try:
        return await connector.execute(command(action, "netsuite", target, payload, command_id=command_id))
    finally:
        await connector.close()


def _invoice(box: Sandbox, external_id: str = "in_1", total: int = 12_000) -> dict[str, object]:
    customer = netsuite.upsert_customer(box.world, ACCOUNT, company_name="Acme")
    return netsuite.upsert_invoice(box.world, external_id, customer_id=customer["id"], number="INV-1", total=total,
                                   tax=2_000)


async def test_upsert_customer_creates_once_by_external_id() -> None:
    async with running() as box:
        payload = {"name": "Acme", "currency": "EUR", "country": "DE"}
        first = await _run(box, "erp.upsert_customer", {"external_id": ACCOUNT}, payload)
        await _run(box, "erp.upsert_customer", {"external_id": ACCOUNT}, payload)
        [customer] = box.world.all("netsuite", "customer")
        assert (customer["externalId"], customer["companyName"]) == (ACCOUNT, "Acme")
        assert netsuite.currency_code(customer["currency"]) == "EUR"
        assert customer["addressBook"]["items"][0]["addressBookAddress"]["country"] == {"id": "DE"}
        assert first.status == 204
        assert first.record_id == customer["id"]
        assert box.effect("netsuite", f"customer:eid:{ACCOUNT}") == (2, 1)


async def test_update_customer_patches_by_internal_id() -> None:
    async with running() as box:
        customer = netsuite.upsert_customer(box.world, ACCOUNT, company_name="Acme")
        await _run(box, "erp.update_customer", {"customer_id": customer["id"]},
                   {"name": "Acme Corp", "payment_terms": "Net 30", "tax_id": "DE1"})
        updated = box.world.get("netsuite", "customer", customer["id"])
        assert (updated["companyName"], updated["terms"]["refName"], updated["vatRegNumber"]) == (
            "Acme Corp", "Net 30", "DE1")
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "erp.update_customer", {"customer_id": customer["id"]}, {"email": "x@y.z"})
        assert caught.value.kind is ErrorKind.DATA


async def test_update_customer_repoints_the_crm_link_after_a_merge() -> None:
    # D13's correction: the ERP customer still names the merged-away account; its externalId is the link.
    async with running() as box:
        customer = netsuite.upsert_customer(box.world, "001LOSER", company_name="Acme")
        await _run(box, "erp.update_customer", {"customer_id": customer["id"]}, {"crm_account_id": ACCOUNT})
        assert box.world.get("netsuite", "customer", customer["id"])["externalId"] == ACCOUNT
        # The winner has an ERP customer of its own: NetSuite keeps external ids unique, the ERP customers
        # must be merged by a person (a data error: the finding is escalated, not commanded again).
        other = netsuite.upsert_customer(box.world, "001OTHERLOSER", company_name="Acme")
        with pytest.raises(ConnectorError) as refused:
            await _run(box, "erp.update_customer", {"customer_id": other["id"]}, {"crm_account_id": ACCOUNT})
        assert refused.value.kind is ErrorKind.DATA and "already exists" in str(refused.value)
        assert box.world.get("netsuite", "customer", other["id"])["externalId"] == "001OTHERLOSER"
        # An upsert's external id is its target: the link is not a field there.
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "erp.upsert_customer", {"external_id": ACCOUNT}, {"crm_account_id": "001OTHER"})
        assert caught.value.kind is ErrorKind.DATA


async def test_upsert_invoice_books_the_billing_invoice_for_its_customer() -> None:
    async with running() as box:
        customer = netsuite.upsert_customer(box.world, ACCOUNT, company_name="Acme")
        payload = {"customer_key": ACCOUNT, "number": "ACME-0001", "total": 12_000, "tax": 2_000, "currency": "usd",
                   "due_at": 1_745_971_200_000, "status": "open"}
        await _run(box, "erp.upsert_invoice", {"external_id": "in_1"}, payload)
        invoice = box.world.find("netsuite", "invoice", "externalId", "in_1")
        assert invoice is not None
        assert invoice["entity"]["id"] == customer["id"]
        assert (invoice["tranId"], invoice["total"], invoice["taxTotal"], invoice["amountRemaining"]) == (
            "ACME-0001", 120.0, 20.0, 120.0)
        assert (invoice["status"]["refName"], invoice["dueDate"]) == ("Open", "2025-04-30")


async def test_invoice_for_an_unknown_customer_is_data() -> None:
    async with running() as box:
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "erp.upsert_invoice", {"external_id": "in_1"},
                       {"customer_key": "001MISSING", "total": 100, "currency": "USD", "status": "open"})
        assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 400)
        assert "USER_ERROR" in caught.value.reason
        assert list(box.world.all("netsuite", "invoice")) == []


async def test_apply_payment_pays_the_invoice_once() -> None:
    async with running() as box:
        invoice = _invoice(box)
        cmd = ("erp.apply_payment", {"external_id": "in_1"}, {"amount": 12_000, "currency": "USD",
                                                               "paid_at": 1_743_422_400_000})
        outcome = await _run(box, *cmd)
        await _run(box, *cmd)
        paid = box.world.get("netsuite", "invoice", str(invoice["id"]))
        assert (paid["amountRemaining"], paid["status"]["refName"]) == (0.0, "Paid In Full")
        [payment] = box.world.all("netsuite", "customerPayment")
        assert payment["apply"]["items"][0]["doc"]["id"] == invoice["id"]
        assert (payment["payment"], payment["tranDate"]) == (120.0, "2025-03-31")
        assert outcome.detail["external_id"] == "concord-pay-in_1-12000"
        assert box.effect("netsuite", "customerPayment:eid:concord-pay-in_1-12000") == (2, 1)


async def test_apply_payment_pays_once_per_occurrence_of_the_drift() -> None:
    async with running(timeout=2.0) as box:
        _invoice(box, total=24_000)
        connector = NetSuiteConnector(box.settings)
        pay = command("erp.apply_payment", "netsuite", {"external_id": "in_1"}, {"amount": 12_000, "currency": "USD"})
        try:
            first = msgspec.structs.replace(pay, occurrence=1_000)
            await connector.execute(first)
            await connector.execute(msgspec.structs.replace(first, command_id="cmd-2", generation=2))  # same drift
            # The payment was undone in the ERP, the drift came back: a new occurrence pays again.
            again = await connector.execute(msgspec.structs.replace(pay, command_id="cmd-3", occurrence=5_000))
        finally:
            await connector.close()
        assert len(list(box.world.all("netsuite", "customerPayment"))) == 2
        assert again.detail["external_id"] == "concord-pay-in_1-12000-5000"


async def test_apply_payment_to_an_unknown_invoice_is_data() -> None:
    async with running() as box:
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "erp.apply_payment", {"external_id": "in_404"}, {"amount": 1, "currency": "USD"})
        assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 404)
        assert "NONEXISTENT_ID" in caught.value.reason


async def test_credit_memo_books_the_refund_applied_to_its_invoice() -> None:
    async with running() as box:
        invoice = _invoice(box)
        payload = {"customer_key": ACCOUNT, "document": "refund", "invoice_id": "in_1", "charge_id": "ch_1",
                   "amount": 500, "currency": "USD"}
        await _run(box, "erp.create_credit_memo", {"external_id": "re_1"}, payload)
        await _run(box, "erp.create_credit_memo", {"external_id": "re_2"}, {**payload, "invoice_id": None},
                   command_id="cmd-2")
        applied = box.world.find("netsuite", "creditMemo", "externalId", "re_1")
        loose = box.world.find("netsuite", "creditMemo", "externalId", "re_2")
        assert applied is not None and loose is not None
        assert applied["apply"]["items"][0]["doc"]["id"] == invoice["id"]
        assert (applied["total"], applied["status"]["refName"]) == (5.0, "Fully Applied")
        assert loose["status"]["refName"] == "Open"


async def test_concurrency_limit_is_transient() -> None:
    async with running() as box:
        _invoice(box)
        box.faults.update(b'{"netsuite": {"netsuite_concurrency": 1, "latency_ms": 150}}')
        results = await asyncio.gather(
            _run(box, "erp.upsert_customer", {"external_id": "001A"}, {"name": "A"}, command_id="a"),
            _run(box, "erp.upsert_customer", {"external_id": "001B"}, {"name": "B"}, command_id="b"),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, ConnectorError)]
        assert len(errors) == 1
        assert (errors[0].kind, errors[0].status) == (ErrorKind.TRANSIENT, 429)
        assert "CONCURRENCY_LIMIT_EXCEEDED" in errors[0].reason


async def test_faults_5xx_429_and_auth() -> None:
    async with running() as box:
        box.faults.update(b'{"netsuite": {"error_rate": 1}}')
        with pytest.raises(ConnectorError) as failed:
            await _run(box, "erp.upsert_customer", {"external_id": ACCOUNT}, {"name": "Acme"})
        box.faults.update(b'{"netsuite": {"error_rate": 0, "burst_429": 1, "retry_after": 1.5}}')
        with pytest.raises(ConnectorError) as throttled:
            await _run(box, "erp.upsert_customer", {"external_id": ACCOUNT}, {"name": "Acme"})
        assert failed.value.kind is ErrorKind.TRANSIENT
        assert (throttled.value.kind, throttled.value.retry_after) == (ErrorKind.TRANSIENT, 1.5)
        assert list(box.world.all("netsuite", "customer")) == []
    async with running(netsuite_access_token="wrong") as box:
        with pytest.raises(ConnectorError) as denied:
            await _run(box, "erp.upsert_customer", {"external_id": ACCOUNT}, {"name": "Acme"})
        assert (denied.value.kind, denied.value.status) == (ErrorKind.AUTH, 401)
        assert "INVALID_LOGIN" in denied.value.reason


async def test_crash_after_apply_then_retry_pays_nothing_twice() -> None:
    async with running() as box:
        invoice = _invoice(box)
        box.faults.update(b'{"netsuite": {"error_after_apply_rate": 1}}')
        cmd = ("erp.apply_payment", {"external_id": "in_1"}, {"amount": 12_000, "currency": "USD"})
        with pytest.raises(ConnectorError) as caught:
            await _run(box, *cmd)
        box.faults.reset()
        await _run(box, *cmd)
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert len(list(box.world.all("netsuite", "customerPayment"))) == 1
        assert box.world.get("netsuite", "invoice", str(invoice["id"]))["amountRemaining"] == 0.0
        assert box.effect("netsuite", "customerPayment:eid:concord-pay-in_1-12000") == (2, 1)


async def test_timeout_is_transient() -> None:
    async with running(timeout=0.2) as box:
        box.faults.update(b'{"netsuite": {"timeout_rate": 1, "hang_seconds": 0.4}}')
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "erp.upsert_customer", {"external_id": ACCOUNT}, {"name": "Acme"})
        assert caught.value.kind is ErrorKind.TRANSIENT


async def test_unknown_action_is_data() -> None:
    async with running() as box:
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "erp.delete_everything", {"external_id": "x"})
        assert caught.value.kind is ErrorKind.DATA
        assert "unsupported action" in caught.value.reason


async def test_a_traversal_id_reaches_netsuite_as_one_segment_and_touches_no_other_record() -> None:
    # Ids come from platform payloads: "<id>/../../invoice/<n>" once normalized to the invoice's own URL.
    async with running() as box:
        invoice = _invoice(box)
        victim = box.world.get("netsuite", "invoice", invoice["id"])
        before = msgspec.json.encode(victim)
        customer_id = box.world.find("netsuite", "customer", "externalId", ACCOUNT)["id"]
        traversal = f"{customer_id}/../../invoice/{invoice['id']}"
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "erp.update_customer", {"customer_id": traversal}, {"name": "pwned"})
        assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 404)
        assert f"customer/{customer_id}%2F..%2F..%2Finvoice%2F{invoice['id']}" in caught.value.reason
        # An upsert by external id: the id after `eid:` is the whole literal id, a record of its own.
        eid = f"in_1/../../customer/{customer_id}"
        await _run(box, "erp.upsert_invoice", {"external_id": eid},
                   {"customer_key": ACCOUNT, "total": 100, "currency": "USD", "status": "open"}, command_id="cmd-2")
        created = box.world.find("netsuite", "invoice", "externalId", eid)
        assert created is not None and created["id"] not in (invoice["id"], customer_id)
        assert msgspec.json.encode(box.world.get("netsuite", "invoice", invoice["id"])) == before
        assert box.world.get("netsuite", "customer", customer_id)["companyName"] == "Acme"


async def test_dot_segment_ids_are_refused_before_any_request() -> None:
    async with running() as box:
        for bad in ("..", "."):
            with pytest.raises(ConnectorError) as caught:
                await _run(box, "erp.apply_payment", {"external_id": bad}, {"amount": 100, "currency": "USD"})
            assert caught.value.kind is ErrorKind.DATA and caught.value.status is None
        assert box.world.effects.all() == []
