"""Integration fixtures: a real Kafka broker and Redis server, brought up by infra/ (or reused)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from concord.app.settings import Settings
from concord.infra import kafka, redis
from concord.infra.cli import default_cache
from tests.integration.harness import Infra, unique_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """Kafka and Redis for the whole session; stops at the end only what this fixture started."""
    cache = default_cache()
    knode = kafka.KafkaNode(
        cache=cache / "kafka",
        port=int(os.environ.get("CONCORD_INFRA_KAFKA_PORT", "9092")),
        controller_port=int(os.environ.get("CONCORD_INFRA_CONTROLLER_PORT", "9093")),
    )
    rnode = redis.RedisNode(cache=cache / "redis", port=int(os.environ.get("CONCORD_INFRA_REDIS_PORT", "6379")))
    started_kafka = kafka.start(knode)
    started_redis = redis.start(rnode)
    yield Infra(kafka_port=knode.port, redis_port=rnode.port)
    if started_redis:
        redis.stop(rnode)
    if started_kafka:
        kafka.stop(knode)


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> Settings:
    """Settings of a fresh app: its own app id, topic prefix, web port and data folder."""
    return unique_settings(infra, tmp_path / "data")
