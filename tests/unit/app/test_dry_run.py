"""CONCORD_DRY_RUN: detect and report, command nothing (the safe first week against a company's systems)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from concord.agents.saga import config_of
from concord.app.main import drift_config
from concord.core.settings import Settings, load


def settings(tmp_path: Path, **env: str) -> Settings:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {"D01": {"dry_run": False, "grace_seconds": 60}}}))
    return load({"CONCORD_RULES_FILE": str(rules), **env})


def test_every_rule_is_in_dry_run_whatever_the_rules_file_says(tmp_path: Path) -> None:
    normal = drift_config(settings(tmp_path))
    assert not any(rule.dry_run for rule in normal.rules.values())
    dry = drift_config(settings(tmp_path, CONCORD_DRY_RUN="true"))
    assert dry.rules and all(rule.dry_run for rule in dry.rules.values())
    assert dry.rules["D01"].grace_seconds == 60  # the rest of the file still holds
    assert msgspec.structs.replace(dry, rules=normal.rules) == normal


def test_no_saga_provisions_a_deal_in_a_dry_run(tmp_path: Path) -> None:
    class Stub:
        def __init__(self, s: Settings) -> None:
            self.settings = s
    normal, dry = settings(tmp_path), settings(tmp_path, CONCORD_DRY_RUN="1")
    assert config_of(Stub(normal), drift_config(normal)).enabled  # type: ignore[arg-type]
    assert not config_of(Stub(dry), drift_config(dry)).enabled  # type: ignore[arg-type]
