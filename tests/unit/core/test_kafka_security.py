"""Kafka TLS and SASL: the settings' checks, the options every client gets, and that every client gets them."""

from __future__ import annotations

import ast
import ssl
import subprocess
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from concord.app.factory import create_faust_app
from concord.core.kafka_security import KafkaSecurity, faust_credentials, kafka_client_options, kafka_security
from concord.core.settings import MASK, Settings, SettingsError, check_kafka_security, load
from concord.infra import kafka
from concord.sandbox.server import config_from_settings
from concord.sandbox.traffic import TrafficConfig
from tests.conftest import REPO_ROOT

PASSWORD = "a-sasl-password-long-enough"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> kafka.KafkaNode:
    """A CA and a certificate signed by it (infra's, for the local broker): files to point the settings at."""
    node = kafka.KafkaNode(cache=tmp_path_factory.mktemp("tls"))
    kafka.ensure_certificates(node)
    return node


def cert(node: kafka.KafkaNode) -> str:
    return str(node.sasl_dir / "broker.crt")


def key(node: kafka.KafkaNode) -> str:
    return str(node.sasl_dir / "broker.key")


def sasl_ssl(**extra: str) -> dict[str, str]:
    return {"CONCORD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CONCORD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CONCORD_KAFKA_SASL_USERNAME": "concord", "CONCORD_KAFKA_SASL_PASSWORD": PASSWORD, **extra}


def test_the_default_is_plaintext_with_no_other_option() -> None:
    assert kafka_client_options(load({})) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(load({})) is None


@pytest.mark.parametrize(("env", "expected"), [
    ({"CONCORD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     "needs CONCORD_KAFKA_SASL_USERNAME and CONCORD_KAFKA_SASL_PASSWORD (missing: CONCORD_KAFKA_SASL_USERNAME, "
     "CONCORD_KAFKA_SASL_PASSWORD)"),
    ({"CONCORD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CONCORD_KAFKA_SASL_USERNAME": "concord"},
     "(missing: CONCORD_KAFKA_SASL_PASSWORD)"),
    ({"CONCORD_KAFKA_SASL_USERNAME": "concord", "CONCORD_KAFKA_SASL_PASSWORD": PASSWORD},
     "CONCORD_KAFKA_SASL_USERNAME and CONCORD_KAFKA_SASL_PASSWORD set but CONCORD_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
     "sends no SASL credentials"),
    ({"CONCORD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CONCORD_KAFKA_SASL_USERNAME": "concord",
      "CONCORD_KAFKA_SASL_PASSWORD": PASSWORD, "CONCORD_KAFKA_SSL_CHECK_HOSTNAME": "false"},
     "CONCORD_KAFKA_SSL_CHECK_HOSTNAME set but CONCORD_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS"),
    ({"CONCORD_KAFKA_SECURITY_PROTOCOL": "SSL", "CONCORD_KAFKA_SASL_MECHANISM": "GSSAPI"}, "matching regex"),
    ({"CONCORD_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CONCORD_KAFKA_SECURITY_PROTOCOL='TLS' is not valid"),
])
def test_an_incomplete_or_ignored_combination_is_refused_at_load(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load(env)
    assert expected in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_tls_files_with_a_protocol_without_tls_are_refused(tls: kafka.KafkaNode) -> None:
    with pytest.raises(SettingsError, match="CONCORD_KAFKA_SSL_CAFILE set but CONCORD_KAFKA_SECURITY_PROTOCOL="
                       "PLAINTEXT does not use TLS"):
        load({"CONCORD_KAFKA_SSL_CAFILE": str(tls.ca_file)})


@pytest.mark.parametrize(("given", "missing"), [("CONCORD_KAFKA_SSL_CERTFILE", "CONCORD_KAFKA_SSL_KEYFILE"),
                                                ("CONCORD_KAFKA_SSL_KEYFILE", "CONCORD_KAFKA_SSL_CERTFILE")])
def test_a_client_certificate_and_its_key_go_together(tls: kafka.KafkaNode, given: str, missing: str) -> None:
    path = cert(tls) if given.endswith("CERTFILE") else key(tls)
    with pytest.raises(SettingsError) as refused:
        load({"CONCORD_KAFKA_SECURITY_PROTOCOL": "SSL", given: path})
    assert f"{given} is set, {missing} is not" in str(refused.value)


def test_a_key_password_without_a_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="CONCORD_KAFKA_SSL_KEY_PASSWORD is set but no CONCORD_KAFKA_SSL_KEYFILE"):
        load({"CONCORD_KAFKA_SECURITY_PROTOCOL": "SSL", "CONCORD_KAFKA_SSL_KEY_PASSWORD": PASSWORD})


def test_a_file_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        load(sasl_ssl(CONCORD_KAFKA_SSL_CAFILE=str(tmp_path / "ca.pem")))
    assert f"CONCORD_KAFKA_SSL_CAFILE={str(tmp_path / 'ca.pem')!r}: no such file" in str(refused.value)
    with pytest.raises(SettingsError, match="CONCORD_KAFKA_SSL_CAFILE=.*: not a file"):
        load(sasl_ssl(CONCORD_KAFKA_SSL_CAFILE=str(tmp_path)))


def test_settings_built_in_code_are_checked_before_a_client_is(tmp_path: Path) -> None:
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="concord")
    with pytest.raises(SettingsError, match="missing: CONCORD_KAFKA_SASL_PASSWORD"):
        kafka_client_options(settings)
    with pytest.raises(SettingsError, match="missing: CONCORD_KAFKA_SASL_PASSWORD"):
        check_kafka_security(settings)


def test_sasl_ssl_gives_the_user_the_mechanism_and_a_verifying_tls_context(tls: kafka.KafkaNode) -> None:
    options = kafka_client_options(load(sasl_ssl(CONCORD_KAFKA_SSL_CAFILE=str(tls.ca_file))))
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "concord", "sasl_plain_password": PASSWORD}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "Concord local Kafka CA (9092)"),),)]


def test_without_a_ca_file_the_systems_authorities_are_trusted() -> None:
    context = kafka_client_options(load(sasl_ssl()))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] == len(ssl.create_default_context().get_ca_certs())


def test_sasl_plaintext_has_no_tls_context() -> None:
    options = kafka_client_options(load({**sasl_ssl(), "CONCORD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}))
    assert options["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in options


def test_the_hostname_check_can_be_turned_off_the_certificate_is_still_verified(tls: kafka.KafkaNode) -> None:
    context = kafka_client_options(load(sasl_ssl(CONCORD_KAFKA_SSL_CAFILE=str(tls.ca_file),
                                                 CONCORD_KAFKA_SSL_CHECK_HOSTNAME="false")))["ssl_context"]
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_a_client_certificate_is_loaded(tls: kafka.KafkaNode) -> None:
    settings = load({"CONCORD_KAFKA_SECURITY_PROTOCOL": "SSL", "CONCORD_KAFKA_SSL_CAFILE": str(tls.ca_file),
                     "CONCORD_KAFKA_SSL_CERTFILE": cert(tls), "CONCORD_KAFKA_SSL_KEYFILE": key(tls)})
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    # A certificate that does not go with the key is refused while the context is built.
    mismatched = load({"CONCORD_KAFKA_SECURITY_PROTOCOL": "SSL", "CONCORD_KAFKA_SSL_CERTFILE": str(tls.ca_file),
                       "CONCORD_KAFKA_SSL_KEYFILE": key(tls)})
    with pytest.raises(SettingsError, match="cannot load the Kafka TLS files"):
        kafka_client_options(mismatched)


def test_an_encrypted_key_opens_with_its_password_and_is_never_prompted_for(
    tls: kafka.KafkaNode, tmp_path: Path
) -> None:
    encrypted = tmp_path / "client.key"
    subprocess.run(["openssl", "pkey", "-in", key(tls), "-aes256", "-passout", f"pass:{PASSWORD}",
                    "-out", str(encrypted)], check=True, capture_output=True)
    env = {"CONCORD_KAFKA_SECURITY_PROTOCOL": "SSL", "CONCORD_KAFKA_SSL_CERTFILE": cert(tls),
           "CONCORD_KAFKA_SSL_KEYFILE": str(encrypted)}
    assert "ssl_context" in kafka_client_options(load({**env, "CONCORD_KAFKA_SSL_KEY_PASSWORD": PASSWORD}))
    with pytest.raises(SettingsError, match="cannot load the Kafka TLS files"):
        kafka_client_options(load(env))  # no password: refused (OpenSSL would otherwise ask on the terminal)
    with pytest.raises(SettingsError, match="cannot load the Kafka TLS files"):
        kafka_client_options(load({**env, "CONCORD_KAFKA_SSL_KEY_PASSWORD": "another-password-entirely"}))


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_faust_gets_the_same_security_as_the_other_clients(protocol: str) -> None:
    settings = load({**sasl_ssl(), "CONCORD_KAFKA_SECURITY_PROTOCOL": protocol})
    credentials = faust_credentials(settings)
    assert isinstance(credentials, SASLCredentials)
    faust_options = credentials_to_aiokafka_auth(credentials)
    ours = kafka_client_options(settings)
    assert ({k: v for k, v in faust_options.items() if k != "ssl_context"}
            == {k: v for k, v in ours.items() if k != "ssl_context"})
    assert (faust_options["ssl_context"] is None) == (protocol == "SASL_PLAINTEXT")


def test_faust_gets_ssl_credentials_for_tls_alone(tls: kafka.KafkaNode) -> None:
    credentials = faust_credentials(load({"CONCORD_KAFKA_SECURITY_PROTOCOL": "SSL",
                                          "CONCORD_KAFKA_SSL_CAFILE": str(tls.ca_file)}))
    assert isinstance(credentials, SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_the_faust_app_is_given_the_credentials() -> None:
    app = create_faust_app(load(sasl_ssl()))
    assert isinstance(app.conf.broker_credentials, SASLCredentials)
    assert app.conf.broker_credentials.username == "concord"


def test_the_sandbox_carries_the_security_to_its_producer() -> None:
    config = config_from_settings(load(sasl_ssl()), TrafficConfig())
    assert config.kafka_security == kafka_security(load(sasl_ssl()))
    assert kafka_client_options(config.kafka_security)["sasl_plain_password"] == PASSWORD


def test_the_password_is_not_in_the_security_repr() -> None:
    text = repr(KafkaSecurity(protocol="SASL_SSL", sasl_username="concord", sasl_password=PASSWORD))
    assert PASSWORD not in text and MASK in text and "concord" in text


# Every aiokafka client class; a call to one must pass the security options.
_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}
# The helpers that give them: ours, the benchmarks' (ours, for the broker under test), Faust's (its own clients).
_OPTIONS = {"kafka_client_options", "kafka_options", "credentials_to_aiokafka_auth"}
_FOLDERS = ("core", "codecs", "tables", "drift", "connectors", "agents", "app", "sandbox", "bench", "infra")


def _client_calls() -> list[tuple[str, bool]]:
    """Each aiokafka client constructed in Concord's code: where, and whether it passes `**<security options>(...)`."""
    found: list[tuple[str, bool]] = []
    for folder in _FOLDERS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name not in _CLIENTS:
                    continue
                secured = any(
                    kw.arg is None and isinstance(kw.value, ast.Call)
                    and (kw.value.func.attr if isinstance(kw.value.func, ast.Attribute)
                         else getattr(kw.value.func, "id", "")) in _OPTIONS
                    for kw in node.keywords)
                found.append((f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}", secured))
    return found


def test_every_kafka_client_is_given_the_security_options() -> None:
    calls = _client_calls()
    assert len(calls) >= 30  # the walk does find the clients (there were 30 when this test was written)
    unsecured = [where for where, secured in calls if not secured]
    assert not unsecured, ("aiokafka clients constructed without `**kafka_client_options(...)` (they would connect "
                           f"in plaintext to a broker that wants TLS or SASL): {unsecured}")
