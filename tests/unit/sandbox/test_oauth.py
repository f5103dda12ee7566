"""The sandbox's token endpoints (sandbox/oauth.py): real request and error shapes, short-lived sessions."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from concord.connectors.tokens import sign_jwt
from concord.sandbox.faults import PlatformCredentials
from concord.sandbox.oauth import OAuthConfig
from concord.sandbox.server import SandboxConfig, build_app
from concord.sandbox.traffic import TrafficConfig
from tests.unit.sandbox.test_server import FakeEmitter

NOW = 1_765_000_000.0
SF_TOKEN = "/services/oauth2/token"
NS_TOKEN = "/services/rest/auth/oauth2/v1/token"
SF_API = "/services/data/v62.0/sobjects/Account/001000000000000AAA"
NS_API = "/services/rest/record/v1/customer/1"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "concord-test")])
    moment = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(moment - datetime.timedelta(days=1))
            .not_valid_after(moment + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM).decode())


def _public_key(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def sandbox(key: rsa.RSAPrivateKey) -> AsyncIterator[tuple[Client, Clock]]:
    clock = Clock()
    oauth = OAuthConfig(token_lifetime=60, salesforce_certificate=_certificate(key), salesforce_client_id="3MVG9app",
                        salesforce_username="integration@acme.com", salesforce_client_secret="consumer-secret-0001",
                        netsuite_certificate=_public_key(key), netsuite_certificate_id="kid-1",
                        netsuite_client_id="ns-client")
    config = SandboxConfig(traffic=TrafficConfig(customers=0), run_traffic=False, oauth=oauth,
                           credentials=PlatformCredentials(salesforce_access_token="00Dstatic!token-0001"))
    client: Client = TestClient(TestServer(build_app(config, emitter=FakeEmitter, clock=clock)))
    await client.start_server()
    try:
        yield client, clock
    finally:
        await client.close()


def _origin(client: Client) -> str:
    return str(client.make_url("")).rstrip("/")


def _sf_assertion(key: rsa.RSAPrivateKey, aud: str, **claims: Any) -> str:
    body = {"iss": "3MVG9app", "sub": "integration@acme.com", "aud": aud, "exp": int(NOW) + 180, **claims}
    return sign_jwt({"alg": "RS256"}, body, key)


def _ns_assertion(key: rsa.RSAPrivateKey, aud: str, kid: str = "kid-1", **claims: Any) -> str:
    body = {"iss": "ns-client", "scope": ["rest_webservices"], "aud": aud, "iat": int(NOW), "exp": int(NOW) + 300,
            **claims}
    return sign_jwt({"typ": "JWT", "alg": "PS256", "kid": kid}, body, key)


async def _post(client: Client, path: str, form: dict[str, str]) -> tuple[int, Any]:
    response = await client.post(path, data=form)
    return response.status, msgspec.json.decode(await response.read())


async def _status(client: Client, path: str, token: str) -> int:
    return (await client.get(path, headers={"Authorization": f"Bearer {token}"})).status


async def test_salesforce_jwt_bearer_issues_a_session_that_expires(sandbox: tuple[Client, Clock],
                                                                   key: rsa.RSAPrivateKey) -> None:
    client, clock = sandbox
    status, answer = await _post(client, SF_TOKEN, {"grant_type": JWT_BEARER,
                                                    "assertion": _sf_assertion(key, "https://login.salesforce.com")})
    assert status == 200
    assert set(answer) == {"access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"}
    assert answer["instance_url"] == _origin(client) and answer["token_type"] == "Bearer"
    assert answer["issued_at"] == str(int(NOW * 1000))
    token = answer["access_token"]
    assert await _status(client, SF_API, token) == 404  # in: the record does not exist
    clock.now = NOW + 61
    refused = await client.get(SF_API, headers={"Authorization": f"Bearer {token}"})
    assert refused.status == 401
    assert (await refused.json())[0]["errorCode"] == "INVALID_SESSION_ID"
    assert await _status(client, SF_API, "00Dstatic!token-0001") == 404  # the static token still works
    assert await _status(client, SF_API, "made-up-token") == 401  # with a token endpoint, no longer any token
    tokens = (await (await client.get("/_sandbox/status")).json())["tokens"]
    assert tokens["salesforce"] == {"issued": 1, "refused_grants": 0, "expired_refused": 1}


@pytest.mark.parametrize(("change", "error"), [
    ({"sub": "someone@acme.com"}, "invalid_grant: user hasn't approved this consumer"),
    ({"iss": "3MVG9other"}, "invalid_client_id: client identifier invalid"),
    ({"aud": "https://evil.example"}, "invalid_grant: audience is invalid"),
    ({"exp": int(NOW) - 1}, "invalid_grant: expired authorization code"),
    ({"exp": int(NOW) + 3600}, "invalid_grant: invalid assertion: exp is more than 3 minutes ahead"),
])
async def test_salesforce_refuses_bad_assertions_in_its_error_shape(sandbox: tuple[Client, Clock],
                                                                    key: rsa.RSAPrivateKey, change: dict[str, Any],
                                                                    error: str) -> None:
    client, _ = sandbox
    claims = {"aud": "https://login.salesforce.com", **change}
    status, answer = await _post(client, SF_TOKEN, {"grant_type": JWT_BEARER, "assertion": _sf_assertion(key,
                                                                                                         **claims)})
    assert status == 400 and f"{answer['error']}: {answer['error_description']}" == error


async def test_salesforce_refuses_a_signature_of_another_key(sandbox: tuple[Client, Clock],
                                                             other_key: rsa.RSAPrivateKey) -> None:
    client, _ = sandbox
    status, answer = await _post(client, SF_TOKEN, {"grant_type": JWT_BEARER,
                                                    "assertion": _sf_assertion(other_key, _origin(client))})
    assert status == 400 and answer["error"] == "invalid_grant" and "signature" in answer["error_description"]


async def test_salesforce_client_credentials(sandbox: tuple[Client, Clock]) -> None:
    client, _ = sandbox
    form = {"grant_type": "client_credentials", "client_id": "3MVG9app", "client_secret": "consumer-secret-0001"}
    status, answer = await _post(client, SF_TOKEN, form)
    assert status == 200 and await _status(client, SF_API, answer["access_token"]) == 404
    status, answer = await _post(client, SF_TOKEN, {**form, "client_secret": "wrong-secret-000001"})
    assert (status, answer) == (401, {"error": "invalid_client", "error_description": "invalid client credentials"})


async def test_netsuite_client_credentials_issue_tokens_with_their_lifetime(sandbox: tuple[Client, Clock],
                                                                            key: rsa.RSAPrivateKey) -> None:
    client, clock = sandbox
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _ns_assertion(key, _origin(client) + NS_TOKEN)}
    status, answer = await _post(client, NS_TOKEN, form)
    assert status == 200 and set(answer) == {"access_token", "expires_in", "token_type"}
    assert answer["expires_in"] == "60"
    token = answer["access_token"]
    assert await _status(client, NS_API, token) == 404
    clock.now = NOW + 60
    refused = await client.get(NS_API, headers={"Authorization": f"Bearer {token}"})
    assert refused.status == 401
    assert (await refused.json())["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"


@pytest.mark.parametrize(("kid", "claims", "status", "error"), [
    ("kid-2", {}, 401, "invalid_client"),
    ("kid-1", {"iss": "someone-else"}, 401, "invalid_client"),
    ("kid-1", {"aud": "https://1234.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"}, 400,
     "invalid_grant"),
    ("kid-1", {"scope": ["everything"]}, 400, "invalid_scope"),
    ("kid-1", {"exp": int(NOW) + 7200}, 400, "invalid_grant"),
])
async def test_netsuite_refuses_bad_assertions(sandbox: tuple[Client, Clock], key: rsa.RSAPrivateKey, kid: str,
                                               claims: dict[str, Any], status: int, error: str) -> None:
    client, _ = sandbox
    aud = claims.pop("aud", _origin(client) + NS_TOKEN)
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _ns_assertion(key, aud, kid, **claims)}
    answered, answer = await _post(client, NS_TOKEN, form)
    assert (answered, answer["error"]) == (status, error) and answer["error_description"]
