from __future__ import annotations

import msgspec

from concord.agents.commands import correction_failed
from concord.connectors.executor import CommandResult
from concord.core.messages import Command, CorrectionFailed

COMMAND = Command(command_id="c" * 32, action="erp.update_customer", platform="netsuite", target={"id": "7"},
                  payload={}, fingerprint="f" * 20, rule="D13", customer_key="001A", generation=1,
                  correlation_id="tx1", created_at=1)


def result(status: str, kind: str) -> CommandResult:
    return CommandResult(command_id=COMMAND.command_id, action=COMMAND.action, platform="netsuite", status=status,
                         attempts=1, finished_at=5, error_kind=kind, reason="netsuite 400: no such field")


def test_data_dead_letters_are_told_to_the_finding() -> None:
    for status in ("dead_lettered", "skipped_failed"):  # also when the ledger remembers it as failed
        assert correction_failed(COMMAND, result(status, "data")) == CorrectionFailed(
            customer_key="001A", fingerprint="f" * 20, command_id="c" * 32, reason="netsuite 400: no such field", at=5)


def test_retryable_outcomes_and_re_reads_are_not() -> None:
    assert correction_failed(COMMAND, result("dead_lettered", "transient")) is None  # next generation retries
    assert correction_failed(COMMAND, result("done", "")) is None
    reread = msgspec.structs.replace(COMMAND, fingerprint="", action="support.fetch_organization")
    assert correction_failed(reread, result("dead_lettered", "data")) is None
