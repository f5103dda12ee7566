"""Re-reads: when a platform's event says "something changed, read it again", the command that does.

Zendesk organization webhooks do not carry `organization_fields` or `tags`, so the Zendesk codec
turns them into `ResyncRequired` instead of guessing the entitlement. A re-read is a command like
any other (`support.fetch_organization`): the command agent runs it through the ledger and the
connector, and feeds the organization the API returns to the raw Zendesk topic, where the codec
reads the full entitlement. Its id derives from the event id, so a redelivered webhook re-reads once.

Other re-read requests (Salesforce GAP events) have no connector yet: they stay metric + audit.
"""

from __future__ import annotations

from typing import Final

from concord.codecs.model import ResyncRequired
from concord.drift.lifecycle import Command, command_id

FETCH_ORGANIZATION: Final = "support.fetch_organization"


def reread_commands(event: ResyncRequired, platform: str, now: int) -> list[Command]:
    """The commands that re-read the records `event` names; empty when no connector can."""
    if platform != "zendesk" or event.object_type != "organization":
        return []
    return [
        Command(
            command_id=command_id(f"reread:{event.event_id}", FETCH_ORGANIZATION, 0),
            action=FETCH_ORGANIZATION,
            platform="zendesk",
            target={"organization_id": record_id},
            payload={},
            fingerprint="",
            rule="",
            customer_key=event.customer_key or "",
            generation=0,
            correlation_id=event.correlation_id or event.event_id,
            created_at=now,
        )
        for record_id in event.record_ids
    ]
