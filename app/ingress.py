"""Webhook ingress: `/webhooks/stripe`, `/webhooks/zendesk`, `/webhooks/netsuite`.

A request is answered 200 only after Kafka acknowledged the raw bytes on the platform's raw topic
(acks=all), so a platform that got a 200 can forget the event. Unsigned, forged or stale requests
get 401, bodies over the limit 413, a platform whose secret is not configured 503; each outcome is
counted in `concord_webhook_requests_total`. Secrets never reach logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from faust.web import Request, Response, View

from concord.app import signatures
from concord.core import metrics

if TYPE_CHECKING:
    from concord.agents.context import Concord

log = logging.getLogger("concord.ingress")

Verifier = Callable[[bytes, Mapping[str, str], str, float, float], None]

VERIFIERS: Final[dict[str, Verifier]] = {
    "stripe": signatures.verify_stripe,
    "zendesk": signatures.verify_zendesk,
    "netsuite": signatures.verify_netsuite,
}

# Credentials of the caller are not part of the event: never store them.
_DROPPED_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything over `limit` bytes."""
    declared = request.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    content = request.content  # type: ignore[attr-defined]  # aiohttp request behind faust's View
    while chunk := await content.read(65536):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def register(concord: Concord) -> None:
    settings = concord.settings
    secrets = {
        "stripe": settings.stripe_webhook_secret,
        "zendesk": settings.zendesk_webhook_secret,
        "netsuite": settings.netsuite_webhook_secret,
    }
    raw_topics = {platform: concord.topics[name] for platform, name in concord.names.raw.items()}

    @concord.app.page("/webhooks/{platform}")
    class Webhook(View):
        """Receive a platform's signed webhook and write it, as delivered, to its raw topic."""

        async def post(self, request: Request, platform: str) -> Response:
            verify = VERIFIERS.get(platform)
            if verify is None:
                return self.json({"error": f"no webhook for {platform!r}; webhooks: {', '.join(VERIFIERS)}"},
                                 status=404)
            secret = secrets[platform]
            if not secret:
                metrics.webhook_requests.labels(platform, "not_configured").inc()
                return self.json({"error": f"{platform} webhook secret is not configured "
                                  f"(CONCORD_{platform.upper()}_WEBHOOK_SECRET)"}, status=503)
            try:
                body = await read_limited(request, settings.webhook_max_body_bytes)
            except BodyTooLarge:
                metrics.webhook_requests.labels(platform, "too_large").inc()
                return self.json({"error": f"body over {settings.webhook_max_body_bytes} bytes"}, status=413)
            try:
                verify(body, request.headers, secret, time.time(), settings.webhook_tolerance_seconds)
            except signatures.SignatureError as exc:
                metrics.webhook_requests.labels(platform, exc.reason).inc()
                log.warning("refused %s webhook: %s", platform, exc.reason)
                return self.json({"error": exc.reason, "detail": exc.detail}, status=401)
            headers = [(str(k), v.encode()) for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS]
            headers.append(("concord-received-at", str(int(time.time() * 1000)).encode()))
            pending = await raw_topics[platform].send(key=None, value=body, headers=headers)
            metadata = await pending  # acks=all: answered only once Kafka has it
            metrics.webhook_requests.labels(platform, "accepted").inc()
            return self.json({"status": "accepted", "topic": metadata.topic, "partition": metadata.partition,
                              "offset": metadata.offset})
