"""The webhooks process without a broker: its aiohttp application on aiohttp's test server, with a fake
`send` where Kafka would acknowledge (the seam `Ingress` already has), and its producer never started
where readiness is judged. On the real broker: tests/integration/test_webhooks_process.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from concord.app import webhooks
from concord.app.signatures import sign_t_v1
from concord.core import metrics
from concord.core.settings import Settings

SECRET = "whsec_webhooks_process_test"
BODY = b'{"id":"evt_1","object":"event","type":"invoice.paid"}'


class GatedSend:
    """Kafka's acknowledgement, held back until the test releases it."""

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.acknowledge = asyncio.Event()
        self.sent: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []

    async def __call__(self, platform: str, body: bytes, headers: list[tuple[str, bytes]]) -> Mapping[str, Any]:
        self.sent.append((platform, body, headers))
        self.called.set()
        await self.acknowledge.wait()
        return {"topic": f"t.raw.{platform}", "partition": 3, "offset": 41}


class Probe:
    """The broker's answer to the readiness probe."""

    def __init__(self, reachable: bool) -> None:
        self.answer = (reachable, "" if reachable else "kafka unreachable at 127.0.0.1:1: refused")

    async def reachable(self) -> tuple[bool, str]:
        return self.answer


def _settings(**changes: Any) -> Settings:
    return msgspec.structs.replace(Settings(), stripe_webhook_secret=SECRET, **changes)


def _histogram(platform: str, sample: str) -> float:
    return metrics.REGISTRY.get_sample_value(f"concord_webhook_seconds_{sample}", {"platform": platform}) or 0.0


async def test_a_webhook_is_answered_only_once_kafka_acknowledged_it() -> None:
    send = GatedSend()
    app = webhooks.create_app(_settings(), send, lambda: asyncio.sleep(0, webhooks.Readiness(True, True, True)))
    count, total = _histogram("stripe", "count"), _histogram("stripe", "sum")
    async with TestClient(TestServer(app)) as client:
        headers = {"Stripe-Signature": sign_t_v1(BODY, SECRET, int(time.time()))}
        answer = asyncio.create_task(client.post("/webhooks/stripe", data=BODY, headers=headers))
        await asyncio.wait_for(send.called.wait(), 5)
        await asyncio.sleep(0.2)
        assert not answer.done()  # the body is verified and handed to Kafka: still no answer
        send.acknowledge.set()
        response = await asyncio.wait_for(answer, 5)
        assert response.status == 200
        assert await response.json() == {"status": "accepted", "topic": "t.raw.stripe", "partition": 3,
                                         "offset": 41}
    [(platform, body, _)] = send.sent
    assert (platform, body) == ("stripe", BODY)
    # The time to answer counts the wait for the acknowledgement.
    assert _histogram("stripe", "count") == count + 1
    assert _histogram("stripe", "sum") - total >= 0.2


async def test_not_ready_and_no_webhook_taken_before_the_producer_starts() -> None:
    settings = _settings(kafka_url="kafka://127.0.0.1:1")
    raw = webhooks.RawTopics(settings)
    ready = webhooks.create_app(settings, raw.send, lambda: webhooks.readiness(raw, Probe(True)))  # type: ignore[arg-type]
    async with TestClient(TestServer(ready)) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        assert await response.json() == {"ready": False, "kafka": True, "producer_started": False,
                                         "detail": webhooks.E_NOT_STARTED}
        assert metrics.REGISTRY.get_sample_value("concord_worker_ready") == 0
        # A delivery meanwhile: refused, to be delivered again, not lost and not a 500.
        before = metrics.REGISTRY.get_sample_value("concord_webhook_requests_total",
                                                   {"platform": "stripe", "outcome": "unavailable"}) or 0.0
        headers = {"Stripe-Signature": sign_t_v1(BODY, SECRET, int(time.time()))}
        response = await client.post("/webhooks/stripe", data=BODY, headers=headers)
        assert response.status == 503 and response.headers["Retry-After"] == "1"
        assert await response.json() == {"error": "unavailable"}
        assert metrics.REGISTRY.get_sample_value("concord_webhook_requests_total",
                                                 {"platform": "stripe", "outcome": "unavailable"}) == before + 1
        assert (await client.get("/healthz")).status == 200  # alive all the same


async def test_ready_needs_the_broker_too() -> None:
    state = await webhooks.readiness(webhooks.RawTopics(_settings()), Probe(False))  # type: ignore[arg-type]
    assert not state.ready and not state.kafka
    assert state.detail == f"kafka unreachable at 127.0.0.1:1: refused; {webhooks.E_NOT_STARTED}"


def test_webhooks_listen_on_their_own_port_when_one_is_set() -> None:
    assert webhooks.listeners(Settings(web_host="10.0.0.7", web_port=6071)) == [("10.0.0.7", 6071)]
    both = Settings(web_host="10.0.0.7", web_port=6071, webhook_host="0.0.0.0", webhook_port=8443)
    # The public port for the webhooks; the web port keeps readiness and metrics, never served publicly.
    assert webhooks.listeners(both) == [("0.0.0.0", 8443), ("10.0.0.7", 6071)]


def test_the_webhooks_process_loads_no_faust() -> None:
    check = ("import sys, concord.app.cli, concord.app.webhooks; "
             "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('faust', 'mode')); "
             "assert not loaded, loaded")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("roles", ["webhooks", "webhooks,"])
def test_a_worker_of_the_webhooks_role_alone_is_sent_to_concord_webhooks(roles: str) -> None:
    out = subprocess.run([sys.executable, "-m", "concord.app.cli", "worker", "--roles", roles],
                         capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 1
    assert "run `concord webhooks`" in out.stderr and "Traceback" not in out.stderr
