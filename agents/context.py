"""What every agent and view of a worker is given: `Concord`, the worker's context.

The Faust app (built by `app/factory.py`, the outer layer), the settings, topic names, the declared
topics and tables, and the worker's shared clients: one Redis client, and one drift index, search index
and timeline store on it, whatever roles the worker runs (each role used to open its own pool).
Shutdown runs the closers that agents and views register, in order, then closes the shared clients
last, so no closer finds them gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import faust
import redis.asyncio as aioredis
from faust.types import TableT

from concord.connectors.drift_index import DriftIndex
from concord.connectors.ledger import redis_client
from concord.connectors.saga_index import SagaIndex
from concord.connectors.search_index import SearchIndex
from concord.connectors.timeline import TimelineStore
from concord.core.kafka_security import kafka_security
from concord.core.settings import Settings, kafka_bootstrap
from concord.core.topics import TopicNames, TopicSpec, ensure_topics, topic_names

log = logging.getLogger("concord.app")

#: The roles a worker can run (`concord worker --roles ...`). `webhooks` alone runs without Faust
#: (`concord webhooks`, app/webhooks.py).
ROLES: Final = ("webhooks", "ingest", "state", "commands")

Closer = Callable[[], Awaitable[None]]


class Concord:
    """The app plus what every agent needs: settings, topic names, declared topics, shared clients."""

    def __init__(self, settings: Settings, app: faust.App, roles: Iterable[str] = ROLES) -> None:
        self.settings = settings
        self.roles = frozenset(roles)
        unknown = self.roles - set(ROLES)
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; choose from {', '.join(ROLES)}")
        self.names: TopicNames = topic_names(settings)
        self.app = app
        self.topics: dict[str, faust.TopicT] = {}
        self.tables: dict[str, TableT[str, Any]] = {}
        self._redis: aioredis.Redis | None = None
        self._drift_index: DriftIndex | None = None
        self._search_index: SearchIndex | None = None
        self._saga_index: SagaIndex | None = None
        self._timeline: TimelineStore | None = None
        self._closers: list[Closer] = []
        self._starters: list[Closer] = []
        for name in self.names.all():
            self.topic(name)
        app.on_before_shutdown.connect(self._shutdown)

    @property
    def redis(self) -> aioredis.Redis:
        """The worker's Redis client (command ledger, rate limits, drift index), opened on first use."""
        if self._redis is None:
            self._redis = redis_client(self.settings.redis_url)
        return self._redis

    @property
    def drift_index(self) -> DriftIndex:
        """The global drift index: the state agent mirrors findings into it, the API reads it."""
        if self._drift_index is None:
            self._drift_index = DriftIndex(self.redis, self.settings.topic_prefix,
                                           changes_kept=self.settings.drift_changes_kept)
        return self._drift_index

    @property
    def search_index(self) -> SearchIndex:
        """The customer search index: the state agent mirrors customers' ids into it, the API searches it."""
        if self._search_index is None:
            self._search_index = SearchIndex(self.redis, self.settings.topic_prefix)
        return self._search_index

    @property
    def saga_index(self) -> SagaIndex:
        """The sagas of every worker in Redis (connectors/saga_index.py), one per worker."""
        if self._saga_index is None:
            self._saga_index = SagaIndex(self.redis, self.settings.topic_prefix)
        return self._saga_index

    @property
    def timeline(self) -> TimelineStore:
        """The customers' timelines: the timeline agent writes the audit topic's checkpoints, the API reads."""
        if self._timeline is None:
            settings = self.settings
            self._timeline = TimelineStore(self.redis, settings.topic_prefix, settings.timeline_entries,
                                           int(settings.timeline_days * 86_400_000))
        return self._timeline

    def on_started(self, starter: Closer) -> None:
        """Run `starter` once the worker has started (tables recovered, its web server listening)."""
        self._starters.append(starter)

    async def started(self) -> None:
        """The worker has started: run the starters (the worker's runner calls this; see app/worker.py)."""
        for starter in self._starters:
            await starter()
        log.info("Concord worker ready (roles: %s)", ", ".join(sorted(self.roles)))

    def on_shutdown(self, closer: Closer) -> None:
        """Run `closer` when the worker stops, before the shared clients are closed."""
        self._closers.append(closer)

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
        return asyncio.run(ensure_topics(kafka_bootstrap(self.settings), specs, timeout,
                                         security=kafka_security(self.settings)))

    async def _shutdown(self, app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        for closer in self._closers:
            try:
                await closer()
            except Exception:  # one failing closer must not keep the others' resources open
                log.exception("closing %s failed", getattr(closer, "__qualname__", closer))
        if self._redis is not None:
            await self._redis.aclose()
