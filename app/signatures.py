"""Webhook signature checks, pure (no I/O): the caller passes the clock.

* Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 over `"<t>.<body>"`.
* Zendesk: `X-Zendesk-Webhook-Signature` = base64 HMAC-SHA256 over timestamp + body (no separator),
  timestamp in `X-Zendesk-Webhook-Signature-Timestamp` (ISO 8601).
* NetSuite (our SuiteScript, docs/netsuite-suitescript.md): `X-Concord-Signature: t=<unix>,v1=<hex>`,
  the same scheme as Stripe's.

Every check also refuses timestamps further than `tolerance` seconds from now (replays). Any missing,
malformed (not ASCII, `t` not plain digits, a Zendesk time without a zone) or wrong header raises
SignatureError with a one-word `reason` (`missing_signature`, `malformed_signature`, `bad_signature`,
`stale`), never another exception. Signatures are compared as bytes, and the HMAC covers the timestamp
bytes exactly as sent.

Two steps, so the ingress refuses before it reads a body: `parse(platform, headers, now, tolerance)`
checks presence, form and freshness (a stale request is refused as `stale` even if it is also forged:
its body is never read), then `verify(parsed, body, secret)` checks the HMAC. The one-shot
`verify_<platform>(body, headers, ...)` checks the HMAC first, so there a forged request is reported as
`bad_signature`, not `stale`.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from concord.core.signing import hmac_sha256

# The header value Stripe and our NetSuite script send, for tests that deliver a signed webhook.
from concord.core.signing import sign_t_v1 as sign_t_v1

STRIPE_HEADER: Final = "Stripe-Signature"
ZENDESK_HEADER: Final = "X-Zendesk-Webhook-Signature"
ZENDESK_TIMESTAMP_HEADER: Final = "X-Zendesk-Webhook-Signature-Timestamp"
NETSUITE_HEADER: Final = "X-Concord-Signature"

# `t=`: plain ASCII digits, bounded (not int()'s `_`, `+`, spaces or Unicode digits).
_UNIX_TIME: Final = re.compile(r"[0-9]{1,12}")
# Zendesk's timestamp: ISO 8601 with an explicit zone.
_ISO_WITH_ZONE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})")


class SignatureError(Exception):
    """The request is not provably from the platform. `reason` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _header(headers: Mapping[str, str], name: str) -> str:
    # HTTP header names are case-insensitive; aiohttp's CIMultiDict is too, a plain dict is not.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None)
    if not value:
        raise SignatureError("missing_signature", f"no {name} header")
    # Every header these schemes use is ASCII. aiohttp hands non-UTF-8 bytes over as lone surrogates
    # (surrogateescape), which are not ASCII either: refused here, never encoded further down.
    if not isinstance(value, str) or not value.isascii():
        raise SignatureError("malformed_signature", f"{name} is not ASCII")
    return value


def _check_age(timestamp: float, now: float, tolerance: float) -> None:
    if abs(now - timestamp) > tolerance:
        raise SignatureError("stale", f"timestamp {timestamp:.0f} is {now - timestamp:.0f} s from now "
                             f"(tolerance {tolerance:.0f} s)")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A signature header that is present, well formed and (from `parse_*`) fresh; the HMAC is not
    checked yet. The signed message is `prefix + body`; `candidates` are the digests as sent (ASCII)."""

    header: str
    timestamp: float
    prefix: bytes
    candidates: tuple[bytes, ...]
    encoding: Literal["hex", "base64"]


def _read_t_v1(headers: Mapping[str, str], header: str) -> Parsed:
    value = _header(headers, header)
    stamp: str | None = None
    candidates: list[bytes] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t":
            if stamp is not None or not _UNIX_TIME.fullmatch(item):
                raise SignatureError("malformed_signature", f"{header}: t is not one unix time in ASCII digits")
            stamp = item
        elif key == "v1" and item:
            candidates.append(item.encode("ascii"))  # ASCII: checked by _header
    if stamp is None or not candidates:
        raise SignatureError("malformed_signature", f"{header} needs t= and at least one v1=")
    # The HMAC covers the t bytes exactly as sent (`t=0170...` is signed as `0170...`), as Stripe's do.
    return Parsed(header, float(int(stamp)), stamp.encode("ascii") + b".", tuple(candidates), "hex")


def _read_zendesk(headers: Mapping[str, str]) -> Parsed:
    signature = _header(headers, ZENDESK_HEADER).strip()
    stamp = _header(headers, ZENDESK_TIMESTAMP_HEADER)
    return Parsed(ZENDESK_HEADER, _zendesk_time(stamp), stamp.encode("ascii"), (signature.encode("ascii"),),
                  "base64")


def _zendesk_time(value: str) -> float:
    # Zendesk sends ISO 8601 in UTC with `Z`; an explicit offset is accepted too, a zone-less time is
    # not (it would be read as the worker's local time). Plain epoch seconds stay accepted.
    try:
        if _UNIX_TIME.fullmatch(value):
            return float(int(value))
        if _ISO_WITH_ZONE.fullmatch(value):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        pass
    raise SignatureError("malformed_signature",
                         f"{ZENDESK_TIMESTAMP_HEADER} is not an ISO 8601 time with a zone (Z or +hh:mm)")


_READERS: Final[dict[str, Callable[[Mapping[str, str]], Parsed]]] = {
    "stripe": lambda headers: _read_t_v1(headers, STRIPE_HEADER),
    "zendesk": _read_zendesk,
    "netsuite": lambda headers: _read_t_v1(headers, NETSUITE_HEADER),
}
PLATFORMS: Final = tuple(_READERS)


def parse(platform: str, headers: Mapping[str, str], now: float, tolerance: float = 300) -> Parsed:
    """Step 1, before the body is read: the platform's signature headers are present, well formed and
    their timestamp is within `tolerance` seconds of `now`. Raises SignatureError (`missing_signature`,
    `malformed_signature`, `stale`), never anything else; KeyError for an unknown platform."""
    parsed = _READERS[platform](headers)
    _check_age(parsed.timestamp, now, tolerance)
    return parsed


def parse_stripe(headers: Mapping[str, str], now: float, tolerance: float = 300) -> Parsed:
    return parse("stripe", headers, now, tolerance)


def parse_zendesk(headers: Mapping[str, str], now: float, tolerance: float = 300) -> Parsed:
    return parse("zendesk", headers, now, tolerance)


def parse_netsuite(headers: Mapping[str, str], now: float, tolerance: float = 300) -> Parsed:
    return parse("netsuite", headers, now, tolerance)


def verify(parsed: Parsed, body: bytes, secret: str) -> None:
    """Step 2, once the body is read: raise SignatureError `bad_signature` unless one of the parsed
    signatures is the HMAC-SHA256 of `prefix + body` with `secret`. Compares bytes, in constant time."""
    digest = hmac_sha256(secret, parsed.prefix + body)
    expected = digest.hex().encode("ascii") if parsed.encoding == "hex" else base64.b64encode(digest)
    # Every candidate is compared (no early exit on the first match).
    matches = [hmac.compare_digest(expected, candidate) for candidate in parsed.candidates]
    if not any(matches):
        raise SignatureError("bad_signature", f"no signature in {parsed.header} matches the body")


def _verify_whole(platform: str, body: bytes, headers: Mapping[str, str], secret: str, now: float,
                  tolerance: float) -> None:
    # Body in hand: the HMAC is checked before the age, so a forged request is reported as forged, not stale.
    parsed = _READERS[platform](headers)
    verify(parsed, body, secret)
    _check_age(parsed.timestamp, now, tolerance)


def verify_stripe(body: bytes, headers: Mapping[str, str], secret: str, now: float, tolerance: float = 300) -> None:
    """Raise SignatureError unless `Stripe-Signature` signs `body` with `secret`, recently."""
    _verify_whole("stripe", body, headers, secret, now, tolerance)


def verify_netsuite(body: bytes, headers: Mapping[str, str], secret: str, now: float,
                    tolerance: float = 300) -> None:
    """Raise SignatureError unless `X-Concord-Signature` signs `body` with `secret`, recently."""
    _verify_whole("netsuite", body, headers, secret, now, tolerance)


def verify_zendesk(body: bytes, headers: Mapping[str, str], secret: str, now: float,
                   tolerance: float = 300) -> None:
    """Raise SignatureError unless Zendesk's signature headers sign `body` with `secret`, recently."""
    _verify_whole("zendesk", body, headers, secret, now, tolerance)


def sign_zendesk(body: bytes, secret: str, timestamp: str) -> str:
    """Zendesk's `X-Zendesk-Webhook-Signature` value for `timestamp` + `body` (for tests that deliver a
    signed webhook)."""
    return base64.b64encode(hmac_sha256(secret, timestamp.encode() + body)).decode()
