"""The naive pipeline, for comparison: Concord's three hops as plain Faust agents, one Faust event per message.

raw (the four `<prefix>.raw.*` topics) -> decode with Concord's codecs -> `<prefix>.identity` keyed by the
platform-local id -> the customer key from the `links` table (`tables.identity.step`: link, resolve or park)
-> `<prefix>.canonical` keyed by customer -> one state table write per event (load, apply, every rule's
lifecycle, dump: the pure work of naive_state.py). None of Concord's batching, dead letters, sweeps,
changelog writer or Redis mirrors. It counts as a Concord worker does
(`concord_events_processed_total{agent="ingest"|"identity"|"state"}`, `concord_ingest_events_total`) and
serves them on `/metrics`, so the bench samples both the same way. Env: CONCORD_* (the topic prefix names
the topics).
"""

from __future__ import annotations

import time

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from concord.agents.context import Concord
from concord.app.factory import create_concord
from concord.app.worker import run
from concord.codecs import records
from concord.codecs.config import codec_config
from concord.codecs.model import AccountMerged, CanonicalEvent, Platform
from concord.codecs.model import decode as decode_event
from concord.codecs.model import encode as encode_event
from concord.codecs.registry import decoder
from concord.core import metrics
from concord.core import settings as settings_mod
from concord.drift import catalog, lifecycle
from concord.drift.config import DriftConfig
from concord.drift.sections import sections_of
from concord.tables import state as st
from concord.tables.identity import ParkedQueue, step


def make() -> Concord:
    concord = create_concord(settings_mod.load(), roles=["ingest", "state"])
    app, names, settings = concord.app, concord.names, concord.settings
    platform_of = {topic: Platform(platform) for platform, topic in names.raw.items()}
    raw = app.topic(*names.raw.values(), key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw")
    identity = concord.topics[names.identity]
    canonical = concord.topics[names.canonical]
    links = concord.table("naive-links", value_type=str)
    parked = concord.table("naive-parked")
    customers = concord.table("naive-customers")
    config = codec_config(settings)
    drift = DriftConfig(rules=catalog.default_configs())
    limit, ttl = settings.identity_park_limit, int(settings.identity_park_ttl_seconds * 1000)

    @app.agent(raw, concurrency=1)
    async def decode(stream: faust.StreamT[bytes]) -> None:
        processed = metrics.events_processed.labels("ingest")
        async for event in stream.events():
            processed.inc()
            platform = platform_of[event.message.topic]
            for canonical_event in decoder(platform)(event.value, config):
                metrics.ingest_events.labels(platform.value, type(canonical_event).__name__).inc()
                if canonical_event.local_customer is not None:
                    await identity.send(key=canonical_event.local_customer.encode(),
                                        value=encode_event(canonical_event))
                elif canonical_event.customer_key is not None:
                    await canonical.send(key=canonical_event.customer_key.encode(),
                                         value=encode_event(canonical_event))

    async def forward(event: CanonicalEvent) -> None:
        assert event.customer_key is not None
        for key in (event.customer_key, *(event.loser_ids if isinstance(event, AccountMerged) else ())):
            await canonical.send(key=key.encode(), value=encode_event(event))

    @app.agent(identity, concurrency=1)
    async def resolve(stream: faust.StreamT[bytes]) -> None:
        processed = metrics.events_processed.labels("identity")
        async for event in stream.events():
            processed.inc()
            local_id = event.message.key.decode()
            now = int(time.time() * 1000)
            stored = parked.get(local_id)
            current = links.get(local_id)
            message = records.decode_identity(event.value)
            assert not isinstance(message, records.IdentityBatch)  # the naive ingest sends one event per record
            outcome = step(current, ParkedQueue.load(stored, now), message, limit, now=now, ttl=ttl)
            if outcome.link is not None and outcome.link != current:
                links[local_id] = outcome.link
            for resolved in outcome.forward:
                await forward(resolved)
            if outcome.parked.dump() != (stored or b""):
                parked[local_id] = outcome.parked.dump()

    @app.agent(canonical, concurrency=1)
    async def state(stream: faust.StreamT[bytes]) -> None:
        processed = metrics.events_processed.labels("state")
        async for value in stream:
            event = decode_event(value)
            key = event.customer_key or ""
            stored = customers.get(key)
            new_state, _ = st.apply(st.load(stored) if stored else st.empty(key), event)
            verdict = lifecycle.evaluate(new_state, int(time.time() * 1000), catalog.RULES, drift, sections_of(event))
            customers[key] = st.dump(verdict.state)
            processed.inc()

    @app.page("/metrics")
    class Metrics(View):
        """The counters the bench samples."""

        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return concord


if __name__ == "__main__":
    concord = make()
    concord.prepare()
    run(concord.app, loglevel="warning")
