from __future__ import annotations

import subprocess
import sys

from concord.agents.context import ROLES
from concord.app.factory import create_concord
from concord.core.settings import Settings


def _concord(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "concord.app.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_help_lists_every_command_with_a_description() -> None:
    out = _concord("--help")
    assert out.returncode == 0
    for command in ("worker", "webhooks", "config", "infra", "demo", "decode", "rules", "saga"):
        line = next(line for line in out.stdout.splitlines() if line.strip().startswith(command))
        assert len(line.split(None, 1)) == 2, f"{command} has no one-line description"


def test_bad_setting_fails_at_start_without_traceback() -> None:
    out = _concord("config", env={"CONCORD_WEB_PORT": "nope", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1
    assert "CONCORD_WEB_PORT='nope' is not valid" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_prints_effective_settings() -> None:
    out = _concord("config", env={"CONCORD_APP_ID": "billing-sync", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0
    assert "CONCORD_APP_ID=billing-sync" in out.stdout


def test_app_declares_every_topic_with_settings_partitions_and_replication() -> None:
    concord = create_concord(Settings(topic_prefix="acme", topic_partitions=6, topic_replication_factor=1))
    names = set(concord.topics)
    assert {"acme.raw.stripe", "acme.raw.salesforce", "acme.raw.zendesk", "acme.raw.netsuite",
            "acme.dlq.ingest", "acme.identity", "acme.canonical", "acme.drift", "acme.commands",
            "acme.command-results", "acme.dlq.commands", "acme.audit", "acme.commands.stripe",
            "acme.commands.salesforce", "acme.commands.zendesk", "acme.commands.netsuite",
            "acme.commands.concord"} == names
    for topic in concord.topics.values():
        assert topic.partitions == 6
        assert topic.replicas == 1
    assert concord.app.conf.web_tables_enabled is False
    assert concord.roles == frozenset(ROLES)


def test_unknown_role_is_refused() -> None:
    try:
        create_concord(Settings(), roles=["ingest", "billing"])
    except ValueError as exc:
        assert "billing" in str(exc)
    else:
        raise AssertionError("an unknown role was accepted")


def test_rules_lists_every_rule_with_its_configuration(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    out = _concord("rules", "--json", env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert [r["id"] for r in listing] == [f"D{i:02d}" for i in range(1, 16)]
    d01 = listing[0]
    assert (d01["grace_seconds"], d01["action"], d01["dry_run"]) == (3600, "support.suspend_entitlement", False)
    overrides = tmp_path / "rules.json"
    overrides.write_text(json.dumps({"rules": {"D01": {"dry_run": True, "grace_seconds": 60}}}))
    table = _concord("rules", env={"PATH": "/usr/bin:/bin", "CONCORD_RULES_FILE": str(overrides)})
    assert table.returncode == 0, table.stderr
    d01_line = next(line for line in table.stdout.splitlines() if line.startswith("D01"))
    assert "entitlement_unpaid" in d01_line and " 1m " in d01_line and " yes " in d01_line


def test_a_bad_rules_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "rules.json"
    bad.write_text('{"rules": {"D99": {}}}')
    out = _concord("rules", env={"PATH": "/usr/bin:/bin", "CONCORD_RULES_FILE": str(bad)})
    assert out.returncode == 1
    assert "unknown rule 'D99'" in out.stderr and "Traceback" not in out.stderr


def test_rules_durations_read_at_a_glance() -> None:
    from concord.app.cli import duration

    assert [duration(s) for s in (0, 45, 90, 60, 900, 3600, 5400, 7200, 86400)] == [
        "0s", "45s", "90s", "1m", "15m", "1h", "90m", "2h", "24h"]


def test_rules_table_prints_the_default_graces_as_the_docs_give_them() -> None:
    out = _concord("rules", env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    graces = {line.split()[0]: line.split()[3] for line in out.stdout.splitlines() if line.startswith("D")}
    assert (graces["D01"], graces["D02"], graces["D05"], graces["D06"], graces["D07"]) == (
        "1h", "15m", "0s", "2h", "24h")
    assert "correction timeout: 30m" in out.stdout


def test_demo_help_offers_only_what_the_demo_uses() -> None:
    out = _concord("demo", "--help")
    assert out.returncode == 0, out.stderr
    # The demo brings Kafka and Redis up and down itself, with its own session file: `concord infra`'s
    # --session (and its text about `make test`) is not the demo's.
    assert "--session" not in out.stdout and "make test" not in out.stdout
    for option in ("--cache", "--kafka-port", "--redis-port", "--seed", "--customers", "--drift-rate",
                   "--time-scale", "--duration", "--settle", "--hold", "--procfile"):
        assert option in out.stdout
    assert "Procfile's worker, webhooks and sandbox" in " ".join(out.stdout.split())  # as argparse wraps it
    infra = _concord("infra", "--help")
    assert "--session" in infra.stdout
