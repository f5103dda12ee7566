"""`concord webhooks` on the real broker: the ingress alone, without Faust.

Signed Stripe, Zendesk and NetSuite deliveries land on their raw topics with their bytes and headers,
each answered 200 with where Kafka stored it; the access policy and the signature checks refuse what
they refuse in a worker; SIGTERM lets a request in flight finish, refuses new connections and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from concord.core import messages
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import READ_TOKEN, Infra, read_all, signed, webhooks_process

SECRETS = {"stripe": "whsec_webhooks_process_stripe", "zendesk": "webhooks-process-zendesk-secret",
           "netsuite": "webhooks-process-netsuite-secret"}
BODIES = {
    "stripe": b'{"id":"evt_wp_1","object":"event","type":"customer.updated","created":1700000000}',
    "zendesk": b'{"type":"zen:event-type:organization.updated","id":"01HWP","detail":{"id":"361"}}',
    "netsuite": b'{"schema":"concord.netsuite.v1","record":{"type":"customer","id":"551"}}',
}


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


async def test_signed_deliveries_land_on_the_raw_topics_and_sigterm_stops_cleanly(
        infra: Infra, settings: Settings, tmp_path: Path) -> None:
    configured = msgspec.structs.replace(
        settings, stripe_webhook_secret=SECRETS["stripe"], zendesk_webhook_secret=SECRETS["zendesk"],
        netsuite_webhook_secret=SECRETS["netsuite"], webhook_read_timeout_seconds=5.0)
    names = topic_names(configured)
    process = webhooks_process(configured, tmp_path / "webhooks.log").start()
    url = process.base_url
    try:
        await process.wait_ready(timeout=60)
        now = int(time.time())
        answers = {}
        async with aiohttp.ClientSession() as session:
            for platform, body in BODIES.items():
                headers = {**signed(platform, body, SECRETS[platform], now), "Content-Type": "application/json",
                           "Authorization": "Bearer not-part-of-the-event"}
                async with session.post(f"{url}/webhooks/{platform}", data=body, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    answers[platform] = await resp.json()
            body = BODIES["stripe"]
            for refused in ({}, signed("stripe", body, "not-the-stripe-secret-at-all", now),
                            signed("stripe", body, SECRETS["stripe"], now - 3600)):
                async with session.post(f"{url}/webhooks/stripe", data=body, headers=refused) as resp:
                    assert resp.status == 401
            async with session.post(f"{url}/webhooks/paypal", data=b"{}") as resp:
                assert resp.status == 404
            # Customer data is a worker's: not served here, whatever the token.
            async with session.get(f"{url}/api/drift", headers={"Authorization": f"Bearer {READ_TOKEN}"}) as resp:
                assert resp.status == 404
            async with session.get(f"{url}/readyz") as resp:
                assert await resp.json() == {"ready": True, "kafka": True, "producer_started": True, "detail": ""}
            async with session.get(f"{url}/metrics") as resp:
                exposition = await resp.text()

        for platform, body in BODIES.items():
            [record] = await read_all(infra.bootstrap, names.raw[platform])
            assert answers[platform] == {"status": "accepted", "topic": names.raw[platform],
                                         "partition": record.partition, "offset": record.offset}
            assert record.value == body
            stored = dict(record.headers)
            for name, value in signed(platform, body, SECRETS[platform], now).items():
                assert stored[name] == value.encode()
            assert abs(int(stored[messages.RECEIVED_AT]) - now * 1000) < 60_000
            assert not {name.lower() for name in stored} & {"authorization", "cookie"}

        seconds = _samples(exposition, "concord_webhook_seconds_count")
        assert seconds == {(("platform", p),): 1.0 for p in BODIES}
        requests = _samples(exposition, "concord_webhook_requests_total")
        assert requests[(("outcome", "accepted"), ("platform", "stripe"))] == 1.0
        assert requests[(("outcome", "missing_signature"), ("platform", "stripe"))] == 1.0
        assert _samples(exposition, "concord_worker_ready") == {(): 1.0}

        # SIGTERM while a delivery is in flight (its body half sent): it is finished and written, new
        # connections are refused, and the process exits 0.
        late = b'{"id":"evt_wp_late","object":"event","type":"customer.updated","created":1700000001}'
        head = (f"POST /webhooks/stripe HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                f"Stripe-Signature: {signed('stripe', late, SECRETS['stripe'], now)['Stripe-Signature']}\r\n"
                f"Content-Length: {len(late)}\r\n\r\n").encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", configured.web_port)
        try:
            writer.write(head + late[:20])
            await writer.drain()
            await asyncio.sleep(0.3)
            assert process.proc is not None
            os.kill(process.proc.pid, signal.SIGTERM)
            await asyncio.sleep(0.5)
            refused = False
            try:
                _, other = await asyncio.open_connection("127.0.0.1", configured.web_port)
                other.close()
            except ConnectionRefusedError:
                refused = True
            assert refused, "the listener still accepts connections after SIGTERM"
            writer.write(late[20:])
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 10)
            assert status.split()[1] == b"200", status
        finally:
            writer.close()
        assert await asyncio.to_thread(process.proc.wait, 30) == 0, process.log_tail()
        stripe = await read_all(infra.bootstrap, names.raw["stripe"])
        assert sorted(r.value for r in stripe) == sorted([BODIES["stripe"], late])
        assert "Traceback" not in process.log_tail(10_000)
    finally:
        process.stop()
