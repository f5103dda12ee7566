"""Prometheus metrics of a Concord worker. Names are `concord_*`; labels are low-cardinality."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# One registry per process, so tests that build several apps do not collide on the global one.
REGISTRY = CollectorRegistry(auto_describe=True)

worker_ready = Gauge(
    "concord_worker_ready", "1 when Kafka is reachable and table recovery has finished", registry=REGISTRY
)
events_processed = Counter(
    "concord_events_processed_total", "Events processed by an agent", ["agent"], registry=REGISTRY
)
agent_batch_seconds = Histogram(
    "concord_agent_batch_seconds", "Time an agent spends on one batch of events", ["agent"], registry=REGISTRY
)


def exposition() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(REGISTRY)
