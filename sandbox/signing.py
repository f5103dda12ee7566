"""Webhook signatures as each platform publishes them: the sandbox signs what it sends with these.

Written from the platforms' own documentation, not taken from Concord's verifier: the sandbox is the
oracle that judges Concord, so a misreading of a scheme on Concord's side must show up as a refused
webhook rather than be shared. `tests/unit/sandbox/test_contracts.py` checks that both sides agree.

* Stripe: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
* Zendesk: `X-Zendesk-Webhook-Signature` = base64 HMAC-SHA256 of timestamp + body (nothing between),
  the timestamp (ISO 8601, UTC, `Z`) in `X-Zendesk-Webhook-Signature-Timestamp`.
* NetSuite (Concord's own SuiteScript, docs/netsuite-suitescript.md): `X-Concord-Signature`, the same
  `t=<unix>,v1=<hex>` scheme as Stripe's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

STRIPE_SIGNATURE: Final = "Stripe-Signature"
ZENDESK_SIGNATURE: Final = "X-Zendesk-Webhook-Signature"
ZENDESK_SIGNATURE_TIMESTAMP: Final = "X-Zendesk-Webhook-Signature-Timestamp"
NETSUITE_SIGNATURE: Final = "X-Concord-Signature"

Signer = Callable[[bytes, str, float], dict[str, str]]


def _hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _timestamped(body: bytes, secret: str, now: float) -> str:
    """`t=<unix>,v1=<hex>`: HMAC-SHA256 of the unix time, a dot and the body (Stripe's scheme)."""
    unix = int(now)
    signed = f"{unix}.".encode() + body
    return f"t={unix},v1={_hmac_sha256(secret, signed).hex()}"


def stripe_headers(body: bytes, secret: str, now: float) -> dict[str, str]:
    """The header Stripe sends with a webhook of `body` signed at `now` (unix seconds)."""
    return {STRIPE_SIGNATURE: _timestamped(body, secret, now)}


def netsuite_headers(body: bytes, secret: str, now: float) -> dict[str, str]:
    """The header Concord's SuiteScript sends: Stripe's scheme under its own header name."""
    return {NETSUITE_SIGNATURE: _timestamped(body, secret, now)}


def zendesk_headers(body: bytes, secret: str, now: float) -> dict[str, str]:
    """The two headers Zendesk sends: the ISO 8601 timestamp, and the signature of timestamp + body."""
    timestamp = datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(_hmac_sha256(secret, timestamp.encode() + body)).decode("ascii")
    return {ZENDESK_SIGNATURE: signature, ZENDESK_SIGNATURE_TIMESTAMP: timestamp}


# Platform -> how it signs its webhooks (Salesforce sends none: its changes arrive on Kafka).
SIGNERS: Final[dict[str, Signer]] = {
    "stripe": stripe_headers,
    "zendesk": zendesk_headers,
    "netsuite": netsuite_headers,
}
