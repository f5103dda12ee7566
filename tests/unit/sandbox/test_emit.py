"""The emitter against an aiohttp server standing in for Concord's webhook ingress, and a fake Kafka producer.

The stand-in checks signatures with the very functions Concord's ingress uses
(`concord.app.signatures.verify_*`), so a delivered webhook is one Concord would accept. The signing
itself is the sandbox's own (`sandbox/signing.py`); test_contracts.py checks it against those checks.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError

from concord.app import signatures
from concord.codecs.model import AccountUpserted, ResyncRequired
from concord.codecs.registry import decoder
from concord.sandbox import netsuite, salesforce, stripe, zendesk
from concord.sandbox.emit import Emitter, EmitterStats, sign_headers
from concord.sandbox.events import WebhookDelivery
from concord.sandbox.faults import Faults
from concord.sandbox.world import World

SECRETS = {"stripe": "whsec_sandbox_test", "zendesk": "zendesk-secret", "netsuite": "netsuite-secret"}
TOPIC = "concord.raw.salesforce"
VERIFIERS = {
    "stripe": signatures.verify_stripe,
    "zendesk": signatures.verify_zendesk,
    "netsuite": signatures.verify_netsuite,
}
_json = msgspec.json.Decoder()


class FakeConcord:
    """`POST /webhooks/{platform}`: scripted failures first, then Concord's signature check, then 200."""

    def __init__(self) -> None:
        # platform -> statuses to answer (in order) before behaving normally.
        self.script: dict[str, list[int]] = {}
        # Every request: (platform, event id, signature header value).
        self.attempts: list[tuple[str, str, str]] = []
        # Accepted bodies per platform, in arrival order.
        self.accepted: dict[str, list[bytes]] = {"stripe": [], "zendesk": [], "netsuite": []}
        self.app = web.Application()
        self.app.router.add_post("/webhooks/{platform}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        platform = request.match_info["platform"]
        body = await request.read()
        header = {"stripe": signatures.STRIPE_HEADER, "zendesk": signatures.ZENDESK_TIMESTAMP_HEADER,
                  "netsuite": signatures.NETSUITE_HEADER}[platform]
        self.attempts.append((platform, event_id(platform, body), request.headers.get(header, "")))
        script = self.script.get(platform)
        if script:
            status = script.pop(0)
            return web.json_response({"error": "scripted"}, status=status)
        try:
            VERIFIERS[platform](body, request.headers, SECRETS[platform], time.time())
        except signatures.SignatureError as exc:
            return web.json_response({"error": exc.reason, "detail": exc.detail}, status=401)
        self.accepted[platform].append(body)
        return web.json_response({"status": "accepted", "topic": f"concord.raw.{platform}", "partition": 0,
                                  "offset": len(self.accepted[platform]) - 1})


def event_id(platform: str, body: bytes) -> str:
    payload = _json.decode(body)
    if platform == "netsuite":
        return f"{payload['recordType']}:{payload['id']}:{payload['lastModifiedDate']}"
    return str(payload["id"])


class FakeProducer:
    """Records what it is asked to send; `start_failures` / `send_failures` raise before succeeding."""

    def __init__(self, sent: list[tuple[str, bytes, bytes]], start_failures: list[Exception],
                 send_failures: list[Exception]) -> None:
        self.sent = sent
        self.start_failures = start_failures
        self.send_failures = send_failures
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        if self.start_failures:
            raise self.start_failures.pop(0)
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        assert self.started, "send before start"
        if self.send_failures:
            raise self.send_failures.pop(0)
        assert value is not None and key is not None
        self.sent.append((topic, key, value))


class Kafka:
    """A factory of FakeProducers sharing one record of what was sent."""

    def __init__(self, start_failures: list[Exception] | None = None,
                 send_failures: list[Exception] | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.start_failures = start_failures or []
        self.send_failures = send_failures or []
        self.producers: list[FakeProducer] = []

    def __call__(self) -> FakeProducer:
        producer = FakeProducer(self.sent, self.start_failures, self.send_failures)
        self.producers.append(producer)
        return producer


@pytest.fixture
async def concord() -> AsyncIterator[tuple[FakeConcord, str]]:
    fake = FakeConcord()
    server = TestServer(fake.app)
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


def make_emitter(world: World, url: str, kafka: Kafka | None = None, clock: Callable[[], float] = time.time,
                 **secrets: str) -> Emitter:
    keys = {**SECRETS, **secrets}
    return Emitter(world, concord_url=url, stripe_secret=keys["stripe"], zendesk_secret=keys["zendesk"],
                   netsuite_secret=keys["netsuite"], kafka_bootstrap="unused:9092", salesforce_topic=TOPIC,
                   clock=clock, producer_factory=kafka or Kafka(), retry_base=0.01, retry_max=0.05, run="e")


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def stripe_ids(fake: FakeConcord) -> list[str]:
    return [event_id("stripe", body) for body in fake.accepted["stripe"]]


# --- signatures -----------------------------------------------------------------------------------


def test_sign_headers_refuses_a_platform_without_webhooks() -> None:
    delivery = WebhookDelivery(platform="salesforce", event_id="e", path="/x", headers={}, body=b"{}")
    with pytest.raises(ValueError, match="salesforce"):
        sign_headers(delivery, "s", 0.0)


# --- webhooks ---------------------------------------------------------------------------------------


async def test_webhooks_are_delivered_signed_and_in_order(concord: tuple[FakeConcord, str]) -> None:
    fake, url = concord
    world = World()
    emitter = make_emitter(world, url)
    await emitter.start()
    customer = stripe.create_customer(world, name="Acme", salesforce_account_id="001Hp00000AcmeXAAQ")
    for name in ("Acme 2", "Acme 3", "Acme 4"):
        stripe.update_customer(world, customer["id"], {"name": name})
    org = zendesk.create_organization(world, name="Acme", external_id="001Hp00000AcmeXAAQ")
    zendesk.update_organization(world, org["id"], name="Acme Inc")
    netsuite.upsert_customer(world, "001Hp00000AcmeXAAQ", company_name="Acme")
    assert await emitter.drain(5)

    names = [_json.decode(body)["data"]["object"]["name"] for body in fake.accepted["stripe"]]
    assert names == ["Acme", "Acme 2", "Acme 3", "Acme 4"]
    assert [_json.decode(b)["type"] for b in fake.accepted["zendesk"]] == [
        "zen:event-type:organization.created", "zen:event-type:organization.name_changed"]
    assert len(fake.accepted["netsuite"]) == 1
    stats = emitter.stats()
    assert {p: (s.queued, s.delivered, s.failed, s.pending) for p, s in stats.platforms.items()} == {
        "stripe": (4, 4, 0, 0), "salesforce": (0, 0, 0, 0), "zendesk": (2, 2, 0, 0), "netsuite": (1, 1, 0, 0)}
    assert stats.last_error is None
    # The stats are what the sandbox serves on /_sandbox/status.
    assert msgspec.json.decode(msgspec.json.encode(stats), type=EmitterStats) == stats
    await emitter.stop()


async def test_5xx_is_retried_with_a_fresh_signature_without_reordering(concord: tuple[FakeConcord, str]) -> None:
    fake, url = concord
    fake.script["stripe"] = [503, 502, 500]
    ticks = itertools.count(int(time.time()))
    world = World()
    emitter = make_emitter(world, url, clock=lambda: float(next(ticks)))
    await emitter.start()
    customer = stripe.create_customer(world, name="Acme")
    stripe.update_customer(world, customer["id"], {"name": "Acme 2"})
    stripe.update_customer(world, customer["id"], {"name": "Acme 3"})
    assert await emitter.drain(5)

    first = stripe_ids(fake)[0]
    assert [event for platform, event, _ in fake.attempts] == [first] * 4 + stripe_ids(fake)[1:]
    # Each attempt of the first event was signed anew: its timestamps increase.
    stamps = [signature.split(",")[0] for _, event, signature in fake.attempts if event == first]
    assert len(set(stamps)) == 4 and stamps == sorted(stamps)
    assert [_json.decode(b)["data"]["object"]["name"] for b in fake.accepted["stripe"]] == ["Acme", "Acme 2", "Acme 3"]
    counts = emitter.stats().platforms["stripe"]
    assert (counts.delivered, counts.failed, counts.retries) == (3, 0, 3)
    assert counts.last_error is not None and "HTTP 500" in counts.last_error
    await emitter.stop()


async def test_a_4xx_fails_that_event_with_concords_answer_and_the_next_goes_on(
    concord: tuple[FakeConcord, str],
) -> None:
    fake, url = concord
    world = World()
    emitter = make_emitter(world, url, zendesk="not the secret Concord has")
    await emitter.start()
    fake.script["netsuite"] = [400]
    netsuite.upsert_customer(world, "001Hp00000AcmeXAAQ", company_name="Acme")
    netsuite.upsert_customer(world, "001Hp00000BetaXAAQ", company_name="Beta")
    zendesk.create_organization(world, name="Acme")
    assert await emitter.drain(5)

    assert [_json.decode(b)["record"]["companyName"] for b in fake.accepted["netsuite"]] == ["Beta"]
    stats = emitter.stats().platforms
    assert (stats["netsuite"].delivered, stats["netsuite"].failed, stats["netsuite"].retries) == (1, 1, 0)
    assert "HTTP 400" in (stats["netsuite"].last_error or "")
    # A wrong secret is a 4xx too: counted as failed, with Concord's reason, never retried.
    assert (stats["zendesk"].delivered, stats["zendesk"].failed, stats["zendesk"].retries) == (0, 1, 0)
    assert "HTTP 401" in (stats["zendesk"].last_error or "")
    assert "bad_signature" in (stats["zendesk"].last_error or "")
    await emitter.stop()


async def test_events_made_before_concord_is_up_are_delivered_once_it_is() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    world = World()
    emitter = make_emitter(world, f"http://127.0.0.1:{port}")
    await emitter.start()
    customer = stripe.create_customer(world, name="Early")
    stripe.update_customer(world, customer["id"], {"name": "Early 2"})
    await wait_until(lambda: emitter.stats().platforms["stripe"].retries >= 2)
    assert emitter.stats().platforms["stripe"].delivered == 0

    fake = FakeConcord()
    server = TestServer(fake.app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        assert await emitter.drain(5)
        assert [_json.decode(b)["data"]["object"]["name"] for b in fake.accepted["stripe"]] == ["Early", "Early 2"]
        assert emitter.stats().platforms["stripe"].failed == 0
    finally:
        await emitter.stop()
        await server.close()


async def test_a_failing_platform_does_not_hold_back_the_others(
    concord: tuple[FakeConcord, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = concord
    fake.script["stripe"] = [503] * 10_000
    world = World()
    emitter = make_emitter(world, url)
    await emitter.start()
    stripe.create_customer(world, name="Stuck")
    stripe.create_customer(world, name="Stuck too")
    zendesk.create_organization(world, name="Flowing")
    await wait_until(lambda: emitter.stats().platforms["zendesk"].delivered == 1)
    assert len(fake.accepted["zendesk"]) == 1
    assert await emitter.drain(0.05) is False

    await emitter.stop(timeout=0.05)
    counts = emitter.stats().platforms["stripe"]
    # What could not be delivered before stop is counted, not silently lost.
    assert (counts.queued, counts.delivered, counts.failed, counts.pending) == (2, 0, 2, 0)
    assert "not delivered before the emitter stopped" in (counts.last_error or "")
    assert "stopped with undelivered events: stripe 2" in caplog.text  # says which, not "none"


async def test_stopped_emitter_ignores_changes_and_a_build_error_never_reaches_the_operation(
    concord: tuple[FakeConcord, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = concord
    world = World()
    emitter = make_emitter(world, url)
    await emitter.start()

    def broken(change: Any) -> list[Any]:
        raise KeyError("status")

    monkeypatch.setattr(emitter.events, "build", broken)
    customer = stripe.create_customer(world, name="Still written")  # the operation itself succeeds
    assert world.get("stripe", "customer", customer["id"]) is not None
    counts = emitter.stats().platforms["stripe"]
    assert (counts.queued, counts.failed) == (1, 1)
    assert "building the event" in (counts.last_error or "")
    monkeypatch.undo()

    await emitter.stop()
    stripe.create_customer(world, name="After stop")
    assert emitter.stats().platforms["stripe"].queued == 1
    assert fake.accepted["stripe"] == []


# --- Salesforce on Kafka ------------------------------------------------------------------------------


async def test_salesforce_cdc_is_produced_in_order_keyed_by_record_id_after_broker_errors() -> None:
    kafka = Kafka(start_failures=[KafkaConnectionError("broker not up yet")],
                  send_failures=[NotLeaderForPartitionError()])
    world = World()
    emitter = make_emitter(world, "http://127.0.0.1:9", kafka=kafka)
    await emitter.start()
    account = salesforce.create_account(world, name="Acme", country="US")
    for name in ("Acme 2", "Acme 3"):
        salesforce.update_account(world, account["Id"], {"Name": name})
    assert await emitter.drain(5)

    assert [(topic, key) for topic, key, _ in kafka.sent] == [(TOPIC, account["Id"].encode())] * 3
    decode = decoder("salesforce")
    names = []
    for _, _, value in kafka.sent:
        (event,) = decode(value)
        assert isinstance(event, AccountUpserted)
        names.append(event.name)
    assert names == ["Acme", "Acme 2", "Acme 3"]
    # The producer whose start failed was closed and replaced by a new one.
    assert len(kafka.producers) == 2 and kafka.producers[0].stopped
    counts = emitter.stats().platforms["salesforce"]
    assert (counts.delivered, counts.failed, counts.retries) == (3, 0, 2)

    await emitter.stop()
    assert kafka.producers[1].stopped


async def test_a_record_kafka_will_never_take_fails_and_the_next_goes_on() -> None:
    kafka = Kafka(send_failures=[MessageSizeTooLargeError()])
    world = World()
    emitter = make_emitter(world, "http://127.0.0.1:9", kafka=kafka)
    await emitter.start()
    salesforce.create_account(world, name="Too big")
    salesforce.create_account(world, name="Fine")
    assert await emitter.drain(5)
    assert len(kafka.sent) == 1
    counts = emitter.stats().platforms["salesforce"]
    assert (counts.delivered, counts.failed, counts.retries) == (1, 1, 0)
    assert "MessageSizeTooLargeError" in (counts.last_error or "")
    await emitter.stop()


def test_run_token_differs_between_runs() -> None:
    emitters: Iterator[Emitter] = (
        Emitter(World(), concord_url="http://x", stripe_secret="s", zendesk_secret="z", netsuite_secret="n",
                kafka_bootstrap="k:9092", salesforce_topic=TOPIC, clock=lambda t=t: t)
        for t in (1_780_000_000.0, 1_780_000_001.0)
    )
    first, second = (e.events.config.run for e in emitters)
    assert first and second and first != second


async def test_with_the_gap_fault_salesforce_sends_gap_events_naming_the_record_and_nothing_else() -> None:
    kafka = Kafka()
    world = World()
    faults = Faults(seed=1)
    faults.update(b'{"salesforce": {"gap_rate": 1}}')
    emitter = Emitter(world, concord_url="http://127.0.0.1:9", stripe_secret="s", zendesk_secret="z",
                      netsuite_secret="n", kafka_bootstrap="unused:9092", salesforce_topic=TOPIC,
                      producer_factory=kafka, run="g", gaps=faults.gap)
    await emitter.start()
    account = salesforce.create_account(world, name="Acme", country="US")
    salesforce.update_account(world, account["Id"], {"Name": "Acme 2"})
    salesforce.delete_account(world, account["Id"])
    assert await emitter.drain(5)

    decode = decoder("salesforce")
    seen = []
    for topic, key, value in kafka.sent:
        payload = msgspec.json.decode(value)["data"]["payload"]
        assert set(payload) == {"ChangeEventHeader"}  # the change happened; the event says only which record
        (event,) = decode(value)
        assert isinstance(event, ResyncRequired) and (topic, key) == (TOPIC, account["Id"].encode())
        seen.append((event.reason, event.record_ids))
    assert seen == [(f"GAP_{change}", (account["Id"],)) for change in ("CREATE", "UPDATE", "DELETE")]
    assert emitter.stats().platforms["salesforce"].gaps == 3
    await emitter.stop()
