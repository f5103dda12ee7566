"""Signed session cookies: how a browser holds the read credential.

A browser cannot send `Authorization: Bearer` when a person opens the board or when its page opens the
live stream (`EventSource` takes no headers). So a person signs in once at `/login` with the read token
(or the admin token), and gets a cookie that the access middleware (app/access.py) takes as the read
credential until it expires. A token in the URL (`?token=`) was the alternative, and was refused: URLs end
up in browser history, proxy logs and `Referer` headers.

The cookie, `concord_session`, is `v1.<payload>.<signature>` (base64url): the payload is a `Session`
(JSON), the signature HMAC-SHA256 over `v1.<payload>`. Its key is derived from `CONCORD_SESSION_SECRET`
(or, unset, the read token) together with a digest of the read token, so rotating the read token ends
every session made with the old one, as it would end every script's access. It is `HttpOnly` (no script
reads it), `SameSite=Strict` (a page of another site never makes the browser send it), `Path=/`, lives
`CONCORD_SESSION_MAX_AGE_SECONDS` (also written inside the signed payload: a kept cookie does not outlive
it) and is `Secure` with `CONCORD_SESSION_COOKIE_SECURE`.

**A session only reads**, even one signed in with the admin token: a browser sends a cookie by itself,
which is what cross-site request forgery abuses, so actions keep needing the admin bearer token until
they have CSRF protection. People with names and roles (a users file) extend `Session` and `Sessions.of`;
the access middleware asks only `Sessions.of(request)`.
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
#: What a session may do: read (customer data, findings, the board), never act.
READ_ROLE: Final = "read"
_KEY_LABEL: Final = b"concord session key v1\x00"


class Session(Struct, frozen=True, kw_only=True):
    """What a session cookie says, once its signature is checked."""

    role: str
    issued: int  # epoch seconds
    expires: int  # epoch seconds


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
        # No read token, no sessions: there would be nothing to sign in with, and the routes answer 503.
        self.enabled = bool(settings.read_token)
        self.max_age = settings.session_max_age_seconds
        self.secure = settings.session_cookie_secure
        self._key = session_key(settings) if self.enabled else b""

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, f"{VERSION}.{body}".encode(), hashlib.sha256).digest())

    def issue(self, role: str, now: float) -> str:
        """A cookie value for a session of `role` starting at `now` (epoch seconds)."""
        if not self.enabled:
            raise RuntimeError("sessions need CONCORD_READ_TOKEN: there is nothing to sign in with")
        body = _b64(_encode(Session(role=role, issued=int(now), expires=int(now) + self.max_age)))
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
        return session if session.issued <= now < session.expires else None

    def of(self, request: web.Request) -> Session | None:
        """The request's valid session, if it carries one: the one place a request's session is read."""
        return self.verify(request.cookies.get(COOKIE), time.time())

    def set_cookie(self, response: web.StreamResponse, value: str) -> None:
        response.set_cookie(COOKIE, value, max_age=self.max_age, path="/", httponly=True, samesite="Strict",
                            secure=self.secure)

    def clear_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=self.secure)
