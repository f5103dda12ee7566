"""The local broker's SASL_SSL listener: where it listens, its certificates and its user's password."""

from __future__ import annotations

import argparse
import stat
import subprocess
from pathlib import Path

from concord.infra import cli, kafka


def properties(node: kafka.KafkaNode) -> dict[str, str]:
    node.home.mkdir(parents=True, exist_ok=True)
    kafka._write_properties(node)
    return dict(line.split("=", 1) for line in node.properties.read_text().splitlines() if line)


def test_the_sasl_listener_is_two_ports_above_the_client_port_beside_the_plaintext_one(tmp_path: Path) -> None:
    conf = properties(kafka.KafkaNode(cache=tmp_path, port=19092, controller_port=19093))
    assert conf["listeners"] == ("PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094,"
                                 "CONTROLLER://127.0.0.1:19093")
    assert conf["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094"
    assert conf["inter.broker.listener.name"] == "PLAINTEXT"
    assert conf["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert conf["listener.name.sasl_ssl.ssl.keystore.location"] == str(tmp_path / "19092" / "sasl" /
                                                                       "broker-keystore.pem")


def test_the_sasl_port_is_an_option(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["up", "--cache", str(tmp_path), "--kafka-port", "19092", "--sasl-port", "20001"])
    knode, _ = cli.nodes(args)
    assert knode.sasl_bootstrap == "127.0.0.1:20001"
    assert "SASL_SSL://127.0.0.1:20001" in properties(knode)["listeners"]


def test_the_password_is_made_once_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    node = kafka.KafkaNode(cache=tmp_path)
    first = kafka.sasl_password(node)
    assert len(first) >= 16 and kafka.sasl_password(node) == first
    assert stat.S_IMODE(node.password_file.stat().st_mode) == 0o600


def openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True).stdout


def test_the_broker_certificate_names_the_loopback_address_and_localhost_signed_by_the_ca(tmp_path: Path) -> None:
    node = kafka.KafkaNode(cache=tmp_path)
    kafka.ensure_certificates(node)
    certificate = str(node.sasl_dir / "broker.crt")
    assert "OK" in openssl("verify", "-CAfile", str(node.ca_file), certificate)
    names = openssl("x509", "-in", certificate, "-noout", "-ext", "subjectAltName")
    assert "IP Address:127.0.0.1" in names and "DNS:localhost" in names
    keystore = node.keystore.read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----") and keystore.count("BEGIN CERTIFICATE") == 2
    made = node.keystore.stat().st_mtime_ns
    kafka.ensure_certificates(node)  # kept: made once
    assert node.keystore.stat().st_mtime_ns == made
