"""Prometheus metrics of a Concord worker. Names are `concord_*`; labels are low-cardinality."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# One registry per process, so tests that build several apps do not collide on the global one.
REGISTRY = CollectorRegistry(auto_describe=True)

worker_ready = Gauge(
    "concord_worker_ready", "1 when the process answers /readyz with 200: Kafka reachable and table recovery "
    "finished (a worker), or Kafka reachable and the producer started (the webhooks process)", registry=REGISTRY
)
events_processed = Counter(
    "concord_events_processed_total", "Records processed by an agent: ingest counts raw platform records, "
    "identity the messages of the identity topic (each event of an envelope), state canonical events, commands "
    "commands", ["agent"], registry=REGISTRY,
)
agent_batch_seconds = Histogram(
    "concord_agent_batch_seconds", "Time an agent spends on one batch of events", ["agent"], registry=REGISTRY
)


def exposition() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(REGISTRY)

ingest_events = Counter(
    "concord_ingest_events_total", "Canonical events decoded from platform payloads", ["platform", "kind"],
    registry=REGISTRY,
)
ingest_dead_letters = Counter(
    "concord_ingest_dead_letters_total", "Payloads sent to the ingest dead-letter topic", ["platform", "reason"],
    registry=REGISTRY,
)
resync_required = Counter(
    "concord_resync_required_total",
    "Re-read requests from the sources: Salesforce GAP_* and wildcard change events (a gap naming a record is "
    "re-read by a crm.fetch_record command; one naming none is also counted in concord_gap_overflow_total) and "
    "every Zendesk organization webhook that may change the entitlement (it carries no entitlement fields: "
    "re-read by a support.fetch_organization command)",
    ["platform", "object"], registry=REGISTRY,
)
gap_overflow = Counter(
    "concord_gap_overflow_total",
    "Gap signals naming no record (Salesforce GAP_OVERFLOW, wildcard record ids): changes to records of the "
    "object were lost and none is named, so none can be re-read; the platform's /api/health entry says since "
    "when (gap_overflow_since) until a reconciliation",
    ["platform", "object"], registry=REGISTRY,
)
identity_parked = Counter(
    "concord_identity_parked_total", "Events parked until their platform id is linked to a customer",
    ["platform"], registry=REGISTRY,
)
identity_released = Counter(
    "concord_identity_released_total", "Parked events released when their link arrived", ["platform"],
    registry=REGISTRY,
)
identity_park_overflow = Counter(
    "concord_identity_park_overflow_total", "Events dead-lettered because too many waited for one link",
    registry=REGISTRY,
)
identity_park_full = Counter(
    "concord_identity_park_full_total", "Events dead-lettered because the worker already had "
    "identity_park_max_ids platform ids with parked events", registry=REGISTRY,
)
identity_park_expired = Counter(
    "concord_identity_park_expired_total", "Parked events dead-lettered after waiting longer than "
    "identity_park_ttl_seconds for their link", ["platform"], registry=REGISTRY,
)
identity_parked_ids = Gauge(
    "concord_identity_parked_ids", "Platform ids with parked events on this worker", registry=REGISTRY,
)
identity_repoints = Counter(
    "concord_identity_repoints_total", "Platform ids re-pointed to another customer after a CRM merge",
    registry=REGISTRY,
)
webhook_requests = Counter(
    "concord_webhook_requests_total", "Webhook requests by outcome (accepted, or why refused)",
    ["platform", "outcome"], registry=REGISTRY,
)
webhook_seconds = Histogram(
    "concord_webhook_seconds", "Seconds from the start of handling an accepted webhook to its answer (the "
    "raw topic's acknowledgement included): the platforms retry a delivery answered too slowly",
    ["platform"], registry=REGISTRY,
    # Milliseconds when healthy; the platforms give up after about ten seconds.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
state_events = Counter(
    "concord_state_events_total", "Canonical events by outcome at the state agent (applied, unchanged: "
    "duplicate or stale)", ["result"], registry=REGISTRY,
)
drift_transitions = Counter(
    "concord_drift_transitions_total", "Finding lifecycle transitions", ["rule", "status"], registry=REGISTRY,
)
commands_emitted = Counter(
    "concord_commands_emitted_total", "Corrective commands emitted", ["action"], registry=REGISTRY,
)
deadline_ticks = Counter(
    "concord_deadline_ticks_total", "Customers evaluated because a deadline expired", registry=REGISTRY,
)
platform_watermark_lag = Gauge(
    "concord_platform_watermark_lag_seconds", "How far each platform's watermark trails the clock: the newest "
    "source time up to which Concord has read all of the platform's events (docs/reliability.md)", ["platform"],
    registry=REGISTRY,
)
drift_index_backlog = Gauge(
    "concord_drift_index_backlog", "Customers whose findings wait to be mirrored to Redis", registry=REGISTRY,
)
findings_open = Gauge(
    "concord_findings_open", "Reported findings not resolved (status open, commanded or escalated) of the "
    "customers this worker owns: each state worker counts its own partitions, so `sum by (rule, severity)` "
    "across the workers is the whole board. Recounted from the table after a rebalance",
    ["rule", "severity", "status"], registry=REGISTRY,
)
drift_time_to_resolve = Histogram(
    "concord_drift_time_to_resolve_seconds", "Seconds from when a finding was reported (open) to when it was "
    "resolved (converged, corrected, accepted or merged), observed by the state worker that resolved it",
    ["rule"], registry=REGISTRY,
    # Converging in seconds, corrected within minutes, accepted by a person within hours or days.
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14_400, 43_200, 86_400, 259_200, 604_800),
)
actions = Counter(
    "concord_actions_total",
    "Operator actions taken through the API, by kind (accept, snooze, retry, replay, approve, reject, resume)",
    ["kind"], registry=REGISTRY,
)
notifications = Counter(
    "concord_notifications_total", "Outgoing notifications (CONCORD_NOTIFY_WEBHOOK_URL) of escalations and new "
    "high-severity findings, by outcome: sent, duplicate (already sent for that finding and status), failed "
    "(refused, or retries exhausted), dropped (the queue was full)", ["outcome"], registry=REGISTRY,
)

# Consumers and the services every worker needs.
consumer_lag = Gauge(
    "concord_consumer_lag", "Messages of a partition this worker consumes that its consumer group has not "
    "committed yet (the partition's high watermark less the committed offset); every partition is counted "
    "by the one worker it is assigned to", ["topic", "partition"], registry=REGISTRY,
)
kafka_up = Gauge(
    "concord_kafka_up", "1 while the process reaches Kafka (a metadata request, every few seconds); 0: it "
    "does not", registry=REGISTRY,
)
redis_up = Gauge(
    "concord_redis_up", "1 while the worker reaches Redis (the watermarks it reads every second); 0: it does "
    "not (the drift board, the platforms' health and, in a command worker, execution wait for it)",
    registry=REGISTRY,
)
search_index_backlog = Gauge(
    "concord_search_index_backlog", "Customers whose search cards wait to be mirrored to Redis", registry=REGISTRY,
)
timeline_checkpoints = Counter(
    "concord_timeline_checkpoints_total", "Audit checkpoints written to the customers' timelines in Redis",
    registry=REGISTRY,
)

# Command execution (agents/commands, connectors/executor.py).
commands_executed = Counter(
    "concord_commands_executed_total", "Commands finished by the command agent: done, already_done (the ledger "
    "had it), dead_lettered, skipped_failed (dead-lettered earlier, not a replay)", ["platform", "action", "status"],
    registry=REGISTRY,
)
command_attempts = Counter(
    "concord_command_attempts_total", "Platform calls made for commands (first tries and retries)", ["platform"],
    registry=REGISTRY,
)
command_retries = Counter(
    "concord_command_retries_total", "Command calls that failed and will be retried, by error kind",
    ["platform", "kind"], registry=REGISTRY,
)
command_dead_letters = Counter(
    "concord_command_dead_letters_total", "Commands sent to the command dead-letter topic, by reason class "
    "(exhausted, data, no_connector, unsupported)", ["platform", "reason"], registry=REGISTRY,
)
command_halts = Counter(
    "concord_command_halts_total", "Times a platform halted because it refused Concord's credentials (auth)",
    ["platform"], registry=REGISTRY,
)
breaker_state = Gauge(
    "concord_breaker_state", "Circuit breaker of a platform: 0 closed, 1 half-open, 2 open, 3 halted (auth)",
    ["platform"], registry=REGISTRY,
)
command_ledger_up = Gauge(
    "concord_command_ledger_up", "1 while the command agent reaches Redis (ledger, rate limits); 0: execution "
    "is paused until Redis is back", registry=REGISTRY,
)
rate_limit_waits = Counter(
    "concord_rate_limit_waits_total", "Calls that waited for a platform's shared rate limit", ["platform"],
    registry=REGISTRY,
)
rate_limit_wait_seconds = Counter(
    "concord_rate_limit_wait_seconds_total", "Seconds command calls waited for a platform's shared rate limit",
    ["platform"], registry=REGISTRY,
)


reconcile_interval = Gauge(
    "concord_reconcile_interval_seconds",
    "How often the worker reconciles the platform (CONCORD_<PLATFORM>_RECONCILE_EVERY_SECONDS; 0: never)",
    ["platform"], registry=REGISTRY,
)
reconcile_last_complete = Gauge(
    "concord_reconcile_last_complete_seconds",
    "When the platform's last complete reconciliation ended (epoch seconds; 0: none yet)",
    ["platform"], registry=REGISTRY,
)
reconcile_overdue = Gauge(
    "concord_reconcile_overdue",
    "1 when no reconciliation of the platform completed within twice its interval (since the schedule began)",
    ["platform"], registry=REGISTRY,
)
reconcile_running = Gauge(
    "concord_reconcile_running", "1 while a reconciliation of the platform is listing or waiting to be applied",
    ["platform"], registry=REGISTRY,
)
reconcile_records = Counter(
    "concord_reconcile_records_total", "Records a reconciliation listed and fed to the platform's raw topic",
    ["platform"], registry=REGISTRY,
)
reconcile_changes = Counter(
    "concord_reconcile_changes_total",
    "Records of reconciliations that changed what a customer's state held (versions aside): what the live path "
    "had missed", ["platform"], registry=REGISTRY,
)
reconcile_passes = Counter(
    "concord_reconcile_passes_total", "Reconciliation passes that ended, by outcome (complete or failed)",
    ["platform", "outcome"], registry=REGISTRY,
)


saga_checkpoints = Counter(
    "concord_saga_checkpoints_total",
    "Quote-to-cash saga checkpoints by kind: started, step_done, step_retried, paused, resumed, compensating, "
    "step_undone, compensated, completed, failed, amending (docs/saga.md)",
    ["kind"], registry=REGISTRY,
)
sagas_stopped = Gauge(
    "concord_sagas_stopped", "Sagas of the customers this worker owns that wait for a person (paused or failed), "
    "by state; summed across the state workers it is every stopped deal", ["state"], registry=REGISTRY,
)


# `concord bridge salesforce` (app/bridge.py): Salesforce CDC from the Pub/Sub API into the raw topic.
bridge_events = Counter(
    "concord_bridge_events_total", "Salesforce change events the bridge produced to the raw topic (acknowledged by "
    "Kafka), per CDC channel", ["channel"], registry=REGISTRY,
)
bridge_replay_stored = Gauge(
    "concord_bridge_replay_stored_timestamp_seconds", "When the bridge last stored a channel's replay id (after "
    "its events were in Kafka): a stale value with traffic in Salesforce means the bridge is stuck",
    ["channel"], registry=REGISTRY,
)
bridge_gaps = Counter(
    "concord_bridge_gaps_total", "Gaps the bridge declared: its stored replay id was no longer in Salesforce's "
    "retention, so the changes since are lost to it; a GAP_OVERFLOW event went to the raw topic for the entity",
    ["channel", "entity"], registry=REGISTRY,
)
bridge_reconnects = Counter(
    "concord_bridge_reconnects_total", "Subscriptions the bridge started again, by reason (the gRPC status in lower "
    "case, `auth` after a token refresh, `closed` when the server ended the stream)", ["channel", "reason"],
    registry=REGISTRY,
)

token_requests = Counter(
    "concord_token_requests_total", "Access tokens asked of a platform's token endpoint (connectors/tokens.py), per "
    "platform and outcome: `issued`, `refused` (the endpoint said no: the flow's settings or the platform's side need "
    "a person) or `unanswered` (no answer, a 5xx or 429: retried with the next request)",
    ["platform", "outcome"], registry=REGISTRY,
)


def markdown_reference() -> str:
    """docs/metrics.md, generated from the registry (`python -m concord.core.metrics`)."""
    lines = [
        "# Metrics",
        "",
        "<!-- Generated from core/metrics.py by `python -m concord.core.metrics`. Do not edit by hand. -->",
        "",
        "Every worker, and the webhooks process (`concord webhooks`), serves these at `/metrics` (Prometheus "
        "text format); the webhooks process counts only the webhook metrics, `concord_worker_ready` and "
        "`concord_kafka_up`; the Salesforce bridge (`concord bridge salesforce --metrics-port P`) counts the "
        "`concord_bridge_*` metrics.",
        "",
        "Each process reports what it does or owns: how to combine the series of several processes (`sum` or "
        "`max`), and the alerts and dashboard built on them, are in [alerts.md](alerts.md).",
        "",
        "| metric | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    for collector in sorted(REGISTRY._collector_to_names, key=lambda c: c._name):  # type: ignore[attr-defined]
        kind = collector._type  # type: ignore[attr-defined]
        name = collector._name + ("_total" if kind == "counter" else "")  # type: ignore[attr-defined]
        labels = ", ".join(collector._labelnames) or "-"  # type: ignore[attr-defined]
        lines.append(f"| `{name}` | {kind} | {labels} | {collector._documentation} |")  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown_reference())

