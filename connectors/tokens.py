"""Access tokens that expire (Salesforce, NetSuite): fetched from the platform, cached, renewed in time.

A static OAuth 2.0 access token dies with the org's session (Salesforce, 2 h by default) or after 60
minutes (NetSuite); the next call then answers 401, which halts the platform's command lane until a
person pastes a new token and restarts the worker. So each platform may instead name a flow that lets
Concord get tokens by itself (`CONCORD_<PLATFORM>_AUTH_FLOW`, docs/platform-auth.md):

==========  ===================  ===========================================================================
platform    flow                 token request (`application/x-www-form-urlencoded` POST)
==========  ===================  ===========================================================================
salesforce  `jwt_bearer`         `<login URL>/services/oauth2/token`: `grant_type=urn:ietf:params:oauth:
                                 grant-type:jwt-bearer`, `assertion=<JWT RS256 {iss: consumer key, sub:
                                 username, aud: login URL, exp: now + 3 min}>`
salesforce  `client_credentials` `<My Domain>/services/oauth2/token`: `grant_type=client_credentials`,
                                 `client_id`, `client_secret`
netsuite    `client_credentials` `<account>.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token`:
                                 `grant_type=client_credentials`, `client_assertion_type=urn:ietf:params:
                                 oauth:client-assertion-type:jwt-bearer`, `client_assertion=<JWT PS256, kid:
                                 certificate id {iss: client id, scope: [...], aud: token URL, iat, exp}>`
==========  ===================  ===========================================================================

Salesforce answers `{access_token, instance_url, id, token_type, issued_at, signature, scope}` with no
lifetime: a token lives `salesforce_session_seconds` (the org's session timeout) from the request.
NetSuite answers `{access_token, expires_in, token_type}`. `instance_url` is the API base of a
Salesforce connector whose `CONCORD_SALESFORCE_INSTANCE_URL` is empty.

Contract of a `TokenSource`:

* the token is cached and renewed `margin` before it expires (at most half its lifetime before), so
  no request leaves with a token about to die;
* a 401 from the API renews it once (`refresh(refused)`) and the request is sent once more
  (connectors/http.py): a token revoked or cut short by an admin costs one retry, not a halt;
* one renewal at a time per platform and process: every user of the token (all command lanes,
  the reconciliation readers, the re-reads, the Pub/Sub bridge) shares one source
  (`salesforce_token_source`, `netsuite_token_source`), and callers that find a renewal under way
  wait for it and take its token instead of asking for another;
* the private key or client secret is read again at each token request (`current_secret`: from its
  `*_FILE` when that is set), so a secret rotated in its file is used without a restart;
* a token endpoint's refusal (4xx) is an AUTH `ConnectorError` carrying the platform's `error` and
  `error_description` (`invalid_grant: user hasn't approved this consumer`); no answer or a 5xx/429
  is TRANSIENT. No message ever holds a secret, an assertion or a token.

JWTs are signed with the `cryptography` package (RSA PKCS#1 v1.5 for RS256, RSA-PSS for PS256): a
JWT is three base64url parts, which a dozen lines write; what must not be hand-made is the signature.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Protocol, TypeVar

import aiohttp
import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from msgspec import Struct

from concord.connectors.base import ConnectorError, ErrorKind, classify_status
from concord.connectors.http import Authorization
from concord.core import metrics
from concord.core.settings import Settings, SettingsError, check_auth_flows, current_secret, env_var

log = logging.getLogger(__name__)

SALESFORCE_TOKEN_PATH: Final = "/services/oauth2/token"
NETSUITE_TOKEN_PATH: Final = "/services/rest/auth/oauth2/v1/token"
GRANT_JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYPE_JWT_BEARER: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Salesforce refuses a JWT bearer assertion whose `exp` is more than 3 minutes ahead.
SALESFORCE_ASSERTION_SECONDS: Final = 180
#: NetSuite takes an assertion living up to 60 minutes; it is used once, at once.
NETSUITE_ASSERTION_SECONDS: Final = 300

E_PRIVATE_KEY: Final = ("{var} is not a PEM RSA private key without a passphrase ({problem}); the value is not shown. "
                        "Set the key of the certificate uploaded to the platform (`-----BEGIN PRIVATE KEY-----`)")
E_REFUSED: Final = ("{platform} refused the token request ({flow} flow, HTTP {status}): {error}. Check the flow's "
                    "settings against the platform's app (docs/platform-auth.md)")
E_NO_ANSWER: Final = "{platform} token request ({flow} flow): {problem}"
E_BAD_ANSWER: Final = ("{platform} token endpoint answered HTTP {status} without a usable token ({problem}): is "
                       "{url} the platform's token endpoint?")


class Token(Struct, frozen=True, kw_only=True):
    """An access token and what came with it; times are the source's clock (seconds)."""

    value: str
    obtained_at: float
    expires_at: float  # `math.inf` for a static token
    instance_url: str = ""  # Salesforce: the org's API base
    org_id: str = ""  # Salesforce: the org's id (from the answer's identity URL)


class AccessTokens(Protocol):
    """A platform's access token as its users see it (connectors, readers, the Pub/Sub bridge)."""

    platform: str
    renews: bool  # False: a static token, which a refusal cannot cure

    async def current(self) -> Token:
        """The token to use now (fetched first when there is none or it is due)."""
        ...

    async def token(self) -> str:
        """`current().value`."""
        ...

    async def refresh(self, refused: str | None = None) -> str:
        """A token other than `refused` (default: the current one), renewed unless another caller did already."""
        ...


class StaticToken:
    """The `static` flow: the token from the settings, as given, never renewed."""

    renews = False

    def __init__(self, platform: str, value: str, instance_url: str = "") -> None:
        self.platform = platform
        self._token = Token(value=value, obtained_at=0.0, expires_at=math.inf, instance_url=instance_url)

    async def current(self) -> Token:
        return self._token

    async def token(self) -> str:
        return self._token.value

    async def refresh(self, refused: str | None = None) -> str:
        return self._token.value


# ---------------------------------------------------------------- JWT and keys (pure)


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_private_key(pem: str, variable: str) -> rsa.RSAPrivateKey:
    """The RSA private key in `pem`; SettingsError naming `variable` (never the value) when it is not one."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        problem = "it needs a passphrase" if "password" in str(exc).lower() else "not a readable PEM key"
        raise SettingsError(E_PRIVATE_KEY.format(var=variable, problem=problem)) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SettingsError(E_PRIVATE_KEY.format(var=variable, problem=f"a {type(key).__name__}, not RSA"))
    return key


def sign_jwt(header: Mapping[str, object], claims: Mapping[str, object], key: rsa.RSAPrivateKey) -> str:
    """A compact JWS of `claims`, signed per `header["alg"]`: RS256 (PKCS#1 v1.5) or PS256 (PSS, salt = 32)."""
    signing_input = f"{b64url(msgspec.json.encode(header))}.{b64url(msgspec.json.encode(claims))}".encode()
    if header["alg"] == "RS256":
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif header["alg"] == "PS256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        signature = key.sign(signing_input, pss, hashes.SHA256())
    else:
        raise ValueError(f"unsupported JWT algorithm {header['alg']!r} (RS256 or PS256)")
    return f"{signing_input.decode()}.{b64url(signature)}"


# ---------------------------------------------------------------- grants: the request and the answer (pure)


class _Refusal(Struct, frozen=True):
    error: str = ""
    error_description: str = ""


class _SalesforceAnswer(Struct, frozen=True):
    access_token: str
    instance_url: str = ""
    id: str = ""
    token_type: str = ""
    issued_at: str = ""
    signature: str = ""
    scope: str = ""


class _NetSuiteAnswer(Struct, frozen=True):
    access_token: str
    expires_in: int | str
    token_type: str = ""


Form = list[tuple[str, str]]
_AnswerT = TypeVar("_AnswerT", _SalesforceAnswer, _NetSuiteAnswer)


class Grant(Protocol):
    """One flow: the token request to send, and the token in the answer."""

    platform: str
    flow: str
    url: str

    def request(self, now: float) -> Form:
        """The form fields of a token request made at `now` (epoch seconds)."""
        ...

    def token(self, status: int, body: bytes, now: float) -> Token:
        """The token of a successful answer to the request made at `now`; ConnectorError otherwise."""
        ...


def refusal(platform: str, flow: str, status: int, body: bytes) -> ConnectorError:
    """The error of a token request answered `status` >= 400: AUTH (4xx) or TRANSIENT (429, 5xx), with the
    platform's `error: error_description` (or the start of a body that is not the OAuth error shape)."""
    try:
        answer = msgspec.json.decode(body, type=_Refusal)
        error = ": ".join(part for part in (answer.error, answer.error_description) if part)
    except (msgspec.DecodeError, msgspec.ValidationError):
        error = ""
    error = error or body[:200].decode(errors="replace").strip() or "(empty body)"
    kind = ErrorKind.TRANSIENT if classify_status(status) is ErrorKind.TRANSIENT else ErrorKind.AUTH
    return ConnectorError(kind, E_REFUSED.format(platform=platform, flow=flow, status=status, error=error[:300]),
                          status=status)


def _decode(answer_type: type[_AnswerT], status: int, body: bytes, *, platform: str, flow: str, url: str) -> _AnswerT:
    """The answer of a token request, or the error of a refusal or of an answer without a token."""
    if status >= 400:
        raise refusal(platform, flow, status, body)
    try:
        return msgspec.json.decode(body, type=answer_type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConnectorError(ErrorKind.AUTH, E_BAD_ANSWER.format(platform=platform, status=status,
                                                                 problem=str(exc)[:120], url=url)) from None


def _org_id(identity_url: str) -> str:
    """The org id in Salesforce's identity URL `https://login.salesforce.com/id/<org id>/<user id>`."""
    parts = identity_url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 3 and parts[-3] == "id" else ""


class _SalesforceGrant:
    platform = "salesforce"
    flow = ""

    def __init__(self, login_url: str, session_seconds: float) -> None:
        self.login_url = login_url.rstrip("/")
        self.url = self.login_url + SALESFORCE_TOKEN_PATH
        self.session_seconds = session_seconds

    def token(self, status: int, body: bytes, now: float) -> Token:
        answer = _decode(_SalesforceAnswer, status, body, platform=self.platform, flow=self.flow, url=self.url)
        return Token(value=answer.access_token, obtained_at=now, expires_at=now + self.session_seconds,
                     instance_url=answer.instance_url, org_id=_org_id(answer.id))


class SalesforceJwtBearer(_SalesforceGrant):
    """OAuth 2.0 JWT bearer flow: the connected app's certificate key vouches for `username`."""

    flow = "jwt_bearer"

    def __init__(self, *, client_id: str, username: str, login_url: str, private_key: Callable[[], str],
                 session_seconds: float) -> None:
        super().__init__(login_url, session_seconds)
        self.client_id, self.username = client_id, username
        self._private_key = private_key

    def request(self, now: float) -> Form:
        key = load_private_key(self._private_key(), env_var("salesforce_private_key"))
        claims = {"iss": self.client_id, "sub": self.username, "aud": self.login_url,
                  "exp": int(now) + SALESFORCE_ASSERTION_SECONDS}
        return [("grant_type", GRANT_JWT_BEARER), ("assertion", sign_jwt({"alg": "RS256"}, claims, key))]


class SalesforceClientCredentials(_SalesforceGrant):
    """OAuth 2.0 client credentials flow: the connected app's consumer key and secret, at the My Domain."""

    flow = "client_credentials"

    def __init__(self, *, client_id: str, client_secret: Callable[[], str], login_url: str,
                 session_seconds: float) -> None:
        super().__init__(login_url, session_seconds)
        self.client_id = client_id
        self._client_secret = client_secret

    def request(self, now: float) -> Form:
        return [("grant_type", "client_credentials"), ("client_id", self.client_id),
                ("client_secret", self._client_secret())]


class NetSuiteClientCredentials:
    """OAuth 2.0 client credentials (machine to machine): a JWT signed with the mapped certificate's key."""

    platform = "netsuite"
    flow = "client_credentials"

    def __init__(self, *, client_id: str, certificate_id: str, scopes: tuple[str, ...], token_url: str,
                 private_key: Callable[[], str]) -> None:
        self.client_id, self.certificate_id, self.scopes = client_id, certificate_id, scopes
        self.url = token_url
        self._private_key = private_key

    def request(self, now: float) -> Form:
        key = load_private_key(self._private_key(), env_var("netsuite_private_key"))
        header = {"typ": "JWT", "alg": "PS256", "kid": self.certificate_id}
        claims = {"iss": self.client_id, "scope": list(self.scopes), "aud": self.url, "iat": int(now),
                  "exp": int(now) + NETSUITE_ASSERTION_SECONDS}
        return [("grant_type", "client_credentials"), ("client_assertion_type", ASSERTION_TYPE_JWT_BEARER),
                ("client_assertion", sign_jwt(header, claims, key))]

    def token(self, status: int, body: bytes, now: float) -> Token:
        answer = _decode(_NetSuiteAnswer, status, body, platform=self.platform, flow=self.flow, url=self.url)
        try:
            lifetime = float(answer.expires_in)
        except ValueError:
            raise ConnectorError(ErrorKind.AUTH, E_BAD_ANSWER.format(
                platform=self.platform, status=status, problem="expires_in is not a number", url=self.url)) from None
        return Token(value=answer.access_token, obtained_at=now, expires_at=now + lifetime)


# ---------------------------------------------------------------- the source: cache, margin, single flight


Poster = Callable[[str, Form], Awaitable[tuple[int, bytes]]]
"""Sends one token request (URL, form fields); returns the status and body. Raises on no answer."""


def http_poster(timeout: float) -> Poster:
    """A `Poster` over aiohttp, one session per request: token requests are rare (once per token lifetime),
    and a session of its own is bound to no event loop between them."""

    async def post(url: str, form: Form) -> tuple[int, bytes]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.post(url, data=aiohttp.FormData(form), headers={"Accept": "application/json"}) as response:
            return response.status, await response.read()

    return post


def due(token: Token, now: float, margin: float) -> bool:
    """Whether `token` must be renewed at `now`: within `margin` of its expiry, the margin at most half its life."""
    return now >= token.expires_at - min(margin, (token.expires_at - token.obtained_at) / 2)


class TokenSource:
    """A platform's renewable token: cached, renewed before expiry and after a refusal, one renewal at a time."""

    renews = True

    def __init__(self, grant: Grant, *, margin: float, post: Poster, clock: Callable[[], float] = time.time) -> None:
        self.grant = grant
        self.platform = grant.platform
        self.margin = margin
        self._post = post
        self._clock = clock
        self._token: Token | None = None
        self.fetched = 0  # tokens obtained (a test and the logs read it)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def _guard(self) -> asyncio.Lock:
        # One lock per event loop: a lock is bound to the loop it first waited in (tests run several loops).
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def current(self) -> Token:
        token = self._token
        if token is not None and not due(token, self._clock(), self.margin):
            return token
        return await self._renew(refused=None)

    async def token(self) -> str:
        return (await self.current()).value

    async def refresh(self, refused: str | None = None) -> str:
        if refused is None:
            refused = self._token.value if self._token is not None else None
        return (await self._renew(refused=refused)).value

    async def _renew(self, refused: str | None) -> Token:
        async with self._guard():
            held = self._token
            # Renewed while this caller waited for the lock: take that token.
            if held is not None and held.value != refused and not due(held, self._clock(), self.margin):
                return held
            now = self._clock()
            try:
                token = await self._ask(now)
            except ConnectorError as exc:
                outcome = "refused" if exc.kind is ErrorKind.AUTH else "unanswered"
                metrics.token_requests.labels(self.platform, outcome).inc()
                raise
            metrics.token_requests.labels(self.platform, "issued").inc()
            self._token = token
            self.fetched += 1
            log.info("%s: new access token (%s flow), renewed within %.0f s", self.platform, self.grant.flow,
                     max(token.expires_at - now - min(self.margin, (token.expires_at - now) / 2), 0.0))
            return token


    async def _ask(self, now: float) -> Token:
        """One token request to the platform's endpoint, and its answer as a `Token` (ConnectorError otherwise)."""
        form = self.grant.request(now)
        try:
            status, body = await self._post(self.grant.url, form)
        except TimeoutError:
            raise ConnectorError(ErrorKind.TRANSIENT, E_NO_ANSWER.format(
                platform=self.platform, flow=self.grant.flow, problem="no answer in time")) from None
        except aiohttp.ClientError as exc:
            raise ConnectorError(ErrorKind.TRANSIENT, E_NO_ANSWER.format(
                platform=self.platform, flow=self.grant.flow, problem=type(exc).__name__)) from None
        return self.grant.token(status, body, now)


class BearerAuth:
    """`Authorization: Bearer <token>` for connectors/http.py's `HttpClient`, from a token source."""

    def __init__(self, source: AccessTokens) -> None:
        self.source = source

    @staticmethod
    def _of(token: Token) -> Authorization:
        return Authorization(headers={"Authorization": f"Bearer {token.value}"}, base_url=token.instance_url,
                             key=token.value)

    async def authorize(self) -> Authorization:
        return self._of(await self.source.current())

    async def reauthorize(self, refused: Authorization) -> Authorization | None:
        if not self.source.renews:
            return None
        await self.source.refresh(refused.key)
        return self._of(await self.source.current())


# ---------------------------------------------------------------- from the settings, one source per process


def salesforce_grant(settings: Settings, environ: Mapping[str, str] | None = None) -> Grant | None:
    """The Salesforce grant the settings choose (None: `static`); SettingsError naming what a flow lacks."""
    check_auth_flows(settings)
    flow = settings.salesforce_auth_flow
    if flow == "jwt_bearer":
        return SalesforceJwtBearer(
            client_id=settings.salesforce_client_id, username=settings.salesforce_username,
            login_url=settings.salesforce_login_url, session_seconds=settings.salesforce_session_seconds,
            private_key=lambda: current_secret(settings, "salesforce_private_key", environ))
    if flow == "client_credentials":
        return SalesforceClientCredentials(
            client_id=settings.salesforce_client_id, login_url=settings.salesforce_login_url,
            session_seconds=settings.salesforce_session_seconds,
            client_secret=lambda: current_secret(settings, "salesforce_client_secret", environ))
    return None


def netsuite_token_url(settings: Settings) -> str:
    """The NetSuite token endpoint: the setting, else `<netsuite_url>/services/rest/auth/oauth2/v1/token`."""
    if settings.netsuite_token_url:
        return settings.netsuite_token_url
    return settings.netsuite_url.rstrip("/") + NETSUITE_TOKEN_PATH if settings.netsuite_url else ""


def netsuite_grant(settings: Settings, environ: Mapping[str, str] | None = None) -> Grant | None:
    """The NetSuite grant the settings choose (None: `static`); SettingsError naming what the flow lacks."""
    check_auth_flows(settings)
    if settings.netsuite_auth_flow != "client_credentials":
        return None
    return NetSuiteClientCredentials(
        client_id=settings.netsuite_client_id, certificate_id=settings.netsuite_certificate_id,
        scopes=tuple(settings.netsuite_scopes.split(",")), token_url=netsuite_token_url(settings),
        private_key=lambda: current_secret(settings, "netsuite_private_key", environ))


def auth_configured(settings: Settings, platform: str) -> bool:
    """Whether `platform` (salesforce or netsuite) has complete credentials: its static token, or a complete
    flow (which brings the Salesforce instance URL with it). An incomplete flow raises SettingsError."""
    grant = salesforce_grant(settings) if platform == "salesforce" else netsuite_grant(settings)
    if grant is not None:
        return True
    return bool(getattr(settings, f"{platform}_access_token"))


_SOURCES: dict[tuple[object, ...], TokenSource] = {}


def _shared(grant: Grant, margin: float, timeout: float, identity: tuple[object, ...]) -> TokenSource:
    """The process's source for `identity` (the flow's settings; a secret's digest, never the secret)."""
    source = _SOURCES.get(identity)
    if source is None:
        source = _SOURCES[identity] = TokenSource(grant, margin=margin, post=http_poster(timeout))
    return source


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def salesforce_token_source(settings: Settings) -> AccessTokens:
    """The process-wide source of Salesforce access tokens for `settings` (a `StaticToken` for `static`).

    Every user of the token in the process shares it: `token()`, `refresh(refused)` and `current()`
    (`instance_url`, `org_id`). SettingsError when the chosen flow is incomplete."""
    grant = salesforce_grant(settings)
    if grant is None:
        return StaticToken("salesforce", settings.salesforce_access_token, settings.salesforce_instance_url)
    identity = ("salesforce", settings.salesforce_auth_flow, settings.salesforce_client_id,
                settings.salesforce_username, settings.salesforce_login_url, settings.salesforce_session_seconds,
                _digest(settings.salesforce_private_key + settings.salesforce_client_secret))
    return _shared(grant, settings.salesforce_token_refresh_margin_seconds, settings.connector_timeout_seconds,
                   identity)


def netsuite_token_source(settings: Settings) -> AccessTokens:
    """The process-wide source of NetSuite access tokens for `settings` (a `StaticToken` for `static`)."""
    grant = netsuite_grant(settings)
    if grant is None:
        return StaticToken("netsuite", settings.netsuite_access_token)
    identity = ("netsuite", settings.netsuite_client_id, settings.netsuite_certificate_id, grant.url,
                settings.netsuite_scopes, _digest(settings.netsuite_private_key))
    return _shared(grant, settings.netsuite_token_refresh_margin_seconds, settings.connector_timeout_seconds,
                   identity)
