"""The webhook ingress on a real aiohttp server (the Faust View only adapts `Ingress.handle`): every check
that needs no body comes before the body is read, the read is bounded in time and in number, and no
header or body an outsider controls makes a 500. The raw-topic send is a fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
)
from multidict import CIMultiDict, CIMultiDictProxy

from concord.app import ingress as ingress_mod
from concord.app.signatures import sign_t_v1, sign_zendesk
from concord.core import metrics
from concord.core.settings import Settings

SECRET = "whsec_ingress_test"
BODY = b'{"id":"evt_1","object":"event","type":"invoice.paid"}'


class FakeSend:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []

    async def __call__(self, platform: str, body: bytes, headers: list[tuple[str, bytes]]) -> Mapping[str, Any]:
        self.sent.append((platform, body, headers))
        return {"topic": f"raw.{platform}", "partition": 0, "offset": len(self.sent) - 1}


def _settings(**changes: Any) -> Settings:
    return msgspec.structs.replace(Settings(), stripe_webhook_secret=SECRET, zendesk_webhook_secret=SECRET,
                                   webhook_max_body_bytes=4096, **changes)


def _count(platform: str, outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value("concord_webhook_requests_total",
                                              {"platform": platform, "outcome": outcome})
    return value or 0.0


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.send = FakeSend()
        self.ingress = ingress_mod.Ingress(settings, self.send)
        self.app = web.Application()
        self.app.router.add_post("/webhooks/{platform}", self._view)
        self.client = TestClient(TestServer(self.app))

    async def _view(self, request: web.Request) -> web.Response:
        reply = await self.ingress.handle(request.match_info["platform"], request)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    async def raw(self, head: bytes, body: bytes = b"", *, then_wait: float | None = None,
                  timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
        """Send a request byte for byte (the body possibly short of its Content-Length) and read the answer."""
        server = self.client.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(head + b"\r\n" + body)
            await writer.drain()
            async with asyncio.timeout(timeout):
                status = int((await reader.readline()).split()[1])
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                answer = await reader.readexactly(int(headers.get("content-length", "0")))
            return status, headers, answer
        finally:
            writer.close()


def _head(platform: str, headers: list[bytes], length: int) -> bytes:
    lines = [f"POST /webhooks/{platform} HTTP/1.1".encode(), b"Host: test", b"Content-Type: application/json",
             f"Content-Length: {length}".encode(), *headers]
    return b"\r\n".join(lines) + b"\r\n"


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness(_settings(webhook_read_timeout_seconds=0.3, webhook_max_concurrent_reads=1))
    await h.client.start_server()
    try:
        yield h
    finally:
        await h.client.close()


class _ExplodingContent:
    async def read(self, n: int = -1, /) -> bytes:
        raise AssertionError("the body was read")


class _Request:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.content = _ExplodingContent()


class _Content:
    def __init__(self, body: bytes) -> None:
        self.left = body

    async def read(self, n: int = -1, /) -> bytes:
        chunk, self.left = self.left[:n], self.left[n:]
        return chunk


class _Body:
    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.content = _Content(body)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        # Headers made when the test runs (`now`), not when it is collected: a long session would make them stale.
        (lambda now: {}, "missing_signature"),
        (lambda now: {"Stripe-Signature": "t=1_700_000_000,v1=00"}, "malformed_signature"),
        (lambda now: {"Stripe-Signature": f"t={now - 3600},v1=00"}, "stale"),
        (lambda now: {"Stripe-Signature": f"t={now},v1=\u00e9"}, "malformed_signature"),
        (lambda now: {"Stripe-Signature": sign_t_v1(BODY, SECRET, now), "X-Other": "\udcff"}, "malformed_signature"),
    ],
)
async def test_refusals_that_need_no_body_never_read_it(headers: Callable[[int], dict[str, str]], reason: str) -> None:
    ingress = ingress_mod.Ingress(_settings(), FakeSend())
    before = _count("stripe", reason)
    reply = await ingress.handle("stripe", _Request(headers(int(time.time()))))
    assert (reply.status, reply.body) == (401, {"error": reason})
    assert _count("stripe", reason) == before + 1
    assert ingress.slots.taken == 0


async def test_a_declared_body_over_the_limit_is_refused_unread() -> None:
    headers = {"Stripe-Signature": sign_t_v1(BODY, SECRET, int(time.time())), "Content-Length": "5000"}
    reply = await ingress_mod.Ingress(_settings(), FakeSend()).handle("stripe", _Request(headers))
    assert reply.status == 413


async def test_no_signature_header_is_401_while_the_body_never_arrives(harness: Harness) -> None:
    # Content-Length promises 1000 bytes that are never sent: reading would stall until the timeout.
    status, _, answer = await harness.raw(_head("stripe", [], 1000), timeout=0.25)
    assert status == 401 and msgspec.json.decode(answer) == {"error": "missing_signature"}


async def test_a_stale_signature_is_401_while_the_body_never_arrives(harness: Harness) -> None:
    old = sign_t_v1(BODY, SECRET, int(time.time()) - 3600).encode()
    status, _, answer = await harness.raw(_head("stripe", [b"Stripe-Signature: " + old], 1000), timeout=0.25)
    assert status == 401 and msgspec.json.decode(answer) == {"error": "stale"}
    assert harness.send.sent == []


async def test_a_slow_body_is_408(harness: Harness) -> None:
    before = _count("stripe", "read_timeout")
    signature = sign_t_v1(BODY, SECRET, int(time.time())).encode()
    status, _, answer = await harness.raw(_head("stripe", [b"Stripe-Signature: " + signature], len(BODY)),
                                          BODY[:10])
    assert status == 408 and msgspec.json.decode(answer) == {"error": "read_timeout"}
    assert _count("stripe", "read_timeout") == before + 1
    assert harness.ingress.slots.taken == 0 and harness.send.sent == []


async def test_too_many_concurrent_reads_is_503_with_retry_after(harness: Harness) -> None:
    harness.ingress.settings = msgspec.structs.replace(harness.ingress.settings, webhook_read_timeout_seconds=5.0)
    signature = sign_t_v1(BODY, SECRET, int(time.time()))
    slow = asyncio.create_task(harness.raw(_head("stripe", [b"Stripe-Signature: " + signature.encode()],
                                                 len(BODY)), BODY[:10]))
    try:
        async with asyncio.timeout(5):
            while harness.ingress.slots.taken < 1:  # the slow sender holds the one read slot
                await asyncio.sleep(0.01)
        before = _count("stripe", "busy")
        resp = await harness.client.post("/webhooks/stripe", data=BODY, headers={"Stripe-Signature": signature})
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert await resp.json() == {"error": "busy"}
        assert _count("stripe", "busy") == before + 1
    finally:
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
    async with asyncio.timeout(5):
        while harness.ingress.slots.taken:  # given back once the slow sender is gone
            await asyncio.sleep(0.01)
    resp = await harness.client.post("/webhooks/stripe", data=BODY, headers={"Stripe-Signature": signature})
    assert resp.status == 200


async def test_a_forged_signature_is_401_and_nothing_is_sent(harness: Harness) -> None:
    before = _count("stripe", "bad_signature")
    resp = await harness.client.post("/webhooks/stripe", data=BODY,
                                     headers={"Stripe-Signature": sign_t_v1(BODY, "wrong", int(time.time()))})
    assert resp.status == 401 and await resp.json() == {"error": "bad_signature"}
    assert _count("stripe", "bad_signature") == before + 1
    assert harness.send.sent == []


@pytest.mark.parametrize(
    "extra",
    [
        [b"Stripe-Signature: t=1700000000,v1=\xff\xfe"],
        [b"Stripe-Signature: t=\xd9\xa1\xd9\xa7\xd9\xa0\xd9\xa0,v1=00"],  # UTF-8 Arabic-Indic digits
        [b"Stripe-Signature: SIGNED", b"X-Note: caf\xe9"],  # a valid signature, another header not UTF-8
    ],
)
async def test_non_utf8_or_non_ascii_header_bytes_are_401_malformed(harness: Harness, extra: list[bytes]) -> None:
    signature = sign_t_v1(BODY, SECRET, int(time.time())).encode()
    head = _head("stripe", [line.replace(b"SIGNED", signature) for line in extra], len(BODY))
    status, _, answer = await harness.raw(head, BODY)
    assert status == 401 and msgspec.json.decode(answer) == {"error": "malformed_signature"}
    assert harness.send.sent == []


async def test_a_good_webhook_is_accepted_and_sent_as_delivered(harness: Harness) -> None:
    before = _count("stripe", "accepted")
    signature = sign_t_v1(BODY, SECRET, int(time.time()))
    resp = await harness.client.post("/webhooks/stripe", data=BODY, headers={
        "Stripe-Signature": signature, "Authorization": "Bearer x", "Content-Type": "application/json"})
    assert resp.status == 200
    assert await resp.json() == {"status": "accepted", "topic": "raw.stripe", "partition": 0, "offset": 0}
    [(platform, body, headers)] = harness.send.sent
    assert (platform, body) == ("stripe", BODY)
    assert ("Stripe-Signature", signature.encode()) in headers
    assert not any(name.lower() == "authorization" for name, _ in headers)
    assert any(name == "concord-received-at" for name, _ in headers)
    assert _count("stripe", "accepted") == before + 1


async def test_a_good_zendesk_webhook_is_accepted(harness: Harness) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    resp = await harness.client.post("/webhooks/zendesk", data=BODY, headers={
        "X-Zendesk-Webhook-Signature": sign_zendesk(BODY, SECRET, stamp),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp})
    assert resp.status == 200, await resp.text()
    zoneless = stamp.rstrip("Z")
    resp = await harness.client.post("/webhooks/zendesk", data=BODY, headers={
        "X-Zendesk-Webhook-Signature": sign_zendesk(BODY, SECRET, zoneless),
        "X-Zendesk-Webhook-Signature-Timestamp": zoneless})
    assert resp.status == 401 and await resp.json() == {"error": "malformed_signature"}


async def test_unconfigured_platform_is_503_and_unknown_one_404(harness: Harness) -> None:
    resp = await harness.client.post("/webhooks/netsuite", data=BODY)
    assert resp.status == 503
    resp = await harness.client.post("/webhooks/shopify", data=BODY)
    assert resp.status == 404


async def test_a_body_over_the_limit_without_content_length_is_413(harness: Harness) -> None:
    big = b"{" + b" " * 5000 + b"}"
    signature = sign_t_v1(big, SECRET, int(time.time()))

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse on
        yield big

    resp = await harness.client.post("/webhooks/stripe", data=chunks(), headers={"Stripe-Signature": signature})
    assert resp.status == 413
    assert harness.ingress.slots.taken == 0


@pytest.mark.parametrize("error", [KafkaTimeoutError(), KafkaConnectionError(), NotLeaderForPartitionError(),
                                   ingress_mod.Unavailable("not started")])
async def test_kafka_unable_to_take_a_delivery_now_is_503_to_deliver_again(error: Exception) -> None:
    async def send(platform: str, body: bytes, headers: list[tuple[str, bytes]]) -> Mapping[str, Any]:
        raise error

    headers = {"Stripe-Signature": sign_t_v1(BODY, SECRET, int(time.time()))}
    before = _count("stripe", "unavailable")
    reply = await ingress_mod.Ingress(_settings(), send).handle("stripe", _Body(headers, BODY))
    assert (reply.status, reply.body, reply.headers) == (503, {"error": "unavailable"}, {"Retry-After": "1"})
    assert _count("stripe", "unavailable") == before + 1


async def test_a_delivery_kafka_will_never_take_is_not_asked_again() -> None:
    async def send(platform: str, body: bytes, headers: list[tuple[str, bytes]]) -> Mapping[str, Any]:
        raise MessageSizeTooLargeError()

    headers = {"Stripe-Signature": sign_t_v1(BODY, SECRET, int(time.time()))}
    with pytest.raises(MessageSizeTooLargeError):  # a 500: retrying the same bytes cannot help
        await ingress_mod.Ingress(_settings(), send).handle("stripe", _Body(headers, BODY))
