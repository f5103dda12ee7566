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
