"""Webhook ingress: `/webhooks/stripe`, `/webhooks/zendesk`, `/webhooks/netsuite`.

A request is answered 200 only after Kafka acknowledged the raw bytes on the platform's raw topic
(acks=all), so a platform that got a 200 can forget the event. Each outcome is counted in
`concord_webhook_requests_total{platform,outcome}`, and the time an accepted one took to answer in
`concord_webhook_seconds{platform}`. Secrets never reach logs. In order:

1. Before the body is read: a platform whose secret is not configured gets 503 (`not_configured`); a
   missing, malformed (not ASCII, any header not UTF-8) or stale signature header 401 with
   `{"error": reason}` (`missing_signature`, `malformed_signature`, `stale`); a declared
   Content-Length over the limit 413 (`too_large`).
2. The body, at most `webhook_max_concurrent_reads` at once (else 503 with `Retry-After: 1`, `busy`),
   within `webhook_read_timeout_seconds` (else 408, `read_timeout`), at most `webhook_max_body_bytes`
   (else 413); a broken transfer is 400 (`bad_body`).
3. The HMAC over the body: 401 `bad_signature` unless it matches, else written to Kafka (`accepted`);
   Kafka unable to take it now (unreachable, no leader, the producer not started) is 503 with
   `Retry-After: 1` (`unavailable`): the platform delivers it again.

No header or body an outsider controls makes a 500. `Ingress` knows no web framework: the worker
serves it through a Faust View (`register`), the webhooks process (`app/webhooks.py`) through a
plain aiohttp handler, so Faust is imported only where the View is made.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from aiokafka.errors import KafkaError, KafkaTimeoutError

from concord.app import signatures
from concord.core import messages, metrics

if TYPE_CHECKING:
    from concord.agents.context import Concord
    from concord.core.settings import Settings

log = logging.getLogger("concord.ingress")

# Credentials of the caller are not part of the event: never store them.
_DROPPED_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_DIGITS: Final = re.compile(r"[0-9]{1,20}")


class BodyTooLarge(Exception):
    pass


class Unavailable(Exception):
    """What a `Send` raises when it cannot take a delivery now (its producer not started, or stopping)."""


def _retry_later(exc: Exception) -> bool:
    """Kafka could not take the delivery now, but may soon: the platform should deliver it again."""
    return isinstance(exc, Unavailable | KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable)


class _Content(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


class RequestLike(Protocol):
    """What `handle` needs of a request: aiohttp's `web.Request` (behind Faust's View) has both."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> _Content: ...


# platform, body, headers to store -> {"topic", "partition", "offset"} once Kafka has it (acks=all).
Send = Callable[[str, bytes, list[tuple[str, bytes]]], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class ReadSlots:
    """At most `limit` bodies read at once; a request that finds none free is turned away, not queued
    (a queue of slow senders is what the bound is there to refuse)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0

    def try_take(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken -= 1


async def read_limited(request: RequestLike, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything over `limit` bytes."""
    declared = request.headers.get("Content-Length")
    if declared is not None and _DIGITS.fullmatch(declared) and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    content = request.content
    while chunk := await content.read(65536):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _not_utf8(headers: Mapping[str, str]) -> str | None:
    """The name of the first header whose name or value was not UTF-8 on the wire (aiohttp decodes with
    surrogateescape, so such bytes arrive as lone surrogates that cannot be encoded), else None."""
    for name, value in headers.items():
        try:
            name.encode()
            value.encode()
        except UnicodeEncodeError:
            return name.encode(errors="backslashreplace").decode("ascii", "replace")
    return None


def stored_headers(headers: Mapping[str, str], received_at_ms: int) -> list[tuple[str, bytes]]:
    """The Kafka headers of an accepted delivery: the request's headers as received, the caller's
    credentials left out, then when it was received (`messages.RECEIVED_AT`, epoch ms)."""
    stored = [(str(k), v.encode()) for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS]
    stored.append((messages.RECEIVED_AT, str(received_at_ms).encode()))
    return stored


class Ingress:
    """The webhook request handling, apart from Faust (the View below only adapts it): every check that
    needs no body first, then the body under a concurrency bound and a read timeout, then the HMAC."""

    def __init__(self, settings: Settings, send: Send, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.secrets = {
            "stripe": settings.stripe_webhook_secret,
            "zendesk": settings.zendesk_webhook_secret,
            "netsuite": settings.netsuite_webhook_secret,
        }
        self.send = send
        self.clock = clock
        self.slots = ReadSlots(settings.webhook_max_concurrent_reads)

    @staticmethod
    def _refuse(platform: str, status: int, outcome: str, body: dict[str, Any],
                headers: dict[str, str] | None = None) -> Reply:
        metrics.webhook_requests.labels(platform, outcome).inc()
        return Reply(status, body, headers or {})

    async def handle(self, platform: str, request: RequestLike) -> Reply:
        started = time.perf_counter()
        settings = self.settings
        if platform not in signatures.PLATFORMS:
            return Reply(404, {"error": f"no webhook for {platform!r}; webhooks: {', '.join(signatures.PLATFORMS)}"})
        secret = self.secrets[platform]
        if not secret:
            return self._refuse(platform, 503, "not_configured", {
                "error": f"{platform} webhook secret is not configured (CONCORD_{platform.upper()}_WEBHOOK_SECRET)"})
        # 1. Before the body: signature headers present, well formed, fresh; every header UTF-8.
        try:
            parsed = signatures.parse(platform, request.headers, self.clock(), settings.webhook_tolerance_seconds)
            if (bad := _not_utf8(request.headers)) is not None:
                raise signatures.SignatureError("malformed_signature", f"header {bad} is not UTF-8")
        except signatures.SignatureError as exc:
            log.warning("refused %s webhook before reading its body: %s", platform, exc.reason)
            return self._refuse(platform, 401, exc.reason, {"error": exc.reason})
        limit = settings.webhook_max_body_bytes
        declared = request.headers.get("Content-Length")
        if declared is not None and _DIGITS.fullmatch(declared) and int(declared) > limit:
            return self._refuse(platform, 413, "too_large", {"error": f"body over {limit} bytes"})
        # 2. The body: a bounded number of reads at once, each within the read timeout.
        if not self.slots.try_take():
            log.warning("refused %s webhook: %d bodies already being read", platform, self.slots.limit)
            return self._refuse(platform, 503, "busy", {"error": "busy"}, {"Retry-After": "1"})
        try:
            async with asyncio.timeout(settings.webhook_read_timeout_seconds):
                body = await read_limited(request, limit)
        except BodyTooLarge:
            return self._refuse(platform, 413, "too_large", {"error": f"body over {limit} bytes"})
        except TimeoutError:
            log.warning("refused %s webhook: body not received within %s s", platform,
                        settings.webhook_read_timeout_seconds)
            return self._refuse(platform, 408, "read_timeout", {"error": "read_timeout"})
        except (HttpProcessingError, RequestPayloadError, ConnectionError):
            # A broken chunked encoding or compression, or the sender went away mid-body.
            return self._refuse(platform, 400, "bad_body", {"error": "bad_body"})
        finally:
            self.slots.give_back()
        # 3. The HMAC over the body as received.
        try:
            signatures.verify(parsed, body, secret)
        except signatures.SignatureError as exc:
            log.warning("refused %s webhook: %s", platform, exc.reason)
            return self._refuse(platform, 401, exc.reason, {"error": exc.reason})
        headers = stored_headers(request.headers, int(self.clock() * 1000))
        try:
            written = await self.send(platform, body, headers)  # acks=all: answered only once Kafka has it
        except (Unavailable, KafkaError) as exc:
            if not _retry_later(exc):
                raise
            log.warning("refused %s webhook: Kafka cannot take it now (%s: %s)", platform, type(exc).__name__, exc)
            return self._refuse(platform, 503, "unavailable", {"error": "unavailable"}, {"Retry-After": "1"})
        metrics.webhook_requests.labels(platform, "accepted").inc()
        metrics.webhook_seconds.labels(platform).observe(time.perf_counter() - started)
        return Reply(200, {"status": "accepted", **written})


def register(concord: Concord) -> None:
    """Serve the ingress in the worker (the `webhooks` role), writing through the app's own producer."""
    from faust.web import Request, Response, View  # here, not above: the webhooks process has no Faust

    raw_topics = {platform: concord.topics[name] for platform, name in concord.names.raw.items()}

    async def send(platform: str, body: bytes, headers: list[tuple[str, bytes]]) -> Mapping[str, Any]:
        pending = await raw_topics[platform].send(key=None, value=body, headers=headers)
        metadata = await pending
        return {"topic": metadata.topic, "partition": metadata.partition, "offset": metadata.offset}

    ingress = Ingress(concord.settings, send)

    @concord.app.page("/webhooks/{platform}")
    class Webhook(View):
        """Receive a platform's signed webhook and write it, as delivered, to its raw topic."""

        async def post(self, request: Request, platform: str) -> Response:
            reply = await ingress.handle(platform, cast(RequestLike, request))
            return self.json(reply.body, status=reply.status, headers=reply.headers or None)
