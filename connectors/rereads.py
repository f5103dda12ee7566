"""Re-reads: when a platform's event says "something changed, read it again", the command that does.

Zendesk organization webhooks do not carry `organization_fields` or `tags`, so the Zendesk codec
turns them into `ResyncRequired` instead of guessing the entitlement. A re-read is a command like
any other (`support.fetch_organization`): the command agent runs it through the ledger and the
connector, and feeds the organization the API returns to the raw Zendesk topic, where the codec
reads the full entitlement.

Bursts are coalesced: the webhooks of one organization received within one window
(`zendesk_reread_window_seconds`, by Concord's clock) make one command, whose id derives from the
organization and the window, and which runs once the window has closed (`not_before`, plus a
margin). Every change those webhooks announce happened before they were received, so before the
window closed: the one re-read sees them all, and the ledger skips the repeats. A webhook
received in a later window makes a new re-read. With a window of 0, each webhook has its own
command, whose id derives from the event id (a redelivered webhook re-reads once).

Other re-read requests (Salesforce GAP events) have no connector yet: they stay metric + audit.
"""

from __future__ import annotations

from typing import Final

from concord.codecs.model import ResyncRequired
from concord.core.messages import Command, command_id

FETCH_ORGANIZATION: Final = "support.fetch_organization"


# After its window closes, a coalesced re-read waits this much longer (clock steps between workers).
_WINDOW_MARGIN_MS: Final = 500


def reread_commands(event: ResyncRequired, platform: str, now: int, window_ms: int = 0) -> list[Command]:
    """The commands that re-read the records `event` names; empty when no connector can.

    `now` is when Concord received the event; `window_ms` coalesces bursts (module docstring).
    """
    if platform != "zendesk" or event.object_type != "organization":
        return []
    return [_fetch(event, record_id, now, window_ms) for record_id in event.record_ids]


def _fetch(event: ResyncRequired, organization_id: str, now: int, window_ms: int) -> Command:
    if window_ms > 0:
        window = now // window_ms
        key = f"reread:zendesk:organization:{organization_id}:{window}:{window_ms}"
        not_before = (window + 1) * window_ms + _WINDOW_MARGIN_MS
    else:
        key, not_before = f"reread:{event.event_id}", 0
    return Command(
        command_id=command_id(key, FETCH_ORGANIZATION, 0),
        action=FETCH_ORGANIZATION,
        platform="zendesk",
        target={"organization_id": organization_id},
        payload={},
        fingerprint="",
        rule="",
        customer_key=event.customer_key or "",
        generation=0,
        correlation_id=event.correlation_id or event.event_id,
        created_at=now,
        not_before=not_before,
    )
