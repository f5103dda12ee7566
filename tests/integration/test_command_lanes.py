"""Command lanes on the real broker: a platform that keeps failing holds up only its own commands.

The worker (commands role) gets a Stripe connector that always answers 503 (transient: retried with
backoff, the breaker opens) and a Zendesk re-read connector that works. A Zendesk command sent after
a Stripe command must complete while the Stripe one is still being retried.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.executor import CommandResult
from concord.core import messages
from concord.core.messages import Command
from concord.core.settings import Settings, kafka_bootstrap
from concord.core.topics import topic_names
from tests.integration.harness import WorkerProcess, produce, read_all, wait_for_record
from tests.integration.test_replay import RereadConnector, run_commands_worker


class DownConnector:
    """Stripe in an outage: every call is a 503."""

    platform = "stripe"
    actions = frozenset({"billing.update_customer"})
    calls = 0

    async def execute(self, command: Command) -> Outcome:
        DownConnector.calls += 1
        raise ConnectorError(ErrorKind.TRANSIENT, "Service Unavailable", status=503)

    async def close(self) -> None:
        pass


def down_connectors(settings: Settings) -> dict[str, Any]:
    return {"stripe": DownConnector(), "zendesk": RereadConnector()}


def run_worker() -> None:
    run_commands_worker(down_connectors)


async def test_an_outage_on_one_platform_does_not_hold_up_another(settings: Settings, tmp_path: Path) -> None:
    # Partitions 1: before lanes, both commands would share one partition and one agent in order.
    cfg = msgspec.structs.replace(settings, topic_partitions=1, command_backoff_seconds=5.0,
                                  command_backoff_max_seconds=30.0, command_max_attempts=10)
    names = topic_names(cfg)
    bootstrap = kafka_bootstrap(cfg)
    worker = WorkerProcess([sys.executable, "-c", "from tests.integration.test_command_lanes import run_worker; "
                            "run_worker()"], cfg, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        stuck = Command(command_id="s" * 32, action="billing.update_customer", platform="stripe",
                        target={"customer_id": "cus_L1"}, payload={"name": "Acme"}, fingerprint="fp-l1", rule="D09",
                        customer_key="001L1", generation=1, correlation_id="corr-l1", created_at=1)
        reread = Command(command_id="z" * 32, action="support.fetch_organization", platform="zendesk",
                         target={"organization_id": "7002"}, payload={}, fingerprint="", rule="",
                         customer_key="001L1", generation=0, correlation_id="corr-l2", created_at=2)
        # An unreadable record first: dead-lettered with its bytes and why, and the commands behind it flow on.
        await produce(bootstrap, names.commands, [(b"stripe:cus_L0", b"{not a command"),
                                                  (b"stripe:cus_L1", messages.encode(stuck)),
                                                  (b"zendesk:7002", messages.encode(reread))])
        done = await wait_for_record(
            bootstrap, names.command_results, lambda r: r.key == reread.command_id.encode(), timeout=30)
        assert msgspec.json.decode(done.value, type=CommandResult).status == "done"
        # Meanwhile Stripe is still being retried: no result for it yet, and only the unreadable one dead-lettered.
        results = [r.key for r in await read_all(bootstrap, names.command_results)]
        assert stuck.command_id.encode() not in results
        await wait_for_record(bootstrap, names.dlq_commands, lambda r: r.key == b"stripe:cus_L0", timeout=30)
        (dead,) = await read_all(bootstrap, names.dlq_commands)
        headers = dict(dead.headers)
        assert (dead.key, dead.value) == (b"stripe:cus_L0", b"{not a command")
        assert headers[messages.DLQ_REASON].startswith(b"undecodable command: ")
        assert (headers[messages.DLQ_KIND], headers[messages.DLQ_ATTEMPTS], headers[messages.DLQ_SOURCE_TOPIC]) == (
            b"data", b"0", names.commands.encode())
        status = await worker.get_json("/api/commands/status")
        assert isinstance(status, dict) and status["executing"] is True
    finally:
        worker.stop()
