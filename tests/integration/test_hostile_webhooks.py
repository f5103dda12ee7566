"""Every webhook route of a real worker under hostile requests: refused cleanly or accepted, never a 500.

The bodies come from the hostile corpus (tests/hostile/corpus.py: real payloads mutated, and extreme
inputs); the requests around them are what an attacker on the internet can send: forged, replayed and
malformed signatures, non-ASCII and non-UTF-8 headers, wrong content types, oversized and slow bodies.
A signed hostile body is accepted (the platform vouched for it) and then decoded or dead-lettered with
its reason by the ingest agent; the worker stays ready and logs no traceback.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import msgspec

from concord.app.signatures import sign_zendesk
from concord.core import messages
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.hostile.corpus import corpus, extremes
from tests.integration.harness import SIGNATURE_HEADER, Infra, WorkerProcess, read_all, signed

SECRETS = {"stripe": "whsec_hostile_stripe_secret", "zendesk": "hostile-zendesk-secret",
           "netsuite": "hostile-netsuite-secret"}
MALFORMED_T_V1 = ["t=1_700_000_000,v1=00", "t=+1700000000,v1=00", "t=\u0661\u0667\u0660\u0660,v1=00", "v1=00",
                  "t=,v1=", "t=1700000000", "t=1700000000,v1=caf\u00e9", "t=99999999999999999999,v1=00",
                  "t=1700000000,t=1700000001,v1=00", "garbage", "," * 1000, "t=" + "9" * 5000 + ",v1=00"]
PER_PLATFORM = 150  # signed corpus bodies per platform, besides every extreme input


async def raw_request(port: int, head: bytes, body: bytes, pause: float = 0.0) -> int:
    """Send a request byte for byte (headers an HTTP client would refuse to send); its status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        if pause:
            await writer.drain()
            await asyncio.sleep(pause)
        writer.write(body)
        await writer.drain()
        return int((await asyncio.wait_for(reader.readline(), 30)).split()[1])
    finally:
        writer.close()


async def test_hostile_webhook_requests_are_refused_or_accepted_never_a_500(
        infra: Infra, settings: Settings, shared_fixtures: Path, tmp_path: Path) -> None:
    configured = msgspec.structs.replace(
        settings, stripe_webhook_secret=SECRETS["stripe"], zendesk_webhook_secret=SECRETS["zendesk"],
        netsuite_webhook_secret=SECRETS["netsuite"], webhook_read_timeout_seconds=1.0,
        webhook_max_body_bytes=262_144)
    names = topic_names(configured)
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], configured,
                           tmp_path / "worker.log").start()
    outcomes: Counter[tuple[str, int]] = Counter()
    rng = random.Random(7)
    try:
        await worker.wait_ready()
        url = worker.base_url
        now = int(time.time())
        chosen: dict[str, list[bytes]] = {p: [] for p in SECRETS}
        for platform, _kind, body in corpus(shared_fixtures, per_seed=40):
            if platform in chosen:
                chosen[platform].append(body)
        async with aiohttp.ClientSession() as session:
            async def post(what: str, platform: str, body: bytes, headers: dict[str, str]) -> None:
                async with session.post(f"{url}/webhooks/{platform}", data=body, headers=headers) as resp:
                    outcomes[(what, resp.status)] += 1

            for platform, bodies in chosen.items():
                key = SECRETS[platform]
                sample = rng.sample(bodies, min(PER_PLATFORM, len(bodies))) + extremes()
                for body in sample:
                    await post("signed hostile body", platform, body, signed(platform, body, key, now))
                body = sample[0]
                await post("forged", platform, body, signed(platform, body, "not-the-secret-at-all", now))
                await post("replayed (stale)", platform, body, signed(platform, body, key, now - 3600))
                await post("unsigned", platform, body, {})
                await post("wrong content type", platform, body,
                           {**signed(platform, body, key, now), "Content-Type": "text/plain; charset=latin-1"})
                big = b"[" + b"0," * 200_000 + b"0]"
                await post("oversized", platform, big, signed(platform, big, key, now))
                if platform != "zendesk":
                    for value in MALFORMED_T_V1:
                        await post("malformed signature", platform, body, {SIGNATURE_HEADER[platform]: value})
                else:
                    for stamp in ("2024-01-01T00:00:00", "yesterday", "\u0661\u0667", ""):
                        await post("malformed signature", platform, body, {
                            "X-Zendesk-Webhook-Signature": sign_zendesk(body, SECRETS["zendesk"], stamp),
                            "X-Zendesk-Webhook-Signature-Timestamp": stamp})
            await post("unknown platform", "paypal", b"{}", {})

        port = configured.web_port
        body = b'{"id":"evt_x"}'
        good = signed("stripe", body, SECRETS["stripe"], now)["Stripe-Signature"].encode()
        for what, head, pause in [
            ("non-UTF-8 header", b"Stripe-Signature: t=\xff\xfe,v1=00\r\n", 0.0),
            ("non-ASCII signature", "Stripe-Signature: t=1,v1=caf\u00e9\r\n".encode(), 0.0),
            ("slow body", b"Stripe-Signature: " + good + b"\r\n", 2.5),
        ]:
            request = (b"POST /webhooks/stripe HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + head
                       + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            outcomes[(what, await raw_request(port, request, body, pause))] += 1

        print("\n".join(f"{what}: {status} x{n}" for (what, status), n in sorted(outcomes.items())))
        assert not [k for k in outcomes if k[1] >= 500], outcomes  # no 500, and no 503: nothing was busy
        by_kind: dict[str, set[int]] = {}
        for (what, status), _ in outcomes.items():
            by_kind.setdefault(what, set()).add(status)
        assert by_kind["signed hostile body"] == {200}
        assert by_kind["wrong content type"] == {200}  # the platform's signature vouches, not the header
        for what in ("forged", "replayed (stale)", "unsigned", "malformed signature", "non-UTF-8 header",
                     "non-ASCII signature"):
            assert by_kind[what] == {401}, what
        assert by_kind["oversized"] == {413}
        assert by_kind["slow body"] == {408}
        assert by_kind["unknown platform"] == {404}

        # Every extreme input was accepted, and the ingest agent dead-letters each with its bytes.
        expected = {(p, b) for p in SECRETS for b in extremes()}
        dead: set[tuple[str, bytes]] = set()
        reasons: set[bytes] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not expected <= dead:
            for record in await read_all(infra.bootstrap, names.dlq_ingest, timeout=10):
                headers = dict(record.headers or ())
                dead.add((headers.get(messages.DLQ_PLATFORM, b"").decode(), record.value))
                reasons.add(headers.get(messages.DLQ_REASON, b"") + b"|" + headers.get(messages.DLQ_DETAIL, b""))
            await asyncio.sleep(1)
        assert expected <= dead, f"{len(expected - dead)} extreme inputs not dead-lettered"
        assert not [r for r in reasons if b"Traceback" in r or b"\n" in r], reasons  # a reason, not a trace
        assert await worker.get_json("/readyz") == {"ready": True, "kafka": True, "recovery_finished": True,
                                                     "detail": ""}
        assert "Traceback" not in worker.log_tail(10_000)
    finally:
        worker.stop()
