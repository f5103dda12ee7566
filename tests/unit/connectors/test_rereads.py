"""Which re-read requests become commands, that a redelivered webhook re-reads once, and that a burst
of webhooks for one organization makes one re-read after its window."""

from __future__ import annotations

import msgspec

from concord.codecs import zendesk
from concord.codecs.model import ResyncRequired
from concord.connectors.rereads import FETCH_ORGANIZATION, reread_commands

WEBHOOK = (b'{"type": "zen:event-type:organization.custom_field_changed", "account_id": 1, "id": "evt-7",'
           b' "time": "2026-11-27T10:00:00Z", "zendesk_event_version": "2022-11-06",'
           b' "subject": "zen:organization:361", "detail": {"id": "361", "external_id": "001A",'
           b' "name": "Acme", "updated_at": "2026-11-27T10:00:00Z"}, "event": {}}')


def _resync() -> ResyncRequired:
    events = zendesk.decode(WEBHOOK)
    found = [e for e in events if isinstance(e, ResyncRequired)]
    assert len(found) == 1
    return found[0]


def test_zendesk_organization_webhook_becomes_one_fetch_command() -> None:
    event = _resync()
    [command] = reread_commands(event, "zendesk", now=1_000)
    assert command.action == FETCH_ORGANIZATION
    assert command.platform == "zendesk"
    assert command.target == {"organization_id": "361"}
    assert command.customer_key == "001A"
    assert command.created_at == 1_000


def test_the_same_webhook_twice_gives_the_same_command_id() -> None:
    first = reread_commands(_resync(), "zendesk", now=1)
    again = reread_commands(_resync(), "zendesk", now=2)
    assert [c.command_id for c in first] == [c.command_id for c in again]


def test_salesforce_gaps_have_no_reread_connector() -> None:
    event = _resync()
    assert reread_commands(event, "salesforce", now=1) == []




def test_webhooks_of_one_organization_within_a_window_make_one_late_enough_reread() -> None:
    event = _resync()
    other = msgspec.structs.replace(event, event_id="evt-8")
    [first] = reread_commands(event, "zendesk", now=10_100, window_ms=2_000)
    [second] = reread_commands(other, "zendesk", now=11_900, window_ms=2_000)
    assert first.command_id == second.command_id  # one re-read for the burst: the ledger skips the repeat
    assert first.not_before == second.not_before == 12_500  # after the window closed (12,000) and a margin
    [later] = reread_commands(other, "zendesk", now=12_000, window_ms=2_000)
    assert later.command_id != first.command_id and later.not_before == 14_500
    [elsewhere] = reread_commands(msgspec.structs.replace(event, record_ids=("362",)), "zendesk", now=10_100,
                                  window_ms=2_000)
    assert elsewhere.command_id != first.command_id
    # Without a window: one re-read per webhook, at once.
    [a], [b] = reread_commands(event, "zendesk", now=10_100), reread_commands(other, "zendesk", now=10_100)
    assert a.command_id != b.command_id and a.not_before == b.not_before == 0
