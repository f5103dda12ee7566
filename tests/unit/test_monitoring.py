"""The alert rules (infra/prometheus/alerts.yml) and the Grafana dashboard (infra/grafana/dashboards/) read only
metrics and labels Concord exposes, every alert is documented and tested both ways. promtool itself runs in
tests/integration/test_prometheus.py (it needs Prometheus installed)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from concord.core.metrics import REGISTRY
from tests.conftest import REPO_ROOT

ALERTS = REPO_ROOT / "infra" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO_ROOT / "infra" / "prometheus" / "alerts.test.yml"
DASHBOARDS = REPO_ROOT / "infra" / "grafana" / "dashboards"
ALERTS_DOC = REPO_ROOT / "docs" / "alerts.md"
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})

_SELECTOR = re.compile(r"\b(concord_[A-Za-z0-9_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exposed() -> dict[str, frozenset[str]]:
    """Every series name a Concord process may expose (`_total`, `_bucket`, ...) -> the labels it carries."""
    out = {}
    for name, collector in REGISTRY._names_to_collectors.items():  # type: ignore[attr-defined]
        labels = frozenset(collector._labelnames)
        out[name] = labels | {"le"} if name.endswith("_bucket") else labels
    return out


def problems(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """What in `expr` names a Concord metric or label that does not exist."""
    found = []
    labels = set(TARGET_LABELS)
    for name, matchers in _SELECTOR.findall(expr):
        if name not in known:
            found.append(f"no metric {name}")
            continue
        labels |= known[name]
        for label in _MATCHER.findall(matchers):
            if label not in known[name] | TARGET_LABELS:
                found.append(f"{name} has no label {label}")
    for group in _GROUPING.findall(expr):
        for label in (part.strip() for part in group.split(",")):
            if label and label not in labels:
                found.append(f"grouping by {label}, which none of its metrics has")
    return found


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        yield from (rule for rule in group["rules"] if "alert" in rule)


def panel_exprs() -> Iterator[tuple[str, str]]:
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]


def test_the_check_finds_a_misspelt_metric_or_label() -> None:
    known = exposed()
    assert problems('sum by (rule) (concord_findings_open{status="escalated"})', known) == []
    assert problems("rate(concord_webhook_seconds_bucket[5m])", known) == []
    assert problems("concord_finding_open", known) == ["no metric concord_finding_open"]
    assert problems('concord_breaker_state{platfrom="x"}', known) == ["concord_breaker_state has no label platfrom"]
    assert problems("sum by (topic) (concord_breaker_state)", known) == [
        "grouping by topic, which none of its metrics has"]


def test_every_alert_and_dashboard_panel_reads_metrics_concord_exposes() -> None:
    known = exposed()
    exprs = [(rule["alert"], rule["expr"]) for rule in alert_rules()] + list(panel_exprs())
    assert len(exprs) > 20
    bad = {where: found for where, expr in exprs if (found := problems(expr, known))}
    assert bad == {}
    used = {name for _, expr in exprs for name, _ in _SELECTOR.findall(expr)}
    for wanted in ("concord_findings_open", "concord_consumer_lag", "concord_drift_time_to_resolve_seconds_bucket",
                   "concord_ingest_events_total", "concord_webhook_seconds_bucket", "concord_breaker_state",
                   "concord_platform_watermark_lag_seconds", "concord_command_dead_letters_total"):
        assert wanted in used


def test_every_alert_has_a_severity_annotations_and_a_documented_runbook() -> None:
    doc = ALERTS_DOC.read_text()
    sections = set(re.findall(r"^## (Concord\w+)$", doc, re.MULTILINE))
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        assert rule["annotations"]["runbook_url"] == f"docs/alerts.md#{name.lower()}"
        assert name in sections, f"docs/alerts.md has no section ## {name}"
    assert sections == set(names), "docs/alerts.md documents alerts that alerts.yml does not have"


def test_every_alert_is_tested_firing_and_staying_quiet() -> None:
    spec = yaml.safe_load(ALERT_TESTS.read_text())
    assert spec["rule_files"] == [ALERTS.name]
    fired, quiet = set(), set()
    for case in spec["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert fired == names and quiet == names
