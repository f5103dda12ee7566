"""NetSuite connector against the sandbox's REST record service (and a recording fake for exact bodies): upserts,
payments, credit memos, sales orders, faults."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from concord.codecs import netsuite as netsuite_codec
from concord.codecs.config import codec_config
from concord.codecs.model import CustomerUpserted
from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.netsuite import NetSuiteConnector
from concord.connectors.snapshots import netsuite_envelope
from concord.core.messages import Command
from concord.core.settings import Settings
from concord.sandbox import netsuite
from tests.unit.connectors.platform_sandbox import Sandbox, command, running
from tests.unit.connectors.recording import NETSUITE_TOKEN, Answer, recording

ACCOUNT = "001Hp00000ACMEAAA"


async def _run(box: Sandbox, action: str, target: dict[str, str], payload: dict[str, object] | None = None,
               command_id: str = "cmd-1") -> Outcome:
    connector = NetSuiteConnector(box.settings)
    try:
        return await connector.execute(command(action, "netsuite", target, payload, command_id=command_id))
    finally:
        await connector.close()


async def _execute(settings: Settings, cmd: Command) -> Outcome:
    connector = NetSuiteConnector(settings)
    try:
        return await connector.execute(cmd)
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
        assert customer["custentity_sf_account_id"] == ACCOUNT  # the CRM link field, set with the key
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
    # D13's correction: the ERP customer still names the merged-away account. The link is a custom field, not
    # the externalId NetSuite keeps unique: the winner's own ERP customer holding its id does not stand in the way.
    async with running() as box:
        netsuite.upsert_customer(box.world, ACCOUNT, company_name="Acme")
        loser = netsuite.upsert_customer(box.world, "001LOSER", company_name="Acme")
        outcome = await _run(box, "erp.update_customer", {"customer_id": loser["id"]}, {"crm_account_id": ACCOUNT})
        repointed = box.world.get("netsuite", "customer", loser["id"])
        assert (repointed["custentity_sf_account_id"], repointed["externalId"]) == (ACCOUNT, "001LOSER")
        assert outcome.record_id == loser["id"]
        # The ERP codec reads the link from that field, so the customer is now the winner's.
        body = netsuite_envelope("customer", loser["id"], msgspec.json.encode(repointed), {"1": "USD"}, "1234567")
        customer = netsuite_codec.decode(body, codec_config(box.settings))[0]
        assert isinstance(customer, CustomerUpserted) and customer.customer_key == ACCOUNT
        # An upsert's external id is its target: the link is not a field there.
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "erp.upsert_customer", {"external_id": ACCOUNT}, {"crm_account_id": "001OTHER"})
        assert caught.value.kind is ErrorKind.DATA


async def test_the_crm_link_field_is_the_configured_one() -> None:
    async with running(netsuite_crm_link_field="custentity_crm_account") as box:
        loser = netsuite.upsert_customer(box.world, "001LOSER", company_name="Acme")
        await _run(box, "erp.update_customer", {"customer_id": loser["id"]}, {"crm_account_id": ACCOUNT})
        await _run(box, "erp.upsert_customer", {"external_id": "001NEW"}, {"name": "New"}, command_id="cmd-2")
        repointed = box.world.get("netsuite", "customer", loser["id"])
        created = box.world.find("netsuite", "customer", "externalId", "001NEW")
        assert repointed["custentity_crm_account"] == ACCOUNT
        assert repointed.get("custentity_sf_account_id") != ACCOUNT  # the default field is not the link here
        assert created is not None and created["custentity_crm_account"] == "001NEW"


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


# ---------------------------------------------------------------- the quote-to-cash saga's sales order

OPPORTUNITY = "006Hp00000DEALAAA"
ORDER = {"customer_key": ACCOUNT, "price": "price_pro_monthly", "quantity": 5, "total": 50_000, "currency": "eur"}


async def test_upsert_sales_order_puts_the_order_by_opportunity_once() -> None:
    async with running() as box:
        customer = netsuite.upsert_customer(box.world, ACCOUNT, company_name="Acme", currency="EUR")
        first = await _run(box, "erp.upsert_sales_order", {"external_id": OPPORTUNITY}, ORDER)
        await _run(box, "erp.upsert_sales_order", {"external_id": OPPORTUNITY}, ORDER)
        [order] = box.world.all("netsuite", "salesOrder")
        assert (order["externalId"], order["entity"]["id"], netsuite.currency_code(order["currency"])) == (
            OPPORTUNITY, customer["id"], "EUR")
        assert (order["status"], order["orderStatus"]) == ({"id": "B", "refName": "Pending Fulfillment"},) * 2
        assert order["total"] == 500.0
        [line] = order["item"]["items"]
        assert (line["item"]["externalId"], line["quantity"], line["amount"]) == ("price_pro_monthly", 5, 500.0)
        assert (first.status, first.record_id, first.detail) == (204, order["id"], {"external_id": OPPORTUNITY})
        assert box.effect("netsuite", f"salesOrder:eid:{OPPORTUNITY}") == (2, 1)


async def test_upsert_sales_order_sends_the_contracts_body() -> None:
    location = f"https://1234567.suitetalk.api.netsuite.com/services/rest/record/v1/salesorder/{4711}"
    path = f"/services/rest/record/v1/salesOrder/eid:{OPPORTUNITY}"
    async with recording({("PUT", path): [Answer(204, headers={"Location": location})]}) as fake:
        outcome = await _execute(fake.settings, command("erp.upsert_sales_order", "netsuite",
                                                        {"external_id": OPPORTUNITY}, {**ORDER, "currency": "JPY"}))
    [sent] = fake.requests
    assert sent.json == {
        "entity": {"externalId": ACCOUNT}, "currency": {"refName": "JPY"},
        "orderStatus": {"id": "B", "refName": "Pending Fulfillment"},
        "status": {"id": "B", "refName": "Pending Fulfillment"}, "total": 50_000.0,
        "item": {"items": [{"item": {"externalId": "price_pro_monthly"}, "quantity": 5, "amount": 50_000.0}]},
    }
    assert sent.headers["Authorization"] == f"Bearer {NETSUITE_TOKEN}"
    assert outcome.record_id == "4711"


async def test_a_sales_order_names_the_erp_customer_by_internal_id_when_the_saga_knows_it() -> None:
    location = "https://1234567.suitetalk.api.netsuite.com/services/rest/record/v1/salesorder/4712"
    path = f"/services/rest/record/v1/salesOrder/eid:{OPPORTUNITY}"
    async with recording({("PUT", path): [Answer(204, headers={"Location": location})]}) as fake:
        # A merged-away account's customer re-pointed here keeps its own externalId: by id it is found.
        await _execute(fake.settings, command("erp.upsert_sales_order", "netsuite", {"external_id": OPPORTUNITY},
                                              {**ORDER, "erp_customer_id": "88"}))
    [sent] = fake.requests
    assert sent.json["entity"] == {"id": "88"}


async def test_a_sales_order_netsuite_refuses_is_data() -> None:
    async with running() as box:  # no customer with the account's externalId: NetSuite's USER_ERROR
        with pytest.raises(ConnectorError) as refused:
            await _run(box, "erp.upsert_sales_order", {"external_id": OPPORTUNITY}, ORDER)
        assert (refused.value.kind, refused.value.status) == (ErrorKind.DATA, 400)
        assert "USER_ERROR" in refused.value.reason and "reference key" in refused.value.reason
        for bad, words in (({"quantity": 0}, "'quantity'"), ({"price": ""}, "'price'"), ({"total": 1.5}, "'total'"),
                           ({"currency": "euro"}, "'currency'")):
            with pytest.raises(ConnectorError) as caught:
                await _run(box, "erp.upsert_sales_order", {"external_id": OPPORTUNITY}, {**ORDER, **bad})
            assert caught.value.kind is ErrorKind.DATA and words in caught.value.reason
        assert list(box.world.all("netsuite", "salesOrder")) == []


async def test_cancel_sales_order_sets_it_cancelled_and_repeats_harmlessly() -> None:
    async with running() as box:
        customer = netsuite.upsert_customer(box.world, ACCOUNT, company_name="Acme")
        order = netsuite.upsert_sales_order(box.world, OPPORTUNITY, customer_id=customer["id"], total=50_000)
        first = await _run(box, "erp.cancel_sales_order", {"external_id": OPPORTUNITY}, command_id="undo-1")
        again = await _run(box, "erp.cancel_sales_order", {"external_id": OPPORTUNITY}, command_id="undo-1")
        cancelled = box.world.get("netsuite", "salesOrder", order["id"])
        assert cancelled["status"] == {"id": "C", "refName": "Cancelled"}
        assert cancelled["total"] == order["total"] and cancelled["entity"] == order["entity"]
        assert (first.status, first.record_id) == (204, order["id"]) and "nothing_to_undo" not in first.detail
        assert again.record_id == order["id"]
        assert box.effect("netsuite", f"salesOrder:{order['id']}") == (2, 1)


async def test_cancelling_a_sales_order_that_does_not_exist_is_done_and_says_so() -> None:
    async with running() as box:
        outcome = await _run(box, "erp.cancel_sales_order", {"external_id": OPPORTUNITY})
        assert (outcome.status, outcome.record_id, outcome.detail["external_id"]) == (404, "", OPPORTUNITY)
        assert "nothing to undo" in outcome.detail["nothing_to_undo"]
        assert box.world.effects.all() == []
        box.faults.update(b'{"netsuite": {"error_rate": 1}}')
        with pytest.raises(ConnectorError) as failed:
            await _run(box, "erp.cancel_sales_order", {"external_id": OPPORTUNITY})
        assert failed.value.kind is ErrorKind.TRANSIENT
    # The opportunity id is one path segment after `eid:`; the body is the status alone.
    path = "/services/rest/record/v1/salesOrder/eid:006%2F..%2F1"
    async with recording({("PATCH", path): [Answer(404, {"o:errorDetails": [{"o:errorCode": "NONEXISTENT_ID"}]})]}
                         ) as fake:
        await _execute(fake.settings, command("erp.cancel_sales_order", "netsuite", {"external_id": "006/../1"}))
    assert [(r.method, r.path, r.json) for r in fake.requests] == [
        ("PATCH", path, {"status": {"id": "C", "refName": "Cancelled"}})]
