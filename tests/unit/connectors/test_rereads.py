"""Which re-read requests become commands, that a redelivered signal re-reads once, and that a burst of
signals for one record makes one re-read after its window: Zendesk organization webhooks, Salesforce gaps."""

from __future__ import annotations

import msgspec

from concord.codecs import salesforce, zendesk
from concord.codecs.model import ResyncRequired
from concord.connectors.rereads import FETCH_ORGANIZATION, reread_commands, reread_unread
from concord.connectors.salesforce import FETCH_RECORD
from concord.core.messages import command_id, command_key
from tests.unit.codecs.salesforce_payloads import ACCOUNT_ID, OPPORTUNITY_ID, cometd, header, pubsub

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


def test_an_organization_signal_named_for_another_platform_makes_no_command() -> None:
    assert reread_commands(_resync(), "salesforce", now=1) == []


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


def _gap(change_type: str = "GAP_UPDATE", entity: str = "Account", record_ids: list[str] | None = None,
         transaction_key: str = "00006bf0-edfd-6e54-a3f9-e8cefdb2c2b7") -> list[ResyncRequired]:
    gap_header = header(entity, change_type, record_ids or [ACCOUNT_ID])
    gap_header["transactionKey"] = transaction_key
    events = salesforce.decode(pubsub(gap_header, {}, []))
    assert all(isinstance(e, ResyncRequired) for e in events)
    return [e for e in events if isinstance(e, ResyncRequired)]


def test_a_salesforce_gap_naming_a_record_becomes_one_fetch_of_that_record() -> None:
    [gap] = _gap()
    [command] = reread_commands(gap, "salesforce", now=1_000)
    assert (command.action, command.platform) == (FETCH_RECORD, "salesforce")
    assert command.target == {"record_id": ACCOUNT_ID, "object": "Account"}
    assert command_key(command) == f"salesforce:{ACCOUNT_ID}".encode()  # in order with the account's updates
    assert command.customer_key == ACCOUNT_ID and command.fingerprint == "" and command.rule == ""
    assert command.command_id == command_id(f"reread:{gap.event_id}", FETCH_RECORD, 0)
    [opportunity_gap] = _gap("GAP_CREATE", "Opportunity", [OPPORTUNITY_ID])
    [fetch] = reread_commands(opportunity_gap, "salesforce", now=1_000)
    assert fetch.target == {"record_id": OPPORTUNITY_ID, "object": "Opportunity"}
    assert fetch.customer_key == ""  # the opportunity's account is known once it is read


def test_a_gap_naming_several_records_fetches_each_and_one_naming_none_fetches_nothing() -> None:
    gaps = _gap(record_ids=[ACCOUNT_ID, "0015f00002JUX1JAAX"])
    commands = [c for gap in gaps for c in reread_commands(gap, "salesforce", now=1_000)]
    assert [c.target["record_id"] for c in commands] == [ACCOUNT_ID, "0015f00002JUX1JAAX"]
    assert len({c.command_id for c in commands}) == 2
    [overflow] = _gap("GAP_OVERFLOW", record_ids=["000000000000000AAA"])
    assert overflow.record_ids == () and reread_commands(overflow, "salesforce", now=1_000) == []
    [wildcard] = salesforce.decode(cometd(header("Account", "UPDATE", ["001*"]), {}))
    assert isinstance(wildcard, ResyncRequired) and reread_commands(wildcard, "salesforce", now=1_000) == []
    # Only the objects the connector reads are fetched.
    assert reread_commands(msgspec.structs.replace(gaps[0], object_type="Contact"), "salesforce", now=1) == []


def test_the_same_gap_delivered_twice_gives_the_same_command_id() -> None:
    [gap] = _gap()
    [first], [again] = reread_commands(gap, "salesforce", now=1), reread_commands(_gap()[0], "salesforce", now=99)
    assert first.command_id == again.command_id  # the ledger runs it once


def test_gaps_of_one_record_within_a_window_make_one_late_enough_fetch() -> None:
    [gap] = _gap()
    [other] = _gap(transaction_key="00000466-3d4f-bbe3-9c2b-5ab0fb45cc02")
    assert other.event_id != gap.event_id
    [first] = reread_commands(gap, "salesforce", now=10_100, window_ms=2_000)
    [second] = reread_commands(other, "salesforce", now=11_900, window_ms=2_000)
    assert first.command_id == second.command_id and first.not_before == second.not_before == 12_500
    [later] = reread_commands(other, "salesforce", now=12_000, window_ms=2_000)
    assert later.command_id != first.command_id and later.not_before == 14_500
    [elsewhere] = reread_commands(_gap(record_ids=["0015f00002JUX1JAAX"])[0], "salesforce", now=10_100,
                                  window_ms=2_000)
    assert elsewhere.command_id != first.command_id
    # A Zendesk organization and a Salesforce record of the same window never share an id.
    [organization] = reread_commands(_resync(), "zendesk", now=10_100, window_ms=2_000)
    assert organization.command_id != first.command_id


def test_what_is_still_unread_when_a_finding_cannot_be_judged_is_read_once_more() -> None:
    commands = reread_unread("001A", {"360": (1, 2)}, {"001A": (1, 2), "006B": (1, 2)}, 5_000, "corr")
    assert [(c.action, c.target) for c in commands] == [
        (FETCH_ORGANIZATION, {"organization_id": "360"}),
        (FETCH_RECORD, {"record_id": "001A", "object": "Account"}),
        (FETCH_RECORD, {"record_id": "006B", "object": "Opportunity"}),
    ]
    assert all(c.customer_key == "001A" and c.correlation_id == "corr" and c.rule == "" for c in commands)
    # The same report gives the same ids (the ledger runs them once); a later one reads again.
    assert [c.command_id for c in reread_unread("001A", {"360": (1, 2)}, {}, 5_000, "x")] == [commands[0].command_id]
    assert reread_unread("001A", {"360": (1, 2)}, {}, 6_000, "x")[0].command_id != commands[0].command_id
    assert reread_unread("001A", {}, {}, 5_000, "x") == []
