"""Integration fixtures: a real Kafka broker and Redis server, brought up by infra/ (or reused)."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from concord.core.settings import Settings
from concord.infra import kafka, redis
from concord.infra.cli import default_cache
from tests.integration.harness import Infra, delete_app_topics, unique_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_node() -> kafka.KafkaNode:
    """The session's broker as infra/ knows it: its ports (the SASL_SSL listener's too), CA and SASL password."""
    sasl_port = os.environ.get("CONCORD_INFRA_SASL_PORT")
    return kafka.KafkaNode(
        cache=default_cache() / "kafka",
        port=int(os.environ.get("CONCORD_INFRA_KAFKA_PORT", "9092")),
        controller_port=int(os.environ.get("CONCORD_INFRA_CONTROLLER_PORT", "9093")),
        sasl_port=int(sasl_port) if sasl_port else None,
    )


@pytest.fixture(scope="session")
def infra(kafka_node: kafka.KafkaNode) -> Iterator[Infra]:
    """Kafka and Redis for the whole session; stops at the end only what this fixture started."""
    cache = default_cache()
    knode = kafka_node
    rnode = redis.RedisNode(cache=cache / "redis", port=int(os.environ.get("CONCORD_INFRA_REDIS_PORT", "6379")))
    started_kafka = kafka.start(knode)
    started_redis = redis.start(rnode)
    yield Infra(kafka_port=knode.port, redis_port=rnode.port)
    if started_redis:
        redis.stop(rnode)
    if started_kafka:
        kafka.stop(knode)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    if call.when == "call":
        item.stash[_FAILED] = outcome.get_result().failed  # type: ignore[attr-defined]


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def settings(infra: Infra, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings of a fresh app: its own app id, topic prefix, web port and data folder.

    Its topics are deleted after a test that passed (best effort: a failure to delete is a warning);
    a failed test's are kept, to be read.
    """
    fresh = unique_settings(infra, tmp_path / "data")
    yield fresh
    if request.node.stash.get(_FAILED, False):
        print(f"kept the topics of the failed test ({fresh.app_id}.*, {fresh.app_id}-*) for inspection")
        return
    try:
        asyncio.run(delete_app_topics(infra.bootstrap, fresh.app_id))
    except Exception as exc:  # noqa: BLE001 (cleanup must not fail a test that passed)
        warnings.warn(f"could not delete the topics of {fresh.app_id}: {exc}", stacklevel=1)
