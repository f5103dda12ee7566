"""The sandbox's webhook configuration APIs: Stripe's webhook endpoints and Zendesk's webhooks, in their real shapes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from concord.sandbox import webhook_setup
from concord.sandbox.faults import PlatformCredentials
from concord.sandbox.webhook_setup import STRIPE_ENDPOINT_ID, ZENDESK_WEBHOOK_ID, WebhookSetup

CREDENTIALS = PlatformCredentials(stripe_api_key="sk_test_setup_key_0001", zendesk_api_email="ops@example.com",
                                  zendesk_api_token="zd-setup-token-000001")
STRIPE = {"Authorization": f"Bearer {CREDENTIALS.stripe_api_key}"}
ZENDESK = {"Authorization": "Basic " + base64.b64encode(
    f"{CREDENTIALS.zendesk_api_email}/token:{CREDENTIALS.zendesk_api_token}".encode()).decode()}
SECRET = "zendesk-setup-signing-secret-0123456789"


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application()
    app.add_routes(webhook_setup.routes(WebhookSetup("http://127.0.0.1:6071/", SECRET, CREDENTIALS)))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_the_stripe_endpoint_is_listed_and_updated_as_stripe_does(client: TestClient[Any, Any]) -> None:
    listed = await (await client.get("/v1/webhook_endpoints?limit=100", headers=STRIPE)).json()
    assert listed["object"] == "list" and listed["has_more"] is False
    (endpoint,) = listed["data"]
    assert endpoint["id"] == STRIPE_ENDPOINT_ID and endpoint["url"] == "http://127.0.0.1:6071/webhooks/stripe"
    assert endpoint["enabled_events"] == ["*"] and endpoint["status"] == "enabled" and "secret" not in endpoint
    after = await (await client.get(f"/v1/webhook_endpoints?starting_after={STRIPE_ENDPOINT_ID}",
                                    headers=STRIPE)).json()
    assert after["data"] == []
    answer = await client.post(f"/v1/webhook_endpoints/{STRIPE_ENDPOINT_ID}", headers=STRIPE,
                               data=[("enabled_events[]", "invoice.paid"), ("enabled_events[]", "customer.created"),
                                     ("disabled", "true")])
    updated = await answer.json()
    assert answer.status == 200 and updated["enabled_events"] == ["invoice.paid", "customer.created"]
    assert updated["status"] == "disabled"
    read = await (await client.get(f"/v1/webhook_endpoints/{STRIPE_ENDPOINT_ID}", headers=STRIPE)).json()
    assert read == updated
    missing = await client.get("/v1/webhook_endpoints/we_nope", headers=STRIPE)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "resource_missing"


async def test_the_zendesk_webhook_is_listed_patched_and_its_secret_shown_and_reset(
        client: TestClient[Any, Any]) -> None:
    listed = await (await client.get("/api/v2/webhooks?page[size]=100", headers=ZENDESK)).json()
    (webhook,) = listed["webhooks"]
    assert listed["meta"]["has_more"] is False and webhook["id"] == ZENDESK_WEBHOOK_ID
    assert webhook["endpoint"] == "http://127.0.0.1:6071/webhooks/zendesk" and webhook["status"] == "active"
    assert "zen:event-type:ticket.status_changed" in webhook["subscriptions"]
    path = f"/api/v2/webhooks/{ZENDESK_WEBHOOK_ID}"
    shown = await (await client.get(f"{path}/signing_secret", headers=ZENDESK)).json()
    assert shown == {"signing_secret": {"algorithm": "SHA256", "secret": SECRET}}
    patched = await client.patch(path, headers=ZENDESK, json={"webhook": {"status": "inactive"}})
    assert patched.status == 204
    assert (await (await client.get(path, headers=ZENDESK)).json())["webhook"]["status"] == "inactive"
    reset = await client.post(f"{path}/signing_secret", headers=ZENDESK)
    new_secret = (await reset.json())["signing_secret"]["secret"]
    assert reset.status == 201 and new_secret and new_secret != SECRET
    again = await (await client.get(f"{path}/signing_secret", headers=ZENDESK)).json()
    assert again["signing_secret"]["secret"] == new_secret
    bad = await client.patch(path, headers=ZENDESK, json={"status": "active"})
    assert bad.status == 400


async def test_each_api_refuses_a_caller_without_the_account_credentials(client: TestClient[Any, Any]) -> None:
    no_key = await client.get("/v1/webhook_endpoints")
    assert no_key.status == 401 and (await no_key.json())["error"]["code"] == "api_key_required"
    wrong_key = await client.get("/v1/webhook_endpoints", headers={"Authorization": "Bearer sk_test_other_key_0001"})
    assert wrong_key.status == 401 and (await wrong_key.json())["error"]["code"] == "api_key_invalid"
    for path in ("/api/v2/webhooks", f"/api/v2/webhooks/{ZENDESK_WEBHOOK_ID}/signing_secret"):
        refused = await client.get(path, headers={"Authorization": "Basic bm9ib2R5OnRva2Vu"})
        assert refused.status == 401 and (await refused.json()) == {"error": "Couldn't authenticate you"}
