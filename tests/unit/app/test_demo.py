"""The demo's pure parts: the scaled rules, the processes' environment and the summary line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from concord.app import demo, users
from concord.app.demo import Totals
from concord.core import settings as settings_mod
from concord.drift import catalog
from concord.drift.config import load as load_drift_config
from concord.sandbox.traffic import PLAN_TIERS

METRICS = """# HELP concord_ingest_events_total Canonical events decoded
# TYPE concord_ingest_events_total counter
concord_ingest_events_total{kind="InvoiceChanged",platform="stripe"} 30.0
concord_ingest_events_total{kind="CustomerUpserted",platform="zendesk"} 12.0
# HELP concord_drift_transitions_total Finding lifecycle transitions
# TYPE concord_drift_transitions_total counter
concord_drift_transitions_total{rule="D01",status="open"} 4.0
concord_drift_transitions_total{rule="D01",status="resolved"} 3.0
concord_drift_transitions_total{rule="D04",status="resolved"} 2.0
"""


def test_rules_are_scaled_with_simulated_time(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(demo.scaled_rules(3600)))
    config = load_drift_config(path, catalog.default_configs())
    defaults = catalog.default_configs()
    assert config.rule("D01", defaults["D01"]).grace_seconds == demo.MIN_GRACE_S  # one hour -> 1 s, floored
    assert config.rule("D05", defaults["D05"]).grace_seconds == 0  # no grace stays no grace
    assert config.rule("D07", catalog.default_configs()["D07"]).grace_seconds == 24  # one day -> 24 s
    assert config.correction_timeout_seconds == demo.MIN_CORRECTION_TIMEOUT_S
    assert config.plan_tiers == PLAN_TIERS
    # Unscaled, the defaults stand.
    assert demo.scaled_rules(1)["rules"]["D01"]["grace_seconds"] == 3600


def test_environment_aims_connectors_at_the_sandbox_and_is_valid(tmp_path: Path) -> None:
    env = demo.demo_environment(tmp_path / "rules.json", {"PATH": "/bin"}, kafka_port=9192, redis_port=6380,
                                run_id="concord-demo-1")
    settings = settings_mod.load({k: v for k, v in env.items() if k.startswith("CONCORD_")})
    assert settings.stripe_api_url == settings.zendesk_url == settings.netsuite_url == "http://127.0.0.1:6070"
    # Salesforce and NetSuite by their token flows; Salesforce's instance is the one its token answer names.
    assert not settings.salesforce_instance_url and settings.salesforce_login_url == "http://127.0.0.1:6070"
    assert (settings.salesforce_auth_flow, settings.netsuite_auth_flow) == ("jwt_bearer", "client_credentials")
    assert settings.salesforce_private_key.startswith("-----BEGIN PRIVATE KEY-----")
    assert settings.netsuite_private_key == settings.salesforce_private_key
    assert env["SANDBOX_SALESFORCE_CERTIFICATE"] == env["SANDBOX_NETSUITE_CERTIFICATE"]
    assert Path(env["SANDBOX_NETSUITE_CERTIFICATE"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert settings.kafka_url == "kafka://127.0.0.1:9192"
    assert settings.redis_url == "redis://127.0.0.1:6380/0"
    assert settings.stripe_webhook_secret and settings.rules_file.endswith("rules.json")
    # A run of its own: the sandbox's world starts empty, so must Concord's tables and topics.
    assert settings.app_id == settings.topic_prefix == "concord-demo-1"


def test_what_the_user_set_wins(tmp_path: Path) -> None:
    env = demo.demo_environment(tmp_path / "r.json", {"CONCORD_STRIPE_API_URL": "https://api.stripe.com"})
    assert env["CONCORD_STRIPE_API_URL"] == "https://api.stripe.com"
    assert env["CONCORD_ZENDESK_URL"] == "http://127.0.0.1:6070"
    static = demo.demo_environment(tmp_path / "r.json", {"CONCORD_SALESFORCE_ACCESS_TOKEN": "00Dx!static-token"})
    assert "CONCORD_SALESFORCE_AUTH_FLOW" not in static and static["CONCORD_NETSUITE_AUTH_FLOW"] == "client_credentials"
    assert static["CONCORD_SALESFORCE_INSTANCE_URL"] == "http://127.0.0.1:6070"


def test_summary_reads_metrics_and_rates() -> None:
    before = demo.totals_from(100.0, METRICS, {"open": 5, "commanded": 2}, {"injected": 7, "running": True})
    assert before.events == 42 and before.resolutions == 5 and before.injected == 7
    assert (before.open_findings, before.commanded, before.escalated) == (5, 2, 0)
    after = Totals(at=102.0, events=62.0, open_findings=2, commands=9, dead_letters=1, resolutions=6, injected=8,
                   sagas_completed=4, sagas_stopped=1)
    line = demo.render(after, before)
    assert "sagas done   4, stopped   1" in line
    assert "events/s    10.0" in line
    assert "open findings    2" in line and "commands     9" in line and "resolved     6" in line
    assert "\n" not in line


def _at(at: float, running: bool = False, open_findings: int = 3, commanded: int = 0,
        resolutions: float = 5.0) -> Totals:
    return Totals(at=at, open_findings=open_findings, commanded=commanded, resolutions=resolutions,
                  sandbox_running=running)


def test_a_run_settles_once_nothing_moved_for_the_quiet_time_after_the_traffic() -> None:
    settling = demo.Settling(quiet=20, limit=300)
    assert not settling.settled(_at(0, running=True))  # traffic still on
    assert not settling.settled(_at(10, commanded=2))  # corrections in flight
    assert not settling.settled(_at(20))  # the figures moved at 20 s: quiet since then
    assert not settling.settled(_at(39))
    assert not settling.settled(_at(40, resolutions=6))  # a finding resolved: the quiet starts again
    assert not settling.settled(_at(59, resolutions=6))
    assert settling.settled(_at(60, resolutions=6))


def test_a_run_that_never_quiets_down_settles_at_the_limit() -> None:
    settling = demo.Settling(quiet=20, limit=30)
    assert not settling.settled(_at(100, commanded=1))
    assert not settling.settled(_at(120, commanded=2))
    assert settling.settled(_at(130, commanded=3))


def test_approve_puts_the_named_rules_in_approve_mode(tmp_path: Path) -> None:
    chosen = demo.approve_rules(" d01, D13 ,")
    assert chosen == {"D01", "D13"}
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(demo.scaled_rules(3600, chosen)))
    config = load_drift_config(path, catalog.default_configs())
    defaults = catalog.default_configs()
    assert [r for r in defaults if config.rule(r, defaults[r]).mode == "approve"] == ["D01", "D13"]
    try:
        demo.approve_rules("D01,D99")
    except argparse.ArgumentTypeError as exc:
        assert "unknown rule D99" in str(exc) and "D15" in str(exc)
    else:
        raise AssertionError("D99 was taken for a rule")


def test_the_demo_users_file_holds_a_viewer_and_an_operator_whose_tokens_sign_in(tmp_path: Path) -> None:
    (tmp_path / "users.toml").write_text("not toml from an older run [[")
    path, people = demo.demo_users(tmp_path)
    stored = users.load(path)
    assert [(p.name, p.role) for p in people] == [("vera", "viewer"), ("otto", "operator")]
    for person in people:
        assert stored[person.name].role == person.role
        assert users.verify_token(person.token, stored[person.name].token_hash)
    again = demo.demo_users(tmp_path)[1]
    assert {p.token for p in again}.isdisjoint({p.token for p in people})  # new tokens every run


def test_the_demo_writes_its_settings_for_a_person_to_reuse(tmp_path: Path) -> None:
    from concord.app.demo import write_env_file

    written = write_env_file(tmp_path / "demo.env", {"CONCORD_READ_TOKEN": "r" * 20, "PATH": "/bin", "SEED": "7",
                                                     "CONCORD_APP_ID": "concord-demo-1"})
    assert written.read_text().splitlines() == ["CONCORD_APP_ID=concord-demo-1", f"CONCORD_READ_TOKEN={'r' * 20}"]
    assert written.stat().st_mode & 0o777 == 0o600
