"""Zendesk connector: support actions as Support API calls (Basic token auth, `Idempotency-Key`).

The support entitlement lives in the organization's custom fields named by the settings
`zendesk_status_field` (values "active", "suspended", ...), `zendesk_tier_field` and
`zendesk_end_date_field`; the CRM link is the organization's `external_id`.

Actions (every write is `PUT /api/v2/organizations/{id}.json` or `POST .../create_or_update.json`
with `Idempotency-Key: <command_id>`; Zendesk replays its stored answer to a retry):

* `support.suspend_entitlement` (target `organization_id`) -> status field "suspended".
* `support.grant_entitlement` (target `organization_id`, or `crm_account_id` when no organization is
  known; payload `tier`) -> status "active" and the tier. By CRM account: the organization with that
  `external_id` is looked up first (`GET .../search.json?external_id=`) and updated, or created
  through `create_or_update` (named after the payload's `name`, else the account id; key
  `<command_id>:create`). Either way `Outcome.record_id` is the organization id (what the saga's
  compensation, `support.suspend_entitlement`, targets).
* `support.set_tier` (target `organization_id`; payload `tier`) -> the tier field.
* `support.update_customer` (target `customer_id` = organization id; payload `{field: value}`):
  `name` -> name, `crm_account_id` -> external_id; an organization holds no other master field.
* `support.fetch_organization` (target `organization_id`) -> `GET .../{id}.json`; the body, exactly
  as Zendesk returned it (`{"organization": {...}}`), in `Outcome.fetched`.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import msgspec

from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.http import HttpClient, HttpResponse, segment, target, unknown_field, unsupported
from concord.core.messages import Command
from concord.core.settings import Settings

PLATFORM: Final = "zendesk"
SUSPEND: Final = "support.suspend_entitlement"
GRANT: Final = "support.grant_entitlement"
SET_TIER: Final = "support.set_tier"
UPDATE_CUSTOMER: Final = "support.update_customer"
FETCH_ORGANIZATION: Final = "support.fetch_organization"
_ORGANIZATION_FIELDS: Final = {"name": "name", "crm_account_id": "external_id"}


def _error_message(body: bytes) -> str:
    error = msgspec.json.decode(body)
    if not isinstance(error, dict):
        return ""
    title: Any = error.get("error")
    description: Any = error.get("description")
    if isinstance(title, dict):  # some endpoints nest it: {"error": {"title", "message"}}
        title, description = title.get("title"), title.get("message")
    return f"{title}: {description}" if description else str(title or "")


class ZendeskConnector:
    """Executes support actions against the Zendesk Support API."""

    platform: str = PLATFORM
    actions: frozenset[str] = frozenset({SUSPEND, GRANT, SET_TIER, UPDATE_CUSTOMER, FETCH_ORGANIZATION})

    def __init__(self, settings: Settings) -> None:
        self.status_field = settings.zendesk_status_field
        self.tier_field = settings.zendesk_tier_field
        credentials = base64.b64encode(f"{settings.zendesk_api_email}/token:{settings.zendesk_api_token}".encode())
        self.http = HttpClient(
            PLATFORM,
            settings.zendesk_url,
            url_variable="CONCORD_ZENDESK_URL",
            timeout=settings.connector_timeout_seconds,
            headers={"Authorization": f"Basic {credentials.decode()}"},
            error_reader=_error_message,
        )

    async def execute(self, command: Command) -> Outcome:
        """Perform `command` once; raise ConnectorError on failure."""
        if command.action == FETCH_ORGANIZATION:
            return await self._fetch(target(command, "organization_id"))
        if command.action == SUSPEND:
            return await self._update(command, target(command, "organization_id"),
                                      {"organization_fields": {self.status_field: "suspended"}})
        if command.action == SET_TIER:
            return await self._update(command, target(command, "organization_id"),
                                      {"organization_fields": {self.tier_field: self._tier(command)}})
        if command.action == GRANT:
            return await self._grant(command)
        if command.action == UPDATE_CUSTOMER:
            return await self._update(command, target(command, "customer_id"), self._master(command))
        raise unsupported(PLATFORM, command)

    @staticmethod
    def _tier(command: Command) -> str:
        tier = command.payload.get("tier")
        if not tier:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id} has no tier: "
                                 "map the subscription's plan to a tier in the drift configuration (plan_tiers)")
        return str(tier)

    @staticmethod
    def _master(command: Command) -> dict[str, Any]:
        if not command.payload:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id} has no fields")
        organization: dict[str, Any] = {}
        for field, value in command.payload.items():
            if field not in _ORGANIZATION_FIELDS:
                raise unknown_field(PLATFORM, field, _ORGANIZATION_FIELDS)
            organization[_ORGANIZATION_FIELDS[field]] = value
        return organization

    async def _grant(self, command: Command) -> Outcome:
        entitlement: dict[str, Any] = {self.status_field: "active"}
        if command.payload.get("tier"):
            entitlement[self.tier_field] = str(command.payload["tier"])
        if command.target.get("organization_id"):
            return await self._update(command, command.target["organization_id"],
                                      {"organization_fields": entitlement})
        crm_account_id = target(command, "crm_account_id")
        found = await self.http.request("GET", "/api/v2/organizations/search.json",
                                        params={"external_id": crm_account_id})
        organizations = (found.json() or {}).get("organizations") or []
        if organizations:
            return await self._update(command, str(organizations[0]["id"]), {"organization_fields": entitlement})
        body = {"organization": {"name": str(command.payload.get("name") or crm_account_id),
                                 "external_id": crm_account_id, "organization_fields": entitlement}}
        # Its own key: a retry after a lost answer finds the new organization and takes the PUT path,
        # whose request differs (Zendesk refuses one key for two different requests).
        response = await self.http.request("POST", "/api/v2/organizations/create_or_update.json", json=body,
                                           headers={"Idempotency-Key": f"{command.command_id}:create"})
        return self._outcome(response)

    async def _update(self, command: Command, organization_id: str, organization: dict[str, Any]) -> Outcome:
        response = await self.http.request("PUT", f"/api/v2/organizations/{segment(organization_id)}.json",
                                           json={"organization": organization},
                                           headers={"Idempotency-Key": command.command_id})
        return self._outcome(response, organization_id)

    @staticmethod
    def _outcome(response: HttpResponse, organization_id: str = "") -> Outcome:
        # The organization id is the record: a saga suspends that organization's entitlement to compensate.
        organization = (response.json() or {}).get("organization") or {}
        return Outcome(status=response.status, record_id=str(organization.get("id") or organization_id),
                       detail={"replayed": response.headers.get("x-idempotency-lookup") == "hit"})

    async def _fetch(self, organization_id: str) -> Outcome:
        response = await self.http.request("GET", f"/api/v2/organizations/{segment(organization_id)}.json")
        return Outcome(status=response.status, record_id=organization_id, fetched=response.body)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()
