"""The Faust app factory: one place that turns Settings into a configured `faust.App`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Final

import faust
from faust.types import TableT

from concord.app import faust_patches
from concord.core.settings import Settings, kafka_bootstrap
from concord.core.topics import TopicNames, TopicSpec, ensure_topics, topic_names

log = logging.getLogger("concord.app")

#: The roles a worker can run (`concord worker --roles ...`); later issues fill them with agents.
ROLES: Final = ("ingest", "state", "commands")


class Concord:
    """The app plus what every agent needs: settings, topic names and declared topics."""

    def __init__(self, settings: Settings, roles: Iterable[str] = ROLES) -> None:
        self.settings = settings
        self.roles = frozenset(roles)
        unknown = self.roles - set(ROLES)
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; choose from {', '.join(ROLES)}")
        self.names: TopicNames = topic_names(settings)
        self.app = create_faust_app(settings)
        self.topics: dict[str, faust.TopicT] = {}
        self.tables: dict[str, TableT[str, Any]] = {}
        for name in self.names.all():
            self.topic(name)
        self.app.on_startup_finished = self._on_startup_finished

    def topic(self, name: str) -> faust.TopicT:
        """Declare a topic Concord owns (bytes in, bytes out), with the settings' partitions."""
        topic = self.app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            value_serializer="raw",
            key_serializer="raw",
            partitions=self.settings.topic_partitions,
            replicas=self.settings.topic_replication_factor,
            # internal: Concord owns it, so Faust may create it with our partitions and replication.
            internal=True,
        )
        self.topics[name] = topic
        return topic

    def table(self, name: str, value_type: type = bytes) -> TableT[str, Any]:
        """A table keyed by str (JSON); bytes values stay raw (we encode our own Structs).

        Types go to the Table itself, not through a Schema: Faust derives the changelog's
        serializers from them (a Schema alone would leave the changelog at JSON and recovery would
        fail to decode raw values).
        """
        table = self.app.Table(name, partitions=self.settings.topic_partitions, key_type=str,
                               value_type=value_type)
        self.tables[name] = table
        return table

    def prepare(self, timeout: float = 60.0) -> list[str]:
        """Create every declared topic before the worker subscribes; return the ones created."""
        specs = [
            TopicSpec(name, self.settings.topic_partitions, self.settings.topic_replication_factor)
            for name in self.topics
        ]
        return asyncio.run(ensure_topics(kafka_bootstrap(self.settings), specs, timeout))

    async def _on_startup_finished(self) -> None:
        log.info("Concord worker ready (roles: %s)", ", ".join(sorted(self.roles)))


def create_faust_app(settings: Settings) -> faust.App:
    """A `faust.App` configured from settings; agents and views are registered by the caller."""
    faust_patches.apply()  # never commit past an unprocessed offset (see app/faust_patches.py)
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        store="memory://",
        datadir=settings.data_dir,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        # acks=all: a webhook is answered 200 only after every in-sync replica has the event.
        producer_acks=-1,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        # Faust's /table endpoints would expose customer data to anyone who can reach the port.
        web_tables_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout / 3),
        # The changelog is the truth; a worker restarted on another host rebuilds from it.
        table_standby_replicas=0,
    )
    faust_patches.redeliver_skipped(app)  # a message a rebalance made the stream skip is sought back to
    return app
