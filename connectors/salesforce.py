"""Salesforce connector: CRM actions as sObject REST calls (`Authorization: Bearer`).

The token comes from the process's Salesforce token source (connectors/tokens.py: static, or renewed by
the JWT bearer or client credentials flow); a 401 renews it once and the call is sent once more. With
a flow and no `CONCORD_SALESFORCE_INSTANCE_URL`, the API base is the `instance_url` of the token answer.

Actions:

* `crm.update_customer` (target `customer_id` = Account Id; payload `{field: value}`) -> `PATCH
  /services/data/<version>/sobjects/Account/<Id>` (204): `name` -> Name, `country` ->
  BillingCountry, `address` -> BillingStreet (City/State/PostalCode cleared, a trailing country to
  BillingCountry), `currency` -> CurrencyIsoCode, `tax_id` and `payment_terms` -> the custom fields
  the Salesforce codec reads (`Tax_Id__c`, `Payment_Terms__c`).
* `crm.fetch_record` (target `record_id`, `object` = Account or Opportunity; the re-read after a gap
  event, connectors/rereads.py) -> `GET /services/data/<version>/sobjects/<object>/<Id>?fields=...`
  with the fields the codec reads (`codecs.salesforce.record_fields`, the plan field of the settings):
  the record, exactly as Salesforce returned it, in `Outcome.fetched`. A 404 (`ENTITY_IS_DELETED`,
  `NOT_FOUND`) means the record is gone: the outcome is a deletion the codec reads like any record, a
  tombstone in the REST shape of a deleted record (as a `queryAll` query returns one),
  `{"attributes": {"type", "url"}, "Id", "IsDeleted": true, "SystemModstamp": <when Salesforce
  answered: its Date header, else Concord's clock>}`, so the gap settles as a deletion instead of
  waiting for a record that will not come back. Every field asked for must exist in the org (a
  multi-currency org with the custom fields above and the plan field): otherwise Salesforce answers
  400 `INVALID_FIELD` and the re-read is dead-lettered (`data`) with that reason.

A PATCH sets fields to values: sending the same command twice leaves the record as once, which is
Salesforce's idempotency (upserts by external id work the same way). A GET changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import msgspec

from concord.codecs.salesforce import ACCOUNT_PAYMENT_TERMS_FIELD, ACCOUNT_TAX_ID_FIELD, record_fields
from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.http import HttpClient, segment, split_address, target, unknown_field, unsupported
from concord.connectors.tokens import BearerAuth, salesforce_token_source
from concord.core.messages import Command
from concord.core.settings import Settings

PLATFORM: Final = "salesforce"
UPDATE_CUSTOMER: Final = "crm.update_customer"
FETCH_RECORD: Final = "crm.fetch_record"
#: The objects `crm.fetch_record` reads (those the Salesforce codec turns into events).
FETCHED_OBJECTS: Final = frozenset({"Account", "Opportunity"})
_GONE: Final = frozenset({404})
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


def _error_message_or_empty(body: bytes) -> str:
    try:
        return _error_message(body)
    except (msgspec.DecodeError, UnicodeDecodeError, AttributeError, TypeError):
        return ""


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


def tombstone(object_type: str, record_id: str, root: str, at: int) -> bytes:
    """A deleted record in the REST shape (`IsDeleted`, `SystemModstamp`): what a 404 re-read settles to."""
    moment = datetime.fromtimestamp(at / 1000, UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at % 1000:03d}+0000"
    return msgspec.json.encode({
        "attributes": {"type": object_type, "url": f"{root}/{object_type}/{record_id}"},
        "Id": record_id, "IsDeleted": True, "SystemModstamp": stamp,
    })


def _answered_at(date_header: str | None, clock: Callable[[], float]) -> int:
    """When Salesforce answered (its `Date` header, whole seconds), in epoch ms; else `clock`'s time."""
    if date_header:
        try:
            when = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return int(when.timestamp()) * 1000
    return int(clock() * 1000)


class SalesforceConnector:
    """Executes CRM actions against the Salesforce REST API."""

    platform: str = PLATFORM
    actions: frozenset[str] = frozenset({UPDATE_CUSTOMER, FETCH_RECORD})

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.root = f"/services/data/{settings.salesforce_api_version}/sobjects"
        self.plan_field = settings.salesforce_plan_field
        self._clock = clock
        self.http = HttpClient(
            PLATFORM,
            settings.salesforce_instance_url,
            url_variable="CONCORD_SALESFORCE_INSTANCE_URL",
            timeout=settings.connector_timeout_seconds,
            headers={},
            error_reader=_error_message,
            auth=BearerAuth(salesforce_token_source(settings)),
        )

    async def execute(self, command: Command) -> Outcome:
        """Perform `command` once; raise ConnectorError on failure."""
        if command.action == FETCH_RECORD:
            return await self._fetch(command)
        if command.action != UPDATE_CUSTOMER:
            raise unsupported(PLATFORM, command)
        account_id = target(command, "customer_id")
        if not command.payload:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id} has no fields")
        response = await self.http.request("PATCH", f"{self.root}/Account/{segment(account_id)}",
                                           json=account_fields(command.payload))
        return Outcome(status=response.status, record_id=account_id, detail={"fields": sorted(command.payload)})

    async def _fetch(self, command: Command) -> Outcome:
        record_id, object_type = target(command, "record_id"), target(command, "object")
        if object_type not in FETCHED_OBJECTS:
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: Concord reads "
                                 f"no {object_type!r} records (it reads {', '.join(sorted(FETCHED_OBJECTS))})")
        if not (len(record_id) in (15, 18) and record_id.isascii() and record_id.isalnum()):
            # A 404 for it would be taken for a deletion of a record that never was.
            raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: the target "
                                 f"record_id ({len(record_id)} characters) is not a Salesforce id")
        fields = ",".join(record_fields(object_type, self.plan_field))
        response = await self.http.request("GET", f"{self.root}/{object_type}/{segment(record_id)}",
                                           params={"fields": fields}, allow=_GONE)
        if response.status in _GONE:
            at = _answered_at(response.headers.get("date"), self._clock)
            return Outcome(status=response.status, record_id=record_id,
                           detail={"deleted": True, "error": _error_message_or_empty(response.body)},
                           fetched=tombstone(object_type, record_id, self.root, at))
        return Outcome(status=response.status, record_id=record_id, fetched=response.body)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()
