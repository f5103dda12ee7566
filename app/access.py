"""Who may reach which route: one table, enforced for every request by one aiohttp middleware.

Every route the worker serves is listed in `POLICY` with the credential it needs; a route that is not
listed is closed (404), so a new route is refused until someone decides who may call it, and
`tests/unit/app/test_access.py` fails until it is listed. Faust's own routes (`/router/*`, its index)
are not Concord's and stay closed.

* `webhook`: signed by the platform (the ingress checks the signature); served on the public listener
  when `CONCORD_WEBHOOK_PORT` is set, and then closed on the internal one.
* `open`: liveness, on every listener. `internal`: readiness (it names the broker) and the API's OpenAPI
  document (`/api/openapi.json`: the contract, not customer data), internal listener only.
* `metrics`: open on the internal listener unless `CONCORD_METRICS_REQUIRE_TOKEN` (then `read`);
  never served on the public listener.
* `read`: customer data, findings, ledger entries, the board: any identity (a `viewer` or an `operator`).
  No read token and no users file configured: 503, never open.
* `admin`: actions: an `operator` only; a viewer gets 403. No admin token and no users file: 503.
* `login`: where a person signs in (`/login`): no credential (it is where one is given), internal
  listener only, 503 while sessions cannot be signed (no read token nor session secret) or there is
  nothing to sign in with (no read token nor users file).

**Identities** (`Identity`: a name and a role, given to handlers as `identity(request)`): the read token is
the viewer `read-token`, the admin token the operator `admin-token`, and each user of the users file
(app/users.py) is who the file says. A script or a monitor sends `Authorization: Bearer <token>` (one of the
two tokens or a user's own), on every route, pages and `/events` included. A browser signs in once at
`/login` and sends its signed session cookie (app/sessions.py; `Sessions.of` is the one place a session is
read); a user's role is read from the users file at each request, so removing or demoting one applies at
once. A request that changes something (not GET, HEAD or OPTIONS) authenticated by the cookie must carry the
session's CSRF token (`X-CSRF-Token` or the form field `csrf_token`), or it is refused (403 `csrf`); a
bearer request needs none. A person opening a page (`PAGES`) without any credential is sent to `/login`
(303) instead of a 401.

Refusals are JSON with a one-word `error`; a header with bytes that are not text is a 401, never a 500.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import quote

from aiohttp import web
from msgspec import Struct

from concord.app import users as users_mod
from concord.app.sessions import CSRF_FIELD, CSRF_HEADER, Sessions
from concord.app.users import OPERATOR, VIEWER, Directory, TokenCache
from concord.core.settings import Settings

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware

OPEN: Final = "open"
INTERNAL: Final = "internal"
WEBHOOK: Final = "webhook"
METRICS: Final = "metrics"
READ: Final = "read"
ADMIN: Final = "admin"
LOGIN: Final = "login"

#: Every route (aiohttp's canonical path) -> the credential it needs. Not listed: closed. A versioned
#: `/api/v1/<path>` needs what its unversioned alias `/api/<path>` needs (app/contract.py).
POLICY: Final[Mapping[str, str]] = {
    "/healthz": OPEN,
    "/readyz": INTERNAL,
    "/metrics": METRICS,
    "/webhooks/{platform}": WEBHOOK,
    "/api/openapi.json": INTERNAL,  # the contract (app/contract.py): not customer data
    "/api/health": READ,
    "/api/drift": READ,
    "/api/drift/{fingerprint}": READ,
    "/api/drift/{fingerprint}/accept": ADMIN,
    "/api/drift/{fingerprint}/snooze": ADMIN,
    "/api/drift/{fingerprint}/retry": ADMIN,
    "/api/drift/{fingerprint}/approve": ADMIN,
    "/api/drift/{fingerprint}/reject": ADMIN,
    "/api/dead-letters/replay": ADMIN,
    "/api/rules": READ,
    "/api/search": READ,
    "/api/customers/{key}": READ,
    "/api/customers/{key}/view": READ,
    "/api/customers/{key}/timeline": READ,
    "/api/commands/status": READ,
    "/api/commands/{command_id}": READ,
    # The process APIs (app/lookups.py): versioned only, they have no unversioned past.
    "/api/v1/customers/{key}/entitlement": READ,
    "/api/v1/customers/{key}/invoices": READ,
    "/api/v1/customers/{key}/subscriptions": READ,
    "/api/v1/reconcile": READ,
    # The quote-to-cash sagas (app/sagas_api.py): versioned only too.
    "/api/v1/sagas": READ,
    "/api/v1/sagas/{opportunity_id}": READ,
    "/api/v1/sagas/{opportunity_id}/resume": ADMIN,
    # The console (app/console/): the board, its live stream, the fragments its script fetches, its files;
    # the search page, the customer view and the sagas page.
    "/": READ,
    "/events": READ,
    "/board/findings/{fingerprint}": READ,
    "/board/summary": READ,
    "/static/{name}": READ,
    "/search": READ,
    "/customers/{key}": READ,
    "/sagas": READ,
    "/login": LOGIN,
    "/logout": LOGIN,
}
#: Pages a person opens in a browser: without any credential, a redirect to `/login` rather than a 401.
PAGES: Final = frozenset({"/", "/search", "/customers/{key}", "/sagas"})
#: What the public (webhook) listener serves, when there is one.
PUBLIC: Final = frozenset({WEBHOOK, OPEN})

#: The versioned API's prefix: `/api/v1/drift` needs what `/api/drift` needs.
VERSIONED: Final = "/api/v1/"

NEEDS: Final = frozenset({OPEN, INTERNAL, WEBHOOK, METRICS, READ, ADMIN, LOGIN})
# Routes an extension of the worker adds (a test app, a plugin), listed with `allow` before it serves.
_added: dict[str, str] = {}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The pseudo-users of the two tokens (what audit checkpoints name when a script acts with a token).
READ_TOKEN_USER: Final = "read-token"
ADMIN_TOKEN_USER: Final = "admin-token"
#: Methods that change nothing: no CSRF token needed.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class Identity(Struct, frozen=True):
    """Who made a request: a name, a role (`viewer` or `operator`) and how they proved it."""

    name: str
    role: str
    via: Literal["bearer", "session"]

    @property
    def can_act(self) -> bool:
        return self.role == OPERATOR


IDENTITY: Final = web.RequestKey("concord_identity", Identity)


def identity(request: web.Request) -> Identity | None:
    """Who made `request`, as the access middleware established it (None on routes that need no credential)."""
    return request.get(IDENTITY)


def allow(route: str, need: str) -> None:
    """List a route that code outside app/ adds to a worker, with the credential it needs."""
    if need not in NEEDS:
        raise ValueError(f"unknown credential {need!r} for {route}: choose from {', '.join(sorted(NEEDS))}")
    _added[route] = need


def need_of(route: str | None) -> str | None:
    """The credential `route` needs; None when it is not listed (closed)."""
    if route is None:
        return None
    if route not in POLICY and route.startswith(VERSIONED):
        route = "/api/" + route[len(VERSIONED):]
    return POLICY.get(route) or _added.get(route)


def _refuse(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


def bearer(request: web.Request) -> bytes | None:
    """The bearer token of the request as bytes; None when there is none or it is not `Bearer <token>`."""
    value = request.headers.get("Authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # aiohttp decodes header bytes leniently; encode back what was sent so any byte compares, never raises.
    return token.strip().encode("utf-8", "surrogateescape")


def to_login(request: web.Request) -> web.Response:
    """303 to the sign-in page, which comes back to this page afterwards."""
    return web.Response(status=303, headers={"Location": f"/login?next={quote(request.path_qs, safe='')}"})


def _matches(given: bytes, *tokens: str) -> bool:
    # Every configured token is compared (no early exit tells which one nearly matched).
    found = False
    for token in tokens:
        if token and hmac.compare_digest(given, token.encode()):
            found = True
    return found


class Access:
    """The policy of one worker: its tokens, its users and, when webhooks have their own listener, its port."""

    def __init__(self, settings: Settings) -> None:
        self.read_token = settings.read_token
        self.admin_token = settings.admin_token
        self.webhook_port = settings.webhook_port
        self.metrics_require_token = settings.metrics_require_token
        self.sessions = Sessions(settings)
        self.users = Directory(settings.users_file)
        self._verified = TokenCache()

    async def check(self, route: str | None, request: web.Request, local_port: int | None) -> web.Response | None:
        """None when the request may go on (its identity, if any, set on it); otherwise the refusal to send."""
        need = need_of(route)
        if need is None:
            return _refuse(404, "not_found", "no such route")
        public = bool(self.webhook_port) and local_port == self.webhook_port
        if public and need not in PUBLIC:
            return _refuse(404, "not_found", "this listener serves webhooks only")
        if need == WEBHOOK:
            if self.webhook_port and not public:
                return _refuse(404, "not_found", f"webhooks are served on port {self.webhook_port}")
            return None
        if need in (OPEN, INTERNAL) or (need == METRICS and not self.metrics_require_token):
            return None
        if need == LOGIN:
            if not self.sessions.enabled or not (self.read_token or self.users.path):
                return _refuse(503, "not_configured", "set CONCORD_READ_TOKEN or CONCORD_USERS_FILE (with "
                               "CONCORD_SESSION_SECRET): they are what people sign in with")
            return None
        return await self._credential(request, act=need == ADMIN, page=route in PAGES)

    def identify_token(self, given: bytes) -> Identity | None:
        """The identity a bearer token (or a token typed at /login) proves; None when it proves none."""
        if _matches(given, self.admin_token):
            return Identity(ADMIN_TOKEN_USER, OPERATOR, "bearer")
        if _matches(given, self.read_token):
            return Identity(READ_TOKEN_USER, VIEWER, "bearer")
        token = given.decode("utf-8", "surrogateescape")
        name = users_mod.name_of_token(token)
        user = self.users.get(name) if name is not None else None
        if user is not None and self._verified.check(token, user):
            return Identity(user.name, user.role, "bearer")
        return None

    def identify_session(self, request: web.Request) -> Identity | None:
        """The identity of the request's session cookie, with the role its user has now."""
        session = self.sessions.of(request)
        if session is None:
            return None
        if session.name == ADMIN_TOKEN_USER:
            return Identity(session.name, OPERATOR, "session") if self.admin_token else None
        if session.name == READ_TOKEN_USER:
            return Identity(session.name, VIEWER, "session") if self.read_token else None
        user = self.users.get(session.name)
        return Identity(user.name, user.role, "session") if user is not None else None

    async def _credential(self, request: web.Request, act: bool, page: bool = False) -> web.Response | None:
        if act and not (self.admin_token or self.users.path):
            return _refuse(503, "not_configured", "set CONCORD_ADMIN_TOKEN or CONCORD_USERS_FILE (with an "
                           "operator) to open this route")
        if not act and not (self.read_token or self.users.path):
            return _refuse(503, "not_configured", "set CONCORD_READ_TOKEN or CONCORD_USERS_FILE to open this "
                           "route to its token holders")
        given = bearer(request)
        if given is not None:
            who = await asyncio.to_thread(self.identify_token, given) if self.users.path else \
                self.identify_token(given)
            if who is None:
                return _refuse(401, "unauthorized", "token refused", {"WWW-Authenticate": 'Bearer realm="concord"'})
        else:
            who = self.identify_session(request)
            if who is None:
                if page and "Authorization" not in request.headers:  # a person, not a script with a bad header
                    return to_login(request)
                return _refuse(401, "unauthorized", "send Authorization: Bearer <token>, or sign in at /login",
                               {"WWW-Authenticate": 'Bearer realm="concord"'})
            if request.method not in SAFE_METHODS and not await self._csrf_valid(request):
                return _refuse(403, "csrf", f"this request is signed in with a session cookie but carries no valid "
                               f"CSRF token: send the page's token as the form field {CSRF_FIELD} or the header "
                               f"{CSRF_HEADER} (reload the page if you signed in again), or use a bearer token")
        if act and not who.can_act:
            return _refuse(403, "forbidden", f"{who.name} is a {who.role}: acting needs an operator (a user with "
                           "role operator, or the admin token)")
        request[IDENTITY] = who
        return None

    async def _csrf_valid(self, request: web.Request) -> bool:
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()  # aiohttp keeps it: the handler reads the same form
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        return self.sessions.csrf_valid(request, given)

    def middleware(self) -> Middleware:
        """The aiohttp middleware that applies this policy to every request before its handler."""

        @web.middleware
        async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
            info = request.match_info
            route = info.route.resource.canonical if info.route.resource is not None else None
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            local_port = sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None
            refusal = await self.check(route, request, local_port)
            return refusal if refusal is not None else await handler(request)

        return access
