"""The sandbox service: control API, platform routes mounted with faults, traffic and emitter lifecycle."""

from __future__ import annotations

import argparse
import asyncio
import io
from unittest import mock

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from concord.app.cli import build_parser
from concord.core.settings import load
from concord.sandbox import cli
from concord.sandbox.emit import EmitterStats, PlatformStats
from concord.sandbox.faults import Faults, PlatformCredentials
from concord.sandbox.lost import LostEvent
from concord.sandbox.server import (
    SANDBOX,
    SandboxConfig,
    build_app,
    config_from_settings,
    control_guard,
    is_loopback,
)
from concord.sandbox.traffic import PLAN_TIERS, TrafficConfig
from concord.sandbox.world import World

STRIPE_KEY = "sk_test_sandbox"
FAST = TrafficConfig(seed=3, customers=4, drift_rate=1.0, time_scale=1e9)


class FakeEmitter:
    """Stands in for the emitter: records its lifecycle, delivers nothing."""

    def __init__(self, config: SandboxConfig, world: World, faults: Faults | None = None) -> None:
        self.world = world
        self.started = self.stopped = False
        self.drained: list[float] = []

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def drain(self, timeout: float) -> bool:
        self.drained.append(timeout)
        return True

    def stats(self) -> EmitterStats:
        return EmitterStats(platforms={"stripe": PlatformStats(queued=3, delivered=3)})

    def lost(self) -> list[LostEvent]:
        return []


def config(run_traffic: bool = True, traffic: TrafficConfig = FAST) -> SandboxConfig:
    return SandboxConfig(traffic=traffic, run_traffic=run_traffic,
                         credentials=PlatformCredentials(stripe_api_key=STRIPE_KEY))


async def client_for(sandbox_config: SandboxConfig) -> TestClient[web.Request, web.Application]:
    app = build_app(sandbox_config, emitter=FakeEmitter)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_traffic_runs_on_startup_and_the_status_and_ground_truth_show_it() -> None:
    client = await client_for(config())
    try:
        sandbox = client.app[SANDBOX]
        assert isinstance(sandbox.emitter, FakeEmitter) and sandbox.emitter.started
        await asyncio.wait_for(sandbox.runner.done.wait(), 10)
        assert (await (await client.get("/_sandbox/healthz")).json()) == {"ok": True}
        status = await (await client.get("/_sandbox/status")).json()
        assert status["finished"] and not status["running"]
        assert status["customers"] == status["arrived"] == 4
        assert status["steps_done"] == status["steps_total"] > 4
        assert status["injections"] == {"D01": 1, "D02": 1, "D03": 1, "D04": 1} and status["injected"] == 4
        assert status["plan_tiers"] == PLAN_TIERS and status["emitter"]["platforms"]["stripe"]["delivered"] == 3
        injected = await (await client.get("/_sandbox/injected")).json()
        assert [i["rule"] for i in injected] == [i.rule for i in sandbox.traffic.injections]
        assert {"rule", "customer_key", "subject", "fingerprint", "injected_at", "detail",
                "expected_action"} <= injected[0].keys()
        only = await (await client.get("/_sandbox/injected?rule=d04")).json()
        assert [i["rule"] for i in only] == ["D04"] and only[0]["expected_action"] == "erp.upsert_invoice"
    finally:
        await client.close()
    assert sandbox.emitter.stopped


async def test_no_traffic_until_started_and_traffic_can_be_paused() -> None:
    slow = TrafficConfig(seed=3, customers=4, drift_rate=0.0, time_scale=1.0)  # the first step is minutes away
    client = await client_for(config(run_traffic=False, traffic=slow))
    try:
        status = await (await client.get("/_sandbox/status")).json()
        assert not status["running"] and status["steps_done"] == 0
        started = await client.post("/_sandbox/traffic", json={"action": "start"})
        assert started.status == 200 and (await started.json())["running"]
        again = await (await client.post("/_sandbox/traffic", json={"action": "start"})).json()
        assert again["changed"] is False
        stopped = await (await client.post("/_sandbox/traffic", json={"action": "stop"})).json()
        assert stopped == {"action": "stop", "changed": True, "running": False, "finished": False}
        bad = await client.post("/_sandbox/traffic", json={"action": "faster"})
        assert bad.status == 400 and "action" in (await bad.json())["error"]
    finally:
        await client.close()


async def test_faults_are_shown_merged_and_refused_with_a_reason() -> None:
    client = await client_for(config(run_traffic=False))
    try:
        before = await (await client.get("/_sandbox/faults")).json()
        assert before["stripe"]["error_rate"] == 0.0
        merged = await client.post("/_sandbox/faults", json={"stripe": {"error_rate": 1.0}})
        assert merged.status == 200 and (await merged.json())["stripe"]["error_rate"] == 1.0
        more = await (await client.post("/_sandbox/faults", json={"stripe": {"latency_ms": 1}})).json()
        assert more["stripe"] == {**before["stripe"], "error_rate": 1.0, "latency_ms": 1}
        # The faults apply to the platform routes mounted by the service.
        failed = await client.get("/v1/customers/cus_missing", headers={"Authorization": f"Bearer {STRIPE_KEY}"})
        assert failed.status in (500, 502, 503)
        refused = await client.post("/_sandbox/faults", json={"paypal": {"error_rate": 1.0}})
        assert refused.status == 400 and "paypal" in (await refused.json())["error"]
    finally:
        await client.close()


async def test_effects_count_idempotent_requests_per_key() -> None:
    client = await client_for(config(traffic=msgspec.structs.replace(FAST, drift_rate=0.0)))
    try:
        sandbox = client.app[SANDBOX]
        await asyncio.wait_for(sandbox.runner.done.wait(), 10)
        customer = next(sandbox.world.all("stripe", "customer"))
        headers = {"Authorization": f"Bearer {STRIPE_KEY}", "Idempotency-Key": "cmd-1"}
        for _ in range(2):
            answer = await client.post(f"/v1/customers/{customer['id']}", data={"name": "Renamed Ltd"},
                                       headers=headers)
            assert answer.status == 200
        unauthorized = await client.get(f"/v1/customers/{customer['id']}")
        assert unauthorized.status == 401
        view = await (await client.get("/_sandbox/effects")).json()
        (effect,) = [e for e in view["effects"] if e["key"] == "cmd-1"]
        assert (effect["platform"], effect["requests"], effect["applied"]) == ("stripe", 2, 1)
        assert view["duplicates"] == []
    finally:
        await client.close()


def test_settings_become_the_sandbox_configuration() -> None:
    settings = load({"CONCORD_WEB_HOST": "0.0.0.0", "CONCORD_WEB_PORT": "7000", "CONCORD_TOPIC_PREFIX": "demo",
                     "CONCORD_KAFKA_URL": "kafka://127.0.0.1:19092",
                     "CONCORD_STRIPE_WEBHOOK_SECRET": "whsec_x_sixteen_bytes",
                     "CONCORD_STRIPE_API_KEY": "sk_test_y_sixteen_bytes", "CONCORD_ZENDESK_API_EMAIL": "a@b.invalid"})
    made = config_from_settings(settings, FAST, port=6071)
    assert made.concord_url == "http://127.0.0.1:7000" and made.port == 6071
    assert made.salesforce_topic == "demo.raw.salesforce" and made.kafka_bootstrap == "127.0.0.1:19092"
    assert made.stripe_webhook_secret == "whsec_x_sixteen_bytes"
    assert made.credentials.stripe_api_key == "sk_test_y_sixteen_bytes"
    assert made.credentials.zendesk_api_email == "a@b.invalid"
    assert config_from_settings(settings, FAST, concord_url="http://x:1").concord_url == "http://x:1"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sandbox", *argv])


def test_command_line_options_reach_the_configuration() -> None:
    args = parse("--seed", "9", "--customers", "12", "--drift-rate", "0.5", "--time-scale", "86400",
                 "--duration", "60", "--rules", "D01,d04", "--no-traffic", "--port", "6099")
    made = cli.config_from_args(args, load({}))
    traffic = made.traffic
    assert (traffic.seed, traffic.customers, traffic.drift_rate, traffic.time_scale, traffic.duration) == (
        9, 12, 0.5, 86400.0, 60.0)
    assert traffic.rules == ("D01", "D04") and not made.run_traffic and made.port == 6099
    assert made.concord_url == "http://127.0.0.1:6066"


@pytest.mark.parametrize(("argv", "message"), [
    (("--drift-rate", "1.5"), "--drift-rate is a probability"),
    (("--time-scale", "0"), "--time-scale must be above 0"),
    (("--rules", "D99"), "unknown rule 'D99'"),
])
def test_bad_options_are_refused_with_a_reason(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cli.config_from_args(parse(*argv), load({}))


async def test_serve_prints_progress_and_exits_zero_when_the_duration_ends() -> None:
    made = msgspec.structs.replace(config(traffic=msgspec.structs.replace(FAST, duration=0.2)), port=0)
    out = io.StringIO()
    drained: list[FakeEmitter] = []

    def emitter(sandbox_config: SandboxConfig, world: World, faults: Faults) -> FakeEmitter:
        drained.append(FakeEmitter(sandbox_config, world, faults))
        return drained[0]

    code = await asyncio.wait_for(cli.serve(made, progress=0.05, out=out, stop=asyncio.Event(), emitter=emitter), 10)
    lines = out.getvalue().splitlines()
    assert code == 0
    assert lines[0].startswith("concord sandbox: http://127.0.0.1:0/") and "seed 3, 4 customers" in lines[0]
    assert "finished" in lines[-1] and "customers 4/4" in lines[-1] and "injected 4" in lines[-1]
    assert drained[0].drained == [cli.DRAIN_SECONDS] and drained[0].stopped


def request_from(app: web.Application, path: str, peer: tuple[str, int] | None) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: peer if name == "peername" else default
    return make_mocked_request("GET", path, app=app, transport=transport)


async def answered(request: web.Request) -> web.Response:
    return web.Response(text="answered")


@pytest.mark.parametrize("path", ["/_sandbox/status", "/_sandbox/injected", "/_sandbox", "/_sandbox/faults"])
@pytest.mark.parametrize("peer", [("10.0.0.7", 40000), ("192.168.1.20", 40000), ("2001:db8::1", 40000, 0, 0), None])
async def test_the_control_api_refuses_a_non_loopback_peer(path: str, peer: tuple[str, int] | None) -> None:
    app = build_app(config(run_traffic=False), emitter=FakeEmitter)
    response = await control_guard(request_from(app, path, peer), answered)
    assert response.status == 403
    assert isinstance(response, web.Response) and b"--control-public" in (response.body or b"")


@pytest.mark.parametrize("peer", [("127.0.0.1", 40000), ("127.8.9.1", 1), ("::1", 40000, 0, 0),
                                  ("::ffff:127.0.0.1", 40000, 0, 0)])
async def test_the_control_api_answers_a_loopback_peer(peer: tuple[str, int]) -> None:
    app = build_app(config(run_traffic=False), emitter=FakeEmitter)
    response = await control_guard(request_from(app, "/_sandbox/status", peer), answered)
    assert response.status == 200


async def test_control_public_serves_the_control_api_to_any_peer_and_platform_apis_are_not_guarded() -> None:
    public = build_app(msgspec.structs.replace(config(run_traffic=False), control_public=True), emitter=FakeEmitter)
    assert (await control_guard(request_from(public, "/_sandbox/status", ("10.0.0.7", 1)), answered)).status == 200
    private = build_app(config(run_traffic=False), emitter=FakeEmitter)
    for path in ("/v1/customers", "/_sandboxes", "/api/v2/users"):
        assert (await control_guard(request_from(private, path, ("10.0.0.7", 1)), answered)).status == 200


async def test_the_control_api_is_loopback_only_by_default_end_to_end() -> None:
    assert not SandboxConfig().control_public and not parse().control_public
    client = await client_for(config(run_traffic=False))  # the test client connects from 127.0.0.1
    try:
        async with client.get("/_sandbox/healthz") as resp:
            assert resp.status == 200
        async with client.get("/_sandbox/status", headers={"X-Forwarded-For": "10.0.0.7"}) as resp:
            assert resp.status == 200  # the TCP peer decides, not a header a client writes
    finally:
        await client.close()


def test_loopback_peers_are_recognised() -> None:
    assert is_loopback(("127.0.0.1", 1)) and is_loopback(("::1", 1, 0, 0)) and is_loopback(("::ffff:127.0.0.2", 1))
    assert not is_loopback(("0.0.0.0", 1)) and not is_loopback(("10.1.2.3", 1)) and not is_loopback(None)
    assert not is_loopback(("::ffff:10.0.0.1", 1)) and not is_loopback(("not-an-ip", 1)) and not is_loopback("")
