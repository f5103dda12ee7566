"""`concord saga list|show|resume` (app/saga_cmd.py): its arguments, what it prints, what a resume sends and
under which name, and each failure said in one line (no traceback), with the saga index and Kafka stood in for."""

from __future__ import annotations

import argparse
import json

import pytest

from concord.app import saga_cmd
from concord.app.cli import build_parser, cmd_saga
from concord.connectors.saga_index import SagaIndex
from concord.core import messages
from concord.core.settings import Settings
from concord.drift import saga as dsaga
from concord.drift.saga import SagaView
from tests.unit.app.test_sagas import saga

SAGAS = [saga("006P"), saga("006R", dsaga.RUNNING, step=dsaga.SUBSCRIPTION, command_id="c1", attempts=1,
                            records={"billing_customer": "cus_1"}, done=(dsaga.VALIDATE, dsaga.BILLING_CUSTOMER))]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["saga", *argv])


@pytest.fixture
def index(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The saga index's reads over `SAGAS` (no Redis); the reads made."""
    reads: list[str] = []

    async def get(self: SagaIndex, opportunity_id: str) -> SagaView | None:
        return next((s for s in SAGAS if s.opportunity_id == opportunity_id), None)

    async def every(self: SagaIndex) -> list[SagaView]:
        reads.append("all")
        return list(SAGAS)

    monkeypatch.setattr(SagaIndex, "get", get)
    monkeypatch.setattr(SagaIndex, "all", every)
    return reads


def run(*argv: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    return saga_cmd.run(Settings(), parse(*argv), lines.append), lines


def test_the_subcommands_and_their_options() -> None:
    args = parse("list", "--state", "paused", "--customer", "001A", "--limit", "5", "--json")
    assert (args.what, args.state, args.customer, args.limit, args.json, args.func) == (
        "list", "paused", "001A", 5, True, cmd_saga)
    assert (parse("list").state, parse("list").limit) == (None, 100)
    assert parse("show", "006A").opportunity_id == "006A"
    resume = parse("resume", "006A", "--note", "tax id set")
    assert (resume.what, resume.opportunity_id, resume.note) == ("resume", "006A", "tax id set")
    assert parse("resume", "006A").note == ""


@pytest.mark.parametrize(("argv", "words"), [
    (("list", "--state", "stuck"), "invalid choice: 'stuck' (choose from 'running', 'completed'"),
    (("list", "--limit", "many"), "invalid int value: 'many'"),
    (("resume",), "the following arguments are required: ID"),
    ((), "the following arguments are required: COMMAND"),
])
def test_bad_arguments_are_refused_with_what_to_give(argv: tuple[str, ...], words: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2 and words in capsys.readouterr().err


def test_list_puts_the_waiting_first_and_says_why(index: list[str]) -> None:
    code, lines = run("list")
    assert code == 0 and index == ["all"]  # one read of the index
    assert lines[0].split() == ["opportunity", "customer", "state", "step", "changed", "reason"]
    assert lines[1].split()[:4] == ["006P", "001A", "paused", "validate"] and lines[1].endswith("missing_tax_id")
    assert lines[2].split()[:4] == ["006R", "001A", "running", "subscription"] and lines[2].endswith(" -")
    code, lines = run("list", "--state", "running", "--customer", "001A", "--json")
    assert code == 0 and index == ["all", "all"]
    assert [s["opportunity_id"] for s in json.loads(lines[0])] == ["006R"]


def test_show_says_what_to_fix_and_how_to_resume(index: list[str]) -> None:
    code, lines = run("show", "006P")
    assert code == 0
    text = "\n".join(lines)
    assert "state        paused" in text and "reason       missing_tax_id: the deal cannot be provisioned" in text
    assert "to fix       set account 001A's tax id" in text
    assert "resume with  concord saga resume 006P --note '<what was fixed>'" in text
    _, running = run("show", "006R")
    assert "in flight    command c1 (sent 1 times)" in running and "record       billing_customer: cus_1" in running
    assert not any(line.startswith("resume with") for line in running)
    code, lines = run("show", "006R", "--json")
    assert json.loads(lines[0])["command_id"] == "c1"


def test_resume_sends_the_message_keyed_by_the_customer_as_the_os_user(
        index: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[bytes, bytes]] = []

    async def send_resume(settings: Settings, key: bytes, value: bytes) -> None:
        sent.append((key, value))

    monkeypatch.setattr(saga_cmd, "send_resume", send_resume)
    monkeypatch.setattr(saga_cmd.getpass, "getuser", lambda: "carol")
    code, lines = run("resume", "006P", "--note", "tax id set")
    assert code == 0 and "sent as cli:carol" in lines[0]
    assert sent == [(b"001A", messages.encode(messages.ResumeSaga(customer_key="001A", opportunity_id="006P",
                                                                  by="cli:carol", note="tax id set")))]


@pytest.mark.parametrize(("argv", "words"), [
    (("resume", "006R"), "concord saga resume: the saga of opportunity 006R is running (step subscription): only a "
                         "paused, failed or compensated saga can be resumed"),
    (("resume", "006NOPE"), "concord saga resume: no saga for opportunity '006NOPE' in the saga index"),
    (("show", "006NOPE"), "concord saga show: no saga for opportunity '006NOPE'"),
    (("resume", "006P", "--note", "x" * 2001), "--note: at most 2000 characters, got 2001"),
    (("list", "--limit", "0"), "--limit 0: ask for 1 to 1000 sagas"),
])
def test_what_cannot_be_done_is_said_in_one_line(index: list[str],
                                                 capsys: pytest.CaptureFixture[str], argv: tuple[str, ...],
                                                 words: str) -> None:
    code, lines = run(*argv)
    err = capsys.readouterr().err
    assert code == 1 and lines == [] and words in err and len(err.strip().splitlines()) == 1


def test_redis_unreachable_is_said_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(redis_url="redis://:hunter2@127.0.0.1:1/0")
    assert saga_cmd.run(settings, parse("list"), print) == 1
    err = capsys.readouterr().err
    assert err.startswith("concord saga list: cannot reach Redis at redis://:") and "hunter2" not in err
    assert "Is it running (`concord infra status`) and is CONCORD_REDIS_URL right?" in err


def test_kafka_unreachable_is_said_plainly(index: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(kafka_url="kafka://127.0.0.1:1")
    assert saga_cmd.run(settings, parse("resume", "006P"), print) == 1
    err = capsys.readouterr().err
    assert "concord saga resume: cannot reach Kafka at 127.0.0.1:1" in err and "the resume was not sent" in err


def test_the_cli_user_names_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(saga_cmd.getpass, "getuser", lambda: "dave")
    assert saga_cmd.cli_user() == "cli:dave"

    def nobody() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(saga_cmd.getpass, "getuser", nobody)
    assert saga_cmd.cli_user() == "cli:unknown"
