"""The pipeline bench's raw records (bench/pipeline/raw.py): the sandbox's traffic as the raw topics hold it.

The webhook records are checked against the ingress itself: the sandbox's delivery is posted the way its
emitter posts it (aiohttp client, same headers) to `Ingress.handle` on a loopback aiohttp server, and what
the ingress hands to Kafka must be the record, key, bytes and headers. No Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from concord.app.ingress import Ingress
from concord.bench.pipeline.raw import SECRET, RawRecord, raw_records
from concord.codecs.config import codec_config
from concord.codecs.model import EntitlementChanged, ResyncRequired
from concord.codecs.registry import decoder
from concord.core import messages
from concord.core.settings import Settings
from concord.sandbox.emit import sign_headers
from concord.sandbox.events import EventConfig, NativeEvents, WebhookDelivery
from concord.sandbox.traffic import Traffic, TrafficConfig
from concord.sandbox.world import Change, World

PLATFORMS = {"stripe", "salesforce", "zendesk", "netsuite"}


@pytest.fixture(scope="module")
def records() -> list[RawRecord]:
    return raw_records(seed=3, customers=12, count=300)


def test_the_records_are_the_same_for_a_seed_and_differ_between_seeds(records: list[RawRecord]) -> None:
    assert raw_records(seed=3, customers=12, count=300) == records
    assert raw_records(seed=4, customers=12, count=300) != records


def test_more_records_than_the_customers_give_adds_customers_and_keeps_the_first_ones() -> None:
    few = raw_records(seed=3, customers=2, count=20)
    many = raw_records(seed=3, customers=2, count=400)
    assert len(many) >= 400
    assert {r.key for r in many if r.platform == "salesforce"} > {r.key for r in few if r.platform == "salesforce"}


def test_every_platform_is_there_with_the_key_the_ingress_or_the_cdc_pipeline_writes(records: list[RawRecord]) -> None:
    assert len(records) >= 300
    assert {r.platform for r in records} == PLATFORMS
    for record in records:
        if record.platform == "salesforce":  # the CDC pipeline: keyed by record id, no header
            header = json.loads(record.value)["data"]["payload"]["ChangeEventHeader"]
            assert (record.key, record.headers) == (header["recordIds"][0].encode(), [])
        elif _is_reread(record):  # the commands role: keyed by the organization's id
            assert record.key == str(json.loads(record.value)["organization"]["id"]).encode()
        else:  # the ingress writes no key, and when it received the delivery last
            assert record.key is None
            assert record.headers[-1][0] == messages.RECEIVED_AT


def _is_reread(record: RawRecord) -> bool:
    return any(name == messages.REFETCHED_BY for name, _ in record.headers)


def test_each_organization_webhook_is_followed_by_the_re_read_the_commands_role_feeds_back(
        records: list[RawRecord]) -> None:
    # A Zendesk organization webhook carries no entitlement (the codec asks for a re-read): the re-read does.
    config = codec_config(Settings())
    asked = 0
    for n, record in enumerate(records):
        if record.platform != "zendesk" or _is_reread(record):
            continue
        resyncs = [e for e in decoder("zendesk")(record.value, config) if isinstance(e, ResyncRequired)]
        if not resyncs:
            continue
        asked += 1
        reread = records[n + 1]
        assert _is_reread(reread) and reread.key == resyncs[0].record_ids[0].encode()
        kinds = {type(e) for e in decoder("zendesk")(reread.value, config)}
        assert EntitlementChanged in kinds and ResyncRequired not in kinds
    assert asked >= 5


def test_every_record_decodes_to_canonical_events_that_name_a_customer(records: list[RawRecord]) -> None:
    config = codec_config(Settings())
    customer_keys: set[str] = set()
    for record in records:
        events = decoder(record.platform)(record.value, config)
        assert events, record
        for event in events:
            assert event.local_customer is not None or event.customer_key is not None
            customer_keys.update([event.customer_key] if event.customer_key else [])
    assert len(customer_keys) >= 10


class _Captured:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []

    async def __call__(self, platform: str, body: bytes, headers: list[tuple[str, bytes]]) -> Mapping[str, Any]:
        self.sent.append((platform, body, headers))
        return {"topic": f"raw.{platform}", "partition": 0, "offset": len(self.sent) - 1}


def _first_deliveries() -> list[tuple[int, WebhookDelivery]]:
    """The first webhook deliveries of seed 3's traffic, as raw_records plays it, with their times."""
    now = [1_793_491_200.0]
    world = World(clock=lambda: now[0])
    events = NativeEvents(EventConfig(salesforce_topic="raw.salesforce", run="b3"))
    deliveries: list[tuple[int, WebhookDelivery]] = []

    def deliver(change: Change) -> None:
        deliveries.extend((change.at, d) for d in events.build(change) if isinstance(d, WebhookDelivery))

    world.listen(deliver)
    traffic = Traffic(world, TrafficConfig(seed=3, customers=12), defer=lambda fn: fn())
    for step in traffic.steps:
        now[0] = 1_793_491_200.0 + step.at / 3600
        traffic.run_step(step)
        if {d.platform for _, d in deliveries} == PLATFORMS - {"salesforce"}:
            return deliveries
    raise AssertionError("the traffic made no delivery of some webhook platform")


async def test_a_webhook_record_is_what_the_ingress_writes_for_the_emitters_post(records: list[RawRecord]) -> None:
    settings = msgspec.structs.replace(Settings(), stripe_webhook_secret=SECRET, zendesk_webhook_secret=SECRET,
                                       netsuite_webhook_secret=SECRET)
    webhooks = [r for r in records if r.platform != "salesforce" and not _is_reread(r)]
    for at, delivery in _first_deliveries():
        captured = _Captured()

        def received(at: int = at) -> float:
            return at / 1000

        ingress = Ingress(settings, captured, clock=received)

        async def view(request: web.Request, ingress: Ingress = ingress) -> web.Response:
            reply = await ingress.handle(request.match_info["platform"], request)
            return web.json_response(reply.body, status=reply.status)

        app = web.Application()
        app.router.add_post("/webhooks/{platform}", view)
        async with TestServer(app) as server, ClientSession() as session:
            # As sandbox/emit.py `_post` sends it.
            headers = {**delivery.headers, **sign_headers(delivery, SECRET, at / 1000)}
            async with session.post(server.make_url(delivery.path), data=delivery.body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
        [(platform, body, stored)] = captured.sent
        record = webhooks.pop(0)
        assert (record.platform, record.value) == (platform, body)
        # Host names the server's port, and the clock's ms may round the other way: the rest is equal.
        assert [h for h in record.headers if h[0] != "Host"][:-1] == [h for h in stored if h[0] != "Host"][:-1]
        assert abs(int(record.headers[-1][1]) - int(stored[-1][1])) <= 1
