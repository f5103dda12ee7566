"""Every route of a worker and of the webhooks process, with the credential it needs: refused without
it, and listed, or this fails.

The worker's real aiohttp application (all roles, every view registered, Faust's own routes applied)
and the webhooks process's (app/webhooks.py) are served by aiohttp's test server; requests without the
right credential never reach a handler, so no Kafka or Redis is needed to see each refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from faust.web import Request, Response, View

from concord.app import access, sessions, webhooks
from concord.app.main import build
from concord.bench.common import free_port
from concord.core.settings import Settings

READ = "r" * 24
ADMIN = "a" * 24


def web_app(settings: Settings) -> web.Application:
    concord = build(settings)
    faust_web = concord.app.web
    faust_web.blueprints.apply(faust_web)  # Faust's own routes, as its web server adds them at start
    return faust_web.web_app


async def _no_kafka(platform: str, body: bytes, headers: list[tuple[str, bytes]]) -> dict[str, Any]:
    raise AssertionError("a request reached Kafka")


async def _not_ready() -> webhooks.Readiness:
    return webhooks.Readiness(ready=False, kafka=False, producer_started=False)


def webhooks_app(settings: Settings) -> web.Application:
    return webhooks.create_app(settings, _no_kafka, _not_ready)


APPS = {"worker": web_app, "webhooks": webhooks_app}


def routes(app: web.Application) -> set[str]:
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def unlisted(app: web.Application) -> set[str]:
    return {route for route in routes(app) if access.need_of(route) is None}


def sample(route: str) -> str:
    return route.replace("{platform}", "stripe").replace("{fingerprint}", "fp1").replace("{key}", "001A") \
        .replace("{command_id}", "c1").replace("{name}", "board.js").replace("{opportunity_id}", "006A")


@pytest.fixture
async def client(request: pytest.FixtureRequest) -> AsyncIterator[TestClient[Any, Any]]:
    settings = getattr(request, "param", Settings(read_token=READ, admin_token=ADMIN))
    server = TestServer(web_app(settings), port=settings.webhook_port or None)
    async with TestClient(server) as test_client:
        yield test_client


def test_every_route_is_listed_with_its_credential() -> None:
    app = web_app(Settings())
    assert unlisted(app) == set()
    assert set(access.POLICY) <= routes(app)  # and the policy names no route that does not exist
    lean = webhooks_app(Settings())
    assert unlisted(lean) == set()
    assert routes(lean) == {"/webhooks/{platform}", "/healthz", "/readyz", "/metrics"}


async def test_the_webhooks_process_serves_no_customer_data() -> None:
    async with TestClient(TestServer(webhooks_app(Settings(read_token=READ, admin_token=ADMIN)))) as client:
        for route, need in access.POLICY.items():
            if need in (access.READ, access.ADMIN):
                response = await client.request("POST" if need == access.ADMIN else "GET", sample(route),
                                                headers={"Authorization": f"Bearer {ADMIN}"})
                assert response.status == 404, route
        for path in ("/", "/nothing", "/router/", "/events", "/login"):
            assert (await client.get(path, headers={"Authorization": f"Bearer {ADMIN}"})).status == 404
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 503  # served, and not ready
        assert (await client.get("/metrics")).status == 200


def test_a_new_route_without_an_entry_is_caught() -> None:
    concord = build(Settings())

    @concord.app.page("/api/secrets")
    class Secrets(View):
        async def get(self, request: Request) -> Response:
            return self.json({"everything": "for anyone"})

    concord.app.web.blueprints.apply(concord.app.web)
    assert unlisted(concord.app.web.web_app) == {"/api/secrets"}


async def test_a_route_an_extension_lists_is_served_with_its_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "_added", {})
    concord = build(Settings(read_token=READ))

    @concord.app.page("/counts")
    class Counts(View):
        async def get(self, request: Request) -> Response:
            return self.json({"a": 1})

    concord.app.web.blueprints.apply(concord.app.web)
    async with TestClient(TestServer(concord.app.web.web_app)) as client:
        assert (await client.get("/counts")).status == 404  # not listed: closed
        access.allow("/counts", access.READ)
        assert (await client.get("/counts")).status == 401
        assert (await client.get("/counts", headers={"Authorization": f"Bearer {READ}"})).status == 200
    with pytest.raises(ValueError, match="unknown credential"):
        access.allow("/x", "everyone")


@pytest.mark.parametrize("route", sorted(r for r, need in access.POLICY.items() if need in (access.READ,
                                                                                            access.ADMIN)))
async def test_customer_data_and_actions_need_their_token(client: TestClient[Any, Any], route: str) -> None:
    method = "POST" if access.POLICY[route] == access.ADMIN else "GET"
    url = sample(route)
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": READ},
                    {"Authorization": f"Basic {READ}"}, {"Authorization": "Bearer caf\u00e9\u00ff"},
                    {"Cookie": f"{sessions.COOKIE}=v1.forged.signature"}):
        response = await client.request(method, url, headers=headers, allow_redirects=False)
        if route in access.PAGES and "Authorization" not in headers:
            # A person opening a page without a credential is sent to sign in, and comes back after.
            assert response.status == 303, (url, headers, await response.text())
            assert response.headers["Location"] == f"/login?next={quote(url, safe='')}"
            continue
        assert response.status == 401, (url, headers, await response.text())
        assert (await response.json())["error"] == "unauthorized"
    if access.POLICY[route] == access.ADMIN:
        response = await client.request(method, url, headers={"Authorization": f"Bearer {READ}"})
        assert response.status == 403  # a read token cannot act


@pytest.mark.parametrize("client", [Settings()], indirect=True)
async def test_no_token_configured_means_closed_not_open(client: TestClient[Any, Any]) -> None:
    for route, need in access.POLICY.items():
        if need in (access.READ, access.ADMIN, access.LOGIN):
            method = "POST" if need == access.ADMIN or route == "/logout" else "GET"
            response = await client.request(method, sample(route),
                                            headers={"Authorization": "Bearer anything-at-all-here"})
            assert response.status == 503, route
            assert (await response.json())["error"] == "not_configured"


@pytest.mark.parametrize("path", ["/router/", "/router/customers/001A/", "/table/", "/graph/",
                                  "/assignment/", "/performance/", "/nothing", "/static/../access.py"])
async def test_faust_routes_and_unknown_paths_are_closed(client: TestClient[Any, Any], path: str) -> None:
    response = await client.get(path, headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status == 404


async def test_health_is_open(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200


async def test_metrics_are_open_on_the_internal_listener(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/metrics")).status == 200


@pytest.mark.parametrize("kind", APPS)
async def test_metrics_can_require_the_read_token(kind: str) -> None:
    app = APPS[kind](Settings(read_token=READ, metrics_require_token=True))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers={"Authorization": f"Bearer {READ}"})).status == 200


@pytest.mark.parametrize("kind", APPS)
async def test_the_public_listener_serves_webhooks_and_health_only(kind: str) -> None:
    port = free_port()
    app = APPS[kind](Settings(read_token=READ, admin_token=ADMIN, webhook_port=port))
    async with TestClient(TestServer(app, port=port)) as client:
        assert (await client.get("/healthz")).status == 200
        for path in ("/api/drift", "/api/customers/001A", "/metrics", "/readyz", "/", "/events", "/login",
                     "/static/board.js"):
            response = await client.get(path, headers={"Authorization": f"Bearer {ADMIN}"})
            assert response.status == 404, path
        response = await client.post("/webhooks/stripe", data=b"{}")
        assert response.status != 404  # reaches the ingress, which checks the signature


@pytest.mark.parametrize("kind", APPS)
async def test_with_a_public_listener_webhooks_are_closed_on_the_internal_one(kind: str) -> None:
    internal = TestServer(APPS[kind](Settings(webhook_port=free_port())))  # on another port than the public one
    async with TestClient(internal) as client:
        assert (await client.post("/webhooks/stripe", data=b"{}")).status == 404
        assert (await client.get("/readyz")).status != 404


@pytest.mark.parametrize("body", [b"[1, 2]", b'"accept"', b"{not json", b'{"note": 5}', b'{"note": "x", "evil": 1}',
                                  b'{"by": "x"}'])  # who accepts is who is signed in: no free text
async def test_an_accept_body_that_is_not_the_object_it_should_be_is_a_400(client: TestClient[Any, Any],
                                                                            body: bytes) -> None:
    # Refused before the finding is looked up: no Redis is needed to see it (it was a 500).
    response = await client.post("/api/drift/fp1/accept", data=body,
                                 headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"] == "bad_request"


@pytest.mark.parametrize("query", ["", "?q=", "?q=%20%20", "?q=" + "x" * 201, "?q=cus_1%00x"])
async def test_a_search_for_nothing_too_much_or_control_characters_is_a_400(client: TestClient[Any, Any],
                                                                             query: str) -> None:
    # Refused before the index is asked: no Redis is needed to see it.
    response = await client.get(f"/api/search{query}", headers={"Authorization": f"Bearer {READ}"})
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "bad_request" and ("query" in body["detail"])


@pytest.mark.parametrize("path", ["/search?q=cus_1", "/customers/001A"])
async def test_the_search_page_and_the_customer_view_send_a_person_to_sign_in(client: TestClient[Any, Any],
                                                                               path: str) -> None:
    assert access.POLICY[path.split("?")[0].replace("001A", "{key}")] == access.READ
    response = await client.get(path, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == f"/login?next={quote(path, safe='')}"
    refused = await client.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert refused.status == 401  # a script with a bad token gets a 401, not a page


@pytest.mark.parametrize("client", [Settings()], indirect=True)
@pytest.mark.parametrize("path", ["/search?q=cus_1", "/customers/001A"])
async def test_the_console_pages_are_closed_without_a_read_token(client: TestClient[Any, Any], path: str) -> None:
    response = await client.get(path, allow_redirects=False)
    assert response.status == 503 and (await response.json())["error"] == "not_configured"


@pytest.mark.parametrize("query", ["?q=", "?q=%20%20", "?q=" + "x" * 201, "?q=cus_1%00x"])
async def test_the_search_page_says_what_is_wrong_with_a_query(client: TestClient[Any, Any], query: str) -> None:
    # Refused before the index is asked: no Redis is needed to see it.
    response = await client.get(f"/search{query}", headers={"Authorization": f"Bearer {READ}"})
    assert response.status == 400 and response.content_type == "text/html"
    text = await response.text()
    assert 'id="search-error"' in text and ("query" in text or "Nothing to search for" in text)
