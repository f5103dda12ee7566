"""Stripe connector: billing actions as Stripe API calls (form-encoded, `Idempotency-Key`).

Actions:

* `billing.update_customer` (target `customer_id`; payload `{field: value}`) -> `POST
  /v1/customers/{id}`: `name`; `country` -> `address[country]`; `address` -> `address[line1]`
  (the other address lines cleared, a trailing country to `address[country]`); `crm_account_id`
  -> `metadata[salesforce_account_id]`; `tax_id` -> `POST /v1/customers/{id}/tax_ids` (type
  `eu_vat`). Stripe cannot change a customer's `currency` (set by its first invoice or subscription)
  and has no payment terms: those fields are DATA errors with the reason.

Every write carries `Idempotency-Key: <command_id>` (`:tax_id` appended for the second write of a
command), so a retry after a timeout or a crash replays Stripe's stored answer instead of applying
twice.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.http import HttpClient, segment, split_address, target, unknown_field, unsupported
from concord.core.messages import Command
from concord.core.settings import Settings

PLATFORM: Final = "stripe"
UPDATE_CUSTOMER: Final = "billing.update_customer"
_FIELDS: Final = ("name", "country", "address", "crm_account_id", "tax_id")
_NOT_UPDATABLE: Final = {
    "currency": "Stripe sets a customer's currency with its first invoice or subscription and cannot change it; "
                "fix the currency in the owning system or by hand in Stripe",
    "payment_terms": "Stripe customers have no payment terms (they are set per invoice: days_until_due)",
}


def _error_message(body: bytes) -> str:
    error = msgspec.json.decode(body).get("error") or {}
    code = error.get("code") or error.get("type") or ""
    return f"{error.get('message', '')} [{code}]" if code else str(error.get("message", ""))


def customer_params(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """Canonical customer fields -> Stripe's form parameters; DATA error for a field Stripe cannot take."""
    params: list[tuple[str, str]] = []
    for field, value in fields.items():
        text = "" if value is None else str(value)
        if field == "name":
            params.append(("name", text))
        elif field == "country":
            params.append(("address[country]", text.upper()))
        elif field == "address":
            street, country = split_address(text)
            params += [("address[line1]", street), ("address[line2]", ""), ("address[city]", ""),
                       ("address[state]", ""), ("address[postal_code]", "")]
            if country and "country" not in fields:
                params.append(("address[country]", country))
        elif field == "crm_account_id":
            params.append(("metadata[salesforce_account_id]", text))
        elif field in _NOT_UPDATABLE:
            raise ConnectorError(ErrorKind.DATA, f"{UPDATE_CUSTOMER} {field}: {_NOT_UPDATABLE[field]}")
        elif field != "tax_id":
            raise unknown_field(PLATFORM, field, _FIELDS)
    return params


class StripeConnector:
    """Executes billing actions against the Stripe API."""

    platform: str = PLATFORM
    actions: frozenset[str] = frozenset({UPDATE_CUSTOMER})

    def __init__(self, settings: Settings) -> None:
        self.http = HttpClient(
            PLATFORM,
            settings.stripe_api_url,
            url_variable="CONCORD_STRIPE_API_URL",
            timeout=settings.connector_timeout_seconds,
            headers={"Authorization": f"Bearer {settings.stripe_api_key}"},
            error_reader=_error_message,
        )

    async def execute(self, command: Command) -> Outcome:
        """Perform `command` once; raise ConnectorError on failure."""
        if command.action != UPDATE_CUSTOMER:
            raise unsupported(PLATFORM, command)
        return await self._update_customer(command)

    async def _update_customer(self, command: Command) -> Outcome:
        customer_id = target(command, "customer_id")
        if not command.payload:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id} has no fields")
        params = customer_params(command.payload)
        path = f"/v1/customers/{segment(customer_id)}"
        replayed = False
        status = 200
        if params:
            response = await self.http.request("POST", path, form=params,
                                               headers={"Idempotency-Key": command.command_id})
            replayed = response.headers.get("idempotent-replayed") == "true"
            status = response.status
        if "tax_id" in command.payload:
            response = await self.http.request(
                "POST", f"{path}/tax_ids", form=[("type", "eu_vat"), ("value", str(command.payload["tax_id"] or ""))],
                headers={"Idempotency-Key": f"{command.command_id}:tax_id"})
            replayed = replayed or response.headers.get("idempotent-replayed") == "true"
            status = response.status
        return Outcome(status=status, record_id=customer_id,
                       detail={"fields": sorted(command.payload), "replayed": replayed})

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()
