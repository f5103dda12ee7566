"""The bridge's pure parts: bitmaps to field names, Avro events to the CometD message the codec reads, gap events.

The central check: for the sandbox's own changes, what the codec decodes from the bridge's message equals what
it decodes from the CometD message the sandbox produces to Kafka (the oracle's form), event for event.
"""

from __future__ import annotations

from typing import Any

import grpc
import msgspec
import pytest

from concord.codecs import salesforce as codec
from concord.codecs.model import ResyncRequired
from concord.connectors.salesforce_pubsub import (
    ALL_CHANGES,
    AvroSchema,
    BridgeConfig,
    BridgeError,
    ChannelBridge,
    RawRecord,
    RedisReplayStore,
    channel_entities,
    cometd_channel,
    field_names,
    gap_message,
    tenant_id,
    to_cometd,
)
from concord.connectors.tokens import StaticToken
from concord.core import pubsub_api
from concord.core.pubsub_api import pb
from concord.sandbox import salesforce as sf
from concord.sandbox.events import EventConfig, KafkaDelivery, NativeEvents
from concord.sandbox.pubsub import EventBus, field_bitmap
from concord.sandbox.world import Change, World

FIXTURE_SCHEMA = {
    "type": "record", "name": "AccountChangeEvent", "fields": [
        {"name": "ChangeEventHeader", "type": "string"},
        *({"name": name, "type": ["null", "string"]} for name in ("Name", "Type", "ParentId")),
        {"name": "BillingAddress", "type": ["null", {"type": "record", "name": "Address", "fields": [
            {"name": part, "type": ["null", "string"]} for part in ("Street", "City", "State")]}]},
        *({"name": f"F{i}", "type": ["null", "string"]} for i in range(5, 22)),
        {"name": "LastModifiedDate", "type": ["null", "long"]},
    ]}

SESSION = StaticToken("salesforce", "00DHp00000ConcoMAA!t")


def _schema() -> AvroSchema:
    return AvroSchema("s1", msgspec.json.encode(FIXTURE_SCHEMA).decode())


def test_bitmaps_become_field_paths_through_the_schema() -> None:
    # The documented example (fixtures/salesforce/pubsub_AccountChangeEvent_UPDATE_compound_bitmap.json):
    # bit 22 is LastModifiedDate, "4-0x01" the first part of the compound at position 4.
    assert field_names(["0x400000", "4-0x01"], _schema()) == ["LastModifiedDate", "BillingAddress.Street"]
    assert field_names(["0x06", "4-0x06"], _schema()) == ["Name", "Type", "BillingAddress.City",
                                                           "BillingAddress.State"]


def test_names_are_kept_and_an_empty_list_stays_empty() -> None:
    assert field_names(["Name", "BillingAddress.City"], _schema()) == ["Name", "BillingAddress.City"]
    assert field_names([], _schema()) == []


def test_a_bit_past_the_schema_is_refused() -> None:
    with pytest.raises(IndexError):
        field_names(["0x01000000"], _schema())


def test_sandbox_bitmaps_round_trip() -> None:
    fields = ["ChangeEventHeader", "Name", "BillingAddress", "Amount"]
    schema = AvroSchema("s", msgspec.json.encode({"type": "record", "name": "X", "fields": [
        {"name": "ChangeEventHeader", "type": "string"}, {"name": "Name", "type": ["null", "string"]},
        {"name": "BillingAddress", "type": ["null", {"type": "record", "name": "A", "fields": [
            {"name": p, "type": ["null", "string"]} for p in ("Street", "City", "State", "PostalCode", "Country")]}]},
        {"name": "Amount", "type": ["null", "double"]}]}).decode())
    paths = ["Name", "Amount", "BillingAddress.Country", "BillingAddress.Street"]
    assert field_bitmap(paths, fields) == ["0x0A", "2-0x11"]
    assert sorted(field_names(field_bitmap(paths, fields), schema)) == sorted(paths)


def test_tenant_id_from_setting_or_token() -> None:
    assert tenant_id("00DHp00000ConcoM", "anything") == "00DHp00000ConcoM"
    assert tenant_id("", "00DHp00000ConcoMAA!AQ8AQK.x") == "00DHp00000ConcoMAA"
    with pytest.raises(BridgeError, match="CONCORD_SALESFORCE_ORG_ID"):
        tenant_id("", "opaque-token")


def test_channel_entities() -> None:
    assert channel_entities("/data/AccountChangeEvent") == ("Account",)
    assert channel_entities("/data/Invoice__ChangeEvent") == ("Invoice__c",)
    assert channel_entities("/data/ChangeEvents") == ("Account", "Opportunity")
    assert cometd_channel("Invoice__c") == "/data/Invoice__ChangeEvent"


def _recorded_world() -> tuple[World, list[KafkaDelivery]]:
    world = World(clock=lambda: 1_764_000_000.0)
    events = NativeEvents(EventConfig(salesforce_topic="t.raw.salesforce", run="r1"))
    deliveries: list[KafkaDelivery] = []

    def listen(change: Change) -> None:
        deliveries.extend(d for d in events.build(change) if isinstance(d, KafkaDelivery))

    world.listen(listen)
    account = sf.create_account(world, name="Acme", country="DE", city="Berlin", street="Unter den Linden 1",
                                currency="EUR", tax_id="DE123")
    sf.update_account(world, account["Id"], {"BillingCity": "Hamburg", "Tax_Id__c": None})
    opportunity = sf.create_opportunity(world, account["Id"], name="Acme deal", amount=120_000, currency="EUR",
                                        close_date="2026-03-31", quantity=3)
    sf.close_won(world, opportunity["Id"])
    other = sf.create_account(world, name="Loser", currency="EUR")
    sf.merge_accounts(world, account["Id"], other["Id"])
    return world, deliveries


def _consumer_events(bus: EventBus, *entities: str) -> list[Any]:
    return [bused.event for bused in bus.after(0, frozenset(entities), 100)]


def _bridged(bus: EventBus, event: Any) -> RawRecord:
    """What the bridge makes of one ConsumerEvent: decoded with the schema it names, as CometD."""
    schema_json = bus.schema(event.event.schema_id)
    assert schema_json is not None
    schema = AvroSchema(event.event.schema_id, schema_json)
    return to_cometd(schema.decode(event.event.payload), schema, event.replay_id)


def test_the_bridge_message_decodes_as_the_sandbox_kafka_message() -> None:
    _, deliveries = _recorded_world()
    bus = EventBus()
    for delivery in deliveries:
        bus.append(delivery.value)
    bridged = _consumer_events(bus, "Account", "Opportunity")
    assert len(bridged) == len(deliveries) >= 6
    for delivery, event in zip(deliveries, bridged, strict=True):
        record = _bridged(bus, event)
        assert record.key == delivery.key
        assert codec.decode(record.value) == codec.decode(delivery.value)
        sent = msgspec.json.decode(delivery.value)["data"]["payload"]["ChangeEventHeader"]
        got = msgspec.json.decode(record.value)["data"]["payload"]["ChangeEventHeader"]
        assert (got["changedFields"], got["nulledFields"]) == (sent["changedFields"], sent["nulledFields"])


def test_the_bus_sends_bitmaps_and_epoch_times_as_the_real_api() -> None:
    _, deliveries = _recorded_world()
    bus = EventBus()
    for delivery in deliveries:
        bus.append(delivery.value)
    update = _consumer_events(bus, "Account")[1]
    schema = AvroSchema(update.event.schema_id, bus.schema(update.event.schema_id) or "")
    record = schema.decode(update.event.payload)
    header = record["ChangeEventHeader"]
    assert header["changeType"] == "UPDATE"
    assert all(value.startswith("0x") or "-0x" in value for value in header["changedFields"])
    assert "Tax_Id__c" in field_names(header["nulledFields"], schema)
    assert record["Name"] is None  # unchanged: null, as the Pub/Sub API sends it
    create = _consumer_events(bus, "Account")[0]
    created = AvroSchema(create.event.schema_id, bus.schema(create.event.schema_id) or "").decode(create.event.payload)
    assert created["CreatedDate"] == 1_764_000_000_000


def test_a_schema_grows_under_a_new_id_when_a_field_appears() -> None:
    _, deliveries = _recorded_world()
    bus = EventBus()
    for delivery in deliveries:
        bus.append(delivery.value)
    accounts = _consumer_events(bus, "Account")
    ids = [event.event.schema_id for event in accounts]
    assert ids[0] != ids[-1]  # MasterRecordId, null until the merge's DELETE, first appears there: a new schema
    for event in accounts:  # every event still decodes with the schema it names
        assert codec.decode(_bridged(bus, event).value)


def test_replay_ids_increase_and_resume_after_a_custom_one() -> None:
    _, deliveries = _recorded_world()
    bus = EventBus()
    for delivery in deliveries:
        bus.append(delivery.value)
    everything = _consumer_events(bus, "Account", "Opportunity")
    replays = [event.replay_id for event in everything]
    assert replays == sorted(replays) and len(set(replays)) == len(replays)
    start = bus.start_after(pb.ReplayPreset.Value("CUSTOM"), replays[2])
    assert [e.event.replay_id for e in bus.after(start, frozenset({"Account", "Opportunity"}), 100)] == replays[3:]
    assert bus.start_after(pb.ReplayPreset.Value("LATEST"), b"") == bus.latest


def test_retention_makes_an_old_replay_id_invalid() -> None:
    now = [1000.0]
    bus = EventBus(retention=60.0, clock=lambda: now[0])
    _, deliveries = _recorded_world()
    bus.append(deliveries[0].value)
    first = _consumer_events(bus, "Account")[0].replay_id
    bus.append(deliveries[1].value)
    now[0] += 61
    bus.append(deliveries[2].value)
    with pytest.raises(ValueError, match="cannot be resumed"):
        bus.start_after(pb.ReplayPreset.Value("CUSTOM"), first)
    with pytest.raises(ValueError):
        bus.start_after(pb.ReplayPreset.Value("CUSTOM"), (99).to_bytes(8, "big"))


def test_gap_message_decodes_to_a_resync_of_the_whole_object() -> None:
    record = gap_message("Opportunity", "/data/OpportunityChangeEvent", 1_764_000_000_000, b"\x00\x01")
    assert record.key == b"Opportunity"
    events = codec.decode(record.value)
    assert len(events) == 1 and isinstance(events[0], ResyncRequired)
    assert events[0].object_type == "Opportunity" and not events[0].record_ids
    again = gap_message("Opportunity", "/data/OpportunityChangeEvent", 1_764_000_000_999, b"\x00\x01")
    assert codec.decode(again.value)[0].event_id == events[0].event_id  # one gap, however often declared


# --- the subscription loop, against a scripted stub ----------------------------------------------


def _rpc_error(code: grpc.StatusCode, error_code: str = "") -> grpc.aio.AioRpcError:
    trailers = grpc.aio.Metadata(*(((pubsub_api.ERROR_CODE_KEY, error_code),) if error_code else ()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details=f"{code.name} from the script")


class ScriptedStub:
    """Each Subscribe call plays the next script entry: an error raised, or responses then the end of the stream."""

    def __init__(self, bus: EventBus, script: list[Any]) -> None:
        self.bus = bus
        self.script = script
        self.calls: list[Any] = []

    def Subscribe(self, requests: Any, metadata: Any) -> Any:  # noqa: N802 (gRPC's name)
        step = self.script.pop(0)
        stub = self

        class Call:
            def cancel(self) -> None:
                return None

            async def __aiter__(self) -> Any:
                first = await anext(requests)
                stub.calls.append((first, dict(metadata)))
                if isinstance(step, Exception):
                    raise step
                for response in step:
                    yield response

        return Call()

    async def GetSchema(self, request: Any, metadata: Any) -> Any:  # noqa: N802
        return pb.SchemaInfo(schema_id=request.schema_id, schema_json=self.bus.schema(request.schema_id))


class MemoryStore:
    def __init__(self) -> None:
        self.saved: dict[str, bytes] = {}
        self.log: list[str] = []

    async def load(self, channel: str) -> bytes | None:
        return self.saved.get(channel)

    async def save(self, channel: str, replay_id: bytes) -> None:
        self.log.append(f"save {int.from_bytes(replay_id, 'big')}")
        self.saved[channel] = replay_id

    async def forget(self, channel: str) -> None:
        self.log.append("forget")
        self.saved.pop(channel, None)


def _bus_with(count: int) -> EventBus:
    _, deliveries = _recorded_world()
    bus = EventBus()
    for delivery in deliveries[:count]:
        bus.append(delivery.value)
    return bus


async def _run_until_script_ends(bridge: ChannelBridge) -> None:
    with pytest.raises(IndexError):  # the script ran out: every call it planned was made
        await bridge.run()


async def test_transient_errors_resubscribe_with_backoff_and_the_store_follows_the_produce() -> None:
    bus = _bus_with(3)
    events = [bused.event for bused in bus.after(0, frozenset({"Account", "Opportunity"}), 10)]
    stub = ScriptedStub(bus, [_rpc_error(grpc.StatusCode.UNAVAILABLE), _rpc_error(grpc.StatusCode.UNAVAILABLE),
                              [pb.FetchResponse(events=events[:2]), pb.FetchResponse(events=events[2:])]])
    store, produced, slept = MemoryStore(), [], []

    async def produce(records: Any) -> None:
        store.log.append(f"produce {len(records)}")
        produced.extend(records)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    bridge = ChannelBridge(ALL_CHANGES, stub, tokens=SESSION, store=store,
                           produce=produce, config=BridgeConfig(instance_url="https://x", backoff_base=0.5),
                           sleep=sleep)
    await _run_until_script_ends(bridge)
    assert slept == [0.5, 1.0, 0.5]  # doubling while failing; after the stream that worked, from the start again
    assert store.log == ["produce 2", "save 2", "produce 1", "save 3"]
    assert [record.key for record in produced] == [_bridged(bus, event).key for event in events]
    first, metadata = stub.calls[0]
    assert first.replay_preset == pb.ReplayPreset.Value("LATEST") and first.num_requested == 100
    assert metadata == {"accesstoken": "00DHp00000ConcoMAA!t", "instanceurl": "https://x",
                        "tenantid": "00DHp00000ConcoMAA"}
    resumed, _ = stub.calls[-1]
    assert resumed.replay_preset == pb.ReplayPreset.Value("LATEST")  # nothing stored before the stream that worked


async def test_a_stored_replay_id_resumes_and_a_corrupted_one_is_a_gap_then_latest() -> None:
    bus = _bus_with(1)
    stub = ScriptedStub(bus, [_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, pubsub_api.REPLAY_ID_CORRUPTED), []])
    store = MemoryStore()
    store.saved[ALL_CHANGES] = (7).to_bytes(8, "big")
    produced: list[RawRecord] = []
    requested: list[int] = []

    async def produce(records: Any) -> None:
        produced.extend(records)

    async def request_pass(at_ms: int) -> None:
        requested.append(at_ms)

    async def sleep(seconds: float) -> None:
        return None

    bridge = ChannelBridge(ALL_CHANGES, stub, tokens=SESSION, store=store,
                           produce=produce, config=BridgeConfig(instance_url="https://x", preset="EARLIEST"),
                           request_pass=request_pass, clock_ms=lambda: 42, sleep=sleep)
    await _run_until_script_ends(bridge)
    custom, latest = (call for call, _ in stub.calls)
    assert custom.replay_preset == pb.ReplayPreset.Value("CUSTOM") and custom.replay_id == (7).to_bytes(8, "big")
    assert latest.replay_preset == pb.ReplayPreset.Value("LATEST")  # not the EARLIEST preset: after a gap, new only
    assert [codec.decode(record.value)[0].object_type for record in produced] == ["Account", "Opportunity"]
    assert requested == [42] and store.log == ["forget"]


async def test_a_refusal_other_than_transient_stops_the_bridge_saying_why() -> None:
    stub = ScriptedStub(_bus_with(0), [_rpc_error(grpc.StatusCode.PERMISSION_DENIED)])

    async def produce(records: Any) -> None:
        return None

    bridge = ChannelBridge("/data/AccountChangeEvent", stub, tokens=SESSION,
                           store=MemoryStore(), produce=produce, config=BridgeConfig(instance_url="https://x"))
    with pytest.raises(BridgeError, match="selected for Change Data Capture"):
        await bridge.run()


async def test_the_redis_store_waits_out_an_outage() -> None:
    class FlakyRedis:
        def __init__(self) -> None:
            self.failures = 2
            self.values: dict[str, str] = {}

        async def set(self, key: str, value: str) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("Redis restarting")
            self.values[key] = value

        async def get(self, key: str) -> bytes | None:
            value = self.values.get(key)
            return None if value is None else value.encode()

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    redis = FlakyRedis()
    store = RedisReplayStore(redis, "p", sleep=sleep)
    await store.save("/data/ChangeEvents", b"\x00\x2a")
    assert redis.values == {"p:bridge:salesforce:replay:/data/ChangeEvents": "002a"} and len(slept) == 2
    assert await store.load("/data/ChangeEvents") == b"\x00\x2a"


async def test_an_event_the_schema_cannot_read_is_produced_for_the_ingest_to_dead_letter() -> None:
    bus = _bus_with(1)
    good = bus.after(0, frozenset({"Account"}), 1)[0].event
    broken = pb.ConsumerEvent(event=pb.ProducerEvent(id="e1", schema_id=good.event.schema_id, payload=b"\x02"),
                              replay_id=good.replay_id)
    stub = ScriptedStub(bus, [[pb.FetchResponse(events=[broken, good])]])
    produced: list[RawRecord] = []

    async def produce(records: Any) -> None:
        produced.extend(records)

    async def sleep(seconds: float) -> None:
        return None

    bridge = ChannelBridge(ALL_CHANGES, stub, tokens=SESSION, store=MemoryStore(),
                           produce=produce, config=BridgeConfig(instance_url="https://x"), sleep=sleep)
    await _run_until_script_ends(bridge)
    dead, alive = produced
    with pytest.raises(codec.DecodeError, match="unknown_shape"):
        codec.decode(dead.value)
    assert msgspec.json.decode(dead.value)["avroPayload"] == "Ag=="  # the bytes as they came
    assert codec.decode(alive.value)  # the next event is bridged all the same
