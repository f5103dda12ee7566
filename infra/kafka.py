"""A local Apache Kafka: one KRaft node (broker + controller) on 127.0.0.1, fetched with Maven.

Layout under the cache folder (git-ignored, `.cache/kafka/` of the checkout by default):
`<version>/libs/*.jar` (the broker and its runtime dependencies from Maven Central, shared), and per
client port `<port>/`: `data/` (the KRaft log dirs), `server.properties`, `kafka.log`, `kafka.pid`;
so brokers on different ports never share a log dir.

Besides its PLAINTEXT listener (what the tests, the demo and the benchmarks use), the node opens a
SASL_SSL listener (client port + 2 by default) the way a managed Kafka does: TLS with a certificate of
a CA of its own, and a SCRAM-SHA-512 user. `<port>/sasl/` holds the CA (`ca.pem`, what a client trusts),
the broker's key and certificate, and the user's password (`concord.password`), all made once with
`openssl` and kept. The user is written into the metadata when the storage is formatted (`--add-scram`);
a data dir formatted before (by an older Concord, or with another password) gets it through Kafka's
ConfigCommand once the broker is up, and `sasl/scram-user` records for which cluster and password that
was done, so a restart does not start a JVM for it again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from concord.infra.process import InfraError, port_open, read_pid, spawn, stop_pid, wait_until

DEFAULT_VERSION = "4.0.1"
POM = Path(__file__).with_name("kafka-pom.xml")

E_NO_JAVA = (
    "Java 17+ is needed to run the local Kafka broker and `java` was not found on PATH. "
    "Install a JDK (Debian: apt-get install openjdk-17-jre-headless) or use docker-compose.yml."
)
E_NO_OPENSSL = (
    "`openssl` is needed to make the certificates of the local broker's SASL_SSL listener and was not found on "
    "PATH. Install it (Debian: apt-get install openssl)."
)
SASL_USER = "concord"
SASL_MECHANISM = "SCRAM-SHA-512"
E_NO_MAVEN = (
    "Maven is needed once to fetch Kafka from Maven Central and `mvn` was not found on PATH. "
    "Install it (Debian: apt-get install maven) or use docker-compose.yml."
)


@dataclass(frozen=True)
class KafkaNode:
    """Where the local broker lives and listens."""

    cache: Path
    port: int = 9092
    controller_port: int = 9093
    version: str = DEFAULT_VERSION
    heap: str = "512m"
    data_dir: Path | None = None
    sasl_port: int | None = None  # the SASL_SSL listener; None: the client port + 2 (9094)

    @property
    def libs(self) -> Path:
        return self.cache / self.version / "libs"

    @property
    def home(self) -> Path:
        return self.cache / str(self.port)

    @property
    def data(self) -> Path:
        return self.data_dir or self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_listener_port(self) -> int:
        return self.port + 2 if self.sasl_port is None else self.sasl_port

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_listener_port}"

    @property
    def sasl_dir(self) -> Path:
        return self.home / "sasl"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the broker's certificate: what a client of the SASL_SSL listener trusts."""
        return self.sasl_dir / "ca.pem"

    @property
    def password_file(self) -> Path:
        """The SCRAM password of `SASL_USER` (made once, kept)."""
        return self.sasl_dir / f"{SASL_USER}.password"

    @property
    def keystore(self) -> Path:
        """The broker's private key and certificate chain, one PEM file (Kafka's PEM keystore)."""
        return self.sasl_dir / "broker-keystore.pem"


def fetch(node: KafkaNode) -> Path:
    """Resolve Kafka and its runtime dependencies into the cache (once); return the libs folder."""
    marker = node.libs / ".complete"
    if marker.exists():
        return node.libs
    if shutil.which("mvn") is None:
        raise InfraError(E_NO_MAVEN)
    print(f"infra: fetching Apache Kafka {node.version} from Maven Central into {node.libs} (once) ...",
          flush=True)
    node.libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn", "-q", "-B", "-f", str(POM), f"-Dkafka.version={node.version}",
        "dependency:copy-dependencies", f"-DoutputDirectory={node.libs}", "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not any(node.libs.glob(f"kafka_2.13-{node.version}.jar")):
        raise InfraError(
            f"Maven could not fetch org.apache.kafka:kafka_2.13:{node.version} "
            f"(exit {result.returncode}).\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    marker.write_text(node.version)
    print(f"infra: Kafka {node.version}: {len(list(node.libs.glob('*.jar')))} jars", flush=True)
    return node.libs


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    if candidate and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise InfraError(E_NO_JAVA)
    return found


def _write_properties(node: KafkaNode) -> None:
    node.properties.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"listeners=PLAINTEXT://127.0.0.1:{node.port},SASL_SSL://127.0.0.1:{node.sasl_listener_port},"
                f"CONTROLLER://127.0.0.1:{node.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port},SASL_SSL://{node.sasl_bootstrap}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
                # The SASL_SSL listener: SCRAM over TLS, as Amazon MSK and Aiven offer it.
                f"sasl.enabled.mechanisms={SASL_MECHANISM}",
                f"listener.name.sasl_ssl.{SASL_MECHANISM.lower()}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.sasl_ssl.ssl.keystore.type=PEM",
                f"listener.name.sasl_ssl.ssl.keystore.location={node.keystore}",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{node.controller_port}",
                f"log.dirs={node.data}",
                # One node: nothing can be replicated, and nobody else will join a group.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "default.replication.factor=1",
                "min.insync.replicas=1",
                "group.initial.rebalance.delay.ms=0",
                "num.partitions=1",
                "auto.create.topics.enable=true",
                # Small and quick for a laptop or CI: short segments, few threads.
                "num.network.threads=2",
                "num.io.threads=4",
                "log.segment.bytes=67108864",
                "",
            ]
        )
    )


def _format_storage(node: KafkaNode, libs: Path) -> None:
    if (node.data / "meta.properties").exists():
        return
    node.data.mkdir(parents=True, exist_ok=True)
    # A cluster id is 16 random bytes, base64url without padding (22 chars).
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    password = sasl_password(node)
    cmd = [
        _java(), "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
        "-t", cluster_id, "-c", str(node.properties), "--standalone",
        "--add-scram", f"{SASL_MECHANISM}=[name={SASL_USER},password={password}]",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise InfraError(f"formatting KRaft storage in {node.data} failed:\n{result.stderr[-2000:]}")
    _scram_marker(node).write_text(_scram_mark(cluster_id, password))


def sasl_password(node: KafkaNode) -> str:
    """The SCRAM password of `SASL_USER` on this node: made once (random), then read from its file."""
    if node.password_file.exists():
        return node.password_file.read_text().strip()
    node.sasl_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # keys and a password
    password = secrets.token_urlsafe(24)  # URL-safe: no character the `--add-scram` syntax would misread
    node.password_file.touch(mode=0o600)
    node.password_file.write_text(password + "\n")
    return password


def _scram_marker(node: KafkaNode) -> Path:
    return node.sasl_dir / "scram-user"


def _scram_mark(cluster_id: str, password: str) -> str:
    """What `sasl/scram-user` says once the user is in the metadata: the cluster and (a digest of) its password."""
    return f"{cluster_id} {hashlib.sha256(password.encode()).hexdigest()[:16]}\n"


def _cluster_id(node: KafkaNode) -> str:
    for line in (node.data / "meta.properties").read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.removeprefix("cluster.id=").strip()
    raise InfraError(f"{node.data / 'meta.properties'} names no cluster.id: wipe the data (`infra wipe`) and "
                     "start again")


def _ensure_scram_user(node: KafkaNode, libs: Path) -> None:
    """Give a data dir formatted without the SASL user (or with another password) the user, through the
    PLAINTEXT listener with Kafka's ConfigCommand; once per cluster and password."""
    password = sasl_password(node)
    mark = _scram_mark(_cluster_id(node), password)
    marker = _scram_marker(node)
    if marker.exists() and marker.read_text() == mark:
        return
    cmd = [
        _java(), "-Xmx256m", "-cp", f"{libs}/*", "kafka.admin.ConfigCommand", "--bootstrap-server", node.bootstrap,
        "--alter", "--entity-type", "users", "--entity-name", SASL_USER,
        "--add-config", f"{SASL_MECHANISM}=[password={password}]",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise InfraError(f"adding the SCRAM user {SASL_USER!r} to Kafka on {node.bootstrap} failed:\n"
                         f"{result.stdout[-1000:]}{result.stderr[-2000:]}")
    marker.write_text(mark)


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise InfraError(f"openssl {args[0]} failed making the local broker's certificates:\n{result.stderr[-2000:]}")


def ensure_certificates(node: KafkaNode) -> None:
    """The CA and the broker's certificate (names 127.0.0.1 and localhost) of the SASL_SSL listener, made once."""
    if node.keystore.exists() and node.ca_file.exists():
        return
    if shutil.which("openssl") is None:
        raise InfraError(E_NO_OPENSSL)
    tls = node.sasl_dir
    tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key, key, csr, cert, ext = (tls / n for n in ("ca.key", "broker.key", "broker.csr", "broker.crt", "broker.ext"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(node.ca_file),
             "-days", "3650", "-subj", f"/CN=Concord local Kafka CA ({node.port})",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(node.ca_file), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "825", "-sha256", "-extfile", str(ext))
    # Kafka's PEM keystore: the (PKCS#8, unencrypted) key, then the certificate chain.
    node.keystore.write_text(key.read_text() + cert.read_text() + node.ca_file.read_text())
    for leftover in (csr, ext, tls / "ca.srl"):
        leftover.unlink(missing_ok=True)


def running(node: KafkaNode) -> bool:
    """True when a broker answers on the node's client port."""
    return port_open("127.0.0.1", node.port)


def sasl_running(node: KafkaNode) -> bool:
    """True when something answers on the node's SASL_SSL port (a broker started before it had one does not)."""
    return port_open("127.0.0.1", node.sasl_listener_port)


def start(node: KafkaNode, timeout: float = 90.0) -> bool:
    """Start the node unless a broker already answers on its port. True when this call started it."""
    if running(node):
        return False
    libs = fetch(node)
    node.home.mkdir(parents=True, exist_ok=True)
    ensure_certificates(node)
    _write_properties(node)
    _format_storage(node, libs)
    env = dict(os.environ)
    argv = [
        _java(), f"-Xmx{node.heap}", f"-Xms{node.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-cp", f"{libs}/*", "kafka.Kafka", str(node.properties),
    ]
    print(f"infra: starting Kafka {node.version} on {node.bootstrap} (log: {node.log_file})", flush=True)
    if node.log_file.exists():  # keep the previous run's log, start this one fresh
        node.log_file.replace(node.log_file.with_suffix(".log.1"))
    spawn(argv, node.log_file, node.pid_file, env=env)
    wait_until(
        lambda: _answers(node), timeout, f"Kafka on {node.bootstrap}", node.log_file,
        alive=lambda: read_pid(node.pid_file) is not None,
    )
    _ensure_scram_user(node, libs)
    return True


def _answers(node: KafkaNode) -> bool:
    """The broker accepts connections and says it has started (metadata served)."""
    if not port_open("127.0.0.1", node.port):
        return False
    try:
        return "Kafka Server started" in node.log_file.read_text(errors="replace")[-200_000:]
    except OSError:
        return False


def stop(node: KafkaNode) -> bool:
    """Stop the broker this folder started (controlled shutdown). False if none was running."""
    return stop_pid(node.pid_file, grace=60.0)


def wipe(node: KafkaNode) -> None:
    """Delete the broker's data (topics, offsets). The fetched jars stay."""
    if read_pid(node.pid_file) is not None:
        raise InfraError("stop Kafka before wiping its data (make infra-down)")
    shutil.rmtree(node.data, ignore_errors=True)
