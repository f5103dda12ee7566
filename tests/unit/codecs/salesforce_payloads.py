"""Builders of Salesforce CDC messages in the three delivery shapes, for shapes no fixture covers.

Values (ids, transaction keys, commit numbers) are taken from the real payloads in
../shared/fixtures/salesforce and from the Salesforce CDC Developer Guide examples; the
envelopes follow the documented CometD, Pub/Sub API and Kafka Connect record formats.
"""

from __future__ import annotations

from typing import Any

import msgspec

# From pubsub_AccountChangeEvent_UPDATE_compound_bitmap.json.
ACCOUNT_ID = "0015f00002JUXA8AAP"
# From pubsub_lead_conversion_transaction.jsonl.
OTHER_ACCOUNT_ID = "0015f00002JUX1JAAX"
# From the "Merged Change Events" example of the CDC Developer Guide.
MERGED_EVENT_ACCOUNT_IDS = ["0015f00002JUZPDAA5", "0015f00002JUZPXAA5", "0015f00002JUZPcAAP"]
# From pubsub_OpportunityChangeEvent_CREATE.json.
OPPORTUNITY_ID = "006SM0000001Tb3YAE"
OPPORTUNITY_ACCOUNT_ID = "001SM0000000iibYAA"
TRANSACTION_KEY = "00000466-3d4f-bbe3-9c2b-5ab0fb45cc02"
COMMIT_TIMESTAMP = 1652977933000
COMMIT_NUMBER = 1652977933433528300
COMMIT_USER = "005SM000000146PYAQ"

# Field order of the AccountChangeEvent Avro schema (as the Pub/Sub fixture lists it).
ACCOUNT_FIELDS = [
    "Name", "Type", "ParentId", "BillingAddress", "ShippingAddress", "Phone", "Fax", "AccountNumber",
    "Website", "Sic", "Industry", "AnnualRevenue", "NumberOfEmployees", "Ownership", "TickerSymbol",
    "Description", "Rating", "Site", "OwnerId", "CreatedDate", "CreatedById", "LastModifiedDate",
    "LastModifiedById", "CurrencyIsoCode", "MasterRecordId", "Tax_Id__c", "Payment_Terms__c",
]  # fmt: skip
OPPORTUNITY_FIELDS = [
    "AccountId", "IsPrivate", "Name", "Description", "StageName", "Amount", "Probability",
    "ExpectedRevenue", "TotalOpportunityQuantity", "CloseDate", "Type", "IsClosed", "IsWon", "ForecastCategory",
    "OwnerId", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "CurrencyIsoCode", "Plan__c",
]  # fmt: skip
# Kafka Connect records carry compound addresses flattened as well.
CONNECT_ACCOUNT_FIELDS = [
    *ACCOUNT_FIELDS, "BillingStreet", "BillingCity", "BillingState", "BillingPostalCode", "BillingCountry",
]  # fmt: skip


def header(
    entity: str = "Opportunity",
    change_type: str = "UPDATE",
    record_ids: list[str] | None = None,
    changed_fields: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ChangeEventHeader; `extra` adds or overrides header fields (None drops one)."""
    value: dict[str, Any] = {
        "entityName": entity,
        "recordIds": record_ids if record_ids is not None else [OPPORTUNITY_ID],
        "changeType": change_type,
        "changeOrigin": "com/salesforce/api/soap/55.0;client=SfdcInternalAPI/",
        "transactionKey": TRANSACTION_KEY,
        "sequenceNumber": 1,
        "commitTimestamp": COMMIT_TIMESTAMP,
        "commitNumber": COMMIT_NUMBER,
        "commitUser": COMMIT_USER,
        "changedFields": changed_fields if changed_fields is not None else [],
    }
    value.update(extra)
    return {key: item for key, item in value.items() if item is not None}


def cometd(
    header_fields: dict[str, Any],
    fields: dict[str, Any],
    *,
    replay_id: int = 32872942,
    event_uuid: str | None = None,
    channel: str | None = None,
    envelope: bool = True,
) -> bytes:
    """A Streaming API message: only the given fields in the payload (dates as ISO strings)."""
    event: dict[str, Any] = {"replayId": replay_id}
    if event_uuid is not None:
        event["EventUuid"] = event_uuid
    entity = header_fields.get("entityName", "Opportunity")
    data = {
        "schema": "fl8pv4oUvtbyFAwJQO2NAQ",
        "payload": {**fields, "ChangeEventHeader": header_fields},
        "event": event,
    }
    if not envelope:
        return msgspec.json.encode(data)
    return msgspec.json.encode({"data": data, "channel": channel or f"/data/{entity}ChangeEvent"})


def pubsub(header_fields: dict[str, Any], fields: dict[str, Any], schema_fields: list[str]) -> bytes:
    """A Pub/Sub API payload decoded to JSON: every schema field present, null unless given."""
    payload: dict[str, Any] = {"ChangeEventHeader": header_fields}
    payload.update({name: None for name in schema_fields})
    payload.update(fields)
    return msgspec.json.encode(payload)


def connect(
    header_fields: dict[str, Any],
    fields: dict[str, Any],
    schema_fields: list[str],
    *,
    replay_id: str = "1305887",
    with_schema: bool = False,
    flatten: str | None = None,
) -> bytes:
    """A Kafka Connect Salesforce CDC source record value (JsonConverter).

    `with_schema` wraps it in the `{"schema", "payload"}` envelope of schemas.enable=true;
    `flatten` (a delimiter) flattens the header the way the Flatten transform does.
    """
    entity = header_fields.get("entityName", "Opportunity")
    record_ids = header_fields.get("recordIds") or [None]
    record: dict[str, Any] = {"Id": record_ids[0], "ReplayId": replay_id}
    if flatten is None:
        record["ChangeEventHeader"] = header_fields
    else:
        record.update({f"ChangeEventHeader{flatten}{key}": value for key, value in header_fields.items()})
    record.update({name: None for name in schema_fields})
    record.update(fields)
    record["_ObjectType"] = f"{entity}ChangeEvent"
    record["_EventType"] = "R1-FSrKj5SMSfaXy7QNdEw"
    if with_schema:
        schema = {"type": "struct", "name": f"io.confluent.salesforce.{entity}ChangeEvent", "optional": False}
        return msgspec.json.encode({"schema": schema, "payload": record})
    return msgspec.json.encode(record)
