"""What the command agents tell a customer's saga: every result of its commands, and D10's resume."""

from __future__ import annotations

import msgspec

from concord.agents.commands import correction_failed, saga_signal
from concord.connectors.executor import CommandResult
from concord.core.messages import SAGA_RULE, Command, ResumeSaga, SagaStepResult, saga_fingerprint

STEP = Command(command_id="c1", action="billing.create_subscription", platform="stripe",
               target={"customer_id": "cus_1"}, payload={"price": "price_pro", "quantity": 2},
               fingerprint=saga_fingerprint("006A"), rule=SAGA_RULE, customer_key="001A", generation=0,
               correlation_id="006A", created_at=1)
RESUME = Command(command_id="r" * 32, action="saga.resume", platform="concord", target={"opportunity_id": "006A"},
                 payload={}, fingerprint="fp-d10", rule="D10", customer_key="001A", generation=1,
                 correlation_id="e1", created_at=1)


def result(command: Command, status: str, kind: str = "", record_id: str = "") -> CommandResult:
    return CommandResult(command_id=command.command_id, action=command.action, platform=command.platform,
                         status=status, attempts=1, finished_at=5, error_kind=kind, reason="why" if kind else "",
                         record_id=record_id)


def test_every_result_of_a_saga_command_goes_back_to_its_saga_and_is_no_finding_correction() -> None:
    assert saga_signal(STEP, result(STEP, "done", record_id="sub_1")) == SagaStepResult(
        customer_key="001A", opportunity_id="006A", command_id="c1", action="billing.create_subscription",
        status="done", at=5, record_id="sub_1")
    failed = saga_signal(STEP, result(STEP, "dead_lettered", "data"))
    assert isinstance(failed, SagaStepResult) and (failed.error_kind, failed.reason) == ("data", "why")
    assert correction_failed(STEP, result(STEP, "dead_lettered", "data")) is None  # the saga handles it


def test_d10s_resume_resumes_the_saga_once_it_went_through() -> None:
    signal = saga_signal(RESUME, result(RESUME, "done", record_id="006A"))
    assert isinstance(signal, ResumeSaga) and (signal.customer_key, signal.opportunity_id) == ("001A", "006A")
    assert signal.by.startswith("D10:")
    assert saga_signal(RESUME, result(RESUME, "already_done")) is None  # the ledger: resumed once already
    assert saga_signal(RESUME, result(RESUME, "dead_lettered", "data")) is None


def test_other_commands_tell_no_saga() -> None:
    other = msgspec.structs.replace(STEP, rule="D02", fingerprint="fp", action="support.grant_entitlement")
    assert saga_signal(other, result(other, "done")) is None
    nobody = msgspec.structs.replace(STEP, customer_key="")
    assert saga_signal(nobody, result(nobody, "done")) is None
