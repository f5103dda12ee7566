"""Stripe connector against the sandbox's Stripe API (and a recording fake where the sandbox does not serve the
call, or answers otherwise than Stripe): changes, idempotency, and every fault kind."""

from __future__ import annotations

from typing import Any

import pytest

from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.stripe import StripeConnector
from concord.core.messages import Command
from concord.core.settings import Settings
from concord.sandbox import stripe
from tests.unit.connectors.platform_sandbox import Sandbox, command, running
from tests.unit.connectors.recording import STRIPE_KEY, Answer, recording, stripe_error

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


# ---------------------------------------------------------------- the quote-to-cash saga's actions

CREATE_CUSTOMER = "billing.create_customer"
CREATE_SUBSCRIPTION = "billing.create_subscription"
UPDATE_SUBSCRIPTION = "billing.update_subscription"
CANCEL_SUBSCRIPTION = "billing.cancel_subscription"
NEW_CUSTOMER = {"name": "Acme GmbH", "email": "ap@acme.test", "address": "1 Hauptstr., Berlin, DE",
                "tax_id": "DE123456789", "idempotency_key": "saga-7:billing_customer"}


async def _execute(settings: Settings, cmd: Command) -> Outcome:
    connector = StripeConnector(settings)
    try:
        return await connector.execute(cmd)
    finally:
        await connector.close()


async def test_create_customer_makes_one_customer_under_the_sagas_key() -> None:
    async with running() as box:
        # Two commands for one saga step (a retry under a new command id): one customer.
        first = await _execute(box.settings, command(CREATE_CUSTOMER, "stripe", {"crm_account_id": "001ACME"},
                                                     NEW_CUSTOMER, command_id="c1"))
        second = await _execute(box.settings, command(CREATE_CUSTOMER, "stripe", {"crm_account_id": "001ACME"},
                                                      NEW_CUSTOMER, command_id="c2"))
        [customer] = box.world.all("stripe", "customer")
        assert first.record_id == second.record_id == customer["id"] and first.record_id.startswith("cus_")
        assert (first.detail["replayed"], second.detail["replayed"]) == (False, True)
        assert (customer["name"], customer["email"], customer["metadata"]) == (
            "Acme GmbH", "ap@acme.test", {"salesforce_account_id": "001ACME"})
        assert (customer["address"]["line1"], customer["address"]["country"]) == ("1 Hauptstr., Berlin", "DE")
        assert [t["value"] for t in customer["tax_ids"]["data"]] == ["DE123456789"]
        assert box.effect("stripe", "saga-7:billing_customer") == (2, 1)
        assert box.effect("stripe", "saga-7:billing_customer:tax_id") == (2, 1)


async def test_create_customer_without_a_saga_key_uses_the_command_id() -> None:
    async with running() as box:
        payload = {"name": "Acme", "country": "us"}
        outcome = await _execute(box.settings, command(CREATE_CUSTOMER, "stripe", {"crm_account_id": "001ACME"},
                                                       payload, command_id="c9"))
        customer = box.world.get("stripe", "customer", outcome.record_id)
        assert customer["address"]["country"] == "US" and customer["tax_ids"]["data"] == []
        assert box.effect("stripe", "c9") == (1, 1)
        with pytest.raises(ConnectorError) as unnamed:
            await _execute(box.settings, command(CREATE_CUSTOMER, "stripe", {"crm_account_id": "001B"}, {}))
        assert unnamed.value.kind is ErrorKind.DATA and "'name'" in unnamed.value.reason
        assert len(list(box.world.all("stripe", "customer"))) == 1


SUBSCRIPTION = {"id": "sub_1", "object": "subscription", "status": "active",
                "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_pro"}, "quantity": 5}]}}


async def test_create_subscription_posts_customer_item_and_opportunity_under_the_sagas_key() -> None:
    async with recording({("POST", "/v1/subscriptions"): [Answer(200, SUBSCRIPTION)]}) as fake:
        payload = {"price": "price_pro", "quantity": 5, "opportunity_id": "006DEAL", "idempotency_key": "saga-7:sub",
                   "currency": "EUR"}
        outcome = await _execute(fake.settings, command(CREATE_SUBSCRIPTION, "stripe", {"customer_id": "cus_1"},
                                                        payload))
    [sent] = fake.requests
    assert (sent.method, sent.path, sent.headers["Idempotency-Key"]) == ("POST", "/v1/subscriptions", "saga-7:sub")
    assert sent.form == [("customer", "cus_1"), ("items[0][price]", "price_pro"), ("items[0][quantity]", "5"),
                         ("metadata[salesforce_opportunity_id]", "006DEAL"), ("currency", "eur")]
    assert sent.headers["Authorization"] == f"Bearer {STRIPE_KEY}"
    assert (outcome.status, outcome.record_id, outcome.detail) == (200, "sub_1", {"customer_id": "cus_1",
                                                                                   "replayed": False})


@pytest.mark.parametrize(("payload", "words"), [
    ({"price": "price_pro", "quantity": 0, "opportunity_id": "006DEAL"}, "at least 1"),
    ({"price": "price_pro", "quantity": 2.5, "opportunity_id": "006DEAL"}, "whole number"),
    ({"quantity": 1, "opportunity_id": "006DEAL"}, "'price'"),
    ({"price": "price_pro", "quantity": 1}, "'opportunity_id'"),
])
async def test_a_subscription_stripe_could_not_bill_is_refused_before_any_request(payload: dict[str, Any],
                                                                                   words: str) -> None:
    async with recording({}) as fake:
        with pytest.raises(ConnectorError) as caught:
            await _execute(fake.settings, command(CREATE_SUBSCRIPTION, "stripe", {"customer_id": "cus_1"}, payload))
    assert caught.value.kind is ErrorKind.DATA and words in caught.value.reason
    assert fake.requests == []


async def test_create_subscription_for_a_missing_customer_is_data_with_stripes_message() -> None:
    answer = stripe_error(400, "resource_missing", "No such customer: 'cus_gone'")
    async with recording({("POST", "/v1/subscriptions"): [answer]}) as fake:
        with pytest.raises(ConnectorError) as caught:
            await _execute(fake.settings, command(CREATE_SUBSCRIPTION, "stripe", {"customer_id": "cus_gone"},
                                                  {"price": "price_pro", "quantity": 1, "opportunity_id": "006D"}))
    assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 400)
    assert "No such customer: 'cus_gone' [resource_missing]" in caught.value.reason
    assert fake.requests[0].headers["Idempotency-Key"] == "cmd-1"  # no saga key: the command id


async def test_update_subscription_changes_its_item_in_place() -> None:
    answers = {("GET", "/v1/subscriptions/sub_1"): [Answer(200, SUBSCRIPTION)],
               ("POST", "/v1/subscriptions/sub_1"): [Answer(200, SUBSCRIPTION, {"Idempotent-Replayed": "true"})]}
    async with recording(answers) as fake:
        outcome = await _execute(fake.settings, command(UPDATE_SUBSCRIPTION, "stripe", {"subscription_id": "sub_1"},
                                                        {"price": "price_team", "quantity": 8}, command_id="amend-1"))
        quantity_only = await _execute(fake.settings, command(UPDATE_SUBSCRIPTION, "stripe",
                                                              {"subscription_id": "sub_1"}, {"quantity": 9}))
    assert fake.calls() == [("GET", "/v1/subscriptions/sub_1"), ("POST", "/v1/subscriptions/sub_1")] * 2
    post, post_quantity = fake.requests[1], fake.requests[3]
    assert post.form == [("items[0][id]", "si_1"), ("items[0][price]", "price_team"), ("items[0][quantity]", "8")]
    assert post.headers["Idempotency-Key"] == "amend-1"
    assert post_quantity.form == [("items[0][id]", "si_1"), ("items[0][quantity]", "9")]
    assert (outcome.record_id, outcome.detail) == ("sub_1", {"fields": ["price", "quantity"], "replayed": True})
    assert quantity_only.detail["fields"] == ["quantity"]


async def test_update_subscription_needs_a_change_and_an_item() -> None:
    empty = {**SUBSCRIPTION, "items": {"object": "list", "data": []}}
    async with recording({("GET", "/v1/subscriptions/sub_1"): [Answer(200, empty)]}) as fake:
        with pytest.raises(ConnectorError) as nothing:
            await _execute(fake.settings, command(UPDATE_SUBSCRIPTION, "stripe", {"subscription_id": "sub_1"}, {}))
        with pytest.raises(ConnectorError) as no_item:
            await _execute(fake.settings, command(UPDATE_SUBSCRIPTION, "stripe", {"subscription_id": "sub_1"},
                                                  {"quantity": 2}))
    assert nothing.value.kind is ErrorKind.DATA and "changes nothing" in nothing.value.reason
    assert no_item.value.kind is ErrorKind.DATA and "no item" in no_item.value.reason
    assert fake.calls() == [("GET", "/v1/subscriptions/sub_1")]


async def test_cancel_subscription_cancels_it_now() -> None:
    async with running() as box:
        customer_id = await _customer(box)
        sub = stripe.create_subscription(box.world, customer_id, price_id="price_pro", unit_amount=1000,
                                         currency="usd", quantity=5)
        outcome = await _execute(box.settings, command(CANCEL_SUBSCRIPTION, "stripe", {"subscription_id": sub["id"]},
                                                       command_id="undo-1"))
        assert box.world.get("stripe", "subscription", sub["id"])["status"] == "canceled"
        assert (outcome.status, outcome.record_id, outcome.detail) == (200, sub["id"], {"replayed": False})
        assert box.effect("stripe", "undo-1") == (1, 1)


async def test_a_cancellation_with_nothing_to_undo_is_done_and_says_so() -> None:
    # Stripe answers 404 resource_missing for a subscription canceled before (or never created).
    gone = stripe_error(404, "resource_missing", "No such subscription: 'sub_1'")
    async with recording({("DELETE", "/v1/subscriptions/sub_1"): [gone]}) as fake:
        outcome = await _execute(fake.settings, command(CANCEL_SUBSCRIPTION, "stripe", {"subscription_id": "sub_1"}))
    assert (outcome.status, outcome.record_id) == (404, "sub_1")
    assert "nothing to cancel" in outcome.detail["nothing_to_undo"]
    assert fake.requests[0].headers["Idempotency-Key"] == "cmd-1"
    # A 400 for a subscription that reads as canceled: done too; one that is not canceled: the 400 stands.
    refused = stripe_error(400, "resource_invalid", "A canceled subscription can only update its cancellation_details")
    for status, done in (("canceled", True), ("active", False)):
        answers = {("DELETE", "/v1/subscriptions/sub_1"): [refused],
                   ("GET", "/v1/subscriptions/sub_1"): [Answer(200, {**SUBSCRIPTION, "status": status})]}
        async with recording(answers) as fake:
            if done:
                outcome = await _execute(fake.settings, command(CANCEL_SUBSCRIPTION, "stripe",
                                                                {"subscription_id": "sub_1"}))
                assert outcome.detail == {"nothing_to_undo": "the subscription was already canceled: nothing to cancel"}
            else:
                with pytest.raises(ConnectorError) as caught:
                    await _execute(fake.settings, command(CANCEL_SUBSCRIPTION, "stripe", {"subscription_id": "sub_1"}))
                assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 400)
        assert fake.calls() == [("DELETE", "/v1/subscriptions/sub_1"), ("GET", "/v1/subscriptions/sub_1")]


@pytest.mark.parametrize(("answer", "kind"), [
    (stripe_error(404, "url_invalid", "Unrecognized request URL (DELETE: /v1/subscriptions/sub_1)"), ErrorKind.DATA),
    (stripe_error(500, "api_error", "Something went wrong"), ErrorKind.TRANSIENT),
    (stripe_error(429, "rate_limit", "Too many requests"), ErrorKind.TRANSIENT),
    (stripe_error(401, "api_key_invalid", "Invalid API Key provided"), ErrorKind.AUTH),
])
async def test_a_cancellation_that_failed_is_classified_as_any_call(answer: Answer, kind: ErrorKind) -> None:
    async with recording({("DELETE", "/v1/subscriptions/sub_1"): [answer]}) as fake:
        with pytest.raises(ConnectorError) as caught:
            await _execute(fake.settings, command(CANCEL_SUBSCRIPTION, "stripe", {"subscription_id": "sub_1"}))
    assert (caught.value.kind, caught.value.status) == (kind, answer.status)
    assert fake.calls() == [("DELETE", "/v1/subscriptions/sub_1")]


async def test_subscription_ids_reach_stripe_as_one_path_segment() -> None:
    async with recording({}) as fake:
        with pytest.raises(ConnectorError):
            await _execute(fake.settings, command(CANCEL_SUBSCRIPTION, "stripe", {"subscription_id": "sub_1/../x"}))
        with pytest.raises(ConnectorError) as untargeted:
            await _execute(fake.settings, command(UPDATE_SUBSCRIPTION, "stripe", {}, {"quantity": 2}))
    assert fake.calls() == [("DELETE", "/v1/subscriptions/sub_1%2F..%2Fx")]
    assert untargeted.value.kind is ErrorKind.DATA and "subscription_id" in untargeted.value.reason
