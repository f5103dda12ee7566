"""Who a request is (app/access.py): users of the users file and the two tokens, by bearer token or by a
session cookie; a viewer cannot act; a session acts only with its CSRF token; the handler knows the name."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from faust.web import Request, Response, View

from concord.app import access, users
from concord.app.main import build
from concord.app.sessions import COOKIE, CSRF_FIELD, CSRF_HEADER, Sessions
from concord.core.settings import Settings
from tests.unit.app.test_access import ADMIN, READ, sample

ALICE = "alice.alice-secret-alice-secret-alice-secret"  # operator
BOB = "bob.bob-secret-bob-secret-bob-secret-bob"  # viewer
SECRET = "s" * 32


def write_users(path: Path, **roles: str) -> None:
    tokens = {"alice": ALICE, "bob": BOB}
    path.write_text(json.dumps({"users": [
        {"name": name, "role": role, "token_hash": users.hash_token(tokens[name], n=16, r=1, p=1)}
        for name, role in roles.items()]}))


def app_with_probes(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> web.Application:
    """The worker's application, with a read route and an action that answer who called them."""
    monkeypatch.setattr(access, "_added", {})
    concord = build(settings)

    def who(request: Request) -> dict[str, str]:
        found = access.identity(request)
        assert found is not None
        return {"name": found.name, "role": found.role, "via": found.via}

    @concord.app.page("/probe/look")
    class Look(View):
        async def get(self, request: Request) -> Response:
            return self.json(who(request))

    @concord.app.page("/probe/act")
    class Act(View):
        async def post(self, request: Request) -> Response:
            form = await request.post()  # the form the middleware read for its CSRF field
            return self.json({**who(request), "note": str(form.get("note", ""))})

    access.allow("/probe/look", access.READ)
    access.allow("/probe/act", access.ADMIN)
    concord.app.web.blueprints.apply(concord.app.web)
    return concord.app.web.web_app


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    write_users(path, alice="operator", bob="viewer")
    return path


@pytest.fixture
async def client(users_file: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(read_token=READ, admin_token=ADMIN, users_file=str(users_file))
    async with TestClient(TestServer(app_with_probes(settings, monkeypatch)),
                          cookie_jar=aiohttp.DummyCookieJar()) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_in(client: TestClient[Any, Any], token: str) -> str:
    response = await client.post("/login", data={"token": token}, allow_redirects=False)
    assert response.status == 303, await response.text()
    return str(response.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1])


async def test_bearer_tokens_name_who_calls(client: TestClient[Any, Any]) -> None:
    for token, expected in ((ALICE, ("alice", "operator")), (BOB, ("bob", "viewer")),
                            (READ, ("read-token", "viewer")), (ADMIN, ("admin-token", "operator"))):
        response = await client.get("/probe/look", headers=bearer(token))
        assert response.status == 200
        assert await response.json() == {"name": expected[0], "role": expected[1], "via": "bearer"}
        # Pages and their files take a user's token as a bearer too (scripts, monitors).
        assert (await client.get("/static/board.js", headers=bearer(token))).status == 200
    acted = await client.post("/probe/act", headers=bearer(ALICE), data={"note": "n"})
    assert acted.status == 200 and (await acted.json())["name"] == "alice"  # a bearer needs no CSRF token
    refused = await client.post("/probe/act", headers=bearer(BOB))
    assert refused.status == 403 and (await refused.json())["error"] == "forbidden"
    assert "bob is a viewer" in (await refused.json())["detail"]
    for wrong in ("alice.wrong-secret", "carol.whatever-secret", "alice", BOB + "x"):
        assert (await client.get("/probe/look", headers=bearer(wrong))).status == 401


async def test_a_session_names_its_user_and_acts_only_with_its_csrf_token(client: TestClient[Any, Any]) -> None:
    cookie = await sign_in(client, ALICE)
    jar = {"Cookie": f"{COOKIE}={cookie}"}
    looked = await client.get("/probe/look", headers=jar)
    assert await looked.json() == {"name": "alice", "role": "operator", "via": "session"}

    refused = await client.post("/probe/act", headers=jar, data={"note": "n"})
    assert refused.status == 403 and (await refused.json())["error"] == "csrf"
    assert CSRF_HEADER in (await refused.json())["detail"]
    wrong = await client.post("/probe/act", headers=jar, data={"note": "n", CSRF_FIELD: "x" * 43})
    assert wrong.status == 403 and (await wrong.json())["error"] == "csrf"
    other_session = Sessions(Settings(read_token=READ)).csrf_token(await sign_in(client, BOB))
    assert (await client.post("/probe/act", headers={**jar, CSRF_HEADER: other_session})).status == 403

    csrf = Sessions(Settings(read_token=READ)).csrf_token(cookie)
    by_field = await client.post("/probe/act", headers=jar, data={"note": "checked", CSRF_FIELD: csrf})
    assert by_field.status == 200
    assert await by_field.json() == {"name": "alice", "role": "operator", "via": "session", "note": "checked"}
    by_header = await client.post("/probe/act", headers={**jar, CSRF_HEADER: csrf})
    assert by_header.status == 200


async def test_a_viewer_session_cannot_act_even_with_its_csrf_token(client: TestClient[Any, Any]) -> None:
    for token in (BOB, READ):
        cookie = await sign_in(client, token)
        csrf = Sessions(Settings(read_token=READ)).csrf_token(cookie)
        response = await client.post("/probe/act", headers={"Cookie": f"{COOKIE}={cookie}", CSRF_HEADER: csrf})
        assert response.status == 403 and (await response.json())["error"] == "forbidden"


async def test_removing_or_demoting_a_user_applies_to_their_session_at_once(client: TestClient[Any, Any],
                                                                             users_file: Path) -> None:
    cookie = await sign_in(client, ALICE)
    jar = {"Cookie": f"{COOKIE}={cookie}", CSRF_HEADER: Sessions(Settings(read_token=READ)).csrf_token(cookie)}
    assert (await client.post("/probe/act", headers=jar)).status == 200
    write_users(users_file, alice="viewer", bob="viewer")
    assert (await client.post("/probe/act", headers=jar)).status == 403
    assert (await client.post("/probe/act", headers=bearer(ALICE))).status == 403
    write_users(users_file, bob="viewer")
    assert (await client.get("/probe/look", headers=jar)).status == 401
    assert (await client.get("/probe/look", headers=bearer(ALICE))).status == 401


async def test_a_users_file_alone_opens_the_console_to_its_users(users_file: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(users_file=str(users_file), session_secret=SECRET)
    async with TestClient(TestServer(app_with_probes(settings, monkeypatch)),
                          cookie_jar=aiohttp.DummyCookieJar()) as client:
        for route, need in access.POLICY.items():
            if need in (access.READ, access.ADMIN):  # refused without credentials, never 503 nor open
                response = await client.request("POST" if need == access.ADMIN else "GET", sample(route),
                                                allow_redirects=False)
                assert response.status == (303 if route in access.PAGES else 401), route
        assert (await client.get("/probe/look", headers=bearer(READ))).status == 401  # no read token configured
        cookie = await sign_in(client, BOB)
        assert (await client.get("/probe/look", headers={"Cookie": f"{COOKIE}={cookie}"})).status == 200
    without_secret = Settings(users_file=str(users_file))
    async with TestClient(TestServer(app_with_probes(without_secret, monkeypatch))) as client:
        response = await client.get("/login")
        assert response.status == 503 and "CONCORD_SESSION_SECRET" in (await response.json())["detail"]


async def test_every_action_refuses_a_viewer_and_a_session_without_its_csrf_token(
        client: TestClient[Any, Any]) -> None:
    cookie = await sign_in(client, ALICE)
    viewer_cookie = await sign_in(client, BOB)
    viewer_csrf = Sessions(Settings(read_token=READ)).csrf_token(viewer_cookie)
    actions = [route for route, need in access.POLICY.items() if need == access.ADMIN]
    assert {"/api/drift/{fingerprint}/accept", "/api/drift/{fingerprint}/snooze",
            "/api/drift/{fingerprint}/retry"} <= set(actions)
    for route in actions:
        url = sample(route)
        for headers in (bearer(BOB), bearer(READ), {"Cookie": f"{COOKIE}={viewer_cookie}", CSRF_HEADER: viewer_csrf}):
            response = await client.post(url, headers=headers, json={"note": "n"})
            assert response.status == 403 and (await response.json())["error"] == "forbidden", (route, headers)
        for form in ({"note": "n"}, {"note": "n", CSRF_FIELD: viewer_csrf}):
            response = await client.post(url, headers={"Cookie": f"{COOKIE}={cookie}"}, data=form)
            assert response.status == 403 and (await response.json())["error"] == "csrf", route
        assert (await client.post(url)).status == 401
