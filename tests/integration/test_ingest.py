"""Ingestion on the real broker: signed webhooks -> raw topic -> canonical events; bad input -> DLQ."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from concord.app.signatures import sign_t_v1
from concord.core import messages
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import (
    Infra,
    WorkerProcess,
    consume_all,
    consume_events,
    produce,
    wait_committed,
    wait_for_event,
)

SECRET = "whsec_integration_secret"


def stripe_event(event_id: str, event_type: str, obj: dict) -> bytes:
    return orjson.dumps({"id": event_id, "object": "event", "type": event_type, "api_version": "2024-06-20",
                         "created": int(time.time()), "livemode": False, "data": {"object": obj}})


def stripe_customer(customer_id: str, account_id: str) -> dict:
    return {"id": customer_id, "object": "customer", "name": "Acme GmbH", "email": "ap@acme.test",
            "currency": "eur", "address": {"country": "DE"}, "metadata": {"salesforce_account_id": account_id}}


def stripe_invoice(invoice_id: str, customer_id: str) -> dict:
    return {"id": invoice_id, "object": "invoice", "customer": customer_id, "status": "paid", "total": 12900,
            "currency": "eur", "amount_remaining": 0, "number": "INV-1", "subscription": None,
            "status_transitions": {"paid_at": int(time.time())}, "due_date": None}


@pytest.fixture
def ingest_settings(settings: Settings) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, stripe_webhook_secret=SECRET, webhook_max_body_bytes=4096)


@pytest.fixture
async def worker(ingest_settings: Settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    proc = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], ingest_settings,
                         tmp_path / "worker.log").start()
    try:
        await proc.wait_ready()
        yield proc
    finally:
        proc.stop()


async def _post(worker: WorkerProcess, body: bytes, signature: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    async with aiohttp.ClientSession() as session, session.post(
        f"{worker.base_url}/webhooks/stripe", data=body, headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def test_signed_webhooks_flow_to_canonical_and_forged_ones_are_refused(
    infra: Infra, ingest_settings: Settings, worker: WorkerProcess
) -> None:
    names = topic_names(ingest_settings)
    now = int(time.time())
    invoice = stripe_event("evt_inv1", "invoice.paid", stripe_invoice("in_T1", "cus_T1"))
    customer = stripe_event("evt_cus1", "customer.created", stripe_customer("cus_T1", "001T1"))

    # Forged, unsigned, stale and oversized requests are refused before anything is written.
    assert (await _post(worker, invoice, sign_t_v1(invoice, "wrong", now)))[0] == 401
    assert (await _post(worker, invoice, None))[0] == 401
    assert (await _post(worker, invoice, sign_t_v1(invoice, SECRET, now - 3600)))[0] == 401
    big = b"{" + b" " * 5000 + b"}"
    assert (await _post(worker, big, sign_t_v1(big, SECRET, now)))[0] == 413

    # The invoice names only cus_T1: it waits (parked) until the customer links cus_T1 to 001T1.
    status, body = await _post(worker, invoice, sign_t_v1(invoice, SECRET, now))
    assert status == 200 and body["status"] == "accepted" and body["topic"] == names.raw["stripe"]
    status, _ = await _post(worker, customer, sign_t_v1(customer, SECRET, now))
    assert status == 200

    raw = await consume_all(infra.bootstrap, names.raw["stripe"], expected=2, timeout=60)
    # Exactly the accepted bytes (on whichever partitions), nothing refused.
    assert sorted(r.value for r in raw) == sorted([invoice, customer])
    invoice_record = next(r for r in raw if r.value == invoice)
    assert ("Stripe-Signature", sign_t_v1(invoice, SECRET, now).encode()) in invoice_record.headers

    records = await consume_events(infra.bootstrap, names.canonical, expected=2, timeout=60)
    events = {orjson.loads(r.value)["event_id"]: (r.key, orjson.loads(r.value)) for r in records}
    assert set(events) == {"evt_inv1", "evt_cus1"}
    key, inv = events["evt_inv1"]
    assert key == b"001T1" and inv["customer_key"] == "001T1" and inv["kind"] == "invoice"
    assert (inv["total"], inv["currency"], inv["status"]) == (12900, "EUR", "paid")

    async with aiohttp.ClientSession() as session, session.get(f"{worker.base_url}/metrics") as resp:
        text = await resp.text()
    assert 'concord_webhook_requests_total{outcome="bad_signature",platform="stripe"} 1.0' in text
    assert 'concord_webhook_requests_total{outcome="accepted",platform="stripe"} 2.0' in text
    assert 'concord_identity_parked_total{platform="stripe"} 1.0' in text


async def test_bad_payload_goes_to_the_dlq_with_its_reason_and_good_ones_behind_it_flow_on(
    infra: Infra, ingest_settings: Settings, worker: WorkerProcess
) -> None:
    names = topic_names(ingest_settings)
    good = stripe_event("evt_good", "customer.updated", stripe_customer("cus_T2", "001T2"))
    # Same key: the bad record sits in front of the good one on one partition.
    await produce(infra.bootstrap, names.raw["stripe"], [(b"k", b"{not json"), (b"k", good)],
                  headers=[("source", b"test")])

    dead = await consume_all(infra.bootstrap, names.dlq_ingest, expected=1, timeout=60)
    assert len(dead) == 1
    record = dead[0]
    headers = dict(record.headers)
    assert record.value == b"{not json" and record.key == b"k"
    assert headers["source"] == b"test"  # original headers kept
    assert headers[messages.DLQ_REASON] == b"invalid_json"
    assert headers[messages.DLQ_SOURCE_TOPIC] == names.raw["stripe"].encode()
    assert headers[messages.DLQ_SOURCE_OFFSET] == b"0"
    assert headers[messages.DLQ_CODEC_VERSION]

    canonical = await consume_events(infra.bootstrap, names.canonical, expected=1, timeout=60)
    assert [orjson.loads(r.value)["event_id"] for r in canonical] == ["evt_good"]


async def test_a_crm_merge_repoints_the_losers_billing_customer_to_the_winner(
    infra: Infra, ingest_settings: Settings, worker: WorkerProcess
) -> None:
    from tests.unit.codecs.salesforce_payloads import cometd, header

    names = topic_names(ingest_settings)
    loser, winner = "001000000000LOSAAA", "001000000000WINAAA"
    account = cometd(header("Account", "CREATE", [loser], transactionKey="tx-create"), {"Name": "Acme (dup)"})
    await produce(infra.bootstrap, names.raw["salesforce"], [(None, account)])
    customer = stripe_event("evt_cusM", "customer.created", stripe_customer("cus_M", loser))
    await produce(infra.bootstrap, names.raw["stripe"], [(None, customer)])
    await wait_for_event(infra.bootstrap, names.canonical,
                          lambda r: r.key == loser.encode() and b'"evt_cusM"' in r.value)

    merge = cometd(header("Account", "DELETE", [loser], transactionKey="tx-merge"), {"MasterRecordId": winner})
    await produce(infra.bootstrap, names.raw["salesforce"], [(None, merge)])
    # The merge reaches the loser's key, which re-points stripe:cus_M to the winner.
    await wait_for_event(infra.bootstrap, names.identity,
                          lambda r: r.key == b"stripe:cus_M" and b'"repoint"' in r.value)

    invoice = stripe_event("evt_invM", "invoice.paid", stripe_invoice("in_M", "cus_M"))
    await produce(infra.bootstrap, names.raw["stripe"], [(None, invoice)])
    record = await wait_for_event(infra.bootstrap, names.canonical,
                                   lambda r: b'"evt_invM"' in r.value and r.key == winner.encode())
    assert orjson.loads(record.value)["customer_key"] == winner


async def test_zendesk_and_netsuite_signed_webhooks_are_accepted_and_decoded(
    infra: Infra, settings: Settings, tmp_path: Path
) -> None:
    import msgspec

    from concord.app.signatures import sign_zendesk
    from tests.unit.codecs import netsuite_payloads as ns
    from tests.unit.codecs import zendesk_payloads as zd

    zendesk_secret, netsuite_secret = "zd-secret-sixteen-bytes", "ns-secret-sixteen-bytes"
    configured = msgspec.structs.replace(settings, zendesk_webhook_secret=zendesk_secret,
                                         netsuite_webhook_secret=netsuite_secret)
    names = topic_names(configured)
    org = zd.webhook("organization.name_changed", zd.org_detail(), event_id="zd-evt-1",
                     time="2099-07-07T03:44:13Z")
    customer = ns.envelope("customer", ns.customer(), record_id="101")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    proc = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker"], configured,
                         tmp_path / "worker.log").start()
    try:
        await proc.wait_ready()
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{proc.base_url}/webhooks/zendesk", data=org, headers={
                "X-Zendesk-Webhook-Signature": sign_zendesk(org, zendesk_secret, stamp),
                "X-Zendesk-Webhook-Signature-Timestamp": stamp,
            }) as resp:
                assert resp.status == 200, await resp.text()
            async with session.post(f"{proc.base_url}/webhooks/netsuite", data=customer, headers={
                "X-Concord-Signature": sign_t_v1(customer, netsuite_secret, int(time.time())),
            }) as resp:
                assert resp.status == 200, await resp.text()
            async with session.post(f"{proc.base_url}/webhooks/netsuite", data=customer, headers={
                "X-Concord-Signature": sign_t_v1(customer, "zd-secret", int(time.time())),
            }) as resp:
                assert resp.status == 401
            # Stripe's secret is not configured on this worker: refuse, do not accept unsigned.
            async with session.post(f"{proc.base_url}/webhooks/stripe", data=b"{}") as resp:
                assert resp.status == 503
        records = await consume_events(infra.bootstrap, names.canonical, expected=3, timeout=60)
        kinds = sorted((orjson.loads(r.value)["source"], orjson.loads(r.value)["kind"]) for r in records)
        assert kinds == [("netsuite", "customer"), ("netsuite", "financial_flags"), ("zendesk", "customer")]
        assert {r.key for r in records} == {b"001Dn00000AcmeAAA"}
    finally:
        proc.stop()


async def test_park_overflow_is_dead_lettered_and_replays_to_the_identity_topic(
    infra: Infra, ingest_settings: Settings, tmp_path: Path
) -> None:
    import msgspec

    from concord.app.replay import IngestFilter, replay_ingest

    settings = msgspec.structs.replace(ingest_settings, identity_park_limit=1)
    names = topic_names(settings)
    proc = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], settings,
                         tmp_path / "worker.log").start()
    try:
        await proc.wait_ready()
        now = int(time.time())
        # Two invoices of a customer no link names yet: the limit parks one, the other is dead-lettered.
        for n in (1, 2):
            body = stripe_event(f"evt_ovf{n}", "invoice.paid", stripe_invoice(f"in_OVF{n}", "cus_OVF"))
            assert (await _post(proc, body, sign_t_v1(body, SECRET, now)))[0] == 200
        [dead] = await consume_all(infra.bootstrap, names.dlq_ingest, expected=1, timeout=60)
        headers = dict(dead.headers)
        assert headers[messages.DLQ_REASON] == b"identity_park_overflow"
        assert headers[messages.DLQ_SOURCE_TOPIC] == names.identity.encode()  # where a replay sends it
        assert headers[messages.DLQ_PLATFORM] == b"stripe"

        # The link arrives and releases the parked invoice; then the replayed one resolves through it too.
        customer = stripe_event("evt_ovfc", "customer.created", stripe_customer("cus_OVF", "001OVF"))
        assert (await _post(proc, customer, sign_t_v1(customer, SECRET, now)))[0] == 200
        await consume_events(infra.bootstrap, names.canonical, expected=2, timeout=60)
        summary = await replay_ingest(settings, IngestFilter(reason="identity_park_overflow"), out=lambda _: None)
        assert summary.replayed == 1
        records = await consume_events(infra.bootstrap, names.canonical, expected=3, timeout=60)
        assert sorted(orjson.loads(r.value)["event_id"] for r in records) == ["evt_ovf1", "evt_ovf2", "evt_ovfc"]
        assert {r.key for r in records} == {b"001OVF"}
    finally:
        proc.stop()


async def test_transaction_markers_in_a_raw_topic_are_committed_past_without_redelivery(
    infra: Infra, ingest_settings: Settings, worker: WorkerProcess
) -> None:
    # A transactional producer (Kafka Connect with exactly-once source, say) leaves a marker after each
    # transaction: offsets no fetch returns. The commit must go past them, and no message is taken for one.
    names = topic_names(ingest_settings)
    topic = names.raw["stripe"]
    events = [stripe_event(f"evt_tx{i}", "customer.updated", stripe_customer(f"cus_TX{i}", f"001TX{i}"))
              for i in range(4)]
    # Two transactional producers interleaved: their commit markers land next to each other, a gap of two
    # offsets (a lone marker would hide a mistake: Faust steps over a single missing offset anyway).
    producers = [AIOKafkaProducer(bootstrap_servers=infra.bootstrap, transactional_id=f"{ingest_settings.app_id}-tx{n}")
                 for n in range(2)]
    for producer in producers:
        await producer.start()
    try:
        for first, second in ((events[0], events[1]), (events[2], events[3])):  # 0, 1, markers 2-3; 4, 5, markers 6-7
            for producer, value in zip(producers, (first, second), strict=True):
                await producer.begin_transaction()
                await producer.send_and_wait(topic, value=value, partition=0)
            for producer in producers:
                await producer.commit_transaction()
    finally:
        for producer in producers:
            await producer.stop()
    # Offset 8, plain: the last markers are followed by a message (trailing markers are never committed past).
    plain = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, acks="all")
    await plain.start()
    try:
        last = stripe_event("evt_tx_last", "customer.updated", stripe_customer("cus_TXL", "001TXL"))
        await plain.send_and_wait(topic, value=last, partition=0)
    finally:
        await plain.stop()

    canonical = await consume_events(infra.bootstrap, names.canonical, expected=5, timeout=60)
    assert sorted({orjson.loads(r.value)["event_id"] for r in canonical}) == sorted(
        [f"evt_tx{i}" for i in range(4)] + ["evt_tx_last"])
    try:
        await wait_committed(infra.bootstrap, ingest_settings.app_id, topic, timeout=30)  # to 9: past the markers
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{worker.log_tail(80)}") from None
    log = worker.log_path.read_text()
    assert "was skipped by the stream" not in log  # no marker was taken for a skipped message


async def test_a_public_webhook_listener_serves_webhooks_only(infra: Infra, ingest_settings: Settings,
                                                              tmp_path: Path) -> None:
    import msgspec

    from concord.bench.common import free_port

    public = free_port()
    settings = msgspec.structs.replace(ingest_settings, webhook_port=public, webhook_host="127.0.0.1")
    names = topic_names(settings)
    proc = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], settings,
                         tmp_path / "worker.log").start()
    try:
        await proc.wait_ready()
        customer = stripe_event("evt_pub1", "customer.created", stripe_customer("cus_P1", "001P1"))
        headers = {"Stripe-Signature": sign_t_v1(customer, SECRET, int(time.time())),
                   "Authorization": f"Bearer {settings.read_token}"}
        async with aiohttp.ClientSession() as session:
            async def status(method: str, url: str, data: bytes | None = None) -> int:
                async with session.request(method, url, data=data, headers=headers) as resp:
                    return resp.status

            outside = f"http://127.0.0.1:{public}"
            for _ in range(50):  # the public site opens once the worker has started
                try:
                    if await status("GET", f"{outside}/healthz") == 200:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            assert await status("POST", f"{outside}/webhooks/stripe", customer) == 200
            # Nothing else faces the internet, whatever credential is sent.
            for path in ("/api/drift", "/api/customers/001P1", "/metrics", "/readyz", "/router/"):
                assert await status("GET", f"{outside}{path}") == 404, path
            # And webhooks are not served on the internal listener any more.
            assert await status("POST", f"{proc.base_url}/webhooks/stripe", customer) == 404
            assert await status("GET", f"{proc.base_url}/api/drift") == 200
        raw = await consume_all(infra.bootstrap, names.raw["stripe"], expected=1, timeout=60)
        assert [r.value for r in raw] == [customer]
    finally:
        proc.stop()
