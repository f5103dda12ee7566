"""A local Apache Kafka: one KRaft node (broker + controller) on 127.0.0.1, fetched with Maven.

Layout under the cache folder (git-ignored, `.cache/kafka/` of the checkout by default):
`<version>/libs/*.jar` (the broker and its runtime dependencies from Maven Central, shared), and per
client port `<port>/`: `data/` (the KRaft log dirs), `server.properties`, `kafka.log`, `kafka.pid`;
so brokers on different ports never share a log dir.
"""

from __future__ import annotations

import base64
import os
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
                f"listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
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
    cmd = [
        _java(), "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
        # A cluster id is 16 random bytes, base64url without padding (22 chars).
        "-t", base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "-c", str(node.properties), "--standalone",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise InfraError(f"formatting KRaft storage in {node.data} failed:\n{result.stderr[-2000:]}")


def running(node: KafkaNode) -> bool:
    """True when a broker answers on the node's client port."""
    return port_open("127.0.0.1", node.port)


def start(node: KafkaNode, timeout: float = 90.0) -> bool:
    """Start the node unless a broker already answers on its port. True when this call started it."""
    if running(node):
        return False
    libs = fetch(node)
    node.home.mkdir(parents=True, exist_ok=True)
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
