from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from concord.app import signatures

BODY = b'{"id":"evt_1","object":"event","type":"invoice.paid"}'
SECRET = "whsec_test_secret"
NOW = 1_780_000_000.0


def _stripe_header(body: bytes, secret: str, t: int, extra: str = "") -> str:
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}{extra}"


def test_stripe_valid_signature_passes() -> None:
    signatures.verify_stripe(BODY, {"Stripe-Signature": _stripe_header(BODY, SECRET, int(NOW))}, SECRET, NOW)


def test_stripe_header_name_is_case_insensitive_and_any_v1_may_match() -> None:
    header = f"t={int(NOW)},v1=deadbeef," + _stripe_header(BODY, SECRET, int(NOW)).split(",", 1)[1] + ",v0=abc"
    signatures.verify_stripe(BODY, {"stripe-signature": header}, SECRET, NOW)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_signature"),
        ({"Stripe-Signature": "garbage"}, "malformed_signature"),
        ({"Stripe-Signature": "t=abc,v1=00"}, "malformed_signature"),
        ({"Stripe-Signature": _stripe_header(BODY, "other", int(NOW))}, "bad_signature"),
        ({"Stripe-Signature": _stripe_header(BODY + b" ", SECRET, int(NOW))}, "bad_signature"),
        ({"Stripe-Signature": _stripe_header(BODY, SECRET, int(NOW) - 301)}, "stale"),
        ({"Stripe-Signature": _stripe_header(BODY, SECRET, int(NOW) + 301)}, "stale"),
    ],
)
def test_stripe_refusals_say_why(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(signatures.SignatureError) as err:
        signatures.verify_stripe(BODY, headers, SECRET, NOW)
    assert err.value.reason == reason


def test_stripe_tolerance_edge_is_accepted() -> None:
    signatures.verify_stripe(BODY, {"Stripe-Signature": _stripe_header(BODY, SECRET, int(NOW) - 300)}, SECRET, NOW)


def test_zendesk_signature() -> None:
    ts = "2026-11-27T10:00:00Z"
    good = base64.b64encode(hmac.new(SECRET.encode(), ts.encode() + BODY, hashlib.sha256).digest()).decode()
    now = 1_795_773_600.0  # 2026-11-27T10:00:00Z
    headers = {"X-Zendesk-Webhook-Signature": good, "X-Zendesk-Webhook-Signature-Timestamp": ts}
    signatures.verify_zendesk(BODY, headers, SECRET, now)
    assert signatures.sign_zendesk(BODY, SECRET, ts) == good
    with pytest.raises(signatures.SignatureError, match="bad_signature"):
        signatures.verify_zendesk(BODY + b"x", headers, SECRET, now)
    with pytest.raises(signatures.SignatureError, match="stale"):
        signatures.verify_zendesk(BODY, headers, SECRET, now + 3600)
    with pytest.raises(signatures.SignatureError, match="missing_signature"):
        signatures.verify_zendesk(BODY, {"X-Zendesk-Webhook-Signature": good}, SECRET, now)


def test_netsuite_signature_uses_the_t_v1_scheme() -> None:
    header = signatures.sign_t_v1(BODY, SECRET, int(NOW))
    assert header == _stripe_header(BODY, SECRET, int(NOW))
    signatures.verify_netsuite(BODY, {"X-Concord-Signature": header}, SECRET, NOW)
    with pytest.raises(signatures.SignatureError, match="bad_signature"):
        signatures.verify_netsuite(BODY, {"X-Concord-Signature": header}, "wrong", NOW)
