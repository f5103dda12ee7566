from __future__ import annotations

import pytest

from concord.core import settings as settings_mod
from tests.conftest import REPO_ROOT


def test_defaults_need_no_environment() -> None:
    settings = settings_mod.load({})
    assert settings.kafka_url == "kafka://127.0.0.1:9092"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.web_port == 6066
    assert settings.topic_replication_factor == 1


def test_values_are_read_and_typed_from_concord_variables() -> None:
    settings = settings_mod.load({"CONCORD_WEB_PORT": "7000", "CONCORD_TOPIC_PARTITIONS": "12",
                       "CONCORD_KAFKA_URL": "kafka://a:1,b:2", "CONCORD_KAFKA_SESSION_TIMEOUT": "10.5"})
    assert settings.web_port == 7000
    assert settings.topic_partitions == 12
    assert settings.kafka_url == "kafka://a:1,b:2"
    assert settings.kafka_session_timeout == 10.5
    assert settings_mod.kafka_bootstrap(settings) == "a:1,b:2"


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("CONCORD_WEB_PORT", "abc", "Expected `int`"),
        ("CONCORD_WEB_PORT", "70000", "<= 65535"),
        ("CONCORD_TOPIC_PARTITIONS", "0", ">= 1"),
        ("CONCORD_KAFKA_URL", "localhost:9092", "matching regex"),
        ("CONCORD_LOG_LEVEL", "loud", "matching regex"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_is_expected(var: str, value: str, expected: str) -> None:
    with pytest.raises(settings_mod.SettingsError) as err:
        settings_mod.load({var: value})
    message = str(err.value)
    assert message.startswith(f"{var}={value!r} is not valid")
    assert expected in message


def test_an_unknown_concord_variable_is_refused() -> None:
    with pytest.raises(settings_mod.SettingsError, match="unknown setting CONCORD_WEB_PROT"):
        settings_mod.load({"CONCORD_WEB_PROT": "1"})


def test_tool_variables_are_not_settings() -> None:
    assert settings_mod.load({"CONCORD_INFRA_KAFKA_PORT": "1"}).web_port == 6066


def test_configuration_doc_matches_the_settings() -> None:
    doc = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert doc == settings_mod.markdown_reference(), "docs/configuration.md is stale: run `make docs`"
    for name in settings_mod.Settings.__struct_fields__:
        assert f"`{settings_mod.env_var(name)}`" in doc


def test_metrics_doc_matches_the_registry() -> None:
    from concord.core import metrics

    doc = (REPO_ROOT / "docs" / "metrics.md").read_text()
    assert doc == metrics.markdown_reference(), "docs/metrics.md is stale: run `make docs`"
    assert "`concord_drift_transitions_total`" in doc


# Secrets and URL credentials (the security issue): masked everywhere, checked, readable from files.

REDIS_PASSWORD = "hunter2-redis-password"
LONG_SECRET = "whsec_0123456789abcdef"  # >= 16 bytes
#: Secrets that must also have a form: a value of that form.
SECRET_SAMPLES = {"notify_webhook_url": f"https://hooks.example.invalid/services/{LONG_SECRET}"}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"redis://:{REDIS_PASSWORD}@redis:6379/0", "redis://:********@redis:6379/0"),
        ("https://user:pa55@api.example.com/v1", "https://user:********@api.example.com/v1"),
        ("https://tok3n@api.example.com", "https://********@api.example.com"),
        ("kafka://u:p@a:1,b:2", "kafka://u:********@a:1,b:2"),
        ("https://user:p@ss/word@host/x", "https://user:********@host/x"),  # unescaped @ and /: masked whole
        ("worker on redis://:pw@h:1/0 and http://h:6066/", "worker on redis://:********@h:1/0 and http://h:6066/"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("https://host:443/path", "https://host:443/path"),
        ("redis://:pass word@r:6379/0", "redis://:********@r:6379/0"),  # one URL: a space does not end it
        ("see http://h:1/ and mail a@b", "see http://h:1/ and mail a@b"),  # a text: URLs end at whitespace
    ],
)
def test_mask_url_masks_the_credentials_of_every_url(text: str, masked: str) -> None:
    assert settings_mod.mask_url(text) == masked


def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(settings_mod.ENV_PREFIX):
            monkeypatch.delenv(name)


def test_concord_config_masks_url_passwords_and_secrets(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from concord.app import cli

    _clean_environment(monkeypatch)
    monkeypatch.setenv("CONCORD_REDIS_URL", f"redis://:{REDIS_PASSWORD}@redis:6379/0")
    monkeypatch.setenv("CONCORD_ZENDESK_URL", "https://agent:zd-url-password@acme.zendesk.com")
    monkeypatch.setenv("CONCORD_ADMIN_TOKEN", LONG_SECRET)
    assert cli.cmd_config(argparse.Namespace(markdown=False)) == 0
    out = capsys.readouterr().out
    assert REDIS_PASSWORD not in out and "zd-url-password" not in out and LONG_SECRET not in out
    assert "CONCORD_REDIS_URL=redis://:********@redis:6379/0" in out
    assert "CONCORD_ZENDESK_URL=https://agent:********@acme.zendesk.com" in out
    assert "CONCORD_ADMIN_TOKEN=********" in out


def test_redacted_masks_every_url_setting() -> None:
    settings = settings_mod.Settings(kafka_url="kafka://svc:kafka-pw@a:1", stripe_api_url="https://u:stripe-pw@s.test")
    shown = settings_mod.redacted(settings)
    assert shown["kafka_url"] == "kafka://svc:********@a:1"
    assert shown["stripe_api_url"] == "https://u:********@s.test"
    assert "pw" not in repr(shown)


@pytest.mark.parametrize("password", [REDIS_PASSWORD, "two words"])
def test_a_bad_url_is_echoed_with_its_password_masked(password: str) -> None:
    bad = f"http://:{password}@redis:6379/0"  # not redis://
    with pytest.raises(settings_mod.SettingsError) as err:
        settings_mod.load({"CONCORD_REDIS_URL": bad})
    message = str(err.value)
    assert password not in message and "words" not in message
    assert message.startswith("CONCORD_REDIS_URL='http://:********@redis:6379/0' is not valid")


@pytest.mark.parametrize("bad", ["xyzzy", "  fifteen-bytes!  ", "é" * 7])  # 5, 15 (stripped) and 14 bytes
def test_a_short_secret_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(settings_mod.SettingsError) as err:
        settings_mod.load({"CONCORD_STRIPE_WEBHOOK_SECRET": bad})
    message = str(err.value)
    assert message.startswith("CONCORD_STRIPE_WEBHOOK_SECRET is too short")
    assert "16 bytes" in message
    assert bad.strip() not in message


def test_secrets_are_stripped_and_16_bytes_is_enough() -> None:
    settings = settings_mod.load({"CONCORD_ADMIN_TOKEN": f"  {LONG_SECRET}\n",
                                  "CONCORD_STRIPE_API_KEY": "é" * 8})  # 8 characters, 16 bytes
    assert settings.admin_token == LONG_SECRET
    assert settings.stripe_api_key == "é" * 8


def test_a_whitespace_only_secret_is_unset() -> None:
    settings = settings_mod.load({"CONCORD_ZENDESK_WEBHOOK_SECRET": " \t\n", "CONCORD_ADMIN_TOKEN": ""})
    assert settings.zendesk_webhook_secret == ""
    assert settings.admin_token == ""


def test_a_secret_is_read_from_its_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "stripe_webhook_secret"
    path.write_text(f"{LONG_SECRET}\n")
    settings = settings_mod.load({"CONCORD_STRIPE_WEBHOOK_SECRET_FILE": str(path)})
    assert settings.stripe_webhook_secret == LONG_SECRET
    # The Kafka secrets are refused without the settings that use them (a protocol, a key file).
    needs = {
        "kafka_sasl_password": {"CONCORD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CONCORD_KAFKA_SASL_USERNAME": "u"},
        "kafka_ssl_key_password": {"CONCORD_KAFKA_SECURITY_PROTOCOL": "SSL", "CONCORD_KAFKA_SSL_CERTFILE": str(path),
                                   "CONCORD_KAFKA_SSL_KEYFILE": str(path)},
    }
    for name in settings_mod.secret_file_vars():  # every secret has its _FILE variable
        value = SECRET_SAMPLES.get(name, LONG_SECRET)
        path.write_text(f" {value} ")
        env = {**needs.get(name, {}), settings_mod.env_var(name) + "_FILE": str(path)}
        assert getattr(settings_mod.load(env), name) == value


def test_the_notification_url_is_a_secret_http_url_never_shown() -> None:
    url = SECRET_SAMPLES["notify_webhook_url"]
    settings = settings_mod.load({"CONCORD_NOTIFY_WEBHOOK_URL": url})
    assert settings.notify_webhook_url == url
    assert settings_mod.redacted(settings)["notify_webhook_url"] == settings_mod.MASK
    for bad in (url.replace("https", "ftp"), url + "|click", url.replace("/services", " /services")):
        with pytest.raises(settings_mod.SettingsError) as err:
            settings_mod.load({"CONCORD_NOTIFY_WEBHOOK_URL": bad})
        assert "CONCORD_NOTIFY_WEBHOOK_URL" in str(err.value) and LONG_SECRET not in str(err.value)


def test_a_short_secret_file_is_refused_naming_the_variable_and_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "token"
    path.write_text("tiny\n")
    with pytest.raises(settings_mod.SettingsError) as err:
        settings_mod.load({"CONCORD_ADMIN_TOKEN_FILE": str(path)})
    message = str(err.value)
    assert "CONCORD_ADMIN_TOKEN" in message and str(path) in message and "too short" in message
    assert "tiny" not in message


def test_a_secret_and_its_file_together_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "token"
    path.write_text(LONG_SECRET)
    with pytest.raises(settings_mod.SettingsError) as err:
        settings_mod.load({"CONCORD_ADMIN_TOKEN": "another-long-admin-token", "CONCORD_ADMIN_TOKEN_FILE": str(path)})
    message = str(err.value)
    assert "CONCORD_ADMIN_TOKEN and CONCORD_ADMIN_TOKEN_FILE are both set" in message
    assert "another-long-admin-token" not in message and LONG_SECRET not in message


def test_an_unreadable_secret_file_names_the_variable_and_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "no-such-secret"
    with pytest.raises(settings_mod.SettingsError) as err:
        settings_mod.load({"CONCORD_NETSUITE_ACCESS_TOKEN_FILE": str(missing)})
    message = str(err.value)
    assert message.startswith(f"CONCORD_NETSUITE_ACCESS_TOKEN_FILE={str(missing)!r}: cannot read")
    assert "CONCORD_NETSUITE_ACCESS_TOKEN" in message and "No such file" in message


def test_file_variables_exist_only_for_secrets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "secret"
    path.write_text(LONG_SECRET)
    assert settings_mod.load({"CONCORD_STRIPE_WEBHOOK_SECRET_FILE": str(path)}).stripe_webhook_secret
    with pytest.raises(settings_mod.SettingsError, match="unknown setting CONCORD_STRIPE_WEBHOOK_SECRT_FILE"):
        settings_mod.load({"CONCORD_STRIPE_WEBHOOK_SECRT_FILE": str(path)})
    with pytest.raises(settings_mod.SettingsError, match="unknown setting CONCORD_WEB_PORT_FILE"):
        settings_mod.load({"CONCORD_WEB_PORT_FILE": str(path)})


def test_the_reference_documents_the_secret_files() -> None:
    doc = settings_mod.markdown_reference()
    for name in settings_mod.secret_file_vars():
        assert f"`{settings_mod.env_var(name)}_FILE`" in doc
    assert "at least 16 bytes" in doc
