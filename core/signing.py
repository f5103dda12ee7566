"""The `t=<unix>,v1=<hex>` signature scheme, in one place: HMAC-SHA256 over `"<t>.<body>"`.

Stripe signs its webhooks this way and our NetSuite script does too (app/signatures.py checks both);
Concord signs its own outgoing notifications the same way (connectors/notify.py), so a receiver can
verify them with any Stripe-style verifier. The sandbox signs with its own code (it is the oracle).
"""

from __future__ import annotations

import hashlib
import hmac


def hmac_sha256(secret: str, message: bytes) -> bytes:
    """The HMAC-SHA256 digest of `message` with `secret` (UTF-8)."""
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def sign_t_v1(body: bytes, secret: str, timestamp: int) -> str:
    """`t=<timestamp>,v1=<hex>`: the signature header value of `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={hmac_sha256(secret, str(timestamp).encode() + b'.' + body).hex()}"
