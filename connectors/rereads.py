"""Re-reads: when a platform's event says "something changed, read it again", the command that does.

Zendesk organization webhooks do not carry `organization_fields` or `tags`, so the Zendesk codec
turns them into `ResyncRequired` instead of guessing the entitlement. Salesforce sends a gap event
(`GAP_CREATE`, `GAP_UPDATE`, `GAP_DELETE`, `GAP_UNDELETE`) instead of a change event when it cannot
build one: the record changed, but the event says neither which fields nor to what. A re-read is a
command like any other (`support.fetch_organization`, `crm.fetch_record`): the command agent runs it
through the ledger and the connector, and feeds the record the API returns to the platform's raw
topic, where the codec reads it whole (a Salesforce record that no longer exists comes back as a
deletion: connectors/salesforce.py).

Bursts are coalesced: the signals of one record received within one window (the platform's
`*_reread_window_seconds`, by Concord's clock) make one command, whose id derives from the record and
the window, and which runs once the window has closed (`not_before`, plus a margin). Every change
those signals announce happened before they were received, so before the window closed: the one
re-read sees them all, and the ledger skips the repeats. A signal received in a later window makes a
new re-read. With a window of 0, each signal has its own command, whose id derives from its event id
(a redelivered signal re-reads once).

Signals naming no record (Salesforce `GAP_OVERFLOW`, wildcard record ids) have no re-read: every
record of the object may be stale, which only a reconciliation can settle (agents/ingest.py says so).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from concord.codecs.model import ResyncRequired
from concord.connectors.salesforce import FETCH_RECORD, FETCHED_OBJECTS
from concord.core.messages import Command, command_id

FETCH_ORGANIZATION: Final = "support.fetch_organization"


# After its window closes, a coalesced re-read waits this much longer (clock steps between workers).
_WINDOW_MARGIN_MS: Final = 500


def reread_commands(event: ResyncRequired, platform: str, now: int, window_ms: int = 0) -> list[Command]:
    """The commands that re-read the records `event` names; empty when no connector can.

    `now` is when Concord received the event; `window_ms` coalesces bursts (module docstring).
    """
    if platform == "zendesk" and event.object_type == "organization":
        return [_fetch(event, now, window_ms, FETCH_ORGANIZATION, platform, f"organization:{organization_id}",
                       {"organization_id": organization_id})
                for organization_id in event.record_ids]
    if platform == "salesforce" and event.object_type in FETCHED_OBJECTS:
        # The record id first: it is the command's key (commands for one record stay in order).
        return [_fetch(event, now, window_ms, FETCH_RECORD, platform, f"{event.object_type}:{record_id}",
                       {"record_id": record_id, "object": event.object_type})
                for record_id in event.record_ids]
    return []


def reread_unread(customer_key: str, organizations: Iterable[str], crm_records: Iterable[str], now: int,
                  correlation_id: str) -> list[Command]:
    """Re-read, once more, what a customer's state still holds unread (Zendesk organizations; CRM records: the
    account is the customer key, any other an opportunity) when a finding waiting for it is reported "cannot
    judge": the re-read the event asked for may have failed for good while the platform failed (its retries
    exhausted: a dead letter), and a platform answering again must not leave the record unknown. One command
    per record and report (`now`), so the ledger runs it once."""
    commands = [_command(f"reread:again:zendesk:organization:{org}:{now}", 0, FETCH_ORGANIZATION, "zendesk",
                         {"organization_id": org}, customer_key, correlation_id, now) for org in sorted(organizations)]
    for record_id in sorted(crm_records):
        kind = "Account" if record_id == customer_key else "Opportunity"
        commands.append(_command(f"reread:again:salesforce:{kind}:{record_id}:{now}", 0, FETCH_RECORD, "salesforce",
                                 {"record_id": record_id, "object": kind}, customer_key, correlation_id, now))
    return commands


def _fetch(event: ResyncRequired, now: int, window_ms: int, action: str, platform: str, record: str,
           target: dict[str, str]) -> Command:
    if window_ms > 0:
        window = now // window_ms
        key = f"reread:{platform}:{record}:{window}:{window_ms}"
        not_before = (window + 1) * window_ms + _WINDOW_MARGIN_MS
    else:
        key, not_before = f"reread:{event.event_id}", 0
    return _command(key, not_before, action, platform, target, event.customer_key or "",
                    event.correlation_id or event.event_id, now)


def _command(key: str, not_before: int, action: str, platform: str, target: dict[str, str], customer_key: str,
             correlation_id: str, now: int) -> Command:
    return Command(
        command_id=command_id(key, action, 0),
        action=action,
        platform=platform,
        target=target,
        payload={},
        fingerprint="",
        rule="",
        customer_key=customer_key,
        generation=0,
        correlation_id=correlation_id,
        created_at=now,
        not_before=not_before,
    )
