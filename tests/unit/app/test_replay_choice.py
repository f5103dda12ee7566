"""Which dead letters a replay re-sends: one per command id, none the ledger forgot; an ingest dead letter back to
its source, an envelope to the partition it was read from."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from concord.app.replay import CommandFilter, IngestFilter, choose_commands, choose_ingest
from concord.core import messages
from concord.core.messages import Command

HOUR = 3_600_000


class Record(Struct):
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    topic: str = "t.dlq.commands"
    partition: int = 0
    offset: int = 0


def dead(command_id: str, failed_at: int, rule: str = "D04") -> Record:
    command = Command(command_id=command_id, action="erp.upsert_invoice", platform="netsuite",
                      target={"external_id": "in_1"}, payload={}, fingerprint="fp", rule=rule, customer_key="001A",
                      generation=1, correlation_id="c", created_at=1)
    return Record(key=b"netsuite:in_1", value=messages.encode(command), headers=[
        (messages.DLQ_REASON, b"exhausted: 503"), (messages.DLQ_FAILED_AT, str(failed_at).encode())])


def test_one_replay_per_command_id_marked_as_replay() -> None:
    lines: list[str] = []
    records: list[Any] = [dead("a", 10 * HOUR), dead("a", 11 * HOUR), dead("b", 12 * HOUR, rule="D06")]
    matched, chosen, skipped = choose_commands(records, CommandFilter(rule="D04"), "t.commands", lines.append)
    assert (matched, skipped) == (2, 1)
    assert [c.topic for c in chosen] == ["t.commands"] and chosen[0].headers == [(messages.REPLAY, b"1")]


def test_dead_letters_older_than_the_ledger_remembers_are_skipped_and_said() -> None:
    lines: list[str] = []
    records: list[Any] = [dead("old", 1 * HOUR), dead("new", 30 * HOUR)]
    matched, chosen, skipped = choose_commands(records, CommandFilter(all=True), "t.commands", lines.append,
                                               not_before_ms=24 * HOUR)
    assert (matched, len(chosen), skipped) == (2, 1, 1)
    assert "new" in chosen[0].label and "old" not in chosen[0].label
    assert lines and lines[0].startswith("skipped old: dead-lettered 23 h longer ago than the ledger remembers")
    assert "--include-expired" in lines[0]


def test_an_ingest_dead_letter_goes_back_to_its_source_and_a_keyless_envelope_to_its_partition() -> None:
    def letter(key: bytes | None) -> Record:
        return Record(key=key, value=b"{}", topic="t.dlq.ingest", headers=[
            (messages.DLQ_REASON, b"state_error"), (messages.DLQ_SOURCE_TOPIC, b"t.canonical"),
            (messages.DLQ_SOURCE_PARTITION, b"5")])

    matched, chosen, skipped = choose_ingest([letter(b"001A"), letter(None)], IngestFilter(all=True), print)
    assert (matched, skipped) == (2, 0)
    assert [(c.topic, c.key, c.partition) for c in chosen] == [("t.canonical", b"001A", None),
                                                              ("t.canonical", None, 5)]
