"""The timeline agent's reading of the audit topic (the store's pure parts: tests/unit/connectors/test_timeline.py)."""

from __future__ import annotations

from concord.agents.timeline import checkpoints_of
from concord.connectors.timeline import command_issued
from concord.core import messages
from concord.core.messages import AuditRecord
from tests.unit.connectors.test_timeline import command


def test_audit_values_become_checkpoints_and_unreadable_ones_are_counted() -> None:
    values = [messages.encode(command_issued(command())), b"{not json",
              messages.encode(AuditRecord(kind="resync_required", at=1))]
    checkpoints, unreadable = checkpoints_of(values)
    assert [c.kind for _, c in checkpoints] == ["command.issued"] and unreadable == 1
