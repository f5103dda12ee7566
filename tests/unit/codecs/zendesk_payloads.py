"""Builders for Zendesk payloads the fixtures do not cover (webhook organization/ticket events).

Shapes follow developer.zendesk.com/api-reference/webhooks/event-types/ (organization and ticket
events): ids in `detail` are strings, ticket status and priority upper case.
"""

from __future__ import annotations

from typing import Any

import msgspec

ORG_ID = "6607619104125"
TICKET_ID = "35436"


def webhook(event_type: str, detail: dict[str, Any], *, event_id: str, time: str, event: Any = None) -> bytes:
    """A webhook body as Zendesk POSTs it for an event-type subscription."""
    domain = event_type.split(".", 1)[0]
    return msgspec.json.encode(
        {
            "type": f"zen:event-type:{event_type}",
            "account_id": 10973248,
            "id": event_id,
            "time": time,
            "zendesk_event_version": "2022-06-20",
            "subject": f"zen:{domain}:{detail.get('id')}",
            "detail": detail,
            "event": {} if event is None else event,
        }
    )


def org_detail(**overrides: Any) -> dict[str, Any]:
    """`detail` of an organization event: no tags, no organization_fields."""
    detail: dict[str, Any] = {
        "created_at": "2099-07-07T03:44:13Z",
        "id": ORG_ID,
        "name": "Acme",
        "shared_comments": False,
        "shared_tickets": False,
        "updated_at": "2099-07-07T03:44:13Z",
        "group_id": None,
        "external_id": "001Dn00000AcmeAAA",
    }
    return detail | overrides


def ticket_detail(**overrides: Any) -> dict[str, Any]:
    """`detail` of a ticket event."""
    detail: dict[str, Any] = {
        "actor_id": "20978392",
        "assignee_id": "235324",
        "brand_id": "123",
        "created_at": "2099-05-20T22:55:29Z",
        "id": TICKET_ID,
        "organization_id": ORG_ID,
        "priority": "HIGH",
        "requester_id": "20978392",
        "status": "OPEN",
        "subject": "Cannot log in",
        "tags": ["enterprise"],
        "type": "QUESTION",
        "updated_at": "2099-05-25T01:23:45Z",
        "via": {"channel": "web"},
    }
    return detail | overrides


def rest_org(**overrides: Any) -> dict[str, Any]:
    """A REST organization with entitlement fields set (keys as in the default CodecConfig)."""
    org: dict[str, Any] = {
        "url": "https://acme.zendesk.com/api/v2/organizations/361.json",
        "id": 361,
        "name": "Acme",
        "external_id": "001Dn00000AcmeAAA",
        "created_at": "2024-01-02T03:04:05Z",
        "updated_at": "2024-05-06T07:08:09Z",
        "domain_names": ["acme.example"],
        "tags": ["enterprise", "priority"],
        "organization_fields": {
            "support_status": "active",
            "support_tier": "gold",
            "support_end_date": "2025-12-31",
            "unrelated": ["a", "b"],
        },
    }
    return org | overrides
