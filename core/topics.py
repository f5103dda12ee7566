"""Concord's topics (ARCHITECTURE section 2), named from the settings' prefix."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from msgspec import Struct

from concord.core.kafka_security import KafkaSecurity, kafka_client_options
from concord.core.settings import Settings

PLATFORMS: Final = ("stripe", "salesforce", "zendesk", "netsuite")
#: Command lanes: one per platform plus Concord's own actions, so one platform's outage or halt
#: never holds up the commands of another.
COMMAND_LANES: Final = (*PLATFORMS, "concord")


class TopicNames(Struct, frozen=True):
    """Every topic name, so no module spells one by hand."""

    raw: dict[str, str]
    dlq_ingest: str
    identity: str
    canonical: str
    drift: str
    commands: str  # where commands are sent; the command agent routes each to its platform's lane
    command_lanes: dict[str, str]
    command_results: str
    dlq_commands: str
    audit: str

    def all(self) -> list[str]:
        return [
            *self.raw.values(),
            self.dlq_ingest,
            self.identity,
            self.canonical,
            self.drift,
            self.commands,
            *self.command_lanes.values(),
            self.command_results,
            self.dlq_commands,
            self.audit,
        ]


def topic_names(settings: Settings) -> TopicNames:
    p = settings.topic_prefix
    return TopicNames(
        raw={platform: f"{p}.raw.{platform}" for platform in PLATFORMS},
        dlq_ingest=f"{p}.dlq.ingest",
        identity=f"{p}.identity",
        canonical=f"{p}.canonical",
        drift=f"{p}.drift",
        commands=f"{p}.commands",
        command_lanes={lane: f"{p}.commands.{lane}" for lane in COMMAND_LANES},
        command_results=f"{p}.command-results",
        dlq_commands=f"{p}.dlq.commands",
        audit=f"{p}.audit",
    )


class TopicSpec(Struct, frozen=True):
    name: str
    partitions: int
    replication: int


E_TOPICS = (
    "could not create Concord's topics on {bootstrap} within {timeout:.0f} s ({error}). Is Kafka running "
    "(`make infra-up`) and CONCORD_KAFKA_URL right? May this client create topics?"
)


async def ensure_topics(bootstrap: str, specs: list[TopicSpec], timeout: float = 60.0, *,
                        security: KafkaSecurity) -> list[str]:
    """Create the missing topics and wait until the broker's metadata lists them all.

    Done before a worker subscribes: a consumer that subscribes to a topic the broker does not know
    yet skips it until its next metadata refresh (minutes), which looks like a stuck worker.
    Returns the names that were created.
    """
    deadline = time.monotonic() + timeout
    created: list[str] = []
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000,
                                    **kafka_client_options(security))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [s for s in specs if s.name not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # another worker created it first
                    await admin.create_topics(
                        [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication)
                         for s in missing]
                    )
                created.extend(s.name for s in missing)
            described = await admin.describe_topics([s.name for s in specs])
            if all(not d.get("error_code") and d.get("partitions") for d in described):
                return created
        except Exception as exc:  # broker still starting: retry until the deadline
            last_error = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise RuntimeError(E_TOPICS.format(bootstrap=bootstrap, timeout=timeout, error=last_error or "not listed"))
