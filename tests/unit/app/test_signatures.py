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


# --- found by an attacker's test of main: each of these failed (500 or accepted) before ---------------

ZD_TS = "2026-11-27T10:00:00Z"
ZD_NOW = 1_795_773_600.0  # 2026-11-27T10:00:00Z


def _zendesk_headers(signature: str, ts: str = ZD_TS) -> dict[str, str]:
    return {"X-Zendesk-Webhook-Signature": signature, "X-Zendesk-Webhook-Signature-Timestamp": ts}


def _hmac_hex(message: bytes) -> str:
    return hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"t={int(NOW)},v1=\u00e9\u00e9", "malformed_signature"),  # TypeError from compare_digest before
        (f"t={int(NOW)},v1=\udcff\udcfe", "malformed_signature"),  # non-UTF-8 bytes as aiohttp hands them over
        ("t=1_780_000_000,v1=00", "malformed_signature"),
        ("t=+1780000000,v1=00", "malformed_signature"),
        ("t=\u0661\u0667\u0668\u0660\u0660\u0660\u0660\u0660\u0660\u0660,v1=00", "malformed_signature"),
        ("t= 1780000000,v1=00,t=1780000000", "malformed_signature"),  # two t
        ("t=1780000000000000000000,v1=00", "malformed_signature"),  # unbounded length
        ("t=-1,v1=00", "malformed_signature"),
        ("v1=00", "malformed_signature"),
        (f"t={int(NOW)}", "malformed_signature"),
        ("", "missing_signature"),
    ],
)
@pytest.mark.parametrize("platform", ["stripe", "netsuite"])
def test_t_v1_headers_are_refused_with_a_reason_never_another_exception(platform: str, value: str,
                                                                        reason: str) -> None:
    name = {"stripe": signatures.STRIPE_HEADER, "netsuite": signatures.NETSUITE_HEADER}[platform]
    verify = {"stripe": signatures.verify_stripe, "netsuite": signatures.verify_netsuite}[platform]
    with pytest.raises(signatures.SignatureError) as err:
        verify(BODY, {name: value}, SECRET, NOW)
    assert err.value.reason == reason
    with pytest.raises(signatures.SignatureError) as err:
        signatures.parse(platform, {name: value}, NOW, 300)
    assert err.value.reason == reason


def test_the_hmac_covers_the_t_bytes_exactly_as_sent() -> None:
    sent = "0" + str(int(NOW))  # t=01780000000: the same instant, other bytes
    as_sent = f"t={sent},v1={_hmac_hex(sent.encode() + b'.' + BODY)}"
    signatures.verify_stripe(BODY, {"Stripe-Signature": as_sent}, SECRET, NOW)
    signatures.verify(signatures.parse_stripe({"Stripe-Signature": as_sent}, NOW), BODY, SECRET)
    normalised = f"t={sent},v1={_hmac_hex(str(int(NOW)).encode() + b'.' + BODY)}"
    with pytest.raises(signatures.SignatureError, match="bad_signature"):
        signatures.verify_stripe(BODY, {"Stripe-Signature": normalised}, SECRET, NOW)


@pytest.mark.parametrize(
    ("signature", "ts", "reason"),
    [
        ("\u00e9" * 44, ZD_TS, "malformed_signature"),  # TypeError from compare_digest before
        ("\udcff" * 44, ZD_TS, "malformed_signature"),
        (None, "2026-11-27T10:00:00", "malformed_signature"),  # no zone: was read as local time
        (None, "2026-11-27 10:00:00Z", "malformed_signature"),
        (None, "2026-11-27T10:00:00+0100", "malformed_signature"),
        (None, "\u0662026-11-27T10:00:00Z", "malformed_signature"),
        (None, "1_795_773_600", "malformed_signature"),
        (None, "2026-13-27T10:00:00Z", "malformed_signature"),  # the form, but no such date
        (None, "not a time", "malformed_signature"),
    ],
)
def test_zendesk_headers_are_refused_with_a_reason_never_another_exception(signature: str | None, ts: str,
                                                                           reason: str) -> None:
    headers = _zendesk_headers(signature or signatures.sign_zendesk(BODY, SECRET, ts), ts)
    with pytest.raises(signatures.SignatureError) as err:
        signatures.verify_zendesk(BODY, headers, SECRET, ZD_NOW)
    assert err.value.reason == reason
    with pytest.raises(signatures.SignatureError) as err:
        signatures.parse_zendesk(headers, ZD_NOW)
    assert err.value.reason == reason


@pytest.mark.parametrize("ts", [ZD_TS, "2026-11-27T11:00:00+01:00", "2026-11-27T10:00:00.250Z", "1795773600"])
def test_zendesk_accepts_a_time_with_a_zone_or_epoch_seconds(ts: str) -> None:
    headers = _zendesk_headers(signatures.sign_zendesk(BODY, SECRET, ts), ts)
    signatures.verify_zendesk(BODY, headers, SECRET, ZD_NOW)
    signatures.verify(signatures.parse_zendesk(headers, ZD_NOW), BODY, SECRET)


def test_parse_refuses_a_stale_header_without_the_body_and_verify_checks_the_hmac_after() -> None:
    stale = {"Stripe-Signature": f"t={int(NOW) - 301},v1=00"}  # forged and stale: parse says stale
    with pytest.raises(signatures.SignatureError, match="stale"):
        signatures.parse_stripe(stale, NOW)
    # The one-shot check has the body, so it still says forged first.
    with pytest.raises(signatures.SignatureError, match="bad_signature"):
        signatures.verify_stripe(BODY, stale, SECRET, NOW)
    fresh = signatures.parse_netsuite({"x-concord-signature": signatures.sign_t_v1(BODY, SECRET, int(NOW))}, NOW)
    signatures.verify(fresh, BODY, SECRET)
    with pytest.raises(signatures.SignatureError, match="bad_signature"):
        signatures.verify(fresh, BODY + b" ", SECRET)
