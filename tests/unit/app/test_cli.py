from __future__ import annotations

import subprocess
import sys

from concord.app.factory import ROLES, Concord
from concord.app.settings import Settings


def _concord(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "concord.app.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_help_lists_every_command_with_a_description() -> None:
    out = _concord("--help")
    assert out.returncode == 0
    for command in ("worker", "config", "infra", "demo"):
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
    concord = Concord(Settings(topic_prefix="acme", topic_partitions=6, topic_replication_factor=1))
    names = set(concord.topics)
    assert {"acme.raw.stripe", "acme.raw.salesforce", "acme.raw.zendesk", "acme.raw.netsuite",
            "acme.dlq.ingest", "acme.identity", "acme.canonical", "acme.drift", "acme.commands",
            "acme.command-results", "acme.dlq.commands", "acme.audit"} == names
    for topic in concord.topics.values():
        assert topic.partitions == 6
        assert topic.replicas == 1
    assert concord.app.conf.web_tables_enabled is False
    assert concord.roles == frozenset(ROLES)


def test_unknown_role_is_refused() -> None:
    try:
        Concord(Settings(), roles=["ingest", "billing"])
    except ValueError as exc:
        assert "billing" in str(exc)
    else:
        raise AssertionError("an unknown role was accepted")
