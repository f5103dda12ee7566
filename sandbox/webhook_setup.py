"""The platforms' webhook configuration, as their APIs show it: Stripe webhook endpoints, Zendesk webhooks.

An account that sends Concord its events has them set up: one Stripe webhook endpoint and one Zendesk
webhook, each posting to the Concord the sandbox delivers to. `concord doctor` reads them here as it reads
a real account's, and a test changes them through the same API to plant a problem:

* Stripe: `GET /v1/webhook_endpoints` (a list object, `limit` and `starting_after`),
  `GET /v1/webhook_endpoints/{id}`, `POST /v1/webhook_endpoints/{id}` (form: `enabled_events[]`,
  `disabled`, `url`, `description`). The signing secret is never shown after creation, as at Stripe.
  The endpoint starts subscribed to every event (`*`) on the sandbox's API version.
* Zendesk: `GET /api/v2/webhooks` (cursor paging, `page[size]`, `meta.has_more`),
  `GET|PATCH /api/v2/webhooks/{id}` (`{"webhook": {...}}`; PATCH answers 204), `GET
  /api/v2/webhooks/{id}/signing_secret`, and `POST` on it to reset the secret (a new random one, as Zendesk
  does). The webhook starts subscribed to the organization and ticket events the sandbox sends.

This is the accounts' configuration only: what the sandbox delivers follows its start options, not a change
made here (a test that disables the endpoint still receives events).
"""

from __future__ import annotations

import secrets
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from concord.sandbox import stripe, zendesk
from concord.sandbox.events import STRIPE_API_VERSION
from concord.sandbox.faults import PlatformCredentials

STRIPE_ENDPOINT_ID: Final = "we_1ConcordSandbox0000001"
ZENDESK_WEBHOOK_ID: Final = "01JCONCORDSANDBOXWEBHOOK01"
#: The Zendesk events the sandbox sends (sandbox/events.py), which its webhook is subscribed to.
ZENDESK_SUBSCRIPTIONS: Final = tuple(f"zen:event-type:{name}" for name in (
    "organization.created", "organization.deleted", "organization.name_changed", "organization.external_id_changed",
    "organization.custom_field_changed", "organization.tags_changed",
    "ticket.created", "ticket.status_changed", "ticket.priority_changed", "ticket.subject_changed",
    "ticket.description_changed", "ticket.organization_changed", "ticket.requester_changed", "ticket.tags_changed",
    "ticket.soft_deleted", "ticket.permanently_deleted", "ticket.marked_as_spam",
))
_CREATED: Final = 1_735_689_600  # 2025-01-01T00:00:00Z


class WebhookSetup:
    """One Stripe webhook endpoint and one Zendesk webhook, posting to `concord_url`."""

    def __init__(self, concord_url: str, zendesk_secret: str, credentials: PlatformCredentials) -> None:
        base = concord_url.rstrip("/")
        self.credentials = credentials
        self.stripe_endpoint: dict[str, Any] = {
            "id": STRIPE_ENDPOINT_ID, "object": "webhook_endpoint", "api_version": STRIPE_API_VERSION,
            "application": None, "created": _CREATED, "description": "Concord", "enabled_events": ["*"],
            "livemode": False, "metadata": {}, "status": "enabled", "url": f"{base}/webhooks/stripe",
        }
        self.zendesk_webhook: dict[str, Any] = {
            "id": ZENDESK_WEBHOOK_ID, "name": "Concord", "status": "active", "endpoint": f"{base}/webhooks/zendesk",
            "http_method": "POST", "request_format": "json", "subscriptions": list(ZENDESK_SUBSCRIPTIONS),
            "created_at": "2025-01-01T00:00:00Z", "created_by": "1", "updated_at": "2025-01-01T00:00:00Z",
        }
        self.zendesk_secret = zendesk_secret

    # --- Stripe ------------------------------------------------------------------------------------

    async def stripe_list(self, request: web.Request) -> web.StreamResponse:
        if (denied := stripe.unauthorized(request, self.credentials)) is not None:
            return denied
        after = request.query.get("starting_after")
        data = [] if after == STRIPE_ENDPOINT_ID else [self.stripe_endpoint]
        return _json({"object": "list", "data": data, "has_more": False, "url": "/v1/webhook_endpoints"})

    async def stripe_read(self, request: web.Request) -> web.StreamResponse:
        if (denied := stripe.unauthorized(request, self.credentials)) is not None:
            return denied
        if request.match_info["id"] != STRIPE_ENDPOINT_ID:
            return _stripe_missing(request.match_info["id"])
        return _json(self.stripe_endpoint)

    async def stripe_update(self, request: web.Request) -> web.StreamResponse:
        if (denied := stripe.unauthorized(request, self.credentials)) is not None:
            return denied
        if request.match_info["id"] != STRIPE_ENDPOINT_ID:
            return _stripe_missing(request.match_info["id"])
        pairs = parse_qsl(await request.text(), keep_blank_values=True)
        events = [value for name, value in pairs if name in ("enabled_events[]", "enabled_events")]
        fields = {name: value for name, value in pairs if not name.startswith("enabled_events")}
        if events:
            self.stripe_endpoint["enabled_events"] = events
        if "disabled" in fields:
            self.stripe_endpoint["status"] = "disabled" if fields["disabled"] == "true" else "enabled"
        for name in ("url", "description"):
            if name in fields:
                self.stripe_endpoint[name] = fields[name]
        return _json(self.stripe_endpoint)

    # --- Zendesk -----------------------------------------------------------------------------------

    async def zendesk_list(self, request: web.Request) -> web.StreamResponse:
        if (denied := zendesk.denied(request, self.credentials)) is not None:
            return denied
        return _json({"webhooks": [self.zendesk_webhook],
                              "meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
                              "links": {"next": None, "prev": None}})

    async def zendesk_read(self, request: web.Request) -> web.StreamResponse:
        if (denied := zendesk.denied(request, self.credentials)) is not None:
            return denied
        if request.match_info["id"] != ZENDESK_WEBHOOK_ID:
            return _zendesk_missing()
        return _json({"webhook": self.zendesk_webhook})

    async def zendesk_update(self, request: web.Request) -> web.StreamResponse:
        if (denied := zendesk.denied(request, self.credentials)) is not None:
            return denied
        if request.match_info["id"] != ZENDESK_WEBHOOK_ID:
            return _zendesk_missing()
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            return _json({"errors": [{"code": "InvalidInput", "title": "Invalid JSON"}]}, 400)
        changes = body.get("webhook") if isinstance(body, dict) else None
        if not isinstance(changes, dict):
            return _json({"errors": [{"code": "InvalidInput", "title": "webhook is required"}]}, 400)
        for name in ("name", "status", "endpoint", "subscriptions", "http_method", "request_format"):
            if name in changes:
                self.zendesk_webhook[name] = changes[name]
        return web.Response(status=204)

    async def zendesk_secret_read(self, request: web.Request) -> web.StreamResponse:
        if (denied := zendesk.denied(request, self.credentials)) is not None:
            return denied
        if request.match_info["id"] != ZENDESK_WEBHOOK_ID:
            return _zendesk_missing()
        return _json({"signing_secret": {"algorithm": "SHA256", "secret": self.zendesk_secret}})

    async def zendesk_secret_reset(self, request: web.Request) -> web.StreamResponse:
        if (denied := zendesk.denied(request, self.credentials)) is not None:
            return denied
        if request.match_info["id"] != ZENDESK_WEBHOOK_ID:
            return _zendesk_missing()
        self.zendesk_secret = secrets.token_urlsafe(32)
        return _json({"signing_secret": {"algorithm": "SHA256", "secret": self.zendesk_secret}}, 201)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


def _stripe_missing(endpoint_id: str) -> web.Response:
    return _json({"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "id",
                                   "message": f"No such webhook endpoint: '{endpoint_id}'"}}, 404)


def _zendesk_missing() -> web.Response:
    return _json({"errors": [{"code": "WebhookNotFound", "title": "Webhook not found"}]}, 404)


def routes(setup: WebhookSetup) -> list[web.RouteDef]:
    """The webhook configuration endpoints of Stripe and Zendesk."""
    hook = "/api/v2/webhooks/{id}"
    return [
        web.get("/v1/webhook_endpoints", setup.stripe_list),
        web.get("/v1/webhook_endpoints/{id}", setup.stripe_read),
        web.post("/v1/webhook_endpoints/{id}", setup.stripe_update),
        web.get("/api/v2/webhooks", setup.zendesk_list),
        web.get(hook, setup.zendesk_read),
        web.patch(hook, setup.zendesk_update),
        web.get(hook + "/signing_secret", setup.zendesk_secret_read),
        web.post(hook + "/signing_secret", setup.zendesk_secret_reset),
    ]
