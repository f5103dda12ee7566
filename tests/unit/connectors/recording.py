"""A recording fake of a platform API: canned answers per request, every request kept for the test to read.

For what the sandbox does not serve (yet), or does not do as the platform does (Stripe's 404 for a
subscription already canceled): the test states the platform's answers and checks the exact requests a
connector sent, in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer

from concord.core.settings import Settings

STRIPE_KEY = "sk_test_recording"
NETSUITE_TOKEN = "ns-token-recording"


@dataclass(frozen=True)
class Answer:
    """What the fake answers: a status, a JSON body (None: empty) and headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One request as the fake received it (the path as sent, still percent-encoded)."""

    method: str
    path: str
    form: list[tuple[str, str]]
    json: Any
    headers: dict[str, str]


@dataclass
class Recorder:
    settings: Settings
    # (method, path) -> the answers to give, in order; the last one is repeated.
    answers: dict[tuple[str, str], list[Answer]]
    requests: list[Request] = field(default_factory=list)

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request, in order."""
        return [(r.method, r.path) for r in self.requests]


def stripe_error(status: int, code: str, message: str) -> Answer:
    """Stripe's error shape."""
    kind = "api_error" if status >= 500 else "invalid_request_error"
    return Answer(status, {"error": {"type": kind, "code": code, "message": message}})


@asynccontextmanager
async def recording(answers: dict[tuple[str, str], list[Answer]], timeout: float = 2.0) -> AsyncIterator[Recorder]:
    """A started fake; Settings point Stripe and NetSuite at it. An unexpected request is answered 599."""
    recorder = Recorder(settings=Settings(), answers=answers)

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        content_type = request.headers.get("Content-Type", "")
        recorder.requests.append(Request(
            method=request.method, path=request.rel_url.raw_path,
            form=parse_qsl(body.decode(), keep_blank_values=True) if "form" in content_type else [],
            json=msgspec.json.decode(body) if body and "json" in content_type else None,
            headers=dict(request.headers)))
        queue = recorder.answers.get((request.method, request.rel_url.raw_path))
        if not queue:
            return web.Response(status=599, text=f"unexpected {request.method} {request.rel_url.raw_path}")
        given = queue.pop(0) if len(queue) > 1 else queue[0]
        payload = b"" if given.body is None else msgspec.json.encode(given.body)
        return web.Response(status=given.status, body=payload, headers=given.headers,
                            content_type="application/json" if payload else None)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    recorder.settings = Settings(stripe_api_url=url, stripe_api_key=STRIPE_KEY, netsuite_url=url,
                                 netsuite_access_token=NETSUITE_TOKEN, connector_timeout_seconds=timeout)
    try:
        yield recorder
    finally:
        await server.close()
