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
* `read`: customer data, findings, ledger entries: `Authorization: Bearer <CONCORD_READ_TOKEN>` (the
  admin token reads too). No read token configured: 503, never open.
* `admin`: actions: `Authorization: Bearer <CONCORD_ADMIN_TOKEN>`. No admin token configured: 503.
* `login`: where a person signs in (`/login`): no credential (it is where one is given), internal
  listener only, 503 while no read token is configured (there is nothing to sign in with).

A browser cannot send a bearer header, so `read` also takes a signed session cookie (app/sessions.py;
`Sessions.of` is the one place a session is read); `admin` never does (no CSRF protection yet). A person
opening a page (`PAGES`) without any credential is sent to `/login` (303) instead of a 401.

Refusals are JSON with a one-word `error`; a header with bytes that are not text is a 401, never a 500.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from aiohttp import web

from concord.app.sessions import Sessions
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
    # The board (app/console/): its page, its live stream, the fragments its script fetches, its files.
    "/": READ,
    "/events": READ,
    "/board/findings/{fingerprint}": READ,
    "/board/summary": READ,
    "/static/{name}": READ,
    "/login": LOGIN,
    "/logout": LOGIN,
}
#: Pages a person opens in a browser: without any credential, a redirect to `/login` rather than a 401.
PAGES: Final = frozenset({"/"})
#: What the public (webhook) listener serves, when there is one.
PUBLIC: Final = frozenset({WEBHOOK, OPEN})

#: The versioned API's prefix: `/api/v1/drift` needs what `/api/drift` needs.
VERSIONED: Final = "/api/v1/"

NEEDS: Final = frozenset({OPEN, INTERNAL, WEBHOOK, METRICS, READ, ADMIN, LOGIN})
# Routes an extension of the worker adds (a test app, a plugin), listed with `allow` before it serves.
_added: dict[str, str] = {}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    """The policy of one worker: its tokens and, when webhooks have their own listener, its port."""

    def __init__(self, settings: Settings) -> None:
        self.read_token = settings.read_token
        self.admin_token = settings.admin_token
        self.webhook_port = settings.webhook_port
        self.metrics_require_token = settings.metrics_require_token
        self.sessions = Sessions(settings)

    def check(self, route: str | None, request: web.Request, local_port: int | None) -> web.Response | None:
        """None when the request may go on; otherwise the refusal to send."""
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
            if not self.read_token:
                return _refuse(503, "not_configured", "set CONCORD_READ_TOKEN: it is what people sign in with")
            return None
        return self._token(request, admin=need == ADMIN, page=route in PAGES)

    def token_role(self, given: bytes) -> str | None:
        """`admin` or `read` for a configured token, None for any other (every token is compared)."""
        if _matches(given, self.admin_token):
            return ADMIN
        return READ if _matches(given, self.read_token) else None

    def _token(self, request: web.Request, admin: bool, page: bool = False) -> web.Response | None:
        tokens = (self.admin_token,) if admin else (self.read_token, self.admin_token)
        variable = "CONCORD_ADMIN_TOKEN" if admin else "CONCORD_READ_TOKEN"
        if not (self.admin_token if admin else self.read_token):
            return _refuse(503, "not_configured", f"set {variable} to open this route to its token holders")
        given = bearer(request)
        if given is None:
            if not admin and self.sessions.of(request) is not None:
                return None  # a signed-in browser reads (a session never acts: app/sessions.py)
            if page and "Authorization" not in request.headers:  # a person, not a script with a bad header
                return to_login(request)
            return _refuse(401, "unauthorized", "send Authorization: Bearer <token>, or sign in at /login",
                           {"WWW-Authenticate": 'Bearer realm="concord"'})
        if _matches(given, *tokens):
            return None
        if admin and _matches(given, self.read_token):
            return _refuse(403, "forbidden", "a read token cannot act: use the admin token")
        return _refuse(401, "unauthorized", "token refused", {"WWW-Authenticate": 'Bearer realm="concord"'})

    def middleware(self) -> Middleware:
        """The aiohttp middleware that applies this policy to every request before its handler."""

        @web.middleware
        async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
            info = request.match_info
            route = info.route.resource.canonical if info.route.resource is not None else None
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            local_port = sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None
            refusal = self.check(route, request, local_port)
            return refusal if refusal is not None else await handler(request)

        return access
