"""Webhook signature checks, pure (no I/O): the caller passes the clock.

* Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 over `"<t>.<body>"`.
* Zendesk: `X-Zendesk-Webhook-Signature` = base64 HMAC-SHA256 over timestamp + body (no separator),
  timestamp in `X-Zendesk-Webhook-Signature-Timestamp` (ISO 8601).
* NetSuite (our SuiteScript, docs/netsuite-suitescript.md): `X-Concord-Signature: t=<unix>,v1=<hex>`,
  the same scheme as Stripe's.

Every check also refuses timestamps further than `tolerance` seconds from now (replays).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Final

STRIPE_HEADER: Final = "Stripe-Signature"
ZENDESK_HEADER: Final = "X-Zendesk-Webhook-Signature"
ZENDESK_TIMESTAMP_HEADER: Final = "X-Zendesk-Webhook-Signature-Timestamp"
NETSUITE_HEADER: Final = "X-Concord-Signature"


class SignatureError(Exception):
    """The request is not provably from the platform. `reason` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _header(headers: Mapping[str, str], name: str) -> str:
    # HTTP header names are case-insensitive; aiohttp's CIMultiDict is too, a plain dict is not.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if not value:
        raise SignatureError("missing_signature", f"no {name} header")
    return value


def _check_age(timestamp: float, now: float, tolerance: float) -> None:
    if abs(now - timestamp) > tolerance:
        raise SignatureError("stale", f"timestamp {timestamp:.0f} is {now - timestamp:.0f} s from now "
                             f"(tolerance {tolerance:.0f} s)")


def _parse_t_v1(value: str, header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(item)
            except ValueError:
                raise SignatureError("malformed_signature", f"{header}: t is not a unix time") from None
        elif key == "v1" and item:
            signatures.append(item)
    if timestamp is None or not signatures:
        raise SignatureError("malformed_signature", f"{header} needs t= and at least one v1=")
    return timestamp, signatures


def _verify_t_v1(body: bytes, value: str, secret: str, now: float, tolerance: float, header: str) -> None:
    timestamp, signatures = _parse_t_v1(value, header)
    expected = _hmac(secret, str(timestamp).encode() + b"." + body).hex()
    # Check the signature before the age, so a forged request is reported as forged, not stale.
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("bad_signature", f"no v1 signature in {header} matches the body")
    _check_age(timestamp, now, tolerance)


def verify_stripe(body: bytes, headers: Mapping[str, str], secret: str, now: float, tolerance: float = 300) -> None:
    """Raise SignatureError unless `Stripe-Signature` signs `body` with `secret`, recently."""
    _verify_t_v1(body, _header(headers, STRIPE_HEADER), secret, now, tolerance, STRIPE_HEADER)


def verify_netsuite(body: bytes, headers: Mapping[str, str], secret: str, now: float,
                    tolerance: float = 300) -> None:
    """Raise SignatureError unless `X-Concord-Signature` signs `body` with `secret`, recently."""
    _verify_t_v1(body, _header(headers, NETSUITE_HEADER), secret, now, tolerance, NETSUITE_HEADER)


def verify_zendesk(body: bytes, headers: Mapping[str, str], secret: str, now: float,
                   tolerance: float = 300) -> None:
    """Raise SignatureError unless Zendesk's signature headers sign `body` with `secret`, recently."""
    signature = _header(headers, ZENDESK_HEADER)
    timestamp = _header(headers, ZENDESK_TIMESTAMP_HEADER)
    expected = base64.b64encode(_hmac(secret, timestamp.encode() + body)).decode()
    if not hmac.compare_digest(expected, signature.strip()):
        raise SignatureError("bad_signature", f"{ZENDESK_HEADER} does not match the body")
    _check_age(_zendesk_time(timestamp), now, tolerance)


def _zendesk_time(value: str) -> float:
    try:
        if value.isdigit():
            return float(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SignatureError("malformed_signature", f"{ZENDESK_TIMESTAMP_HEADER} is not a time") from None


def sign_t_v1(body: bytes, secret: str, timestamp: int) -> str:
    """`t=<ts>,v1=<hex>`: the header value Stripe and our NetSuite script send (for tests that
    deliver a signed webhook; the sandbox signs with its own code)."""
    return f"t={timestamp},v1={_hmac(secret, str(timestamp).encode() + b'.' + body).hex()}"


def sign_zendesk(body: bytes, secret: str, timestamp: str) -> str:
    """Zendesk's `X-Zendesk-Webhook-Signature` value for `timestamp` + `body` (for tests that deliver a
    signed webhook)."""
    return base64.b64encode(_hmac(secret, timestamp.encode() + body)).decode()
