"""Session cookies (app/sessions.py) and signing in at /login: a cookie names who signed in, acts only with
its CSRF token (tests/unit/app/test_identities.py), and dies with the read token it was made with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from concord.app import sessions
from concord.app.console.views import safe_next
from concord.app.sessions import COOKIE, Sessions
from concord.core.settings import Settings
from tests.unit.app.test_access import ADMIN, READ, web_app

NOW = 1_700_000_000.0


def test_a_session_round_trips_and_expires() -> None:
    signer = Sessions(Settings(read_token=READ, session_max_age_seconds=600))
    value = signer.issue("alice", "operator", NOW)
    session = signer.verify(value, NOW + 1)
    assert session is not None
    assert (session.name, session.role, session.issued, session.expires) == ("alice", "operator", int(NOW),
                                                                            int(NOW) + 600)
    assert signer.verify(value, NOW + 600) is None  # expired, whatever the browser kept
    assert signer.verify(value, NOW - 5) is None  # not yet valid: a clock far behind is not trusted either


@pytest.mark.parametrize("tamper", [
    lambda v: v.replace("v1.", "v2.", 1),
    lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),
    lambda v: "v1." + sessions._b64(msgspec.json.encode({"role": "operator", "issued": 0, "expires": 2**40,
                                                         "name": "admin-token"})) + "." + v.rsplit(".", 1)[1],
    lambda v: "",
    lambda v: "garbage",
    lambda v: "v1..",
])
def test_a_forged_or_altered_cookie_is_no_session(tamper: Any) -> None:
    signer = Sessions(Settings(read_token=READ))
    assert signer.verify(tamper(signer.issue("read-token", "viewer", NOW)), NOW + 1) is None


def test_a_cookie_from_before_sessions_had_names_is_no_session() -> None:
    signer = Sessions(Settings(read_token=READ))
    body = sessions._b64(msgspec.json.encode({"role": "read", "issued": int(NOW), "expires": int(NOW) + 60}))
    assert signer.verify(f"v1.{body}.{signer._sign(body)}", NOW + 1) is None


def test_changing_the_read_token_or_the_secret_ends_every_session() -> None:
    value = Sessions(Settings(read_token=READ)).issue("read-token", "viewer", NOW)
    assert Sessions(Settings(read_token=READ)).verify(value, NOW) is not None  # every worker derives the same key
    assert Sessions(Settings(read_token="n" * 24)).verify(value, NOW) is None
    with_secret = Sessions(Settings(read_token=READ, session_secret="s" * 32))
    assert with_secret.verify(value, NOW) is None
    assert Sessions(Settings(read_token="n" * 24, session_secret="s" * 32)).verify(
        with_secret.issue("read-token", "viewer", NOW), NOW) is None  # the read token counts even with a secret


def test_without_a_read_token_there_are_no_sessions() -> None:
    signer = Sessions(Settings(admin_token=ADMIN))
    assert signer.verify(Sessions(Settings(read_token=READ)).issue("read-token", "viewer", NOW), NOW) is None
    with pytest.raises(RuntimeError, match="CONCORD_READ_TOKEN"):
        signer.issue("read-token", "viewer", NOW)


@pytest.mark.parametrize(("given", "expected"), [
    ("/?status=resolved&rule=D01", "/?status=resolved&rule=D01"), ("", "/"), (None, "/"),
    ("//evil.example/", "/"), ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("/x\r\nSet-Cookie: a", "/"),
])
def test_after_signing_in_a_person_goes_back_to_a_page_of_this_site_only(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


@pytest.fixture
async def client(request: pytest.FixtureRequest) -> AsyncIterator[TestClient[Any, Any]]:
    settings = getattr(request, "param", Settings(read_token=READ, admin_token=ADMIN))
    # No cookie jar: each request carries exactly the cookie the test gives it.
    async with TestClient(TestServer(web_app(settings)), cookie_jar=aiohttp.DummyCookieJar()) as test_client:
        yield test_client


def _cookie(response: Any) -> str:
    return response.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]


async def test_a_cookie_reads_and_acts_only_with_its_csrf_token(client: TestClient[Any, Any]) -> None:
    page = await client.get("/login?next=%2F%3Fstatus%3Dresolved")
    assert page.status == 200
    text = await page.text()
    assert '<form method="post" action="/login">' in text and 'value="/?status=resolved"' in text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")

    refused = await client.post("/login", data={"token": "wrong-token-wrong-token", "next": "/"},
                                allow_redirects=False)
    assert refused.status == 401 and "refused" in await refused.text() and "Set-Cookie" not in refused.headers

    signed_in = await client.post("/login", data={"token": READ, "next": "/?status=resolved"}, allow_redirects=False)
    assert signed_in.status == 303 and signed_in.headers["Location"] == "/?status=resolved"
    attributes = signed_in.headers["Set-Cookie"].lower()
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes
    assert "max-age=28800" in attributes and "secure" not in attributes
    cookie = {"Cookie": f"{COOKIE}={_cookie(signed_in)}"}

    assert (await client.get("/static/board.js", headers=cookie)).status == 200  # the read credential
    assert (await client.get("/static/board.js")).status == 401
    assert (await client.get("/api/drift/fp1", headers={"Cookie": f"{COOKIE}=x{_cookie(signed_in)}"})).status == 401
    # Signed in with the admin token: a browser sends cookies by itself, so acting needs the CSRF token too.
    as_admin = await client.post("/login", data={"token": ADMIN}, allow_redirects=False)
    assert as_admin.status == 303 and as_admin.headers["Location"] == "/"
    acting = await client.post("/api/drift/fp1/accept", headers={"Cookie": f"{COOKIE}={_cookie(as_admin)}"})
    assert acting.status == 403 and (await acting.json())["error"] == "csrf"
    as_viewer = await client.post("/api/drift/fp1/accept", headers={
        "Cookie": cookie["Cookie"], "X-CSRF-Token": Sessions(Settings(read_token=READ)).csrf_token(_cookie(signed_in))})
    assert as_viewer.status == 403 and (await as_viewer.json())["error"] == "forbidden"  # the read token's session

    out = await client.post("/logout", headers=cookie, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert f"{COOKIE}=\"\"" in out.headers["Set-Cookie"] or f"{COOKIE}=;" in out.headers["Set-Cookie"]


@pytest.mark.parametrize("client", [Settings(read_token=READ, session_cookie_secure=True,
                                             session_max_age_seconds=120)], indirect=True)
async def test_the_cookie_can_be_https_only(client: TestClient[Any, Any]) -> None:
    signed_in = await client.post("/login", data={"token": READ}, allow_redirects=False)
    attributes = signed_in.headers["Set-Cookie"].lower()
    assert "secure" in attributes and "max-age=120" in attributes


async def test_a_static_file_is_served_by_name_only(client: TestClient[Any, Any]) -> None:
    auth = {"Authorization": f"Bearer {READ}"}
    css = await client.get("/static/console.css", headers=auth)
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    script = await client.get("/static/board.js", headers=auth)
    assert script.status == 200 and "EventSource" in await script.text()
    assert (await client.get("/static/nothing.js", headers=auth)).status == 404
