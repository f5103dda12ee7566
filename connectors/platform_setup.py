"""How a platform is set up to send Concord its events, read through the platform's own API.

`concord doctor` (app/doctor.py) judges a deployment before its first run; what it needs from the
platforms beyond their records is here, each read with the credentials the connectors use:

========  ============================================================  =====================================
platform  API                                                           what Concord needs of it
========  ============================================================  =====================================
stripe    `GET /v1/webhook_endpoints` (`limit`, `starting_after`)        an enabled endpoint posting to
                                                                        `/webhooks/stripe`, subscribed to the
                                                                        event types the codec reads, on an API
                                                                        version it reads
zendesk   `GET /api/v2/webhooks` (cursor paging: `page[size]`,          an active webhook posting to
          `page[after]`, `meta.has_more`), `GET /api/v2/webhooks/{id}/  `/webhooks/zendesk` with the event
          signing_secret`                                               subscriptions Concord reads, signed
                                                                        with Concord's secret
========  ============================================================  =====================================

Stripe shows an endpoint's signing secret only when the endpoint is created, so it cannot be compared;
Zendesk shows it to an admin, so it is. Salesforce's CDC channels are the bridge's to check, and
NetSuite's script deployment is an SDF project (netsuite/), not an API.
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import Struct

from concord.connectors.http import HttpClient, bad_answer, segment

#: Most pages a listing reads: far more endpoints or webhooks than an account has.
MAX_PAGES: Final = 20


class StripeWebhookEndpoint(Struct, frozen=True, kw_only=True):
    """A Stripe `webhook_endpoint` object, the fields Concord judges."""

    id: str
    url: str
    enabled_events: list[str] = []
    api_version: str | None = None  # None: the account's default version at the time of each event
    status: str = "enabled"


class _StripePage(Struct, frozen=True):
    data: list[StripeWebhookEndpoint]
    has_more: bool = False


class ZendeskWebhook(Struct, frozen=True, kw_only=True):
    """A Zendesk webhook, the fields Concord judges."""

    id: str
    name: str = ""
    endpoint: str
    status: str = "active"
    subscriptions: list[str] = []
    http_method: str = "POST"
    request_format: str = "json"


class _ZendeskMeta(Struct, frozen=True):
    has_more: bool = False
    after_cursor: str | None = None


class _ZendeskPage(Struct, frozen=True):
    webhooks: list[ZendeskWebhook]
    meta: _ZendeskMeta = _ZendeskMeta()


class _SigningSecret(Struct, frozen=True):
    secret: str | None = None
    algorithm: str = ""


class _SigningSecretAnswer(Struct, frozen=True):
    signing_secret: _SigningSecret


async def stripe_webhook_endpoints(http: HttpClient) -> list[StripeWebhookEndpoint]:
    """Every webhook endpoint of the Stripe account (test or live, as the key is)."""
    endpoints: list[StripeWebhookEndpoint] = []
    params = {"limit": "100"}
    for _ in range(MAX_PAGES):
        response = await http.request("GET", "/v1/webhook_endpoints", params=params)
        try:
            page = msgspec.json.decode(response.body, type=_StripePage)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise bad_answer("stripe", "GET /v1/webhook_endpoints", exc) from None
        endpoints.extend(page.data)
        if not page.has_more or not page.data:
            break
        params = {"limit": "100", "starting_after": page.data[-1].id}
    return endpoints


async def zendesk_webhooks(http: HttpClient) -> list[ZendeskWebhook]:
    """Every webhook of the Zendesk account."""
    webhooks: list[ZendeskWebhook] = []
    params = {"page[size]": "100"}
    for _ in range(MAX_PAGES):
        response = await http.request("GET", "/api/v2/webhooks", params=params)
        try:
            page = msgspec.json.decode(response.body, type=_ZendeskPage)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise bad_answer("zendesk", "GET /api/v2/webhooks", exc) from None
        webhooks.extend(page.webhooks)
        if not page.meta.has_more or not page.meta.after_cursor:
            break
        params = {"page[size]": "100", "page[after]": page.meta.after_cursor}
    return webhooks


async def zendesk_signing_secret(http: HttpClient, webhook_id: str) -> str:
    """The secret Zendesk signs a webhook's requests with ("" when it shows none)."""
    path = f"/api/v2/webhooks/{segment(webhook_id)}/signing_secret"
    response = await http.request("GET", path)
    try:
        answer = msgspec.json.decode(response.body, type=_SigningSecretAnswer)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise bad_answer("zendesk", f"GET {path}", exc) from None
    return answer.signing_secret.secret or ""
