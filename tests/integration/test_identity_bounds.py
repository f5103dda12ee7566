"""Identity parking bounds on the real broker: the global cap, expiry by the sweep, unreadable records."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import aiohttp
import msgspec

from concord.codecs.model import EntityRef, InvoiceChanged, Platform, Version
from concord.codecs.model import encode as encode_event
from concord.core import messages
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import Infra, WorkerProcess, consume_all, produce


def unlinked_invoice(n: int, customer: str) -> tuple[bytes, bytes]:
    """(key, value) of a canonical invoice event whose Stripe customer no link names yet."""
    local = f"stripe:{customer}"
    event = InvoiceChanged(event_id=f"evt_b{n}", source=Platform.STRIPE, entity=EntityRef("invoice", f"in_b{n}"),
                           occurred_at=n, version=Version(n), local_customer=local, system=Platform.STRIPE,
                           invoice_id=f"in_b{n}", status="open", total=100, currency="USD")
    return local.encode(), encode_event(event)


async def metric(worker: WorkerProcess, name: str, timeout: float = 60.0, want: float | None = None) -> float:
    """The metric's value (waits until it exists, and equals `want` when given)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        async with aiohttp.ClientSession() as session, session.get(f"{worker.base_url}/metrics") as resp:
            found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", await resp.text(), re.M)
        value = float(found.group(1)) if found else None
        if value is not None and (want is None or value == want):
            return value
        await asyncio.sleep(0.3)
    raise AssertionError(f"{name} is {value}, not {want}, after {timeout:.0f} s")


async def test_global_cap_expiry_and_unreadable_records_go_to_the_dlq(
    infra: Infra, settings: Settings, tmp_path: Path
) -> None:
    settings = msgspec.structs.replace(settings, identity_park_max_ids=1, identity_park_ttl_seconds=3.0)
    names = topic_names(settings)
    proc = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], settings,
                         tmp_path / "worker.log").start()
    try:
        await proc.wait_ready()
        # One id parks; with the cap at one id, another id's event is dead-lettered (not parked, not lost).
        await produce(infra.bootstrap, names.identity, [unlinked_invoice(1, "cus_A")])
        assert await metric(proc, "concord_identity_parked_ids", want=1.0) == 1.0
        await produce(infra.bootstrap, names.identity, [unlinked_invoice(2, "cus_B")])
        # Unreadable records: nested past any decoder's depth, and one without a key.
        await produce(infra.bootstrap, names.identity, [(b"stripe:cus_X", b"[" * 100_000 + b"]" * 100_000),
                                                        (None, b"{}")])
        # The sweep finds cus_A's event older than the TTL and expires it through the stream.
        dead = await consume_all(infra.bootstrap, names.dlq_ingest, expected=4, timeout=60)
        reasons = sorted((dict(r.headers)[messages.DLQ_REASON].decode(), r.key or b"") for r in dead)
        assert reasons == [("bad_identity_record", b""), ("bad_identity_record", b"stripe:cus_X"),
                           ("identity_park_expired", b"stripe:cus_A"), ("identity_park_full", b"stripe:cus_B")]
        by_reason = {dict(r.headers)[messages.DLQ_REASON]: r for r in dead}
        assert b'"evt_b1"' in by_reason[b"identity_park_expired"].value
        assert b'"evt_b2"' in by_reason[b"identity_park_full"].value
        for r in dead:
            headers = dict(r.headers)
            assert headers[messages.DLQ_SOURCE_TOPIC] == names.identity.encode()  # a replay sends it back
            assert b"Traceback" not in headers[messages.DLQ_DETAIL]
        assert await metric(proc, "concord_identity_parked_ids", want=0.0) == 0.0
        assert await metric(proc, 'concord_identity_park_expired_total{platform="stripe"}') == 1.0
        assert await metric(proc, "concord_identity_park_full_total") == 1.0
        # The room is free again: the next new id parks.
        await produce(infra.bootstrap, names.identity, [unlinked_invoice(3, "cus_C")])
        assert await metric(proc, "concord_identity_parked_ids", want=1.0) == 1.0
    finally:
        proc.stop()
