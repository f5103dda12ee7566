"""The HTTP plumbing every platform connector shares: one session, timeouts, error classification.

`HttpClient` sends one request to a platform and returns its `HttpResponse`, or raises
`ConnectorError`:

* a 4xx/5xx answer -> `classify_status` (base.py) decides the kind; the reason names the platform,
  the request and the platform's own error message (each connector passes a function that reads
  its platform's error body); `Retry-After` (seconds or an HTTP date) becomes `retry_after`;
* a timeout or a connection failure -> TRANSIENT (the idempotency key or upsert makes a retry safe);
* an empty base URL -> AUTH: the platform is not configured, and every command to it would fail the
  same way until an operator sets the URL.

Credentials travel only in request headers and are never logged: `redacted()` masks them in
anything written to logs. A client built with an `Authorizer` (connectors/tokens.py: the expiring
tokens of Salesforce and NetSuite) asks it for the headers of each request, and after a 401 asks once
for new ones and sends the request once more (a token that expired or was revoked costs one retry,
not a halt); the authorizer may also name the API base (Salesforce's `instance_url`) when the client
has none.

Every id a connector puts into a URL path goes through `segment()`: ids come from platform payloads
(attacker-influenced), so each is percent-encoded as exactly one path segment ("in_1/../customer/5"
-> "in_1%2F..%2Fcustomer%2F5"), and "", "." and ".." (which no encoding keeps from meaning a
directory) are DATA errors. `HttpClient` sends the path as encoded, so nothing re-normalizes it.

Also here: `to_major` (money for platforms that show decimal amounts), and the DATA errors every
connector raises the same way (`target`, `quantity`, `unsupported`, `unknown_field`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol
from urllib.parse import quote

import aiohttp
import msgspec
from msgspec import Struct
from yarl import URL

from concord.connectors.base import ConnectorError, ErrorKind, classify_status
from concord.core.currency import minor_units
from concord.core.messages import Command

log = logging.getLogger(__name__)

_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})
# Longest error text kept in a reason: enough for the platform's message, not a whole HTML page.
_MAX_REASON_DETAIL: Final = 300


class HttpResponse(Struct, frozen=True, kw_only=True):
    """A platform's successful answer."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = {}  # names lower-cased

    def json(self) -> Any:
        """The body as JSON (None when empty)."""
        return msgspec.json.decode(self.body) if self.body else None


class Authorization(Struct, frozen=True, kw_only=True):
    """Credentials for one request, from an `Authorizer`."""

    headers: dict[str, str]
    base_url: str = ""  # the API base these credentials name ("": the client's own)
    key: str = ""  # what tells these credentials apart (the token), handed back when they are refused


class Authorizer(Protocol):
    """Where a client gets its credentials, and new ones when the platform refuses them (401)."""

    async def authorize(self) -> Authorization:
        """The credentials of the next request; raises ConnectorError when they cannot be had."""
        ...

    async def reauthorize(self, refused: Authorization) -> Authorization | None:
        """Credentials other than `refused`, or None when there are none to get (a static token)."""
        ...


ErrorReader = Callable[[bytes], str]
"""Reads the platform's error message out of an error response body ("" when there is none)."""


def redacted(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to log: credentials replaced by "***"."""
    return {k: "***" if k.lower() in _SECRET_HEADERS else v for k, v in headers.items()}


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` in seconds: delta-seconds ("2", "1.5") or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return max((when - current).total_seconds(), 0.0)


def to_major(minor: int, currency: str) -> float:
    """Integer minor units -> the decimal amount Salesforce and NetSuite show (1999 USD -> 19.99)."""
    return float(Decimal(minor).scaleb(-minor_units(currency.upper())))


_DOT_SEGMENTS: Final = frozenset({"", ".", ".."})


def segment(value: object) -> str:
    """`value` (a record id from a command or a platform's answer) as one percent-encoded URL path segment.

    Every character outside RFC 3986's unreserved set is encoded, "/" and "%" included, so the id
    can neither add path segments nor smuggle pre-encoded ones; the platform decodes it back to the
    id. "", "." and ".." are refused (DATA): a dot segment addresses the parent record whether
    encoded or not (servers and proxies normalize "%2E%2E" too), and no platform id is one.
    """
    text = str(value)
    if text in _DOT_SEGMENTS:
        raise ConnectorError(ErrorKind.DATA, f"{text!r} is not a record id that can go into a URL path")
    return quote(text, safe="")


def not_configured(platform: str, url_variable: str) -> ConnectorError:
    """The AUTH error of a platform whose base URL is empty."""
    return ConnectorError(ErrorKind.AUTH, f"{platform} is not configured: set {url_variable}")


def bad_answer(platform: str, what: str, exc: Exception) -> ConnectorError:
    """The DATA error of an answer that is not the shape the platform's API documents (`what`: the request)."""
    return ConnectorError(ErrorKind.DATA, f"{platform} {what}: the answer is not what the API documents "
                          f"({type(exc).__name__}: {str(exc)[:200]})")


class HttpClient:
    """One platform's HTTP session (opened on first use, inside the running event loop)."""

    def __init__(
        self,
        platform: str,
        base_url: str,
        *,
        url_variable: str,
        timeout: float,
        headers: Mapping[str, str],
        error_reader: ErrorReader,
        secret_path: bool = False,
        auth: Authorizer | None = None,
    ) -> None:
        self.platform = platform
        # A path that is itself a credential (a Slack webhook's) is left out of every error text and log line.
        self.secret_path = secret_path
        self.base_url = base_url.rstrip("/")
        self._base = URL(self.base_url) if self.base_url else None
        self.url_variable = url_variable
        self.timeout = timeout
        self._headers = dict(headers)
        self._error_reader = error_reader
        self.auth = auth
        self._session: aiohttp.ClientSession | None = None
        # Awaited before every request: the executor paces requests by the platform's shared rate
        # limit, so an action that makes two requests takes two tokens.
        self.pace: Callable[[], Awaitable[None]] | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: list[tuple[str, str]] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        allow: frozenset[int] = frozenset(),
    ) -> HttpResponse:
        """Send one request; an error status not in `allow` raises `ConnectorError`.

        The body is `json` (encoded here), `form`, or `content`: bytes sent exactly as given (a signed
        body), with the Content-Type the caller puts in `headers`. `path` is sent as it is (already
        encoded: every id in it through `segment()`); a dot segment in it is refused before anything is sent.
        With an authorizer, a 401 gets new credentials once and the request is sent once more.
        """
        if self._base is None and self.auth is None:
            raise not_configured(self.platform, self.url_variable)
        if any(part in (".", "..") for part in path.split("/")):
            raise ConnectorError(ErrorKind.DATA, f"{self.platform} {method} {path}: dot segment in the path")
        what = f"{self.platform} {method}" if self.secret_path else f"{self.platform} {method} {path}"
        credentials = await self.auth.authorize() if self.auth is not None else None
        answer = await self._send(method, path, credentials, json=json, form=form, content=content, params=params,
                                  headers=headers, what=what)
        if answer.status == 401 and self.auth is not None and credentials is not None:
            renewed = await self.auth.reauthorize(credentials)
            if renewed is not None:
                log.info("%s: HTTP 401 with the current token; sent again with a new one", what)
                answer = await self._send(method, path, renewed, json=json, form=form, content=content,
                                          params=params, headers=headers, what=what)
        if answer.status >= 400 and answer.status not in allow:
            raise self.error(what, answer)
        return answer

    async def _send(self, method: str, path: str, credentials: Authorization | None, *, json: Any,
                    form: list[tuple[str, str]] | None, content: bytes | None, params: Mapping[str, str] | None,
                    headers: Mapping[str, str] | None, what: str) -> HttpResponse:
        """One request on the wire (paced), whatever its status; no answer -> TRANSIENT."""
        base = self._base
        if base is None and credentials is not None and credentials.base_url:
            base = URL(credentials.base_url.rstrip("/"))
        if base is None:
            raise not_configured(self.platform, self.url_variable)
        if self.pace is not None:
            await self.pace()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))
        request_headers = {**(credentials.headers if credentials is not None else {}), **(headers or {})}
        data: bytes | aiohttp.FormData | None = None
        if json is not None:
            data = msgspec.json.encode(json)
            request_headers["Content-Type"] = "application/json"
        elif form is not None:
            data = aiohttp.FormData(form)
        elif content is not None:
            data = content
        try:
            # encoded=True: yarl neither re-quotes nor normalizes what `segment()` encoded.
            url = base.with_path(base.raw_path.rstrip("/") + path, encoded=True)
            async with self._session.request(method, url, data=data, params=params,
                                             headers=request_headers) as response:
                body = await response.read()
                answer = HttpResponse(status=response.status, body=body,
                                      headers={k.lower(): v for k, v in response.headers.items()})
        except TimeoutError:
            raise ConnectorError(ErrorKind.TRANSIENT, f"{what}: no answer within {self.timeout:g}s "
                                 "(connector_timeout_seconds)") from None
        except aiohttp.ClientError as exc:
            raise ConnectorError(ErrorKind.TRANSIENT, f"{what}: {type(exc).__name__}: {exc}") from None
        log.debug("%s -> %s", what, answer.status)
        return answer

    def error(self, what: str, answer: HttpResponse) -> ConnectorError:
        """The `ConnectorError` of an error answer (one a caller let through with `allow`, then found wrong)."""
        try:
            message = self._error_reader(answer.body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, AttributeError, TypeError,
                KeyError, IndexError):
            message = ""
        if not message:
            message = answer.body[:_MAX_REASON_DETAIL].decode(errors="replace").strip() or "(empty body)"
        return ConnectorError(classify_status(answer.status), f"{what}: {message[:_MAX_REASON_DETAIL]}",
                              status=answer.status, retry_after=retry_after(answer.headers.get("retry-after")))

    async def close(self) -> None:
        """Close the session (a later request opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        # Let the connector's transports finish closing before the loop moves on (aiohttp's advice).
        await asyncio.sleep(0)


def target(command: Command, key: str) -> str:
    """`command.target[key]`, or a DATA error naming what is missing."""
    value = command.target.get(key)
    if not value:
        raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id} has no target "
                             f"{key!r} (target: {command.target})")
    return value


def quantity(command: Command) -> int:
    """`command.payload["quantity"]`: a whole number of units, at least 1 (what billing and ERP lines count), or
    a DATA error saying what it was."""
    value = command.payload.get("quantity")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConnectorError(ErrorKind.DATA, f"{command.action} command {command.command_id}: payload 'quantity' "
                             f"must be a whole number of units, at least 1, got {value!r}")
    return value


def unsupported(platform: str, command: Command) -> ConnectorError:
    """The DATA error of an action this connector does not execute."""
    return ConnectorError(ErrorKind.DATA, f"unsupported action {command.action!r} for the {platform} connector "
                          f"(command {command.command_id})")


def unknown_field(platform: str, field: str, known: Iterable[str]) -> ConnectorError:
    """The DATA error of a customer field the platform does not hold."""
    return ConnectorError(ErrorKind.DATA, f"{platform} customers have no field {field!r}: the connector maps "
                          f"{', '.join(sorted(known))}")


def split_address(line: str) -> tuple[str, str | None]:
    """A one-line canonical address -> (street part, ISO country or None).

    Concord's model writes an address as one line ending with the country ("1 Main St, Springfield,
    US"), the way the codecs join a platform's parts. The country goes back to the platform's country
    field, the rest to its street line, so the platform's own one-line rendering equals `line`.
    """
    head, _, last = line.rpartition(",")
    country = last.strip()
    if head and len(country) == 2 and country.isalpha():
        return head.strip(), country.upper()
    return line.strip(), None
