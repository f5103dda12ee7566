"""The sandbox's OAuth 2.0 token endpoints (Salesforce, NetSuite) and the sessions their tokens open.

The token endpoints answer in the platforms' real shapes, so Concord's token flows run against them as
against the platforms:

* Salesforce `POST /services/oauth2/token` (form fields):
  - `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion=<JWT>`: the JWT's RS256
    signature is checked with the connected app's certificate (`--salesforce-jwt-certificate`),
    `iss` must be the consumer key, `sub` the integration username, `aud` a login URL (the sandbox's
    own base, `https://login.salesforce.com` or `https://test.salesforce.com`), `exp` in the future
    and at most 3 minutes ahead;
  - `grant_type=client_credentials`, `client_id`, `client_secret`: the connected app's pair.
  200 `{access_token, signature, scope, instance_url, id, token_type, issued_at}` (no lifetime: a
  session lives `token_lifetime` seconds, the org's session timeout); refusals 400 (401 for a wrong
  client secret) `{"error": "invalid_grant", "error_description": "..."}`.
* NetSuite `POST /services/rest/auth/oauth2/v1/token`: `grant_type=client_credentials`,
  `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, `client_assertion=<JWT>`
  whose header `kid` names the certificate registered for the integration (`--netsuite-certificate`)
  and whose PS256 signature it verifies; `iss` the client id, `aud` this endpoint's URL, `scope`
  (a list or a comma-separated string) within rest_webservices/restlets/suite_analytics, `iat` and
  `exp` with exp in the future and at most 60 minutes after iat. 200 `{access_token, expires_in,
  token_type}`; refusals 400/401 `{"error": ..., "error_description": ...}`.

`Sessions.accepts(token)` is the one check every API of a platform makes (its REST handlers, and a
Pub/Sub server for Salesforce): the static token of the settings (`PlatformCredentials`) is accepted as
before, and so is a token this endpoint issued until it expires (`token_lifetime`, short in tests so
that a run renews tokens often). An expired or unknown token is refused, which the REST handlers answer
with the platform's 401 (`INVALID_SESSION_ID`, `INVALID_LOGIN`). A platform with neither a static token
nor a token endpoint configured accepts any non-empty token, as the sandbox always did.

`Sessions.stats()` (issued tokens, refused grants, requests refused for an expired token) is in
`GET /_sandbox/status` under `tokens`, so a test can tell that tokens were renewed.

The JWT checks are the sandbox's own (it shares no code with Concord's connectors).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from msgspec import Struct

SALESFORCE_TOKEN_PATH: Final = "/services/oauth2/token"
NETSUITE_TOKEN_PATH: Final = "/services/rest/auth/oauth2/v1/token"
JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_JWT: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SALESFORCE_LOGIN_HOSTS: Final = ("https://login.salesforce.com", "https://test.salesforce.com")
SALESFORCE_MAX_ASSERTION_S: Final = 180
NETSUITE_MAX_ASSERTION_S: Final = 3600
NETSUITE_SCOPES: Final = frozenset({"rest_webservices", "restlets", "suite_analytics"})
ORG_ID: Final = "00D5g000000SANDBX"
USER_ID: Final = "0055g000000SANDBX"

E_CERTIFICATE: Final = "{option}: {path} is not a PEM certificate or public key (RSA): {problem}"


class OAuthConfig(Struct, frozen=True, kw_only=True):
    """What the token endpoints accept: the apps' identities and certificates, and the tokens' lifetime."""

    token_lifetime: float = 300.0  # seconds an issued token is accepted
    salesforce_certificate: str = ""  # PEM of the connected app's certificate (JWT bearer); "": flow off
    salesforce_client_id: str = ""  # consumer key
    salesforce_username: str = ""  # the integration user the JWT may name
    salesforce_client_secret: str = ""  # "": client credentials flow off
    netsuite_certificate: str = ""  # PEM of the certificate mapped to the integration; "": flow off
    netsuite_certificate_id: str = ""  # the `kid` NetSuite gave it
    netsuite_client_id: str = ""


class TokenStats(Struct, kw_only=True):
    """One platform's token endpoint and sessions, in `GET /_sandbox/status`."""

    issued: int = 0  # tokens issued
    refused_grants: int = 0  # token requests refused
    expired_refused: int = 0  # API requests refused because their token had expired


class Sessions:
    """The bearer tokens one platform's APIs accept: its static token, and the tokens its endpoint issued."""

    def __init__(self, static_token: str = "", *, issuing: bool = False, lifetime: float = 300.0,
                 clock: Callable[[], float] = time.time, prefix: str = "") -> None:
        self._static = static_token
        self.issuing = issuing
        self.lifetime = lifetime
        self._clock = clock
        self._prefix = prefix
        self._expiry: dict[str, float] = {}  # issued token -> when it expires
        self.counts = TokenStats()

    def issue(self) -> str:
        """A new token, accepted for `lifetime` seconds (tokens expired a lifetime ago are forgotten)."""
        now = self._clock()
        self._expiry = {token: at for token, at in self._expiry.items() if at > now - self.lifetime}
        token = self._prefix + secrets.token_urlsafe(32)
        self._expiry[token] = now + self.lifetime
        self.counts.issued += 1
        return token

    def accepts(self, token: str) -> bool:
        """Whether an API request bearing `token` is let in (the one check of every API of the platform)."""
        if not token:
            return False
        if self._static and hmac.compare_digest(token.encode(), self._static.encode()):
            return True
        expires = self._expiry.get(token)
        if expires is not None:
            if self._clock() < expires:
                return True
            self.counts.expired_refused += 1
            return False
        return not self._static and not self.issuing

    def bearer(self, authorization: str) -> bool:
        """`accepts` for an `Authorization: Bearer <token>` header."""
        token = authorization[len("Bearer "):].strip() if authorization.startswith("Bearer ") else ""
        return self.accepts(token)


class Refused(Exception):
    """A token request refused: the OAuth error code and description, and the HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """The RSA public key of a PEM certificate or public key; ValueError when it is neither."""
    data = pem.encode()
    key: object
    key = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
           else serialization.load_pem_public_key(data))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA key")
    return key


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verified_claims(assertion: str, key: rsa.RSAPublicKey, algorithms: tuple[str, ...]) -> dict[str, Any]:
    """The claims of a compact JWS whose signature `key` verifies with one of `algorithms`; Refused else."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise Refused("invalid_grant", "invalid assertion: not a JWT")
    try:
        header = msgspec.json.decode(_b64decode(parts[0]))
        claims = msgspec.json.decode(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise Refused("invalid_grant", "invalid assertion: not a JWT") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Refused("invalid_grant", "invalid assertion: not a JWT")
    algorithm = header.get("alg")
    if algorithm not in algorithms:
        raise Refused("invalid_request", f"unsupported signing algorithm {algorithm!r} (expected "
                      f"{' or '.join(algorithms)})")
    signed = f"{parts[0]}.{parts[1]}".encode()
    scheme: padding.AsymmetricPadding = (
        padding.PKCS1v15() if algorithm == "RS256"
        else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32))
    try:
        key.verify(signature, signed, scheme, hashes.SHA256())
    except InvalidSignature:
        raise Refused("invalid_grant", "invalid assertion: the signature does not verify with the registered "
                      "certificate") from None
    return claims


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Refused("invalid_grant", f"invalid assertion: no {name} claim")
    try:
        number = float(value)
    except ValueError:
        raise Refused("invalid_grant", f"invalid assertion: {name} is not a number") from None
    if not math.isfinite(number):
        raise Refused("invalid_grant", f"invalid assertion: {name} is not a number")
    return number


def _refusal(refused: Refused, sessions: Sessions) -> web.Response:
    sessions.counts.refused_grants += 1
    return web.Response(body=msgspec.json.encode({"error": refused.error, "error_description": refused.description}),
                        status=refused.status, content_type="application/json")


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise Refused("invalid_request", "the token request must be application/x-www-form-urlencoded")
    return {name: str(value) for name, value in (await request.post()).items()}


class SalesforceTokens:
    """`POST /services/oauth2/token`: the JWT bearer and client credentials flows of one connected app."""

    def __init__(self, config: OAuthConfig, sessions: Sessions, clock: Callable[[], float] = time.time) -> None:
        self.config, self.sessions, self._clock = config, sessions, clock
        self._key = load_public_key(config.salesforce_certificate) if config.salesforce_certificate else None

    async def handle(self, request: web.Request) -> web.Response:
        try:
            form = await _form(request)
            grant = form.get("grant_type", "")
            if grant == JWT_BEARER and self._key is not None:
                self._jwt_bearer(self._key, form.get("assertion", ""), str(request.url.origin()))
            elif grant == "client_credentials" and self.config.salesforce_client_secret:
                self._client_credentials(form)
            else:
                raise Refused("unsupported_grant_type", "grant type not supported")
        except Refused as refused:
            return _refusal(refused, self.sessions)
        origin = str(request.url.origin())
        token = self.sessions.issue()
        issued_at = str(int(self._clock() * 1000))
        signature = base64.b64encode(hmac.digest(token.encode(), (origin + issued_at).encode(), "sha256")).decode()
        body = {"access_token": token, "signature": signature, "scope": "api", "instance_url": origin,
                "id": f"{origin}/id/{ORG_ID}/{USER_ID}", "token_type": "Bearer", "issued_at": issued_at}
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")

    def _jwt_bearer(self, key: rsa.RSAPublicKey, assertion: str, origin: str) -> None:
        claims = verified_claims(assertion, key, ("RS256",))
        if claims.get("iss") != self.config.salesforce_client_id:
            raise Refused("invalid_client_id", "client identifier invalid")
        if claims.get("aud") not in (origin, *SALESFORCE_LOGIN_HOSTS):
            raise Refused("invalid_grant", "audience is invalid")
        if claims.get("sub") != self.config.salesforce_username:
            raise Refused("invalid_grant", "user hasn't approved this consumer")
        exp, now = _number(claims, "exp"), self._clock()
        if exp <= now:
            raise Refused("invalid_grant", "expired authorization code")
        if exp > now + SALESFORCE_MAX_ASSERTION_S + 5:  # a few seconds of clock skew
            raise Refused("invalid_grant", "invalid assertion: exp is more than 3 minutes ahead")

    def _client_credentials(self, form: dict[str, str]) -> None:
        known = hmac.compare_digest(form.get("client_id", "").encode(), self.config.salesforce_client_id.encode())
        secret_ok = hmac.compare_digest(form.get("client_secret", "").encode(),
                                        self.config.salesforce_client_secret.encode())
        if not known:
            raise Refused("invalid_client_id", "client identifier invalid")
        if not secret_ok:
            raise Refused("invalid_client", "invalid client credentials", status=401)


class NetSuiteTokens:
    """`POST /services/rest/auth/oauth2/v1/token`: the client credentials (M2M) flow of one integration."""

    def __init__(self, config: OAuthConfig, sessions: Sessions, clock: Callable[[], float] = time.time) -> None:
        self.config, self.sessions, self._clock = config, sessions, clock
        self._key = load_public_key(config.netsuite_certificate) if config.netsuite_certificate else None

    async def handle(self, request: web.Request) -> web.Response:
        try:
            form = await _form(request)
            if form.get("grant_type") != "client_credentials" or self._key is None:
                raise Refused("unsupported_grant_type", "grant type not supported")
            if form.get("client_assertion_type") != CLIENT_ASSERTION_JWT:
                raise Refused("invalid_request", "client_assertion_type must be " + CLIENT_ASSERTION_JWT)
            self._assertion(self._key, form.get("client_assertion", ""), str(request.url.with_query(None)))
        except Refused as refused:
            return _refusal(refused, self.sessions)
        body = {"access_token": self.sessions.issue(), "expires_in": f"{self.sessions.lifetime:g}",
                "token_type": "Bearer"}
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")

    def _assertion(self, key: rsa.RSAPublicKey, assertion: str, endpoint: str) -> None:
        parts = assertion.split(".")
        try:
            kid = msgspec.json.decode(_b64decode(parts[0])).get("kid") if len(parts) == 3 else None
        except (binascii.Error, ValueError, msgspec.DecodeError, AttributeError):
            kid = None
        if kid != self.config.netsuite_certificate_id:
            raise Refused("invalid_client", "no certificate is mapped to this integration with that kid", 401)
        claims = verified_claims(assertion, key, ("PS256",))
        if claims.get("iss") != self.config.netsuite_client_id:
            raise Refused("invalid_client", "the client id is not that of an enabled integration", 401)
        if claims.get("aud") != endpoint:
            raise Refused("invalid_grant", f"aud must be the token endpoint, {endpoint}")
        scope = claims.get("scope")
        scopes = scope.split(",") if isinstance(scope, str) else scope if isinstance(scope, list) else []
        if not scopes or not set(scopes) <= NETSUITE_SCOPES:
            raise Refused("invalid_scope", "scope must be rest_webservices, restlets or suite_analytics")
        iat, exp, now = _number(claims, "iat"), _number(claims, "exp"), self._clock()
        if exp <= now:
            raise Refused("invalid_grant", "the client assertion has expired")
        if exp - iat > NETSUITE_MAX_ASSERTION_S:
            raise Refused("invalid_grant", "exp must be at most 60 minutes after iat")


def sessions_for(platform: str, static_token: str, config: OAuthConfig,
                 clock: Callable[[], float] = time.time) -> Sessions:
    """The sessions of `platform`: issuing when its token endpoint has a flow configured."""
    if platform == "salesforce":
        issuing = bool(config.salesforce_certificate or config.salesforce_client_secret)
        return Sessions(static_token, issuing=issuing, lifetime=config.token_lifetime, clock=clock,
                        prefix=ORG_ID + "!")
    return Sessions(static_token, issuing=bool(config.netsuite_certificate), lifetime=config.token_lifetime,
                    clock=clock)


def token_routes(config: OAuthConfig, salesforce: Sessions, netsuite: Sessions,
                 clock: Callable[[], float] = time.time) -> list[web.RouteDef]:
    """The two token endpoints (no faults: a token request is rare, and its failures are tested apart)."""
    return [web.post(SALESFORCE_TOKEN_PATH, SalesforceTokens(config, salesforce, clock).handle),
            web.post(NETSUITE_TOKEN_PATH, NetSuiteTokens(config, netsuite, clock).handle)]
