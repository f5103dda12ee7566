"""Concord through the local broker's SASL_SSL listener (SCRAM-SHA-512 over TLS), as through a managed Kafka.

The broker `infra up` starts listens in plaintext on its client port and with SASL_SSL two ports above
(9092, 9094), with a CA and a SCRAM user of its own (infra/kafka.py). A client with the user's password
and the CA produces and consumes there; a wrong password is refused saying so; and the closed loop runs as
at a real company (issue 18's "done when"): a worker, the webhooks process, the Salesforce bridge and the
sandbox, every Kafka client of theirs on SASL_SSL; Salesforce and NetSuite on their token flows with tokens
that live 4 s, renewed during the run; Salesforce's change events arriving through `concord bridge
salesforce` from the sandbox's Pub/Sub API. It corrects drift as the plaintext loop does. The test reads
what the processes wrote through the plaintext listener: the processes under test are the ones that must
speak SASL_SSL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from concord.app.demo import demo_keys
from concord.bench.common import free_port
from concord.core.kafka_security import kafka_client_options
from concord.core.settings import Settings
from concord.core.topics import topic_names
from concord.infra import kafka
from tests.integration.harness import Infra, WorkerProcess, read_all, webhooks_process
from tests.integration.test_closed_loop import _get, _wait, loop_settings, settled

E_NO_SASL_LISTENER = (
    "the test broker has no SASL_SSL listener on {address} (or no password file {password}): it was started "
    "before infra/ opened one, and `make test` reuses a broker it finds running as it is. Restart it with "
    "`concord infra down` and `concord infra up`, then run this test again"
)


def secure(settings: Settings, node: kafka.KafkaNode, password: str | None = None) -> Settings:
    """`settings` pointed at the broker's SASL_SSL listener, with its user and CA (`password`: another one)."""
    if not kafka.sasl_running(node) or not node.password_file.exists():
        pytest.fail(E_NO_SASL_LISTENER.format(address=node.sasl_bootstrap, password=node.password_file))
    return msgspec.structs.replace(
        settings, kafka_url=f"kafka://{node.sasl_bootstrap}", kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=kafka.SASL_MECHANISM, kafka_sasl_username=kafka.SASL_USER,
        kafka_sasl_password=password or kafka.sasl_password(node), kafka_ssl_cafile=str(node.ca_file))


async def test_a_client_with_the_user_and_the_ca_produces_and_consumes(
    settings: Settings, kafka_node: kafka.KafkaNode
) -> None:
    cfg = secure(settings, kafka_node)
    topic = f"{cfg.app_id}.secure"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_node.sasl_bootstrap, acks="all",
                                **kafka_client_options(cfg))
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(topic, f"record {n}".encode(), key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_node.sasl_bootstrap, group_id=None,
                                auto_offset_reset="earliest", **kafka_client_options(cfg))
    await consumer.start()
    try:
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < 3 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    assert values == [b"record 0", b"record 1", b"record 2"]


async def test_a_wrong_password_is_refused_as_invalid_credentials(
    settings: Settings, kafka_node: kafka.KafkaNode, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = secure(settings, kafka_node, password="not-the-password-of-concord")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_node.sasl_bootstrap, request_timeout_ms=10_000,
                                **kafka_client_options(cfg))
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    # aiokafka raises "Unable to bootstrap" and logs the broker's reason: what an operator reads in the log.
    assert _logged(caplog, "SaslAuthenticationFailed", "invalid credentials with SASL mechanism SCRAM-SHA-512")


async def test_a_client_that_does_not_trust_the_brokers_ca_is_refused_by_tls(
    settings: Settings, kafka_node: kafka.KafkaNode, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = msgspec.structs.replace(secure(settings, kafka_node), kafka_ssl_cafile="")  # the system's CAs only
    producer = AIOKafkaProducer(bootstrap_servers=kafka_node.sasl_bootstrap, request_timeout_ms=10_000,
                                **kafka_client_options(cfg))
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    assert _logged(caplog, "CERTIFICATE_VERIFY_FAILED")


def _logged(caplog: pytest.LogCaptureFixture, *parts: str) -> bool:
    """Whether aiokafka logged an error with every one of `parts`."""
    return any(all(p in r.getMessage() for p in parts) for r in caplog.records if r.name.startswith("aiokafka"))


async def test_the_closed_loop_runs_as_at_a_real_company(
    infra: Infra, settings: Settings, kafka_node: kafka.KafkaNode, tmp_path: Path
) -> None:
    """The closed loop as a real company runs it: every Kafka client on SASL_SSL; Salesforce and NetSuite on
    their token flows (JWT bearer, client credentials) with tokens that live seconds, so they are renewed
    during the run (Salesforce's after a 401, since Concord is told sessions last longer than the sandbox's;
    NetSuite's ahead of expiry); and Salesforce's change events arriving through `concord bridge salesforce`
    from the sandbox's Pub/Sub API (the sandbox produces nothing to Kafka itself)."""
    sandbox_port, pubsub_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    keys = demo_keys(tmp_path)
    run = f"{time.time_ns()}"
    cfg = msgspec.structs.replace(
        secure(loop_settings(settings, tmp_path, sandbox_port, infra.redis_port), kafka_node),
        salesforce_access_token="", salesforce_instance_url="", salesforce_auth_flow="jwt_bearer",
        salesforce_client_id=f"3MVG9loop{run}", salesforce_username="loop@concord.invalid",
        salesforce_login_url=sandbox_url, salesforce_private_key=keys.private_key.read_text(),
        salesforce_session_seconds=60.0,
        netsuite_access_token="", netsuite_auth_flow="client_credentials", netsuite_client_id=f"ns-loop-{run}",
        netsuite_certificate_id="kid-loop", netsuite_private_key=keys.private_key.read_text(),
        salesforce_pubsub_url=f"grpc://127.0.0.1:{pubsub_port}", salesforce_pubsub_replay_preset="EARLIEST")
    names = topic_names(cfg)
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info",
                            "--roles", "ingest,state,commands"], cfg, tmp_path / "worker.log").start()
    hooks = webhooks_process(msgspec.structs.replace(cfg, web_port=free_port()), tmp_path / "webhooks.log").start()
    bridge = WorkerProcess([sys.executable, "-m", "concord.app.cli", "bridge", "salesforce", "-l", "info"], cfg,
                           tmp_path / "bridge.log")
    sandbox = WorkerProcess(
        [sys.executable, "-m", "concord.app.cli", "sandbox", "--port", str(sandbox_port), "--seed", "11",
         "--customers", "8", "--drift-rate", "0.5", "--time-scale", "864000", "--duration", "15",
         "--linger", "600", "--progress", "5", "--concord-url", hooks.base_url, "--test-credentials",
         "--salesforce-delivery", "pubsub", "--pubsub-port", str(pubsub_port), "--token-lifetime", "4",
         "--salesforce-jwt-certificate", str(keys.certificate), "--netsuite-certificate", str(keys.certificate)],
        cfg, tmp_path / "sandbox.log")

    def logs() -> str:
        return (f"--- worker\n{worker.log_tail(40)}\n--- webhooks\n{hooks.log_tail(20)}\n"
                f"--- bridge\n{bridge.log_tail(20)}\n--- sandbox\n{sandbox.log_tail(20)}")

    try:
        await worker.wait_ready()
        await hooks.wait_ready()
        sandbox.start()
        await _wait("sandbox up", lambda: _get(f"{sandbox_url}/_sandbox/healthz"), 30, logs)
        bridge.start()

        _, last = await settled(worker, sandbox_url, infra.bootstrap, names.dlq_commands, logs)
        assert "corrected" in last.values(), last
        # Salesforce's change events came through the bridge: the sandbox serves them on its Pub/Sub API only.
        assert await read_all(infra.bootstrap, names.raw["salesforce"]), logs()
        assert "bridge /data/AccountChangeEvent: subscribed" in bridge.log_tail(200), logs()
        tokens = (await _get(f"{sandbox_url}/_sandbox/status"))["tokens"]
        print(f"tokens: {tokens}")
        # Tokens of 4 s over a run of more than 15 s: Salesforce's, used all along by the bridge's stream, were
        # renewed (a token issued after the first); NetSuite's are asked for when a command needs one, so how many
        # depends on when its corrections fall (its renewals are shown in test_platform_tokens.py). No token
        # request was refused.
        assert tokens["salesforce"]["issued"] >= 2 and tokens["netsuite"]["issued"] >= 1, tokens
        assert tokens["salesforce"]["refused_grants"] == 0 and tokens["netsuite"]["refused_grants"] == 0, tokens
        effects = await _get(f"{sandbox_url}/_sandbox/effects")
        assert effects["duplicates"] == [], effects["duplicates"]
        assert sum(e["applied"] for e in effects["effects"]) > 0
    finally:
        bridge.stop()
        sandbox.stop()
        hooks.stop()
        worker.stop()
