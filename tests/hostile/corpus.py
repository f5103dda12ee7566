"""A seeded corpus of hostile inputs, grown from real platform payloads (`../shared/fixtures`, unedited).

Every platform gets the same kinds of attack, so a table can say per platform and per kind what was
tried and what became of it:

* `structure`: a real payload with one value replaced (wrong type, huge or negative numbers, very long
  or odd strings, nested containers) or one key deleted, re-encoded as JSON;
* `bytes`: a real payload's bytes flipped, cut short, spliced or made invalid UTF-8;
* `extreme`: fixed inputs: nesting 1,000 and 100,000 deep, a 5,000-digit number, `1e999999`, NaN,
  an empty body, NUL bytes, a byte-order mark, JSON that is not an object.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from tests.unit.codecs import netsuite_payloads as ns
from tests.unit.codecs import zendesk_payloads as zd

PLATFORMS: Final = ("stripe", "salesforce", "zendesk", "netsuite")
KINDS: Final = ("structure", "bytes", "extreme")

ODD_VALUES: Final[tuple[Any, ...]] = (
    None, True, False, 0, -1, 2**53 + 1, 2**64, -(2**63) - 1, 10**30, 1e308, -1e308, 0.1, "", " ",
    "x" * 10_000, "\u0000", "\ud800", "caf\u00e9", "\u202e" + "gpj.exe", "../../customer/5", "eid:in_1/../../x",
    "2024-13-45T99:99:99Z", "NaN", [], {}, [[[[[]]]]], {"a": {"b": {"c": {}}}}, ["x"] * 1000,
)


def seeds(fixtures: Path) -> dict[str, list[bytes]]:
    """Real payloads per platform: the shared fixtures as they are, and envelopes built around them."""
    stripe = [p.read_bytes() for p in sorted((fixtures / "stripe" / "events-2020-08-27").glob("*.json"))]
    salesforce = [p.read_bytes() for p in sorted((fixtures / "salesforce").glob("pubsub_*.json"))]
    salesforce += [line.encode() for line in
                   (fixtures / "salesforce" / "pubsub_lead_conversion_transaction.jsonl").read_text().splitlines()
                   if line.strip()]
    zendesk = [(fixtures / "zendesk" / "webhook_event_user.active_changed.json").read_bytes(),
               zd.webhook("organization.name_changed", zd.org_detail(), event_id="zd-1", time="2024-01-01T00:00:00Z"),
               zd.webhook("ticket.status_changed", zd.ticket_detail(), event_id="zd-2", time="2024-01-01T00:00:00Z")]
    organization = json.loads((fixtures / "zendesk" / "organization.json").read_text())
    zendesk.append(json.dumps(organization).encode())
    invoice = json.loads((fixtures / "erp" / "rest_invoice_1215.EXCERPT_first_fields.json").read_text())
    netsuite = [ns.envelope("invoice", invoice, record_id="1215"), ns.envelope("customer", ns.customer()),
                ns.envelope("customerpayment", ns.customer_payment()), ns.envelope("creditmemo", ns.credit_memo())]
    return {"stripe": stripe, "salesforce": salesforce, "zendesk": zendesk, "netsuite": netsuite}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _structure(rng: random.Random, body: bytes) -> bytes:
    document = json.loads(body)
    path = rng.choice([p for p in _paths(document) if p])
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(ODD_VALUES)
    return json.dumps(document, allow_nan=True).encode("utf-8", "surrogatepass")


def _bytes(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    how = rng.randrange(5)
    if how == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 1:
        del data[rng.randrange(len(data)):]
    elif how == 2:
        at = rng.randrange(len(data))
        data[at:at] = rng.choice([b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b'"', b"}", b"[", b"\\u0000"])
    elif how == 3:
        start = rng.randrange(len(data))
        data[start:start + rng.randint(1, 40)] = b""
    else:
        data = data.replace(b'"', b"'", rng.randint(1, 3))
    return bytes(data)


def extremes() -> list[bytes]:
    """Fixed inputs no platform sends, every one aimed at a known way decoders fail."""
    return [
        b"[" * 1_000, b"[" * 100_000, b'{"a":' * 5_000, b"[" * 1_000 + b"]" * 1_000,
        b'{"id":' + b"9" * 5_000 + b"}", b'{"amount":1e999999}', b'{"amount":NaN}', b'{"a":-Infinity}',
        b"", b" " * 100_000, b"\x00" * 100, b"\xef\xbb\xbf{}", b"null", b"[]", b'"event"', b"123", b"{}",
        b'{"type":"invoice.paid","data":{"object":' * 200 + b"{}" + b"}}" * 200,
        b'{"' + b"k" * 100_000 + b'":1}', b'{"a":"' + b"\\ud800" * 1_000 + b'"}',
    ]


def corpus(fixtures: Path, per_seed: int, seed: int = 2026) -> Iterator[tuple[str, str, bytes]]:
    """(platform, kind, body) for every hostile input: `per_seed` mutations of each kind per real payload."""
    rng = random.Random(seed)
    for platform, bodies in seeds(fixtures).items():
        for body in bodies:
            for _ in range(per_seed):
                yield platform, "structure", _structure(rng, body)
                yield platform, "bytes", _bytes(rng, body)
        for body in extremes():
            yield platform, "extreme", body
