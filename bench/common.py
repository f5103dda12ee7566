"""Shared pieces of the benchmark harnesses: settings, payloads, producing, result files."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from concord.core.kafka_security import KafkaSecurity, kafka_client_options, kafka_security
from concord.core.settings import load

RESULTS = Path(__file__).resolve().parent / "results"


def bootstrap() -> str:
    """The broker under test: CONCORD_KAFKA_URL, or the local infra default."""
    return os.environ.get("CONCORD_KAFKA_URL", "kafka://127.0.0.1:9092").removeprefix("kafka://")


def security() -> KafkaSecurity:
    """The TLS and SASL of the broker under test: the `CONCORD_KAFKA_SECURITY_*`, `_SASL_*`, `_SSL_*` settings."""
    return kafka_security(load())


def kafka_options() -> dict[str, Any]:
    """The security options of every client of the broker under test (`**kafka_options()`)."""
    return kafka_client_options(security())


# The settings that carry the broker under test's security into a benchmark's worker processes.
_SECURITY_VARS = ("CONCORD_KAFKA_SECURITY_", "CONCORD_KAFKA_SASL_", "CONCORD_KAFKA_SSL_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Every topic and app id this process makes starts with `bench-<RUN>-` (see `delete_run_topics`).
RUN = uuid.uuid4().hex[:6]


def unique(prefix: str) -> str:
    return f"bench-{RUN}-{prefix}-{uuid.uuid4().hex[:8]}"


async def delete_run_topics() -> int:
    """Delete the topics this benchmark process made (its own and its Faust apps'); how many went.

    A broker reused for many runs would otherwise keep every run's topics (and run out of heap).
    Best effort: a failure is printed, not raised.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(), **kafka_options())
    started = False
    try:
        await admin.start()
        started = True
        names = [t for t in await admin.list_topics() if t.startswith(f"bench-{RUN}-")]
        if names:
            await admin.delete_topics(names)
        return len(names)
    except Exception as exc:  # noqa: BLE001 (cleanup must not fail a benchmark that ran)
        print(f"could not delete this run's topics (bench-{RUN}-*): {exc}", file=sys.stderr)
        return 0
    finally:
        if started:
            await admin.close()


def sample_event(i: int) -> bytes:
    """A ~230-byte JSON event, the size ARCHITECTURE section 12 measured with."""
    return orjson.dumps({
        "id": f"evt_{i:024d}", "type": "invoice.paid", "created": 1_700_000_000 + i,
        "customer": f"cus_{i % 5000:014d}", "amount_paid": 4200 + i % 100, "currency": "usd",
        "status": "paid", "livemode": False, "api_version": "2024-06-20",
    })


async def create_topic(topic: str, partitions: int) -> None:
    """Create `topic` on the broker under test (one replica)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(), **kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce_events(topic: str, count: int, partitions: int) -> float:
    """Produce `count` sample events keyed by customer; return the produce rate (events/s)."""
    await create_topic(topic, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), **kafka_options(), acks=1, linger_ms=20,
                                max_batch_size=256 * 1024, compression_type=None)
    await producer.start()
    started = time.perf_counter()
    try:
        for i in range(count):
            await producer.send(topic, sample_event(i), key=f"cus_{i % 5000}".encode())
            if i % 20_000 == 19_999:
                print(f"  produced {i + 1:,}/{count:,}", flush=True)
        await producer.flush()
    finally:
        await producer.stop()
    return count / (time.perf_counter() - started)


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write a JSON result under bench/results/ with the machine's facts; return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        **result,
    }
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def print_table(rows: list[tuple[str, float]], baseline: float) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{'path':{width}}  {'events/s':>12}  {'vs raw':>7}")
    for name, rate in rows:
        print(f"{name:{width}}  {rate:12,.0f}  {rate / baseline:7.3f}")


def worker_env(app_id: str, data_dir: str, **extra: str) -> dict[str, str]:
    """Environment of a benchmark worker process: its own app id, topic prefix, port and data dir, and the
    broker under test's TLS and SASL settings (not when `extra` names another broker, `CONCORD_KAFKA_URL`: one
    the benchmark started for itself, in plaintext)."""
    own_broker = "CONCORD_KAFKA_URL" in extra
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONCORD_") or (not own_broker and k.startswith(_SECURITY_VARS))}
    env.update({
        "CONCORD_KAFKA_URL": f"kafka://{bootstrap()}", "CONCORD_APP_ID": app_id, "CONCORD_TOPIC_PREFIX": app_id,
        "CONCORD_WEB_PORT": str(free_port()), "CONCORD_DATA_DIR": data_dir,
        "CONCORD_TOPIC_PARTITIONS": os.environ.get("BENCH_PARTITIONS", "4"),
        "CONCORD_REDIS_URL": os.environ.get("CONCORD_REDIS_URL", "redis://127.0.0.1:6379/0"),
    })
    env.update(extra)
    return env


def run_counting_app(script: Path, topic: str, count: int, timeout: float, label: str) -> float:
    """Run a benchmark app (BENCH_TOPIC/BENCH_COUNT/BENCH_RESULT protocol) in a worker process until
    it has processed `count` events; its events/s, first to last event."""
    data = counting_app_result(script, topic, count, timeout, label)
    return float(data["events"]) / float(data["seconds"])


def counting_app_result(script: Path, topic: str, count: int, timeout: float, label: str,
                        **extra: str) -> dict[str, Any]:
    """`run_counting_app`, returning what the app wrote to BENCH_RESULT; `extra`: more environment."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = worker_env(unique(label), tmp, BENCH_TOPIC=topic, BENCH_COUNT=str(count), BENCH_RESULT=str(result),
                         **extra)
        log = Path(tmp) / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not result.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{label} app failed or timed out:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        data: dict[str, Any] = orjson.loads(result.read_bytes())
        return data
