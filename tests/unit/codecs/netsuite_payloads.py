"""Builders for `concord.netsuite.v1` envelopes and REST-shaped NetSuite records (synthetic)."""

from __future__ import annotations

from typing import Any

import msgspec

ACCOUNT_ID = "1234567"
MODIFIED = "2024-03-01T10:20:30.456Z"
MODIFIED_MS = 1709288430456


def envelope(
    record_type: str,
    record: Any,
    *,
    record_id: str | int = "101",
    event_type: str = "edit",
    modified: str = MODIFIED,
    **extra: Any,
) -> bytes:
    """An envelope as the SuiteScript posts it; `record=None` leaves the record out."""
    body: dict[str, Any] = {
        "envelope": "concord.netsuite.v1",
        "recordType": record_type,
        "id": record_id,
        "eventType": event_type,
        "lastModifiedDate": modified,
        "accountId": ACCOUNT_ID,
        **extra,
    }
    if record is not None:
        body["record"] = record
    return msgspec.json.encode(body)


def ref(record_id: str, name: str) -> dict[str, Any]:
    """A REST reference field."""
    return {"links": [], "id": record_id, "refName": name}


USD = ref("1", "USA")


def customer(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "101",
        "entityId": "CUST101",
        "companyName": "Acme Corp",
        "externalId": "001Dn00000AcmeAAA",
        "email": "ap@acme.example",
        "currency": USD,
        "terms": ref("2", "Net 30"),
        "overdueBalance": 1234.5,
        "creditHoldOverride": ref("AUTO", "Auto"),
        "lastModifiedDate": MODIFIED,
    } | overrides


def invoice(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "101",
        "tranId": "INV-0042",
        "externalId": "in_1OaBcDeFgHiJkLmN",
        "entity": ref("77", "Acme Corp"),
        "status": ref("open", "Open"),
        "total": 1210.0,
        "taxTotal": 210.0,
        "amountRemaining": 1210.0,
        "currency": USD,
        "dueDate": "2024-03-31",
    } | overrides


def customer_payment(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "101",
        "customer": ref("77", "Acme Corp"),
        "status": ref("deposited", "Deposited"),
        "payment": 1210.0,
        "currency": USD,
        "apply": {"items": [{"apply": True, "doc": ref("555", "Invoice #INV-0042"), "amount": 1210.0}]},
    } | overrides


def credit_memo(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "101",
        "externalId": "re_3OaBcDeFgHiJkLmN",
        "entity": ref("77", "Acme Corp"),
        "status": ref("open", "Open"),
        "total": 100.0,
        "currency": USD,
        "apply": {"items": [{"apply": True, "doc": ref("555", "Invoice #INV-0042")}]},
    } | overrides


def sales_order(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "101",
        "tranId": "SO-7",
        "externalId": "006Dn00000OppAAA",
        "entity": ref("77", "Acme Corp"),
        "status": ref("pendingFulfillment", "Pending Fulfillment"),
        "total": 5000.0,
        "currency": USD,
    } | overrides
