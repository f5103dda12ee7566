"""A real state worker on the real broker and Redis: new high-severity findings and escalations are posted
to a local receiver that refuses first (retried: nothing lost, nothing twice), and the metrics of the findings
(open by rule/severity/status, time to resolve, operator actions, consumer lag) follow the lifecycle."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from concord.bench.common import free_port
from concord.bench.workload import customer_key
from concord.codecs.model import encode as encode_event
from concord.core import messages
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import Infra, WorkerProcess, produce
from tests.integration.test_drift import CANCELED, MISSING_ERP, histories, rules_file, state_worker, wait_drift

SECRET = "notify-integration-secret"
ADMIN = "integration-admin-token"
HOOK = "/hooks/T0/B0/integration-webhook-token"


class Receiver:
    """A webhook receiver on a free port that answers 503 to the first request, then 200 to every other."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        status = 503 if not self.requests else 200
        self.requests.append((dict(request.headers), await request.read(), status))
        return web.Response(status=status, text="ok" if status == 200 else "busy")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(HOOK, self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}{HOOK}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def accepted(self) -> dict[str, dict[str, Any]]:
        """Delivery id -> body, of the requests answered 200."""
        return {headers["X-Concord-Delivery"]: json.loads(body) for headers, body, status in self.requests
                if status == 200}

    async def wait(self, count: int, timeout: float = 60) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.accepted()) < count:
            await asyncio.sleep(0.2)
        return self.accepted()


async def scrape(worker: WorkerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The worker's /metrics as (sample name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(await worker.get_text("/metrics")):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def sample(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


async def wait_metrics(worker: WorkerProcess, check: Callable[[dict[Any, float]], bool], what: str,
                       timeout: float = 30) -> dict[Any, float]:
    deadline = time.monotonic() + timeout
    metrics: dict[Any, float] = {}
    while time.monotonic() < deadline:
        metrics = await scrape(worker)
        if check(metrics):
            return metrics
        await asyncio.sleep(0.3)
    found = {k: v for k, v in metrics.items() if k[0].startswith(("concord_findings", "concord_drift_time"))}
    raise AssertionError(f"{what}: not seen within {timeout:.0f} s; {found}\n{worker.log_tail()}")


@pytest.fixture
def notify_settings(settings: Settings, tmp_path: Path) -> Settings:
    return msgspec.structs.replace(settings, rules_file=str(rules_file(tmp_path)), deadline_scan_seconds=0.2,
                                   admin_token=ADMIN, notify_webhook_secret=SECRET,
                                   notify_link_base_url="https://concord.example.com")


def verified(headers: dict[str, str], body: bytes) -> bool:
    stamp, digest = (part.split("=", 1)[1] for part in headers["X-Concord-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, digest) and abs(time.time() - int(stamp)) < 300


async def test_findings_are_notified_once_despite_a_refusal_and_their_metrics_follow_the_lifecycle(
        infra: Infra, notify_settings: Settings, tmp_path: Path) -> None:
    names = topic_names(notify_settings)
    events, erp_invoice, _ = histories()
    b, c = customer_key(CANCELED), customer_key(MISSING_ERP)
    receiver = Receiver()
    url = await receiver.start()
    settings = msgspec.structs.replace(notify_settings, notify_webhook_url=url)
    worker = state_worker(settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        await produce(infra.bootstrap, names.canonical,
                      [((e.customer_key or "").encode(), encode_event(e)) for e in events])
        opened = {(f["customer_key"], f["rule"]): f for f in await wait_drift(worker, "open", 3)}
        assert set(opened) == {(b, "D01"), (b, "D15"), (c, "D04")}

        # D01 and D04 are high: posted (the first attempt refused, then retried); D15 is low: not posted.
        accepted = await receiver.wait(2)
        assert receiver.requests[0][2] == 503 and len(receiver.requests) == 3
        texts = sorted(body["text"] for body in accepted.values())
        assert texts[0].startswith(f"New high finding: D01 for {b}: ") and texts[1].startswith(
            f"New high finding: D04 for {c}: ")
        for headers, body, _ in receiver.requests:
            assert verified(headers, body) and headers["X-Concord-Event"] == "drift.reported"
        d01 = opened[(b, "D01")]
        assert any(f"https://concord.example.com/api/drift/{d01['fingerprint']}|" in json.dumps(body)
                   for body in accepted.values())

        metrics = await wait_metrics(worker, lambda m: sample(m, "concord_findings_open", rule="D15", severity="low",
                                                             status="open") == 1, "D15 open")
        assert sample(metrics, "concord_findings_open", rule="D01", severity="high", status="commanded") == 1
        assert sample(metrics, "concord_findings_open", rule="D04", severity="high", status="commanded") == 1

        def canonical_lags(m: dict[Any, float]) -> list[Any]:
            return [k for k in m if k[0] == "concord_consumer_lag" and ("topic", names.canonical) in k[1]]
        await wait_metrics(worker, lambda m: len(canonical_lags(m)) == settings.topic_partitions, "the lag (every 5 s)")

        # D01's correction is refused by the platform: escalated, posted; D04 resolves; a person accepts D15.
        failed = messages.CorrectionFailed(customer_key=b, fingerprint=d01["fingerprint"],
                                           command_id=d01["command_id"], reason="data: refused", at=int(time.time()))
        await produce(infra.bootstrap, names.canonical, [(b.encode(), messages.encode(failed)),
                                                         (c.encode(), encode_event(erp_invoice))])
        d15 = opened[(b, "D15")]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session, session.post(
                f"{worker.base_url}/api/drift/{d15['fingerprint']}/accept", json={"note": "known"}) as resp:
            assert resp.status == 202, await resp.text()
        await wait_drift(worker, "resolved", 2)

        accepted = await receiver.wait(3)
        escalated = [body for body in accepted.values() if body["text"].startswith("Finding escalated")]
        assert len(escalated) == 1 and escalated[0]["text"].startswith(f"Finding escalated: D01 for {b}: ")
        assert "correction" in json.dumps(escalated[0]["blocks"])  # the note says why
        metrics = await wait_metrics(
            worker, lambda m: sample(m, "concord_findings_open", rule="D01", severity="high", status="escalated") == 1
            and sample(m, "concord_findings_open", rule="D15", severity="low", status="open") == 0
            and sample(m, "concord_findings_open", rule="D04", severity="high", status="commanded") == 0,
            "escalated, accepted and resolved")
        assert sample(metrics, "concord_findings_open", rule="D01", severity="high", status="commanded") == 0
        assert sample(metrics, "concord_drift_time_to_resolve_seconds_count", rule="D04") == 1
        assert sample(metrics, "concord_drift_time_to_resolve_seconds_count", rule="D15") == 1
        assert sample(metrics, "concord_actions_total", kind="accept") == 1
        assert sample(metrics, "concord_notifications_total", outcome="sent") == 3

        # Once each, also in Redis: the worker processing these events again would not post them again.
        client = aioredis.from_url(settings.redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{settings.topic_prefix}:notified:*")]
            assert len(keys) == 3 and {await client.get(key) for key in keys} == {b"sent"}
        finally:
            await client.aclose()
    finally:
        worker.stop()
        await receiver.stop()
    assert len(receiver.accepted()) == 3 and len(receiver.requests) == 4  # one refusal, three deliveries
