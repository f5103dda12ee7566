"""Stripe connector: billing actions as Stripe API calls (form-encoded, `Idempotency-Key`).

Actions:

* `billing.update_customer` (target `customer_id`; payload `{field: value}`) -> `POST
  /v1/customers/{id}`: `name`; `country` -> `address[country]`; `address` -> `address[line1]`
  (the other address lines cleared, a trailing country to `address[country]`); `crm_account_id`
  -> `metadata[salesforce_account_id]`; `tax_id` -> `POST /v1/customers/{id}/tax_ids` (type
  `eu_vat`). Stripe cannot change a customer's `currency` (set by its first invoice or subscription)
  and has no payment terms: those fields are DATA errors with the reason.
* `billing.create_customer` (target `crm_account_id`; payload `name`, `email`?, `country`?,
  `address`?, `tax_id`?, `idempotency_key`) -> `POST /v1/customers` (`name`, `email`,
  `address[line1]`, `address[country]`, `metadata[salesforce_account_id]`), then `POST
  /v1/customers/{id}/tax_ids` (type `eu_vat`) when there is a tax id. `Outcome.record_id`: the `cus_` id.
* `billing.create_subscription` (target `customer_id`; payload `price`, `quantity`,
  `opportunity_id`, `currency`?, `idempotency_key`) -> `POST /v1/subscriptions` (`customer`, `items[0][price]`,
  `items[0][quantity]`, `metadata[salesforce_opportunity_id]`, `currency`: a new customer has none, and
  Stripe would bill the price's default). `Outcome.record_id`: the `sub_` id.
* `billing.update_subscription` (target `subscription_id`; payload `price`? and/or `quantity`?) ->
  `GET /v1/subscriptions/{id}` (its first item, `items.data[0].id`), then `POST /v1/subscriptions/{id}`
  with `items[0][id]` and the new `items[0][price]` / `items[0][quantity]`: the item is changed in
  place, so the subscription still bills one line.
* `billing.cancel_subscription` (target `subscription_id`; a saga's compensation) -> `DELETE
  /v1/subscriptions/{id}`. Nothing to undo counts as done, since a compensation must be safe to repeat:
  Stripe answers 404 `resource_missing` for a subscription already canceled (or never created), and
  a 400 for one found canceled is confirmed by reading it; the outcome's `detail.nothing_to_undo` says so.

Idempotency: the creates carry the payload's `idempotency_key` (the saga's, stable across its retries
and re-runs; the command id when absent), every other write `Idempotency-Key: <command_id>`; the
second write of an action appends `:tax_id`. A retry after a timeout or a crash replays Stripe's stored
answer instead of applying twice (`detail.replayed`). Stripe ignores the key on a DELETE (deleting is
idempotent by itself; a repeat finds the subscription canceled).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.http import (
    HttpClient,
    HttpResponse,
    quantity,
    segment,
    split_address,
    target,
    unknown_field,
    unsupported,
)
from concord.core.messages import Command
from concord.core.settings import Settings

PLATFORM: Final = "stripe"
UPDATE_CUSTOMER: Final = "billing.update_customer"
CREATE_CUSTOMER: Final = "billing.create_customer"
CREATE_SUBSCRIPTION: Final = "billing.create_subscription"
UPDATE_SUBSCRIPTION: Final = "billing.update_subscription"
CANCEL_SUBSCRIPTION: Final = "billing.cancel_subscription"
_FIELDS: Final = ("name", "country", "address", "crm_account_id", "tax_id")
_NOT_UPDATABLE: Final = {
    "currency": "Stripe sets a customer's currency with its first invoice or subscription and cannot change it; "
                "fix the currency in the owning system or by hand in Stripe",
    "payment_terms": "Stripe customers have no payment terms (they are set per invoice: days_until_due)",
}
# What a compensation that found nothing to undo says in its outcome.
_NO_SUCH_SUBSCRIPTION: Final = "Stripe has no such subscription (canceled before, or never created): nothing to cancel"
_ALREADY_CANCELED: Final = "the subscription was already canceled: nothing to cancel"


def _error(body: bytes) -> dict[str, Any]:
    error = msgspec.json.decode(body).get("error") or {}
    return error if isinstance(error, dict) else {}


def _error_message(body: bytes) -> str:
    error = _error(body)
    code = error.get("code") or error.get("type") or ""
    return f"{error.get('message', '')} [{code}]" if code else str(error.get("message", ""))


def _error_code(body: bytes) -> str:
    """Stripe's error code (`resource_missing`), "" when the body has none."""
    try:
        return str(_error(body).get("code") or "")
    except (msgspec.DecodeError, AttributeError):
        return ""


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


def new_customer_params(crm_account_id: str, payload: dict[str, Any]) -> list[tuple[str, str]]:
    """A new customer's form parameters: name, email, street and country, and the CRM link in metadata."""
    params = [("name", str(payload.get("name") or ""))]
    if payload.get("email"):
        params.append(("email", str(payload["email"])))
    street, country = split_address(str(payload["address"])) if payload.get("address") else ("", None)
    if street:
        params.append(("address[line1]", street))
    country = str(payload.get("country") or country or "").upper()
    if country:
        params.append(("address[country]", country))
    params.append(("metadata[salesforce_account_id]", crm_account_id))
    return params


def _text(command: Command, key: str) -> str:
    value = command.payload.get(key)
    if not isinstance(value, str) or not value:
        raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: payload {key!r} must "
                             f"be a non-empty text, got {value!r}")
    return value


def _idempotency_key(command: Command) -> str:
    """A create's key: the saga's own (the same for every command that retries the step), else the command id."""
    return str(command.payload.get("idempotency_key") or command.command_id)


def _replayed(response: HttpResponse) -> bool:
    return response.headers.get("idempotent-replayed") == "true"


def _created_id(command: Command, response: HttpResponse) -> str:
    """The id of the object Stripe created (or replayed); DATA error when the answer has none."""
    body = response.json()
    created = body.get("id") if isinstance(body, dict) else None
    if not isinstance(created, str) or not created:
        raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: Stripe answered "
                             f"HTTP {response.status} without the id of what it created")
    return created


class StripeConnector:
    """Executes billing actions against the Stripe API."""

    platform: str = PLATFORM
    actions: frozenset[str] = frozenset({UPDATE_CUSTOMER, CREATE_CUSTOMER, CREATE_SUBSCRIPTION, UPDATE_SUBSCRIPTION,
                                         CANCEL_SUBSCRIPTION})

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
        if command.action == UPDATE_CUSTOMER:
            return await self._update_customer(command)
        if command.action == CREATE_CUSTOMER:
            return await self._create_customer(command)
        if command.action == CREATE_SUBSCRIPTION:
            return await self._create_subscription(command)
        if command.action == UPDATE_SUBSCRIPTION:
            return await self._update_subscription(command)
        if command.action == CANCEL_SUBSCRIPTION:
            return await self._cancel_subscription(command)
        raise unsupported(PLATFORM, command)

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
            replayed = _replayed(response)
            status = response.status
        if "tax_id" in command.payload:
            replayed, status = await self._tax_id(path, str(command.payload["tax_id"] or ""),
                                                  f"{command.command_id}:tax_id", replayed)
        return Outcome(status=status, record_id=customer_id,
                       detail={"fields": sorted(command.payload), "replayed": replayed})

    async def _tax_id(self, customer_path: str, value: str, key: str, replayed: bool) -> tuple[bool, int]:
        response = await self.http.request("POST", f"{customer_path}/tax_ids", form=[("type", "eu_vat"),
                                           ("value", value)], headers={"Idempotency-Key": key})
        return replayed or _replayed(response), response.status

    async def _create_customer(self, command: Command) -> Outcome:
        crm_account_id = target(command, "crm_account_id")
        _text(command, "name")
        key = _idempotency_key(command)
        response = await self.http.request("POST", "/v1/customers", form=new_customer_params(crm_account_id,
                                           command.payload), headers={"Idempotency-Key": key})
        customer_id = _created_id(command, response)
        replayed, status = _replayed(response), response.status
        if command.payload.get("tax_id"):
            replayed, status = await self._tax_id(f"/v1/customers/{segment(customer_id)}",
                                                  str(command.payload["tax_id"]), f"{key}:tax_id", replayed)
        return Outcome(status=status, record_id=customer_id,
                       detail={"crm_account_id": crm_account_id, "replayed": replayed})

    async def _create_subscription(self, command: Command) -> Outcome:
        customer_id = target(command, "customer_id")
        params = [("customer", customer_id), ("items[0][price]", _text(command, "price")),
                  ("items[0][quantity]", str(quantity(command))),
                  ("metadata[salesforce_opportunity_id]", _text(command, "opportunity_id"))]
        if command.payload.get("currency"):
            # A new customer has no currency yet: without it Stripe bills the price's default currency.
            params.append(("currency", _text(command, "currency").lower()))
        response = await self.http.request("POST", "/v1/subscriptions", form=params,
                                           headers={"Idempotency-Key": _idempotency_key(command)})
        return Outcome(status=response.status, record_id=_created_id(command, response),
                       detail={"customer_id": customer_id, "replayed": _replayed(response)})

    async def _update_subscription(self, command: Command) -> Outcome:
        subscription_id = target(command, "subscription_id")
        changes: list[tuple[str, str]] = []
        if command.payload.get("price") is not None:
            changes.append(("items[0][price]", _text(command, "price")))
        if command.payload.get("quantity") is not None:
            changes.append(("items[0][quantity]", str(quantity(command))))
        if not changes:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id} changes nothing: "
                                 "the payload needs a 'price', a 'quantity' or both")
        path = f"/v1/subscriptions/{segment(subscription_id)}"
        subscription = (await self.http.request("GET", path)).json() or {}
        items = (subscription.get("items") or {}).get("data") or []
        if not items or not items[0].get("id"):
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: subscription "
                                 f"{subscription_id} has no item to change")
        response = await self.http.request("POST", path, form=[("items[0][id]", str(items[0]["id"])), *changes],
                                           headers={"Idempotency-Key": command.command_id})
        return Outcome(status=response.status, record_id=subscription_id,
                       detail={"fields": sorted(k for k in ("price", "quantity") if command.payload.get(k) is not None),
                               "replayed": _replayed(response)})

    async def _cancel_subscription(self, command: Command) -> Outcome:
        subscription_id = target(command, "subscription_id")
        path = f"/v1/subscriptions/{segment(subscription_id)}"
        try:
            response = await self.http.request("DELETE", path, headers={"Idempotency-Key": command.command_id},
                                               allow=frozenset({404}))
        except ConnectorError as error:
            # A canceled subscription refuses changes with a 400: confirmed by reading it, never by its wording.
            if error.status != 400 or not await self._canceled(path):
                raise
            return Outcome(status=400, record_id=subscription_id, detail={"nothing_to_undo": _ALREADY_CANCELED})
        if response.status == 404:
            if _error_code(response.body) != "resource_missing":
                raise self.http.error(f"{PLATFORM} DELETE {path}", response)
            return Outcome(status=404, record_id=subscription_id, detail={"nothing_to_undo": _NO_SUCH_SUBSCRIPTION})
        return Outcome(status=response.status, record_id=subscription_id, detail={"replayed": _replayed(response)})

    async def _canceled(self, path: str) -> bool:
        found = await self.http.request("GET", path, allow=frozenset({404}))
        return found.status == 404 or (found.json() or {}).get("status") == "canceled"

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()
