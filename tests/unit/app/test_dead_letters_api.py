"""`POST /api/dead-letters/replay` (app/dead_letters_api.py): what a request asks for, and its audit record.
The replay itself is app/replay.py's (tests/unit/app/test_replay_choice.py, tests/integration/test_replay.py)."""

from __future__ import annotations

import msgspec
import pytest

from concord.app.dead_letters_api import ReplayRequest, checkpoint
from concord.app.replay import CommandFilter, IngestFilter, Summary


def test_a_request_is_the_replay_filter_of_its_kind() -> None:
    asked = msgspec.json.decode(b'{"kind": "commands", "ids": ["c1", "c2"], "rule": "D04"}', type=ReplayRequest)
    assert asked.commands() == CommandFilter(ids=frozenset({"c1", "c2"}), rule="D04")
    ingest = ReplayRequest(kind="ingest", reason="bad_payload")
    assert ingest.ingest() == IngestFilter(reason="bad_payload") and ingest.ingest().given
    assert not ReplayRequest(kind="commands").commands().given  # the route refuses it: say which
    with pytest.raises(ValueError, match="reason"):
        ReplayRequest(kind="ingest", ids=["c1"]).ingest()
    for body in (b'{"kind": "all"}', b'{"kind": "commands", "ids": [""]}', b'{"kind": "commands", "evil": 1}'):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(body, type=ReplayRequest)


def test_a_replay_is_audited_with_who_what_and_what_came_of_it() -> None:
    record = checkpoint("alice", ReplayRequest(kind="commands", ids=["c1"], dry_run=True),
                        Summary(read=3, matched=1, replayed=0, skipped=1))
    assert (record.kind, record.customer_key, record.correlation_id) == ("action.replay", None, "replay:alice")
    assert record.detail == {"by": "alice", "asked": {"kind": "commands", "ids": ["c1"], "dry_run": True},
                             "summary": {"read": 3, "matched": 1, "replayed": 0, "skipped": 1}}
