"""`concord sandbox` refuses to be a signing oracle: unset, live or undeclared credentials stop it at start."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from concord.app.cli import build_parser
from concord.app.demo import demo_environment
from concord.core.settings import env_var, load
from concord.sandbox import cli
from concord.sandbox.server import SandboxConfig

REPO = Path(__file__).resolve().parents[3]
TEST_SETUP = {
    "stripe_api_key": "sk_test_unit_key_0001",
    "salesforce_access_token": "00Dunit!access_token",
    "zendesk_api_email": "unit@concord.invalid",
    "zendesk_api_token": "unit-zendesk-token",
    "netsuite_access_token": "unit-netsuite-token",
    "stripe_webhook_secret": "whsec_unit_secret_0001",
    "zendesk_webhook_secret": "unit-zendesk-secret",
    "netsuite_webhook_secret": "unit-netsuite-secret",
}


def environ(**overrides: str) -> dict[str, str]:
    values = {**TEST_SETUP, **overrides}
    return {env_var(name): value for name, value in values.items() if value}


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sandbox", *argv])


def run(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> list[SandboxConfig]:
    """`cli.run` with only `env` as CONCORD_* settings; returns the configs it would have served."""
    for name in list(os.environ):
        if name.startswith("CONCORD_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    served: list[SandboxConfig] = []

    async def serve(config: SandboxConfig, **_: Any) -> int:
        served.append(config)
        return 0

    monkeypatch.setattr(cli, "serve", serve)
    assert cli.run(parse(*argv)) == 0
    return served


@pytest.mark.parametrize("key", ["sk_live_abc123def456", "rk_live_abc123def456", "pk_live_abc123def456"])
def test_a_stripe_live_key_is_refused_by_prefix_without_showing_it(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    with pytest.raises(SystemExit) as refused:
        run(monkeypatch, environ(stripe_api_key=key), "--test-credentials")
    message = str(refused.value.code)
    assert message.startswith("concord sandbox: CONCORD_STRIPE_API_KEY is a Stripe live key")
    assert key[:8] in message and "abc123def456" not in message


def test_a_live_key_in_any_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="CONCORD_NETSUITE_ACCESS_TOKEN is a Stripe live key"):
        run(monkeypatch, environ(netsuite_access_token="sk_live_oops_0000000"), "--test-credentials")


def test_a_stripe_key_that_is_not_a_test_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="CONCORD_STRIPE_API_KEY is not a Stripe test key"):
        run(monkeypatch, environ(stripe_api_key="whatever-long-api-key"), "--test-credentials")


def test_unset_credentials_are_refused_with_the_list_of_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as refused:
        run(monkeypatch, {}, "--test-credentials")
    message = str(refused.value.code)
    assert message.startswith("concord sandbox: unset: ")
    for name in cli.REQUIRED_SETTINGS:
        assert env_var(name) in message


def test_only_the_missing_variables_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as refused:
        run(monkeypatch, environ(zendesk_webhook_secret="", salesforce_access_token=""), "--test-credentials")
    assert str(refused.value.code).startswith(
        "concord sandbox: unset: CONCORD_SALESFORCE_ACCESS_TOKEN, CONCORD_ZENDESK_WEBHOOK_SECRET. ")


def test_credentials_without_a_test_marker_need_the_explicit_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="pass --test-credentials") as refused:
        run(monkeypatch, environ())
    assert "CONCORD_STRIPE_WEBHOOK_SECRET" in str(refused.value.code)
    assert "unit-zendesk-secret" not in str(refused.value.code)


def test_a_test_setup_is_accepted_and_reaches_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    [config] = run(monkeypatch, environ(), "--test-credentials", "--port", "6099")
    assert config.port == 6099 and config.credentials.stripe_api_key == "sk_test_unit_key_0001"
    assert config.stripe_webhook_secret == "whsec_unit_secret_0001"
    assert config.netsuite_webhook_secret == "unit-netsuite-secret"
    assert not config.control_public
    [public] = run(monkeypatch, environ(), "--test-credentials", "--control-public")
    assert public.control_public


def test_the_demo_environment_and_procfile_pass_the_check(tmp_path: Path) -> None:
    env = demo_environment(tmp_path / "rules.json", {})
    cli.check_credentials(load({k: v for k, v in env.items() if k.startswith("CONCORD_")}), test_credentials=True)
    [sandbox] = [line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("sandbox:")]
    assert "--test-credentials" in sandbox.split() and "--control-public" not in sandbox.split()


def test_the_command_exits_non_zero_with_one_line_and_no_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
    env.update(environ(stripe_api_key="sk_live_secretvalue"))
    done = subprocess.run([sys.executable, "-m", "concord.app.cli", "sandbox", "--test-credentials"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "secretvalue" not in done.stderr + done.stdout
    assert done.stderr.strip().startswith("concord sandbox: CONCORD_STRIPE_API_KEY is a Stripe live key (sk_live_...)")


def test_token_flows_need_the_certificates_their_endpoints_check(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    env = {k: v for k, v in demo_environment(tmp_path / "rules.json", {}).items() if k.startswith("CONCORD_")}
    with pytest.raises(SystemExit, match="pass --salesforce-jwt-certificate FILE"):
        run(monkeypatch, env, "--test-credentials")
    certificate = demo_environment(tmp_path / "rules.json", {})["SANDBOX_SALESFORCE_CERTIFICATE"]
    with pytest.raises(SystemExit, match=r"--netsuite-certificate: .* is not a PEM certificate"):
        run(monkeypatch, env, "--test-credentials", "--salesforce-jwt-certificate", certificate,
            "--netsuite-certificate", str(tmp_path / "rules.json"))
    [config] = run(monkeypatch, env, "--test-credentials", "--token-lifetime", "2", "--salesforce-jwt-certificate",
                   certificate, "--netsuite-certificate", certificate)
    oauth = config.oauth
    assert oauth.token_lifetime == 2 and oauth.salesforce_certificate == oauth.netsuite_certificate
    assert oauth.salesforce_certificate.startswith("-----BEGIN CERTIFICATE-----")
    assert (oauth.salesforce_client_id, oauth.netsuite_certificate_id) == (
        env["CONCORD_SALESFORCE_CLIENT_ID"], env["CONCORD_NETSUITE_CERTIFICATE_ID"])
    assert not config.credentials.salesforce_access_token  # no static token: only issued ones are accepted
