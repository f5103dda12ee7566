"""The timeline's pure parts: what goes to the audit topic, the checkpoints it becomes, and the bound."""

from __future__ import annotations

import msgspec

from concord.connectors.executor import CommandResult
from concord.connectors.timeline import (
    EVENTS_LISTED,
    Checkpoint,
    action_taken,
    bounded,
    checkpoint_of,
    command_issued,
    command_result,
    events_applied,
    score,
)
from concord.core.messages import AuditRecord, Command
from tests.unit.tables.state_builders import KEY, NETSUITE, invoice, subscription


def command(**fields: object) -> Command:
    values: dict[str, object] = {
        "command_id": "c1", "action": "support.suspend_entitlement", "platform": "zendesk",
        "target": {"organization_id": "9"}, "payload": {}, "fingerprint": "fp1", "rule": "D01",
        "customer_key": KEY, "generation": 1, "correlation_id": "evt_9", "created_at": 1_000,
    }
    values.update(fields)
    return Command(**values)  # type: ignore[arg-type]


def result(**fields: object) -> CommandResult:
    values: dict[str, object] = {
        "command_id": "c1", "action": "support.suspend_entitlement", "platform": "zendesk",
        "status": "dead_lettered", "attempts": 1, "finished_at": 2_000, "correlation_id": "evt_9",
        "fingerprint": "fp1", "rule": "D01", "customer_key": KEY, "error_kind": "data", "reason": "no_connector",
    }
    values.update(fields)
    return CommandResult(**values)  # type: ignore[arg-type]


def test_events_applied_is_one_record_per_customer_listing_a_bounded_number_of_events() -> None:
    events = [invoice(10 + n, f"in_{n}") for n in range(EVENTS_LISTED + 5)]
    record = events_applied(KEY, events, at=99)
    assert (record.kind, record.at, record.customer_key, record.platform) == ("events.applied", 99, KEY, "stripe")
    assert record.correlation_id == events[-1].event_id  # no correlation id on the event: its own id
    assert record.detail["count"] == EVENTS_LISTED + 5
    assert len(record.detail["events"]) == EVENTS_LISTED
    first = record.detail["events"][0]
    assert (first["change"], first["record"], first["record_kind"]) == ("InvoiceChanged", "in_0", "invoice")
    key, point = checkpoint_of(record)  # type: ignore[misc]
    assert key == KEY
    assert point.summary == f"{EVENTS_LISTED + 5} events applied: " + ", ".join(
        f"stripe invoice in_{n}" for n in range(EVENTS_LISTED)) + " and 5 more"
    mixed = events_applied(KEY, [invoice(1, system=NETSUITE), msgspec.structs.replace(subscription(2),
                                                                                      correlation_id="corr")], 5)
    assert mixed.platform == "" and mixed.correlation_id == "corr"  # the last event's correlation id


def test_commands_and_their_results_are_checkpoints_of_their_customer() -> None:
    issued = checkpoint_of(command_issued(command()))
    assert issued is not None
    assert issued[1].kind == "command.issued" and issued[1].correlation_id == "evt_9"
    assert issued[1].summary == "support.suspend_entitlement sent to zendesk (generation 1)"
    done = command_result(result())
    assert done is not None
    found = checkpoint_of(done)
    assert found is not None
    assert (found[0], found[1].kind, found[1].at) == (KEY, "command.dead_lettered", 2_000)
    assert found[1].summary == "support.suspend_entitlement dead_lettered after 1 attempt: no_connector"
    assert command_result(result(customer_key="")) is None  # a command of no customer
    assert checkpoint_of(AuditRecord(kind="resync_required", at=1, customer_key=None)) is None


def test_drift_checkpoints_say_the_rule_the_status_and_the_finding() -> None:
    record = AuditRecord(kind="drift.resolved", at=5, correlation_id="c", platform="concord", customer_key=KEY,
                         detail={"fingerprint": "fp1", "rule": "D04", "resolution": "corrected"})
    found = checkpoint_of(record)
    assert found is not None and found[1].summary == "D04 resolved (corrected): finding fp1"


def test_a_persons_action_is_a_checkpoint_with_their_name() -> None:
    found = checkpoint_of(action_taken("accept", KEY, "fp1", "alice", 9, "accepted", "known exception"))
    assert found is not None and found[0] == KEY
    assert (found[1].kind, found[1].correlation_id, found[1].detail["by"]) == ("action.accept", "accept:alice", "alice")
    assert found[1].summary == "accept by alice (known exception): accepted, finding fp1"


def test_saga_checkpoints_say_the_deal_what_happened_and_why() -> None:
    paused = AuditRecord(kind="saga.paused", at=5, correlation_id="006A", platform="concord", customer_key=KEY,
                         detail={"opportunity_id": "006A", "step": "validate", "reason": "missing tax id"})
    found = checkpoint_of(paused)
    assert found is not None and found[1].correlation_id == "006A"
    assert found[1].summary == "saga of opportunity 006A paused (step validate): missing tax id"
    resumed = AuditRecord(kind="saga.step_done", at=6, correlation_id="006A", platform="concord", customer_key=KEY,
                          detail={"opportunity_id": "006A", "step": "subscription", "by": "ops"})
    found = checkpoint_of(resumed)
    assert found is not None and found[1].summary == "saga of opportunity 006A step done by ops (step subscription)"


def test_within_one_millisecond_events_come_before_findings_before_commands_before_results() -> None:
    kinds = ["command.done", "drift.open", "command.issued", "events.applied"]
    ordered = sorted((Checkpoint(at=7, kind=k, correlation_id="", platform="", summary="") for k in kinds),
                     key=score)
    assert [c.kind for c in ordered] == ["events.applied", "drift.open", "command.issued", "command.done"]
    assert score(Checkpoint(at=8, kind="events.applied", correlation_id="", platform="", summary="")) > max(
        map(score, ordered))


def test_the_bound_keeps_the_newest_per_customer_once_each_and_nothing_too_old() -> None:
    def point(at: int) -> Checkpoint:
        return Checkpoint(at=at, kind="events.applied", correlation_id=f"c{at}", platform="stripe", summary="")

    items = [("A", point(at)) for at in range(1, 11)] + [("A", point(10)), ("B", point(3)), ("C", point(0))]
    kept = bounded(items, entries=4, oldest=2)
    assert set(kept) == {"A", "B"}  # C's only checkpoint is older than the timelines keep
    assert sorted(s // 10 for s in kept["A"].values()) == [7, 8, 9, 10]  # the newest 4, the repeat once
    assert [msgspec.msgpack.decode(m)[0] for m in kept["B"]] == [3]  # stored positionally: its time first
    again = bounded(items, entries=4, oldest=2)
    assert again == kept  # the same members: a batch written twice changes nothing
