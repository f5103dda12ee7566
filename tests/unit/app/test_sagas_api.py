"""`/api/v1/sagas` (app/sagas_api.py) on the worker's real aiohttp application, with its saga index and its
canonical topic stood in for (no Redis, no Kafka): what a viewer reads, what an operator's resume sends and under
which name, each refusal (no credential, a viewer, an unknown saga, one that waits for nobody, a bad state, a bad
body, Redis down), and the console's form sent back to the page it was posted from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError

from concord.agents.context import Concord
from concord.app import contract
from concord.app.main import build
from concord.app.schemas import ApiError, SagaList, SagaResumed
from concord.app.sessions import COOKIE, CSRF_FIELD, Sessions
from concord.core import messages
from concord.core.settings import Settings
from concord.drift import saga as dsaga
from concord.drift.saga import SagaView
from tests.unit.app.test_access import ADMIN, READ
from tests.unit.app.test_sagas import saga

SAGAS = [saga("006P"), saga("006R", dsaga.RUNNING, step=dsaga.SUBSCRIPTION, customer_key="001B"),
         saga("006X", dsaga.COMPENSATED, reason_code=dsaga.DEAL_REOPENED)]


class FakeIndex:
    """The saga index's reads over `SAGAS`; `down`: every read fails as Redis unreachable does."""

    def __init__(self) -> None:
        self.down = False
        self.reads = 0

    def _check(self) -> None:
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def get(self, opportunity_id: str) -> SagaView | None:
        self._check()
        return next((s for s in SAGAS if s.opportunity_id == opportunity_id), None)

    async def all(self) -> list[SagaView]:
        self._check()
        self.reads += 1
        return list(SAGAS)


class Worker:
    def __init__(self, concord: Concord, index: FakeIndex) -> None:
        self.concord, self.index = concord, index
        self.sent: list[tuple[bytes, bytes]] = []


@pytest.fixture
async def worker(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Worker, TestClient[Any, Any]]]:
    index = FakeIndex()
    monkeypatch.setattr(Concord, "saga_index", property(lambda self: index))
    concord = build(Settings(read_token=READ, admin_token=ADMIN))
    worker = Worker(concord, index)

    async def send(key: bytes, value: bytes) -> None:
        worker.sent.append((key, value))

    monkeypatch.setattr(concord.topics[concord.names.canonical], "send", send)
    concord.app.web.blueprints.apply(concord.app.web)
    async with TestClient(TestServer(concord.app.web.web_app)) as client:
        yield worker, client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_viewer_lists_the_sagas_with_the_counts_by_state(worker: tuple[Worker, TestClient[Any, Any]]) -> None:
    w, client = worker
    response = await client.get("/api/v1/sagas?state=paused&customer=001A&limit=5", headers=bearer(READ))
    assert response.status == 200, await response.text()
    listed = msgspec.json.decode(await response.read(), type=SagaList)
    assert [s.opportunity_id for s in listed.sagas] == ["006P"]
    assert listed.sagas[0].fix.startswith("set account 001A's tax id")
    assert listed.counts == {"running": 1, "completed": 0, "paused": 1, "compensating": 0, "compensated": 1,
                             "failed": 0}
    assert w.index.reads == 1  # the listing and its counts from one read
    every = msgspec.json.decode(await (await client.get("/api/v1/sagas", headers=bearer(READ))).read(), type=SagaList)
    assert len(every.sagas) == 3 and w.index.reads == 2


@pytest.mark.parametrize(("query", "words"), [("state=stuck", "state='stuck' is not a saga state: choose one of "
                                                "running, completed, paused"), ("limit=many", "limit='many'")])
async def test_a_bad_filter_is_a_400_naming_the_value_and_what_to_send(worker: tuple[Worker, TestClient[Any, Any]],
                                                                      query: str, words: str) -> None:
    w, client = worker
    response = await client.get(f"/api/v1/sagas?{query}", headers=bearer(READ))
    assert response.status == 400
    error = msgspec.json.decode(await response.read(), type=ApiError)
    assert error.error == "bad_request" and words in error.detail
    assert w.index.reads == 0  # refused before the index is read


async def test_one_saga_or_a_404_that_says_where_to_look(worker: tuple[Worker, TestClient[Any, Any]]) -> None:
    _, client = worker
    response = await client.get("/api/v1/sagas/006P", headers=bearer(READ))
    assert response.status == 200
    assert msgspec.json.decode(await response.read(), type=SagaView) == SAGAS[0]
    missing = await client.get("/api/v1/sagas/006NOPE", headers=bearer(READ))
    assert missing.status == 404
    error = msgspec.json.decode(await missing.read(), type=ApiError)
    assert error.error == "not_found" and "no saga for opportunity '006NOPE'" in error.detail


async def test_an_operator_resumes_a_paused_saga_keyed_by_its_customer(
        worker: tuple[Worker, TestClient[Any, Any]]) -> None:
    w, client = worker
    response = await client.post("/api/v1/sagas/006P/resume", headers=bearer(ADMIN), json={"note": "tax id set"})
    assert response.status == 202, await response.text()
    answer = msgspec.json.decode(await response.read(), type=SagaResumed)
    sent = messages.ResumeSaga(customer_key="001A", opportunity_id="006P", by="admin-token", note="tax id set")
    assert answer == SagaResumed(status="resume_requested", sent=sent, state="paused", step="validate")
    assert w.sent == [(b"001A", messages.encode(sent))]
    assert b'"kind":"saga_resume"' in w.sent[0][1]  # tagged: the state agent's decoder tells it apart
    compensated = await client.post("/api/v1/sagas/006X/resume", headers=bearer(ADMIN))  # no body: no note
    assert compensated.status == 202 and len(w.sent) == 2


async def test_a_resume_is_refused_without_an_operator_a_saga_or_one_waiting(
        worker: tuple[Worker, TestClient[Any, Any]]) -> None:
    w, client = worker
    assert (await client.post("/api/v1/sagas/006P/resume")).status == 401
    viewer = await client.post("/api/v1/sagas/006P/resume", headers=bearer(READ))
    assert viewer.status == 403 and (await viewer.json())["error"] == "forbidden"
    running = await client.post("/api/v1/sagas/006R/resume", headers=bearer(ADMIN))
    assert running.status == 409
    error = msgspec.json.decode(await running.read(), type=ApiError)
    assert error.error == "not_resumable" and "006R is running (step subscription)" in error.detail
    assert (await client.post("/api/v1/sagas/006NOPE/resume", headers=bearer(ADMIN))).status == 404
    for body in (b'{"note": 5}', b'{"by": "mallory"}', b"[1]", b'{"note": "' + b"x" * 2001 + b'"}'):
        bad = await client.post("/api/v1/sagas/006P/resume", data=body,
                                headers={**bearer(ADMIN), "Content-Type": "application/json"})
        assert bad.status == 400 and (await bad.json())["error"] == "bad_request", body
    assert w.sent == []


async def test_redis_unreachable_is_a_503_that_says_so(worker: tuple[Worker, TestClient[Any, Any]]) -> None:
    w, client = worker
    w.index.down = True
    for method, path, token in (("GET", "/api/v1/sagas", READ), ("GET", "/api/v1/sagas/006P", READ),
                                ("POST", "/api/v1/sagas/006P/resume", ADMIN)):
        response = await client.request(method, path, headers=bearer(token))
        assert response.status == 503, path
        error = msgspec.json.decode(await response.read(), type=ApiError)
        assert error.error == "redis_unavailable" and "the saga index cannot be read now" in error.detail
    assert w.sent == []


async def test_the_console_form_resumes_with_the_session_and_goes_back_to_its_page(
        worker: tuple[Worker, TestClient[Any, Any]]) -> None:
    w, client = worker
    signed_in = await client.post("/login", data={"token": ADMIN, "next": "/sagas"}, allow_redirects=False)
    cookie = signed_in.cookies[COOKIE].value
    csrf = Sessions(Settings(read_token=READ)).csrf_token(cookie)
    headers = {"Cookie": f"{COOKIE}={cookie}", "Referer": f"http://{client.host}:{client.port}/sagas?state=paused"}
    refused = await client.post("/api/v1/sagas/006P/resume", data={"note": "fixed"}, headers=headers,
                                allow_redirects=False)
    assert refused.status == 403 and (await refused.json())["error"] == "csrf"
    response = await client.post("/api/v1/sagas/006P/resume", data={"note": "fixed", CSRF_FIELD: csrf},
                                 headers=headers, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/sagas?state=paused"
    assert msgspec.json.decode(w.sent[0][1], type=messages.ResumeSaga).note == "fixed"


def test_the_saga_routes_are_versioned_only_and_documented() -> None:
    doc = contract.document()
    listing = doc["paths"]["/api/v1/sagas"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"state", "customer", "limit"}
    state = next(p for p in listing["parameters"] if p["name"] == "state")
    assert sorted(state["schema"]["enum"]) == sorted(dsaga.STATES)
    resume = doc["paths"]["/api/v1/sagas/{opportunity_id}/resume"]["post"]
    assert resume["security"] == [{"bearer": []}]
    assert {"202", "400", "401", "403", "404", "409", "503"} <= set(resume["responses"])
    assert resume["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ResumeBody"}
    assert "/api/v1/sagas/{opportunity_id}" in doc["paths"]
    assert not any(r.alias for r in contract.ROUTES if r.path.startswith("/sagas"))


async def test_the_sagas_page_lists_the_waiting_first_and_offers_an_operator_the_resume(
        worker: tuple[Worker, TestClient[Any, Any]]) -> None:
    w, client = worker
    assert (await client.get("/sagas", allow_redirects=False)).status == 303  # a person: sign in first
    viewer = await client.get("/sagas", headers=bearer(READ))
    assert viewer.status == 200 and viewer.content_type == "text/html"
    assert "Content-Security-Policy" in viewer.headers
    html = await viewer.text()
    assert html.index('id="saga-006P"') < html.index('id="saga-006X"') and "/resume" not in html
    assert w.index.reads == 1  # the page and its counts from one read of the index
    operator = await (await client.get("/sagas?state=paused&customer=001A", headers=bearer(ADMIN))).text()
    assert 'action="/api/v1/sagas/006P/resume"' in operator and "Resume as admin-token" in operator
    assert 'id="saga-006X"' not in operator  # only the paused one of 001A
    w.index.down = True
    down = await client.get("/sagas", headers=bearer(READ))
    assert down.status == 503 and "the sagas are read from the saga index there" in await down.text()
