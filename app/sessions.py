"""Signed session cookies: how a browser holds a person's credential, and the CSRF token of its actions.

A browser cannot send `Authorization: Bearer` when a person opens the board or when its page opens the
live stream (`EventSource` takes no headers). So a person signs in once at `/login` with their own token (a
user of the users file, app/users.py), or the read or admin token, and gets a cookie that the access
middleware (app/access.py) takes as that person's credential until it expires. A token in the URL
(`?token=`) was the alternative, and was refused: URLs end up in browser history, proxy logs and `Referer`.

The cookie, `concord_session`, is `v1.<payload>.<signature>` (base64url): the payload is a `Session`
(JSON: the user's name and role, when it was issued and until when it holds), the signature HMAC-SHA256 over
`v1.<payload>`. Its key is derived from `CONCORD_SESSION_SECRET` (or, unset, the read token) together with a
digest of the read token, so rotating the read token ends every session made with the old one, as it would
end every script's access. It is `HttpOnly` (no script reads it), `SameSite=Strict` (a page of another site
never makes the browser send it), `Path=/`, lives `CONCORD_SESSION_MAX_AGE_SECONDS` (also written inside the
signed payload: a kept cookie does not outlive it) and is `Secure` with `CONCORD_SESSION_COOKIE_SECURE`.
The role in the cookie is what the person had when signing in; the access middleware takes a user's role
from the users file at each request, so removing or demoting a user applies at once.

**CSRF.** A browser sends a cookie by itself, which is what cross-site request forgery abuses, so a request
that changes something and is authenticated by the cookie must also carry the session's CSRF token (form
field `csrf_token` or header `X-CSRF-Token`). The token is HMAC-SHA256 of the cookie value under the same
key (`csrf_token`): nothing more is stored, a page of another site cannot read it (it is only in this
site's pages), and it changes with each sign-in. `SameSite=Strict` alone would do in today's browsers; the
token is the defence that does not depend on the browser. A bearer request needs none: no browser sends a
bearer header by itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Final

import msgspec
from aiohttp import web
from msgspec import Struct

from concord.core.settings import Settings

COOKIE: Final = "concord_session"
VERSION: Final = "v1"
#: Where a session's CSRF token comes with a request: a form field, or a header (a page's script).
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
_KEY_LABEL: Final = b"concord session key v1\x00"
_CSRF_LABEL: Final = b"concord csrf v1\x00"


class Session(Struct, frozen=True, kw_only=True):
    """What a session cookie says, once its signature is checked."""

    role: str  # viewer or operator (app/users.py), as it was at sign-in
    issued: int  # epoch seconds
    expires: int  # epoch seconds
    name: str = ""  # who signed in: a user of the users file, or "read-token" / "admin-token"


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Session).decode


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_key(settings: Settings) -> bytes:
    """The signing key: the session secret (or the read token) bound to the read token's digest."""
    base = settings.session_secret or settings.read_token
    return hmac.new(base.encode(), _KEY_LABEL + hashlib.sha256(settings.read_token.encode()).digest(),
                    hashlib.sha256).digest()


class Sessions:
    """Issues and checks the session cookies of one worker's settings (every worker derives the same key)."""

    def __init__(self, settings: Settings) -> None:
        # No key, no sessions: /login answers 503 (app/access.py).
        self.enabled = bool(settings.read_token or settings.session_secret)
        self.max_age = settings.session_max_age_seconds
        self.secure = settings.session_cookie_secure
        self._key = session_key(settings) if self.enabled else b""

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, f"{VERSION}.{body}".encode(), hashlib.sha256).digest())

    def issue(self, name: str, role: str, now: float) -> str:
        """A cookie value for a session of user `name` with `role`, starting at `now` (epoch seconds)."""
        if not self.enabled:
            raise RuntimeError("sessions need CONCORD_SESSION_SECRET or CONCORD_READ_TOKEN to sign their cookies")
        body = _b64(_encode(Session(role=role, issued=int(now), expires=int(now) + self.max_age, name=name)))
        return f"{VERSION}.{body}.{self._sign(body)}"

    def verify(self, value: str | None, now: float) -> Session | None:
        """The session `value` holds, when its signature is ours and it has not expired; otherwise None."""
        if not self.enabled or not value:
            return None
        version, _, rest = value.partition(".")
        body, _, signature = rest.partition(".")
        if version != VERSION or not body or not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        try:
            session = _decode(_unb64(body))
        except (binascii.Error, ValueError, msgspec.DecodeError):  # signed by us, so only a bug gets here
            return None
        # A cookie from before sessions had names (they only read) is no session: sign in again.
        return session if session.name and session.issued <= now < session.expires else None

    def of(self, request: web.Request) -> Session | None:
        """The request's valid session, if it carries one: the one place a request's session is read."""
        return self.verify(request.cookies.get(COOKIE), time.time())

    def csrf_token(self, cookie: str) -> str:
        """The CSRF token of the session cookie `cookie` (what its pages put in their forms)."""
        return _b64(hmac.new(self._key, _CSRF_LABEL + cookie.encode("utf-8", "surrogateescape"),
                             hashlib.sha256).digest())

    def csrf_of(self, request: web.Request) -> str:
        """The CSRF token of the request's session cookie ("" without one)."""
        cookie = request.cookies.get(COOKIE)
        return self.csrf_token(cookie) if self.enabled and cookie else ""

    def csrf_valid(self, request: web.Request, given: str | None) -> bool:
        """Whether `given` is the CSRF token of the request's session cookie."""
        expected = self.csrf_of(request)
        return bool(expected and given) and hmac.compare_digest(expected.encode(), (given or "").encode(
            "utf-8", "surrogateescape"))

    def set_cookie(self, response: web.StreamResponse, value: str) -> None:
        response.set_cookie(COOKIE, value, max_age=self.max_age, path="/", httponly=True, samesite="Strict",
                            secure=self.secure)

    def clear_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=self.secure)
