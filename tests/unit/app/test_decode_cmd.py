from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _decode(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "concord.app.cli", "decode", *args], input=stdin,
                          capture_output=True, timeout=60)


def test_one_document_prints_one_json_line_per_canonical_event(shared_fixtures: Path) -> None:
    out = _decode("stripe", str(shared_fixtures / "stripe/events-2020-08-27/invoice.paid.json"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert (event["kind"], event["status"], event["total"], event["currency"]) == ("invoice", "paid", 2000, "USD")


def test_json_lines_from_stdin(shared_fixtures: Path) -> None:
    data = (shared_fixtures / "salesforce/pubsub_lead_conversion_transaction.jsonl").read_bytes()
    out = _decode("salesforce", stdin=data)
    assert out.returncode == 0, out.stderr
    kinds = [json.loads(line)["kind"] for line in out.stdout.decode().splitlines()]
    assert kinds == ["account", "opportunity"]  # Contact and Lead are not Concord's objects


def test_valid_payload_of_no_interest_prints_nothing(shared_fixtures: Path) -> None:
    out = _decode("zendesk", str(shared_fixtures / "zendesk/user.json"))
    assert (out.returncode, out.stdout) == (0, b"")


def test_undecodable_input_exits_1_with_one_line_reason() -> None:
    out = _decode("netsuite", stdin=b'{"envelope": "concord.netsuite.v1"')
    assert out.returncode == 1
    err = out.stderr.decode()
    assert err.startswith("concord decode: invalid_json")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_json_lines_error_names_the_line() -> None:
    out = _decode("stripe", stdin=b'{"id": "evt_1", "object": "event"}\nnot json\n')
    assert out.returncode == 1
    assert out.stderr.decode().startswith("concord decode: line ")


def test_missing_file_is_a_clear_error() -> None:
    out = _decode("stripe", "/nonexistent/file.json")
    assert out.returncode == 1
    assert b"cannot read /nonexistent/file.json" in out.stderr


def test_deeply_nested_file_is_refused_by_name_without_traceback(tmp_path: Path) -> None:
    # ~1,000 and ~100,000 levels: msgspec stops at Python's recursion limit (a RecursionError).
    for platform, body in [
        ("stripe", b'{"object": "event", "id": "evt_1", "type": "invoice.paid", "created": 1, "data": {"object": '
                   + b"[" * 1_000 + b"]" * 1_000 + b"}}"),
        ("salesforce", b'{"a":' * 100_000),
        ("zendesk", b'{"a": ' + b"[" * 100_000),
        ("netsuite", b'{"a":' * 1_000 + b"1" + b"}" * 1_000),
    ]:
        path = tmp_path / f"{platform}.json"
        path.write_bytes(body)
        out = _decode(platform, str(path))
        err = out.stderr.decode()
        assert out.returncode == 1, (platform, err)
        assert err.startswith("concord decode: too_deep: "), (platform, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (platform, err)
        assert out.stdout == b""
