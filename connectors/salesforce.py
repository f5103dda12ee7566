"""Salesforce connector: CRM actions as sObject REST calls (`Authorization: Bearer`).

Actions:

* `crm.update_customer` (target `customer_id` = Account Id; payload `{field: value}`) -> `PATCH
  /services/data/<version>/sobjects/Account/<Id>` (204): `name` -> Name, `country` ->
  BillingCountry, `address` -> BillingStreet (City/State/PostalCode cleared, a trailing country to
  BillingCountry), `currency` -> CurrencyIsoCode, `tax_id` and `payment_terms` -> the custom fields
  the Salesforce codec reads (`Tax_Id__c`, `Payment_Terms__c`).

A PATCH sets fields to values: sending the same command twice leaves the record as once, which is
Salesforce's idempotency (upserts by external id work the same way).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from concord.codecs.salesforce import ACCOUNT_PAYMENT_TERMS_FIELD, ACCOUNT_TAX_ID_FIELD
from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.http import HttpClient, segment, split_address, target, unknown_field, unsupported
from concord.core.messages import Command
from concord.core.settings import Settings

PLATFORM: Final = "salesforce"
UPDATE_CUSTOMER: Final = "crm.update_customer"
_FIELDS: Final = {
    "name": "Name",
    "country": "BillingCountry",
    "currency": "CurrencyIsoCode",
    "tax_id": ACCOUNT_TAX_ID_FIELD,
    "payment_terms": ACCOUNT_PAYMENT_TERMS_FIELD,
}


def _error_message(body: bytes) -> str:
    errors = msgspec.json.decode(body)
    first = errors[0] if isinstance(errors, list) and errors else {}
    return f"{first.get('message', '')} [{first.get('errorCode', '')}]" if first else ""


def account_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Canonical customer fields -> Account fields; DATA error for a field the Account does not hold."""
    account: dict[str, Any] = {}
    for field, value in fields.items():
        if field == "address":
            street, country = (None, None) if value is None else split_address(str(value))
            account.update({"BillingStreet": street, "BillingCity": None, "BillingState": None,
                            "BillingPostalCode": None})
            if country and "country" not in fields:
                account["BillingCountry"] = country
        elif field in _FIELDS:
            account[_FIELDS[field]] = value.upper() if field in ("country", "currency") and value else value
        else:
            raise unknown_field(PLATFORM, field, [*_FIELDS, "address"])
    return account


class SalesforceConnector:
    """Executes CRM actions against the Salesforce REST API."""

    platform: str = PLATFORM
    actions: frozenset[str] = frozenset({UPDATE_CUSTOMER})

    def __init__(self, settings: Settings) -> None:
        self.root = f"/services/data/{settings.salesforce_api_version}/sobjects"
        self.http = HttpClient(
            PLATFORM,
            settings.salesforce_instance_url,
            url_variable="CONCORD_SALESFORCE_INSTANCE_URL",
            timeout=settings.connector_timeout_seconds,
            headers={"Authorization": f"Bearer {settings.salesforce_access_token}"},
            error_reader=_error_message,
        )

    async def execute(self, command: Command) -> Outcome:
        """Perform `command` once; raise ConnectorError on failure."""
        if command.action != UPDATE_CUSTOMER:
            raise unsupported(PLATFORM, command)
        account_id = target(command, "customer_id")
        if not command.payload:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id} has no fields")
        response = await self.http.request("PATCH", f"{self.root}/Account/{segment(account_id)}",
                                           json=account_fields(command.payload))
        return Outcome(status=response.status, record_id=account_id, detail={"fields": sorted(command.payload)})

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()
