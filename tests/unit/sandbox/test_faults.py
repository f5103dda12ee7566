"""Faults: seeded draws, 429 bursts, JSON updates, and the guard that keeps injected failures from applying."""

from __future__ import annotations

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from concord.sandbox.faults import Faults, FaultsError, guard


def _draws(faults: Faults, count: int) -> list[tuple[int, float, bool]]:
    verdicts = [faults.decide("stripe") for _ in range(count)]
    return [(v.status, v.hang, v.error_after_apply) for v in verdicts]


def test_the_same_seed_draws_the_same_faults() -> None:
    settings = b'{"stripe": {"error_rate": 0.4, "timeout_rate": 0.2, "error_after_apply_rate": 0.3}}'
    first, second, other = Faults(seed=3), Faults(seed=3), Faults(seed=4)
    for faults in (first, second, other):
        faults.update(settings)
    draws = _draws(first, 60)
    assert draws == _draws(second, 60)
    assert draws != _draws(other, 60)
    statuses = {status for status, _, _ in draws}
    assert statuses - {0} <= {500, 502, 503}
    assert 0 in statuses and len(statuses) > 1


def test_salesforce_gaps_are_off_by_default_drawn_at_their_rate_and_leave_request_faults_as_they_were() -> None:
    settings = b'{"salesforce": {"error_rate": 0.4, "timeout_rate": 0.2}}'
    plain, gapped = Faults(seed=3), Faults(seed=3)
    plain.update(settings)
    gapped.update(settings)
    assert not any(gapped.gap("salesforce") for _ in range(50))  # gap_rate 0: never
    gapped.update(b'{"salesforce": {"gap_rate": 0.5}}')
    gaps = [gapped.gap("salesforce") for _ in range(200)]
    assert 60 < sum(gaps) < 140
    assert [plain.decide("salesforce") for _ in range(40)] == [gapped.decide("salesforce") for _ in range(40)]
    again = Faults(seed=3)
    again.update(b'{"salesforce": {"gap_rate": 0.5}}')
    assert [again.gap("salesforce") for _ in range(200)] == gaps  # the same seed, the same gaps
    gapped.update(b'{"salesforce": {"gap_rate": 1}}')
    assert all(gapped.gap("salesforce") for _ in range(20)) and not gapped.gap("stripe")


def test_a_429_burst_counts_down() -> None:
    faults = Faults()
    faults.update(b'{"zendesk": {"burst_429": 2, "retry_after": 5}}')
    verdicts = [faults.decide("zendesk") for _ in range(3)]
    assert [(v.status, v.retry_after) for v in verdicts] == [(429, 5.0), (429, 5.0), (0, None)]
    assert msgspec.json.decode(faults.to_json())["zendesk"]["burst_429"] == 0
    assert faults.decide("stripe").status == 0


def test_updates_merge_per_platform_and_field() -> None:
    faults = Faults()
    faults.update(b'{"stripe": {"error_rate": 0.3, "latency_ms": 20}}')
    faults.update(b'{"stripe": {"latency_ms": 5}, "netsuite": {"netsuite_concurrency": 2}}')
    shown = msgspec.json.decode(faults.to_json())
    assert (shown["stripe"]["error_rate"], shown["stripe"]["latency_ms"]) == (0.3, 5)
    assert shown["netsuite"]["netsuite_concurrency"] == 2
    assert shown["salesforce"]["error_rate"] == 0.0
    faults.reset()
    assert faults.of("stripe").error_rate == 0.0


@pytest.mark.parametrize(("body", "words"), [
    (b'{"paypal": {"error_rate": 1}}', "unknown platform 'paypal'"),
    (b'{"stripe": {"eror_rate": 1}}', "eror_rate"),
    (b'{"stripe": {"error_rate": 2}}', "error_rate"),
    (b'{"salesforce": {"gap_rate": -0.1}}', "gap_rate"),
    (b'[1, 2]', "JSON object"),
    (b"{", "JSON object"),
])
def test_bad_updates_are_refused_and_change_nothing(body: bytes, words: str) -> None:
    faults = Faults()
    faults.update(b'{"stripe": {"error_rate": 0.5}}')
    with pytest.raises(FaultsError) as caught:
        faults.update(body)
    assert words in str(caught.value)
    assert faults.of("stripe").error_rate == 0.5


def _error(status: int, code: str, message: str, retry_after: float | None) -> web.Response:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    return web.json_response({"code": code, "message": message}, status=status, headers=headers)


async def _client(faults: Faults, applied: list[str]) -> TestClient[web.Request, web.Application]:
    async def write(request: web.Request) -> web.Response:
        applied.append(request.method)
        return web.json_response({"ok": True})

    guarded = guard(faults, "stripe", _error)
    app = web.Application()
    app.router.add_post("/thing", guarded(write))
    app.router.add_get("/thing", guarded(write))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_injected_errors_answer_before_the_handler_runs() -> None:
    faults, applied = Faults(), []
    client = await _client(faults, applied)
    faults.update(b'{"stripe": {"error_rate": 1}}')
    errored = await client.post("/thing")
    faults.update(b'{"stripe": {"error_rate": 0, "burst_429": 1, "retry_after": 2}}')
    throttled = await client.post("/thing")
    await client.close()
    assert errored.status in (500, 502, 503)
    assert (throttled.status, throttled.headers["Retry-After"]) == (429, "2")
    assert applied == []


async def test_error_after_apply_applies_writes_then_answers_500() -> None:
    faults, applied = Faults(), []
    client = await _client(faults, applied)
    faults.update(b'{"stripe": {"error_after_apply_rate": 1}}')
    write = await client.post("/thing")
    body = await write.json()
    read = await client.get("/thing")
    await client.close()
    assert write.status == 500
    assert body["code"] == "server_error"
    assert read.status == 200
    assert applied == ["POST", "GET"]


async def test_a_hang_delays_then_serves_the_request() -> None:
    faults, applied = Faults(), []
    client = await _client(faults, applied)
    faults.update(b'{"stripe": {"timeout_rate": 1, "hang_seconds": 0.05, "latency_ms": 10}}')
    response = await client.post("/thing")
    await client.close()
    assert response.status == 200
    assert applied == ["POST"]
