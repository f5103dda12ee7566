"""Replay on the real broker: a command dead letter replayed once executes once, replayed twice still once;
ingest dead letters go back to their source topic with their original headers.

The command agent runs in a worker process (commands role) whose Stripe connector calls a tiny
platform stub served by this test: the stub counts requests and applications per Idempotency-Key.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from concord.app import cli
from concord.app.replay import (
    CommandFilter,
    IngestFilter,
    Replayable,
    ReplayError,
    original_headers,
    replay_commands,
    replay_ingest,
    resend,
)
from concord.bench.common import free_port
from concord.connectors.base import ConnectorError, Outcome, classify_status
from concord.connectors.executor import CommandResult
from concord.core import messages
from concord.core.kafka_security import kafka_security
from concord.core.messages import Command
from concord.core.settings import Settings, kafka_bootstrap
from concord.core.topics import TopicSpec, ensure_topics, topic_names
from tests.integration.harness import WorkerProcess, produce, read_all, settings_env, wait_for_record

STUB_ENV = "CONCORD_TEST_STUB_URL"


class StubConnector:
    """Stripe's customer update against the stub, with the command id as Idempotency-Key."""

    platform = "stripe"
    actions = frozenset({"billing.update_customer"})

    def __init__(self, base_url: str) -> None:
        self._base = base_url
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def execute(self, command: Command) -> Outcome:
        url = f"{self._base}/v1/customers/{command.target['customer_id']}"
        async with self._session.post(url, data=command.payload,
                                      headers={"Idempotency-Key": command.command_id}) as resp:
            body = await resp.json()
            if resp.status >= 400:
                raise ConnectorError(classify_status(resp.status), body["error"]["message"], status=resp.status)
            return Outcome(status=resp.status, record_id=body["id"], detail={"name": body["name"]})

    async def close(self) -> None:
        await self._session.close()


class RereadConnector:
    """A Zendesk organization re-read: the record comes back as the API returns it."""

    platform = "zendesk"
    actions = frozenset({"support.fetch_organization"})

    async def execute(self, command: Command) -> Outcome:
        org_id = command.target["organization_id"]
        body = b'{"organization": {"id": %s, "external_id": "001R1"}}' % org_id.encode()
        return Outcome(status=200, record_id=org_id, fetched=body)

    async def close(self) -> None:
        pass


def stub_connectors(settings: Settings) -> dict[str, Any]:
    return {"stripe": StubConnector(os.environ[STUB_ENV]), "zendesk": RereadConnector()}


def run_worker() -> None:
    """The worker process: only the command agent (and its API), with the stub connector."""
    run_commands_worker(stub_connectors)


def run_commands_worker(connector_factory: Any) -> None:
    """A worker process running only the command agents (and their API) with `connector_factory`."""
    from concord.agents import commands
    from concord.app import commands_api, web
    from concord.app.factory import create_concord
    from concord.app.worker import run
    from concord.core import settings as settings_mod

    concord = create_concord(settings_mod.load(), roles=["commands"])
    web.register(concord)
    commands_api.register(concord, commands.register(concord, connector_factory=connector_factory))
    concord.prepare()
    run(concord.app, loglevel="info")


class Platform:
    """The stub: rejects updates (400, a data error) until fixed; applies each idempotency key once."""

    def __init__(self) -> None:
        self.url = ""
        self.fixed = False
        self.requests: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()

    async def update_customer(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        self.requests[key] += 1
        if not self.fixed:
            return web.json_response({"error": {"type": "invalid_request_error", "message": "Invalid country"}},
                                     status=400)
        if key not in self.applied:
            self.applied[key] += 1
        form = await request.post()
        return web.json_response({"id": request.match_info["id"], "object": "customer", "name": form.get("name")})


def result_of(record: Any) -> CommandResult:
    return msgspec.json.decode(record.value, type=CommandResult)


@pytest.fixture
async def platform():  # type: ignore[no-untyped-def]
    stub = Platform()
    app = web.Application()
    app.router.add_post("/v1/customers/{id}", stub.update_customer)
    server = TestServer(app, port=free_port())
    await server.start_server()
    stub.url = str(server.make_url(""))
    yield stub
    await server.close()


async def test_a_replayed_dead_letter_executes_once_and_a_second_replay_does_nothing(
    settings: Settings, platform: Platform, tmp_path: Path
) -> None:
    names = topic_names(settings)
    bootstrap = kafka_bootstrap(settings)
    worker = WorkerProcess([sys.executable, "-c", "from tests.integration.test_replay import run_worker; run_worker()"],
                           settings, tmp_path / "worker.log", {STUB_ENV: platform.url})
    worker.start()
    try:
        await worker.wait_ready()
        cmd = Command(command_id="a" * 32, action="billing.update_customer", platform="stripe",
                      target={"customer_id": "cus_R1"}, payload={"name": "Acme GmbH"}, fingerprint="fp-r1",
                      rule="D09", customer_key="001R1", generation=1, correlation_id="corr-r1", created_at=1)
        other = msgspec.structs.replace(cmd, command_id="b" * 32, rule="D04", target={"customer_id": "cus_R2"})
        await produce(bootstrap, names.commands, [(b"stripe:cus_R1", messages.encode(cmd)),
                                                  (b"stripe:cus_R2", messages.encode(other))])

        # Refused by the platform (data error): dead-lettered at once, with why and from where.
        dead = await wait_for_record(bootstrap, names.dlq_commands,
                                     lambda r: msgspec.json.decode(r.value, type=Command).command_id == cmd.command_id)
        headers = dict(dead.headers)
        assert dead.key == b"stripe:cus_R1"
        assert headers["concord-dlq-reason"] == b"data: Invalid country (HTTP 400)"
        assert (headers["concord-dlq-kind"], headers["concord-dlq-attempts"]) == (b"data", b"1")
        assert headers["concord-source-topic"] == names.command_lanes["stripe"].encode()
        assert "concord-source-offset" in headers
        await wait_for_record(bootstrap, names.command_results,
                              lambda r: r.key == cmd.command_id.encode() and result_of(r).status == "dead_lettered")
        await wait_for_record(bootstrap, names.dlq_commands,
                              lambda r: msgspec.json.decode(r.value, type=Command).command_id == other.command_id)
        assert platform.requests[cmd.command_id] == 1 and not platform.applied

        platform.fixed = True  # the cause is fixed; re-drive only the D09 dead letter
        lines: list[str] = []
        dry = await replay_commands(settings, CommandFilter(rule="D09"), dry_run=True, out=lines.append)
        assert (dry.read, dry.matched, dry.replayed, dry.skipped) == (2, 1, 0, 1)
        assert any(line.startswith(f"would replay {cmd.command_id}") for line in lines)
        first = await replay_commands(settings, CommandFilter(rule="D09"), out=lines.append)
        assert (first.read, first.matched, first.replayed, first.skipped) == (2, 1, 1, 0)
        assert "replayed 1/1" in lines
        done = await wait_for_record(bootstrap, names.command_results,
                                     lambda r: r.key == cmd.command_id.encode() and result_of(r).status == "done")
        assert result_of(done).replay and result_of(done).record_id == "cus_R1"
        assert platform.applied[cmd.command_id] == 1

        second = await replay_commands(settings, CommandFilter(ids=frozenset({cmd.command_id})), out=lines.append)
        assert second.replayed == 1
        await wait_for_record(bootstrap, names.command_results,
                              lambda r: r.key == cmd.command_id.encode() and result_of(r).status == "already_done")
        assert platform.applied[cmd.command_id] == 1 and platform.requests[cmd.command_id] == 2  # no third call
        assert platform.requests[other.command_id] == 1  # not matched by the filter: never re-sent

        entry = await worker.get_json(f"/api/commands/{cmd.command_id}")
        assert isinstance(entry, dict)
        assert (entry["state"], entry["replays"], entry["attempts"], entry["rule"]) == ("done", 1, 1, "D09")
        status = await worker.get_json("/api/commands/status")
        assert isinstance(status, dict)
        assert status["executing"] and status["redis_reachable"] and status["connectors"] == ["stripe", "zendesk"]
        assert status["breakers"][0]["platform"] == "stripe" and status["breakers"][0]["state"] == "closed"
        assert status["rate_limits"]["stripe"]["rate"] == settings.stripe_rate_limit

        # A re-read's record goes to the platform's raw topic, keyed by the record id, for the codec.
        reread = msgspec.structs.replace(cmd, command_id="c" * 32, platform="zendesk",
                                         action="support.fetch_organization", target={"organization_id": "7001"})
        await produce(bootstrap, names.commands, [(b"zendesk:7001", messages.encode(reread))])
        fetched = await wait_for_record(bootstrap, names.raw["zendesk"], lambda r: r.key == b"7001")
        assert fetched.value == b'{"organization": {"id": 7001, "external_id": "001R1"}}'
        await wait_for_record(bootstrap, names.command_results,
                              lambda r: r.key == reread.command_id.encode() and result_of(r).status == "done")
    finally:
        worker.stop()


async def test_ingest_dead_letters_return_to_their_source_topic_with_original_headers(settings: Settings) -> None:
    names = topic_names(settings)
    bootstrap = kafka_bootstrap(settings)
    await ensure_topics(bootstrap, [TopicSpec(name, settings.topic_partitions, 1) for name in names.all()],
                        security=kafka_security(settings))
    original = [("Content-Type", b"application/json"), ("concord-received-at", b"1700000000000")]

    def dlq_headers(platform: str, reason: str) -> list[tuple[str, bytes]]:
        return original + [
            (messages.DLQ_PLATFORM, platform.encode()), (messages.DLQ_REASON, reason.encode()),
            (messages.DLQ_DETAIL, b"detail"), (messages.DLQ_SOURCE_TOPIC, names.raw[platform].encode()),
            (messages.DLQ_SOURCE_PARTITION, b"0"), (messages.DLQ_SOURCE_OFFSET, b"5"),
            (messages.DLQ_CODEC_VERSION, b"1"), (messages.DLQ_FAILED_AT, b"1700000000001"),
        ]

    await produce(bootstrap, names.dlq_ingest, [(b"k1", b'{"id": "evt_1"}')], headers=dlq_headers("stripe", "bad_json"))
    await produce(bootstrap, names.dlq_ingest, [(b"k2", b'{"id": "evt_2"}')],
                  headers=dlq_headers("zendesk", "unknown_event"))
    await produce(bootstrap, names.dlq_ingest, [(b"k3", b"{}")], headers=original)  # names no source topic

    lines: list[str] = []
    with pytest.raises(ReplayError, match="--reason or --platform"):
        await replay_ingest(settings, IngestFilter(), out=lines.append)
    dry = await replay_ingest(settings, IngestFilter(all=True), dry_run=True, out=lines.append)
    assert (dry.read, dry.matched, dry.replayed, dry.skipped) == (3, 3, 0, 3)
    summary = await replay_ingest(settings, IngestFilter(reason="bad_json"), out=lines.append)
    assert (summary.read, summary.matched, summary.replayed, summary.skipped) == (3, 1, 1, 0)

    replayed = await read_all(bootstrap, names.raw["stripe"])
    assert [(r.key, r.value) for r in replayed] == [(b"k1", b'{"id": "evt_1"}')]
    assert list(replayed[0].headers) == original  # the dead-letter headers are gone, the original ones kept
    assert await read_all(bootstrap, names.raw["zendesk"]) == []
    everything = await replay_ingest(settings, IngestFilter(all=True), out=lines.append)
    assert (everything.matched, everything.replayed, everything.skipped) == (3, 2, 1)
    assert any("names no source topic" in line for line in lines)


async def test_resend_reports_progress(settings: Settings) -> None:
    names = topic_names(settings)
    bootstrap = kafka_bootstrap(settings)
    await ensure_topics(bootstrap, [TopicSpec(names.audit, 1, 1)], security=kafka_security(settings))
    chosen = [Replayable(names.audit, b"k", b"v%d" % i, [], f"r{i}") for i in range(5)]
    lines: list[str] = []
    assert await resend(bootstrap, kafka_security(settings), chosen, lines.append, every=2) == 5
    assert lines == ["replayed 2/5 ...", "replayed 4/5 ...", "replayed 5/5"]
    assert [r.value for r in await read_all(bootstrap, names.audit)] == [b"v0", b"v1", b"v2", b"v3", b"v4"]


def test_only_the_dead_letter_headers_are_dropped() -> None:
    headers = [("Stripe-Signature", b"t=1,v1=x"), (messages.DLQ_REASON, b"bad_json"),
               (messages.DLQ_SOURCE_TOPIC, b"c.raw.stripe"), ("concord-received-at", b"1")]
    assert original_headers(headers) == [("Stripe-Signature", b"t=1,v1=x"), ("concord-received-at", b"1")]


def test_command_filter_criteria_combine() -> None:
    cmd = Command(command_id="c1", action="erp.upsert_invoice", platform="netsuite", target={}, payload={},
                  fingerprint="f", rule="D04", customer_key="001", generation=1, correlation_id="", created_at=1)
    assert CommandFilter(rule="D04", platform="netsuite").matches(cmd)
    assert not CommandFilter(rule="D04", platform="stripe").matches(cmd)
    assert CommandFilter(ids=frozenset({"c1", "c2"})).matches(cmd)
    assert not CommandFilter(ids=frozenset({"c2"})).matches(cmd)
    assert CommandFilter(all=True).matches(cmd) and not CommandFilter().given


async def test_unreachable_kafka_is_a_clear_error(settings: Settings) -> None:
    unreachable = msgspec.structs.replace(settings, kafka_url=f"kafka://127.0.0.1:{free_port()}")
    with pytest.raises(ReplayError, match=r"cannot reach Kafka at 127\.0\.0\.1:\d+ .*CONCORD_KAFKA_URL"):
        await replay_commands(unreachable, CommandFilter(all=True))


def test_cli_requires_a_filter_and_prints_a_summary(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match="concord replay commands: say which command dead letters"):
        cli.main(["replay", "commands"])
    assert cli.main(["replay", "commands", "--rule", "D04", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "replay commands: 0 dead letters read, 0 matched, 0 replayed, 0 skipped (dry run: nothing sent)" in out
