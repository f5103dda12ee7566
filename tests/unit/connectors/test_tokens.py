"""Token flows (connectors/tokens.py): the exact requests, caching, renewal, single flight, rotation, errors."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from concord.connectors import registry, tokens
from concord.connectors.base import ConnectorError, ErrorKind
from concord.connectors.http import HttpClient
from concord.core import metrics
from concord.core.settings import Settings, SettingsError, current_secret, load

NOW = 1_765_000_000.0
SF_ANSWER = {"access_token": "00Dorg!first", "instance_url": "https://acme.my.salesforce.com",
             "id": "https://login.salesforce.com/id/00D5g000000ORGID/0055g000000USRID", "token_type": "Bearer",
             "issued_at": "1765000000000", "signature": "c2ln", "scope": "api"}


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (rsa.generate_private_key(public_exponent=65537, key_size=2048),
            rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _part(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _verify(jwt: str, key: rsa.RSAPrivateKey, scheme: padding.AsymmetricPadding) -> tuple[dict[str, Any], dict[str,
                                                                                                             Any]]:
    """(header, claims) once the signature verifies with the public half of `key` (InvalidSignature else)."""
    head, body, signature = jwt.split(".")
    key.public_key().verify(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
                            f"{head}.{body}".encode(), scheme, hashes.SHA256())
    return _part(head), _part(body)


PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


class Poster:
    """A token endpoint in memory: records each request, answers from `answers` in turn (the last repeats)."""

    def __init__(self, *answers: tuple[int, Any], delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []
        self.delay = delay

    async def __call__(self, url: str, form: list[tuple[str, str]]) -> tuple[int, bytes]:
        self.calls.append((url, form))
        if self.delay:
            await asyncio.sleep(self.delay)
        status, body = self.answers[min(len(self.calls), len(self.answers)) - 1]
        return status, body if isinstance(body, bytes) else msgspec.json.encode(body)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _jwt_grant(key: rsa.RSAPrivateKey, session: float = 7200.0) -> tokens.SalesforceJwtBearer:
    return tokens.SalesforceJwtBearer(client_id="3MVG9consumer", username="integration@acme.com",
                                      login_url="https://login.salesforce.com", private_key=lambda: _pem(key),
                                      session_seconds=session)


def _sf_settings(key: rsa.RSAPrivateKey, **more: Any) -> Settings:
    fields: dict[str, Any] = {"salesforce_auth_flow": "jwt_bearer", "salesforce_client_id": "3MVG9consumer",
                              "salesforce_username": "integration@acme.com", "salesforce_private_key": _pem(key)}
    return Settings(**{**fields, **more})


# ---------------------------------------------------------------- the requests


def test_salesforce_jwt_bearer_request_is_a_signed_rs256_assertion(keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    grant = _jwt_grant(keys[0])
    form = grant.request(NOW)
    assert grant.url == "https://login.salesforce.com/services/oauth2/token"
    assert [name for name, _ in form] == ["grant_type", "assertion"]
    assert dict(form)["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header, claims = _verify(dict(form)["assertion"], keys[0], padding.PKCS1v15())
    assert header == {"alg": "RS256"}
    assert claims == {"iss": "3MVG9consumer", "sub": "integration@acme.com", "aud": "https://login.salesforce.com",
                      "exp": int(NOW) + 180}
    with pytest.raises(InvalidSignature):
        _verify(dict(form)["assertion"], keys[1], padding.PKCS1v15())


def test_salesforce_client_credentials_request_sends_the_pair_to_the_my_domain() -> None:
    grant = tokens.SalesforceClientCredentials(client_id="3MVG9consumer",
                                               client_secret=lambda: "s3cret-consumer-secret",
                                               login_url="https://acme.my.salesforce.com/", session_seconds=7200)
    assert grant.url == "https://acme.my.salesforce.com/services/oauth2/token"
    assert grant.request(NOW) == [("grant_type", "client_credentials"), ("client_id", "3MVG9consumer"),
                                  ("client_secret", "s3cret-consumer-secret")]


def test_netsuite_client_credentials_request_is_a_ps256_client_assertion(keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    settings = Settings(netsuite_url="https://1234567.suitetalk.api.netsuite.com",
                        netsuite_auth_flow="client_credentials", netsuite_client_id="ns-client-id",
                        netsuite_certificate_id="cert-kid-1",
                        netsuite_private_key=_pem(keys[0]), netsuite_scopes="rest_webservices,restlets")
    grant = tokens.netsuite_grant(settings)
    assert grant is not None
    url = "https://1234567.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
    assert grant.url == url
    form = dict(grant.request(NOW))
    assert list(form) == ["grant_type", "client_assertion_type", "client_assertion"]
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    header, claims = _verify(form["client_assertion"], keys[0], PSS)
    assert header == {"typ": "JWT", "alg": "PS256", "kid": "cert-kid-1"}
    assert claims == {"iss": "ns-client-id", "scope": ["rest_webservices", "restlets"], "aud": url,
                      "iat": int(NOW), "exp": int(NOW) + 300}


def test_answers_become_tokens_with_their_lifetime_instance_and_org() -> None:
    grant = _jwt_grant(rsa.generate_private_key(public_exponent=65537, key_size=1024), session=7200)
    token = grant.token(200, msgspec.json.encode(SF_ANSWER), NOW)
    assert (token.value, token.expires_at, token.instance_url, token.org_id) == (
        "00Dorg!first", NOW + 7200, "https://acme.my.salesforce.com", "00D5g000000ORGID")
    netsuite = tokens.NetSuiteClientCredentials(client_id="c", certificate_id="k", scopes=("rest_webservices",),
                                                token_url="https://x/t", private_key=lambda: "")
    answer = netsuite.token(200, b'{"access_token":"eyJns","expires_in":"3600","token_type":"Bearer"}', NOW)
    assert (answer.value, answer.expires_at) == ("eyJns", NOW + 3600)


# ---------------------------------------------------------------- cache, margin, single flight


async def test_token_is_cached_and_renewed_before_expiry(keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    clock = Clock()
    post = Poster((200, SF_ANSWER), (200, {**SF_ANSWER, "access_token": "00Dorg!second"}))
    source = tokens.TokenSource(_jwt_grant(keys[0], session=100), margin=10, post=post, clock=clock)
    assert await source.token() == "00Dorg!first"
    clock.now = NOW + 89
    assert await source.token() == "00Dorg!first" and len(post.calls) == 1
    clock.now = NOW + 90  # within the margin: renewed
    assert await source.token() == "00Dorg!second" and len(post.calls) == 2


def test_the_margin_is_at_most_half_the_lifetime() -> None:
    token = tokens.Token(value="t", obtained_at=NOW, expires_at=NOW + 4)
    assert not tokens.due(token, NOW + 1.9, margin=300)
    assert tokens.due(token, NOW + 2, margin=300)


async def test_many_concurrent_callers_make_one_token_request(keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    post = Poster((200, SF_ANSWER), (200, {**SF_ANSWER, "access_token": "00Dorg!second"}), delay=0.01)
    source = tokens.TokenSource(_jwt_grant(keys[0]), margin=10, post=post, clock=Clock())
    assert set(await asyncio.gather(*(source.token() for _ in range(50)))) == {"00Dorg!first"}
    assert len(post.calls) == 1
    # Fifty lanes refused the same token at once: one renewal, and all of them get its token.
    assert set(await asyncio.gather(*(source.refresh("00Dorg!first") for _ in range(50)))) == {"00Dorg!second"}
    assert len(post.calls) == 2


async def test_a_rotated_key_file_is_read_at_the_next_renewal(tmp_path: Path,
                                                             keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    key_file = tmp_path / "sf.pem"
    key_file.write_text(_pem(keys[0]))
    env = {"CONCORD_SALESFORCE_AUTH_FLOW": "jwt_bearer", "CONCORD_SALESFORCE_CLIENT_ID": "3MVG9consumer",
           "CONCORD_SALESFORCE_USERNAME": "integration@acme.com", "CONCORD_SALESFORCE_PRIVATE_KEY_FILE": str(key_file)}
    grant = tokens.salesforce_grant(load(env), environ=env)
    assert grant is not None
    post = Poster((200, SF_ANSWER), (200, {**SF_ANSWER, "access_token": "00Dorg!second"}))
    source = tokens.TokenSource(grant, margin=10, post=post, clock=Clock())
    await source.token()
    key_file.write_text(_pem(keys[1]))  # rotated: no restart
    await source.refresh()
    first, second = (dict(form)["assertion"] for _, form in post.calls)
    _verify(first, keys[0], padding.PKCS1v15())
    _verify(second, keys[1], padding.PKCS1v15())


# ---------------------------------------------------------------- errors


async def test_a_refusal_is_an_auth_error_with_the_platform_words_and_no_secret(
        keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    refused = (400, {"error": "invalid_grant", "error_description": "user hasn't approved this consumer"})
    post = Poster(refused)
    source = tokens.TokenSource(_jwt_grant(keys[0]), margin=10, post=post, clock=Clock())
    with pytest.raises(ConnectorError) as caught:
        await source.token()
    assert caught.value.kind is ErrorKind.AUTH
    assert "invalid_grant: user hasn't approved this consumer" in str(caught.value)
    assertion = dict(post.calls[0][1])["assertion"]
    assert assertion not in str(caught.value) and "PRIVATE KEY" not in str(caught.value)
    secret = "s3cret-consumer-secret"
    client = tokens.SalesforceClientCredentials(client_id="3MVG9consumer", client_secret=lambda: secret,
                                                login_url="https://acme.my.salesforce.com", session_seconds=7200)
    failing = tokens.TokenSource(client, margin=10, post=Poster((401, {"error": "invalid_client", "error_description":
                                                                       "invalid client credentials"})), clock=Clock())
    with pytest.raises(ConnectorError) as caught:
        await failing.token()
    assert "invalid_client: invalid client credentials" in str(caught.value) and secret not in str(caught.value)


async def test_an_unavailable_token_endpoint_is_transient(keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    source = tokens.TokenSource(_jwt_grant(keys[0]), margin=10, post=Poster((503, b"<html>down</html>")),
                                clock=Clock())
    with pytest.raises(ConnectorError) as caught:
        await source.token()
    assert caught.value.kind is ErrorKind.TRANSIENT and caught.value.status == 503


def test_an_unreadable_private_key_names_the_variable_not_the_value() -> None:
    settings = Settings(salesforce_auth_flow="jwt_bearer", salesforce_client_id="c", salesforce_username="u",
                        salesforce_private_key="not-a-key-but-a-long-secret-value")
    grant = tokens.salesforce_grant(settings)
    assert grant is not None
    with pytest.raises(SettingsError, match="CONCORD_SALESFORCE_PRIVATE_KEY is not a PEM RSA private key") as caught:
        grant.request(NOW)
    assert "not-a-key-but" not in str(caught.value)


@pytest.mark.parametrize(("settings", "message"), [
    (dict(salesforce_auth_flow="jwt_bearer", salesforce_client_id="c"),
     "CONCORD_SALESFORCE_AUTH_FLOW=jwt_bearer needs CONCORD_SALESFORCE_USERNAME, CONCORD_SALESFORCE_PRIVATE_KEY"),
    (dict(salesforce_auth_flow="client_credentials", salesforce_client_id="c",
          salesforce_client_secret="a-consumer-secret-0001"),
     "served at the org's My Domain only"),
    (dict(salesforce_auth_flow="client_credentials", salesforce_client_id="c", salesforce_access_token="00D!static-tok",
          salesforce_client_secret="a-consumer-secret-0001"),
     "CONCORD_SALESFORCE_ACCESS_TOKEN is set but CONCORD_SALESFORCE_AUTH_FLOW=client_credentials"),
    (dict(netsuite_auth_flow="client_credentials", netsuite_client_id="c"),
     "needs CONCORD_NETSUITE_CERTIFICATE_ID, CONCORD_NETSUITE_PRIVATE_KEY"),
    (dict(netsuite_auth_flow="client_credentials", netsuite_client_id="c", netsuite_certificate_id="k",
          netsuite_private_key="a-private-key-stand-in"),
     "needs the token endpoint"),
])
def test_incomplete_flows_are_refused_naming_what_is_missing(settings: dict[str, str], message: str) -> None:
    platform = "netsuite" if "netsuite_auth_flow" in settings else "salesforce"
    with pytest.raises(SettingsError, match=re.escape(message)):
        registry.configured(Settings(**settings), platform)  # type: ignore[arg-type]


def test_a_complete_flow_configures_the_platform(keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    assert registry.configured(_sf_settings(keys[0]), "salesforce")  # the instance comes with the token
    assert not registry.configured(Settings(), "salesforce") and not registry.configured(Settings(), "netsuite")
    netsuite = Settings(netsuite_auth_flow="client_credentials", netsuite_client_id="c", netsuite_certificate_id="k",
                        netsuite_private_key=_pem(keys[0]), netsuite_url="https://1.suitetalk.api.netsuite.com")
    assert registry.configured(netsuite, "netsuite")


def test_the_process_shares_one_source_per_flow(keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    settings = _sf_settings(keys[0], salesforce_client_id="3MVG9shared")
    assert tokens.salesforce_token_source(settings) is tokens.salesforce_token_source(settings)
    other = tokens.salesforce_token_source(msgspec.structs.replace(settings, salesforce_username="other@acme.com"))
    assert other is not tokens.salesforce_token_source(settings)
    assert not tokens.salesforce_token_source(Settings(salesforce_access_token="00D!static-token")).renews


# ---------------------------------------------------------------- over HTTP: 401, retry once, instance URL


def _api(accepted: Callable[[str], bool]) -> tuple[web.Application, list[str]]:
    """A Salesforce-like API answering 401 INVALID_SESSION_ID to a bearer `accepted` refuses; records bearers."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append(token)
        if not accepted(token):
            return web.json_response([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                                     status=401)
        return web.json_response({"Id": "001"})

    app = web.Application()
    app.router.add_get("/services/data/v60.0/sobjects/Account/001", handler)
    return app, seen


def _sf_error(body: bytes) -> str:
    return str(msgspec.json.decode(body)[0]["errorCode"])


async def test_a_401_renews_the_token_once_and_sends_the_request_again(keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    app, seen = _api(lambda token: token == "00Dorg!second")
    server = TestServer(app)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    post = Poster((200, {**SF_ANSWER, "instance_url": url}),
                  (200, {**SF_ANSWER, "access_token": "00Dorg!second", "instance_url": url}),
                  (200, {**SF_ANSWER, "access_token": "00Dorg!third", "instance_url": url}))
    source = tokens.TokenSource(_jwt_grant(keys[0]), margin=10, post=post, clock=Clock())
    # No instance URL configured: the token answer's is the API base.
    client = HttpClient("salesforce", "", url_variable="CONCORD_SALESFORCE_INSTANCE_URL", timeout=2, headers={},
                        error_reader=_sf_error, auth=tokens.BearerAuth(source))
    try:
        response = await client.request("GET", "/services/data/v60.0/sobjects/Account/001")
        assert response.status == 200 and seen == ["00Dorg!first", "00Dorg!second"] and len(post.calls) == 2
        # A token refused again after its renewal: one retry only, then the AUTH error of the answer.
        seen.clear()
        app_refusing = tokens.TokenSource(_jwt_grant(keys[0]), margin=10, post=Poster(
            (200, {**SF_ANSWER, "access_token": "00Dorg!revoked", "instance_url": url})), clock=Clock())
        refusing = HttpClient("salesforce", url, url_variable="CONCORD_SALESFORCE_INSTANCE_URL", timeout=2,
                              headers={}, error_reader=_sf_error, auth=tokens.BearerAuth(app_refusing))
        with pytest.raises(ConnectorError) as caught:
            await refusing.request("GET", "/services/data/v60.0/sobjects/Account/001")
        assert caught.value.kind is ErrorKind.AUTH and "INVALID_SESSION_ID" in str(caught.value)
        assert seen == ["00Dorg!revoked", "00Dorg!revoked"]
        await refusing.close()
    finally:
        await client.close()
        await server.close()


async def test_a_static_token_refused_is_not_retried() -> None:
    app, seen = _api(lambda token: False)
    server = TestServer(app)
    await server.start_server()
    client = HttpClient("salesforce", str(server.make_url("")), url_variable="CONCORD_SALESFORCE_INSTANCE_URL",
                        timeout=2, headers={}, error_reader=_sf_error,
                        auth=tokens.BearerAuth(tokens.StaticToken("salesforce", "00D!static-token")))
    try:
        with pytest.raises(ConnectorError) as caught:
            await client.request("GET", "/services/data/v60.0/sobjects/Account/001")
        assert caught.value.kind is ErrorKind.AUTH and seen == ["00D!static-token"]
    finally:
        await client.close()
        await server.close()


def test_the_worker_refuses_an_incomplete_flow_when_it_loads_its_settings() -> None:
    with pytest.raises(SettingsError, match="CONCORD_NETSUITE_AUTH_FLOW=client_credentials needs "
                       "CONCORD_NETSUITE_CLIENT_ID, CONCORD_NETSUITE_CERTIFICATE_ID, CONCORD_NETSUITE_PRIVATE_KEY"):
        load({"CONCORD_NETSUITE_AUTH_FLOW": "client_credentials", "CONCORD_NETSUITE_URL": "https://1.example"})


def test_current_secret_reads_the_file_again_and_never_shows_it(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("first-consumer-secret\n")
    env = {"CONCORD_SALESFORCE_CLIENT_SECRET_FILE": str(secret_file)}
    settings = load(env)
    assert current_secret(settings, "salesforce_client_secret", env) == "first-consumer-secret"
    secret_file.write_text("second-consumer-secret")
    assert current_secret(settings, "salesforce_client_secret", env) == "second-consumer-secret"
    secret_file.write_text("tiny-val")
    with pytest.raises(SettingsError, match="too short") as caught:
        current_secret(settings, "salesforce_client_secret", env)
    assert "tiny-val" not in str(caught.value)
    direct = Settings(salesforce_client_secret="a-secret-from-the-variable")
    assert current_secret(direct, "salesforce_client_secret", {}) == "a-secret-from-the-variable"


async def test_token_requests_are_counted_by_outcome(keys: tuple[rsa.RSAPrivateKey, ...]) -> None:
    def count(outcome: str) -> float:
        value = metrics.REGISTRY.get_sample_value("concord_token_requests_total",
                                                  {"platform": "salesforce", "outcome": outcome})
        return value or 0.0

    before = {outcome: count(outcome) for outcome in ("issued", "refused", "unanswered")}
    post = Poster((200, SF_ANSWER), (400, {"error": "invalid_grant", "error_description": "expired"}),
                  (503, b"down"))
    clock = Clock()
    source = tokens.TokenSource(_jwt_grant(keys[0], session=100), margin=10, post=post, clock=clock)
    await source.token()
    for _ in range(2):
        clock.now += 100  # expired: each call asks again
        with pytest.raises(ConnectorError):
            await source.token()
    assert {outcome: count(outcome) - before[outcome] for outcome in before} == {
        "issued": 1, "refused": 1, "unanswered": 1}
