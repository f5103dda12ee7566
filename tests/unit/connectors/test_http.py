"""The shared HTTP plumbing: Retry-After parsing, redaction, error classification, connection failures."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from concord.connectors.base import ConnectorError, ErrorKind
from concord.connectors.http import HttpClient, redacted, retry_after, segment, split_address, to_major


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_743_422_400.0
    assert retry_after("2") == 2.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert retry_after(None) is None
    assert retry_after("soon") is None


def test_redacted_masks_credentials_only() -> None:
    headers = {"Authorization": "Bearer sk_live_secret", "Idempotency-Key": "cmd-1"}
    assert redacted(headers) == {"Authorization": "***", "Idempotency-Key": "cmd-1"}


def test_split_address_takes_a_trailing_country() -> None:
    assert split_address("1 Main St, Springfield, us") == ("1 Main St, Springfield", "US")
    assert split_address("1 Main St, Springfield") == ("1 Main St, Springfield", None)
    assert split_address("DE") == ("DE", None)


def test_to_major_uses_the_currencys_minor_unit() -> None:
    assert (to_major(1999, "usd"), to_major(1999, "JPY"), to_major(1999, "KWD")) == (19.99, 1999.0, 1.999)


def _client(url: str, timeout: float = 1.0) -> HttpClient:
    return HttpClient("stripe", url, url_variable="CONCORD_STRIPE_API_URL", timeout=timeout,
                      headers={"Authorization": "Bearer sk_test_secret"}, error_reader=lambda body: "")


async def test_statuses_are_classified_and_the_raw_body_is_the_fallback_reason() -> None:
    async def answer(request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        return web.Response(status=status, text=f"plain failure {status}", headers={"Retry-After": "4"})

    app = web.Application()
    app.router.add_get("/{status}", answer)
    async with TestServer(app) as server:
        client = _client(str(server.make_url("")))
        kinds = {}
        for status in (400, 401, 403, 404, 409, 429, 500, 503):
            with pytest.raises(ConnectorError) as caught:
                await client.request("GET", f"/{status}")
            kinds[status] = caught.value.kind
            assert caught.value.status == status
            assert caught.value.retry_after == 4.0
            assert f"plain failure {status}" in caught.value.reason
        ok = await client.request("GET", "/404", allow=frozenset({404}))
        await client.close()
    assert ok.status == 404
    assert kinds == {400: ErrorKind.DATA, 401: ErrorKind.AUTH, 403: ErrorKind.AUTH, 404: ErrorKind.DATA,
                     409: ErrorKind.TRANSIENT, 429: ErrorKind.TRANSIENT, 500: ErrorKind.TRANSIENT,
                     503: ErrorKind.TRANSIENT}


async def test_connection_refused_is_transient_without_the_token() -> None:
    client = _client("http://127.0.0.1:1")
    with pytest.raises(ConnectorError) as caught:
        await client.request("GET", "/v1/customers/cus_1")
    await client.close()
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert "stripe GET /v1/customers/cus_1" in caught.value.reason
    assert "sk_test_secret" not in caught.value.reason


def test_segment_encodes_one_path_segment_and_refuses_dot_segments() -> None:
    assert segment("in_1/../../customer/5") == "in_1%2F..%2F..%2Fcustomer%2F5"
    assert segment("a b?c#d%2F:@;") == "a%20b%3Fc%23d%252F%3A%40%3B"
    assert segment(42) == "42"
    for bad in ("", ".", ".."):
        with pytest.raises(ConnectorError) as caught:
            segment(bad)
        assert caught.value.kind is ErrorKind.DATA


async def test_the_path_is_sent_as_encoded_and_dot_segments_never_leave() -> None:
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with TestServer(app) as server:
        client = _client(str(server.make_url("")) + "/root/")
        await client.request("GET", f"/v1/customers/{segment('cus_1/../../x')}/{segment('%2E%2E')}")
        with pytest.raises(ConnectorError) as caught:
            await client.request("GET", "/v1/customers/../x")
        await client.close()
    assert caught.value.kind is ErrorKind.DATA
    assert seen == ["/root/v1/customers/cus_1%2F..%2F..%2Fx/%252E%252E"]
