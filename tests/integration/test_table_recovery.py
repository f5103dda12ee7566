"""A table recovered in bulk after a restart holds exactly what its changelog says: every key, its latest
value, no deleted key. Its changelog is written first directly (as the state agent writes it), then by the
worker itself (Faust's writes and deletes), and the worker is SIGKILLed and restarted between."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from concord.core.partitioning import partition_for
from concord.core.settings import Settings
from tests.integration.harness import Infra, consume_all, produce, python_worker, wait_committed

APP = Path(__file__).parent / "apps" / "kv_app.py"


async def _write_changelog(bootstrap: str, topic: str, partitions: int,
                           records: list[tuple[str, bytes | None]]) -> None:
    """Create the table's changelog and write `records` to it as the agent would: the partition of the key's
    source record (the source topic is keyed by the table key)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                            topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=json.dumps(key).encode(), value=value,
                                partition=partition_for(key.encode(), partitions))
        await producer.flush()
    finally:
        await producer.stop()


async def _changelog_content(bootstrap: str, topic: str) -> dict[str, str]:
    """The table the changelog describes: each key's latest value, deleted keys gone."""
    records = await consume_all(bootstrap, topic, expected=10**9, timeout=5.0)  # all of it, in 5 s
    content: dict[str, str] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        key = json.loads(record.key)
        if record.value is None:
            content.pop(key, None)
        else:
            content[key] = record.value.decode()
    return content


async def _wait_content(worker, expected: dict[str, str], timeout: float = 60.0) -> dict[str, str]:
    deadline = asyncio.get_running_loop().time() + timeout
    content: dict[str, str] = {}
    while asyncio.get_running_loop().time() < deadline:
        content = await worker.get_json("/kv")  # type: ignore[assignment]
        if content == expected:
            return content
        await asyncio.sleep(0.5)
    raise AssertionError(f"table holds {len(content)} keys, expected {len(expected)}: "
                         f"{sorted(set(content.items()) ^ set(expected.items()))[:10]}\n{worker.log_tail()}")


async def test_a_restarted_worker_holds_exactly_the_changelog(infra: Infra, settings: Settings,
                                                             tmp_path: Path) -> None:
    changelog = f"{settings.app_id}-kv-changelog"
    partitions = settings.topic_partitions
    # Written before any worker: many keys, each overwritten, some deleted (tombstones), on every partition.
    direct: list[tuple[str, bytes | None]] = [(f"k{i}", f"v{i}-1".encode()) for i in range(2000)]
    direct += [(f"k{i}", f"v{i}-2".encode()) for i in range(0, 2000, 3)]
    direct += [(f"k{i}", None) for i in range(0, 2000, 7)]
    direct += [(f"k{i}", f"v{i}-3".encode()) for i in range(0, 2000, 14)]  # set again after its deletion
    await _write_changelog(infra.bootstrap, changelog, partitions, direct)
    expected = await _changelog_content(infra.bootstrap, changelog)
    assert 1000 < len(expected) < 2000

    topic = f"{settings.topic_prefix}.test-kv"
    worker = python_worker(APP, settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        assert await _wait_content(worker, expected) == expected  # loaded in bulk at the first start
        # The worker's own writes: new keys, overwrites, deletes of keys it loaded.
        events = [(f"k{i}".encode(), f"w{i}".encode()) for i in range(1500, 2600)]
        events += [(f"k{i}".encode(), b"") for i in range(1, 2600, 5)]
        await produce(infra.bootstrap, topic, events)
        for key, value in events:
            if value:
                expected[key.decode()] = value.decode()
            else:
                expected.pop(key.decode(), None)
        await _wait_content(worker, expected)
        await wait_committed(infra.bootstrap, settings.app_id, topic)
        worker.kill()
    finally:
        worker.stop()

    assert await _changelog_content(infra.bootstrap, changelog) == expected
    restarted = python_worker(APP, settings, tmp_path / "worker2.log").start()
    try:
        await restarted.wait_ready()
        assert await restarted.get_json("/kv") == expected  # at readiness, not eventually
        assert "changelog records loaded in bulk" in (tmp_path / "worker2.log").read_text(errors="replace")
    finally:
        restarted.stop()
