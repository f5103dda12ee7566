"""The sandbox's Salesforce Pub/Sub API: the CDC events of the world, served over gRPC as Salesforce does.

With `--salesforce-delivery pubsub` the emitter does not produce Salesforce change events to Kafka: it
appends each one (the same CometD message it would have produced, sandbox/events.py) to an `EventBus`,
and `PubSubService` serves the bus on `--pubsub-port` with the contract of `core/proto/pubsub_api.proto`,
for Concord's bridge (`concord bridge salesforce`) to carry them into Kafka.

What a subscriber sees is what the real API sends:

* each event is Avro binary (fastavro) written with a schema the bus owns, one per entity, named by a
  fingerprint id (`GetSchema`); a schema grows when a field is first seen, under a new id, as an org's
  does when a field is added: every field present, null unless the change carries it; the
  `ChangeEventHeader` lists `changedFields`/`nulledFields`/`diffFields` as bitmaps of schema positions
  (`["0x400000", "4-0x01"]`: top-level bits first, then `<compound position>-<bits of its parts>`);
  datetimes and dates are epoch milliseconds;
* replay ids are opaque 8-byte values, increasing; a subscription starts at LATEST, EARLIEST or just
  after a CUSTOM replay id;
* flow control: a stream is sent at most as many events as its FetchRequests asked for in all
  (`num_requested` adds up); an empty FetchResponse (the latest replay id, `pending_num_requested`) is
  a keepalive after `keepalive` seconds without events;
* retention: events older than `retention` seconds (0: kept for ever) are dropped, and a CUSTOM replay id
  the bus can no longer resume after (or never issued) fails the call with INVALID_ARGUMENT and the
  trailer `error-code: sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted`;
* authentication: every call carries `accesstoken` (checked as the REST API checks its bearer token:
  the org's sessions, `Sessions.accepts` in sandbox/oauth.py) and `tenantid`; otherwise UNAUTHENTICATED
  with the auth error code. A session that expires while its stream is open ends the stream the same way
  before the next events are sent: the subscriber renews its token and resubscribes.

Channels: `/data/ChangeEvents` carries every entity, `/data/<Entity>ChangeEvent` one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from typing import Any, Final

import fastavro
import grpc
import msgspec

from concord.core import pubsub_api
from concord.core.pubsub_api import pb, services
from concord.sandbox.events import CDC_ENTITIES

ALL_CHANGES: Final = "/data/ChangeEvents"
NAMESPACE: Final = "com.sforce.eventbus"
CHANGE_TYPES: Final = ("CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE",
                       "GAP_UNDELETE", "GAP_OVERFLOW")
ADDRESS_PARTS: Final = ("Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude",
                        "GeocodeAccuracy")
COMPOUND_FIELDS: Final = frozenset({"BillingAddress", "ShippingAddress"})
# Fields the Pub/Sub API sends as epoch milliseconds (CometD as ISO text).
DATETIME_FIELDS: Final = frozenset({"CreatedDate", "LastModifiedDate", "SystemModstamp"})
DATE_FIELDS: Final = frozenset({"CloseDate"})
# Any other field: its value's own type (sandbox records hold text, numbers and booleans).
_ANY: Final = ["null", "string", "boolean", "long", "double"]
_REPLAY_BYTES: Final = 8

E_TOPIC: Final = "topic {topic!r} is not a change event channel of this org: use {channels}"
E_AUTH: Final = "missing or invalid accesstoken / tenantid metadata (the session is expired or invalid)"
E_REPLAY: Final = ("replay id {replay} cannot be resumed after: the oldest event retained follows {oldest}, the "
                   "latest is {latest} (retention {retention:g}s)")


def channel_entities(topic: str) -> frozenset[str] | None:
    """The entities a channel carries; None for a topic this org does not have."""
    if topic == ALL_CHANGES:
        return CDC_ENTITIES
    for entity in CDC_ENTITIES:
        if topic == f"/data/{entity}ChangeEvent":
            return frozenset({entity})
    return None


def replay_bytes(number: int) -> bytes:
    return number.to_bytes(_REPLAY_BYTES, "big")


def field_bitmap(paths: list[str], fields: list[str]) -> list[str]:
    """Field paths (`Name`, `BillingAddress.City`) -> the bitmap list the Pub/Sub API sends for them.

    Bit i of the first element is top-level field i of the schema (0 is the ChangeEventHeader); each
    compound field with changed parts follows as `<its position>-0x<bits of the parts>`.
    """
    if not paths:
        return []
    top = 0
    parts: dict[int, int] = {}
    for path in paths:
        name, _, part = path.partition(".")
        position = fields.index(name)
        if part:
            parts[position] = parts.get(position, 0) | 1 << ADDRESS_PARTS.index(part)
        else:
            top |= 1 << position
    return [_hex(top)] + [f"{position}-{_hex(bits)}" for position, bits in sorted(parts.items())]


def _hex(bits: int) -> str:
    digits = f"{bits:X}"
    return "0x" + ("0" + digits if len(digits) % 2 else digits)


class _EntitySchema:
    """One entity's change event schema: fields in the order first seen, a new id when one is added."""

    def __init__(self, entity: str) -> None:
        self.entity = entity
        self.fields: list[str] = ["ChangeEventHeader"]
        self.schema_id = ""
        self.json = ""
        self.parsed: Any = None

    def admit(self, names: list[str]) -> bool:
        """Add the fields not yet in the schema; True when it changed (a new id)."""
        new = [name for name in dict.fromkeys(names) if name not in self.fields]
        if not new and self.parsed is not None:
            return False
        self.fields.extend(new)
        self.json = msgspec.json.encode(self._schema()).decode()
        digest = hashlib.sha256(self.json.encode()).digest()
        self.schema_id = base64.urlsafe_b64encode(digest).decode()[:22]
        self.parsed = fastavro.parse_schema(msgspec.json.decode(self.json))
        return True

    def _schema(self) -> dict[str, Any]:
        return {"type": "record", "name": f"{self.entity}ChangeEvent", "namespace": NAMESPACE,
                "fields": [_field(name, self.entity) for name in self.fields]}


def _field(name: str, entity: str) -> dict[str, Any]:
    if name == "ChangeEventHeader":
        return {"name": name, "type": _HEADER_SCHEMA}
    if name in COMPOUND_FIELDS:
        address = {"type": "record", "name": f"{entity}{name}", "fields": [
            {"name": part, "type": ["null", "double"] if part in ("Latitude", "Longitude") else ["null", "string"],
             "default": None} for part in ADDRESS_PARTS]}
        return {"name": name, "type": ["null", address], "default": None}
    if name in DATETIME_FIELDS or name in DATE_FIELDS:
        return {"name": name, "type": ["null", "long"], "default": None,
                "doc": f"Data:{'DateTime' if name in DATETIME_FIELDS else 'Date'}"}
    return {"name": name, "type": _ANY, "default": None}


_STRINGS: Final = {"type": "array", "items": "string"}
_HEADER_SCHEMA: Final = {
    "type": "record", "name": "ChangeEventHeader", "namespace": NAMESPACE, "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": _STRINGS},
        {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "symbols": list(CHANGE_TYPES)}},
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": _STRINGS},
        {"name": "diffFields", "type": _STRINGS},
        {"name": "changedFields", "type": _STRINGS},
    ]}


def _avro_value(name: str, value: Any) -> Any:
    """A CometD value as the Pub/Sub API sends it: datetimes and dates as epoch ms, anything else as it is."""
    if not isinstance(value, str) or name not in DATETIME_FIELDS and name not in DATE_FIELDS:
        return value
    if name in DATE_FIELDS:
        return int(datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC).timestamp() * 1000)
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


class _BusEvent(msgspec.Struct, frozen=True):
    replay: int
    entity: str
    at: float
    event: Any  # pb.ConsumerEvent


class EventBus:
    """The org's change events in replay order, Avro-encoded, kept for `retention` seconds.

    Also the emitter's Kafka producer stand-in (`start`/`stop`/`send_and_wait`): with pubsub delivery,
    what would have been produced to Kafka is appended here instead.
    """

    def __init__(self, *, retention: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.retention = retention
        self._clock = clock
        self._events: deque[_BusEvent] = deque()
        self._schemas: dict[str, _EntitySchema] = {}
        self._by_id: dict[str, str] = {}  # every schema id ever issued -> its JSON (old events name old ones)
        self._latest = 0
        self._trimmed = 0  # the replay number of the last event dropped (0: none)
        self._appended = asyncio.Event()

    # --- the emitter's producer ---------------------------------------------------------------------

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> int:
        """Append the CometD message `value` (the topic and key are the Kafka delivery's: unused here)."""
        if value is None:
            raise ValueError("a change event without a body")
        return self.append(value)

    # --- the bus ----------------------------------------------------------------------------------

    def append(self, cometd: bytes) -> int:
        """Append one CometD change event message (sandbox/events.py) as its Pub/Sub event; its replay number."""
        message = msgspec.json.decode(cometd)
        payload: dict[str, Any] = dict(message["data"]["payload"])
        header = dict(payload.pop("ChangeEventHeader"))
        entity = header["entityName"]
        schema = self._schemas.setdefault(entity, _EntitySchema(entity))
        named = [path.partition(".")[0] for key in ("changedFields", "nulledFields", "diffFields")
                 for path in header[key]]
        if schema.admit([*payload, *named]):
            self._by_id[schema.schema_id] = schema.json
        for key in ("changedFields", "nulledFields", "diffFields"):
            header[key] = field_bitmap(header[key], schema.fields)
        record: dict[str, Any] = {"ChangeEventHeader": header}
        for name in schema.fields[1:]:
            value = payload.get(name)
            if name in COMPOUND_FIELDS and isinstance(value, dict):
                value = {part: value.get(part) for part in ADDRESS_PARTS}
            record[name] = _avro_value(name, value)
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema.parsed, record)
        self._latest += 1
        replay = replay_bytes(self._latest)
        event = pb.ConsumerEvent(event=pb.ProducerEvent(id=f"{header['transactionKey']}:{header['sequenceNumber']}",
                                                        schema_id=schema.schema_id, payload=out.getvalue()),
                                 replay_id=replay)
        self._events.append(_BusEvent(self._latest, entity, self._clock(), event))
        self._trim()
        self._appended.set()
        self._appended = asyncio.Event()
        return self._latest

    def schema(self, schema_id: str) -> str | None:
        return self._by_id.get(schema_id)

    def current_schema_id(self, entity: str) -> str:
        schema = self._schemas.get(entity)
        if schema is None:
            schema = self._schemas[entity] = _EntitySchema(entity)
            schema.admit([])
            self._by_id[schema.schema_id] = schema.json
        return schema.schema_id

    @property
    def latest(self) -> int:
        return self._latest

    def start_after(self, preset: int, replay_id: bytes) -> int:
        """The replay number a subscription starts after; ValueError (the message) for a replay id it cannot."""
        self._trim()
        if preset == pb.ReplayPreset.Value("EARLIEST"):
            return self._trimmed
        if preset != pb.ReplayPreset.Value("CUSTOM"):
            return self._latest
        number = int.from_bytes(replay_id, "big") if len(replay_id) == _REPLAY_BYTES else -1
        if not self._trimmed <= number <= self._latest:
            raise ValueError(E_REPLAY.format(replay=replay_id.hex(), oldest=self._trimmed, latest=self._latest,
                                             retention=self.retention))
        return number

    def after(self, number: int, entities: frozenset[str], limit: int) -> list[_BusEvent]:
        """Up to `limit` events of `entities` after replay number `number`."""
        self._trim()
        found: list[_BusEvent] = []
        for event in self._events:
            if event.replay > number and event.entity in entities:
                found.append(event)
                if len(found) == limit:
                    break
        return found

    def next_append(self) -> asyncio.Event:
        """Set when the next event is appended."""
        return self._appended

    def _trim(self) -> None:
        if self.retention <= 0:
            return
        horizon = self._clock() - self.retention
        while self._events and self._events[0].at < horizon:
            self._trimmed = self._events.popleft().replay


class SubscribeCounts(msgspec.Struct, kw_only=True):
    """What one Subscribe stream asked for (`num_requested`, added up) and was sent: its flow control, readable."""

    topic: str = ""
    requested: int = 0
    sent: int = 0


class PubSubService(services.PubSubServicer):
    """The Pub/Sub API over an `EventBus`; see the module doc for what it enforces."""

    def __init__(self, bus: EventBus, accepts: Callable[[str], bool], *, keepalive: float = 270.0,
                 tenant_id: str = "00DHp00000ConcoMAA") -> None:
        self.bus = bus
        self.accepts = accepts  # the org's session check, shared with its REST API (sandbox/oauth.py `Sessions`)
        self.keepalive = keepalive
        self.tenant_id = tenant_id
        self.streams: list[SubscribeCounts] = []

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> str:
        """The call's access token, once the org accepts it (else the call ends UNAUTHENTICATED)."""
        metadata = dict(context.invocation_metadata() or ())
        token = str(metadata.get(pubsub_api.ACCESS_TOKEN_KEY, ""))
        if not self.accepts(token) or not metadata.get(pubsub_api.TENANT_ID_KEY):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, E_AUTH,
                                ((pubsub_api.ERROR_CODE_KEY, pubsub_api.AUTH_ERROR),))
        return token

    async def GetSchema(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802 (gRPC's name)
        await self._authenticate(context)
        schema = self.bus.schema(request.schema_id)
        if schema is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no schema {request.schema_id!r}")
        return pb.SchemaInfo(schema_json=schema, schema_id=request.schema_id)

    async def GetTopic(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await self._authenticate(context)
        entities = await self._entities(request.topic_name, context)
        schema_id = self.bus.current_schema_id(next(iter(entities))) if len(entities) == 1 else ""
        return pb.TopicInfo(topic_name=request.topic_name, tenant_guid=self.tenant_id, can_publish=False,
                            can_subscribe=True, schema_id=schema_id)

    async def _entities(self, topic: str, context: grpc.aio.ServicerContext) -> frozenset[str]:
        entities = channel_entities(topic)
        if entities is None:
            channels = ", ".join([ALL_CHANGES, *(f"/data/{e}ChangeEvent" for e in sorted(CDC_ENTITIES))])
            await context.abort(grpc.StatusCode.NOT_FOUND, E_TOPIC.format(topic=topic, channels=channels))
        assert entities is not None  # abort raised otherwise
        return entities

    async def Subscribe(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext  # noqa: N802
                        ) -> AsyncIterator[Any]:
        token = await self._authenticate(context)
        first = await anext(aiter(requests), None)
        if first is None:
            return
        entities = await self._entities(first.topic_name, context)
        try:
            position = self.bus.start_after(first.replay_preset, first.replay_id)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc),
                                ((pubsub_api.ERROR_CODE_KEY, pubsub_api.REPLAY_ID_CORRUPTED),))
        counts = SubscribeCounts(topic=first.topic_name, requested=max(0, first.num_requested))
        self.streams.append(counts)
        more = asyncio.Event()

        async def read_requests() -> None:
            async for request in requests:
                counts.requested += max(0, request.num_requested)
                more.set()

        reader = asyncio.create_task(read_requests())
        try:
            while True:
                owed = counts.requested - counts.sent
                batch = self.bus.after(position, entities, owed) if owed > 0 else []
                if batch:
                    if not self.accepts(token):  # the session expired while the stream was open
                        await context.abort(grpc.StatusCode.UNAUTHENTICATED, E_AUTH,
                                            ((pubsub_api.ERROR_CODE_KEY, pubsub_api.AUTH_ERROR),))
                    counts.sent += len(batch)
                    position = batch[-1].replay
                    yield pb.FetchResponse(events=[event.event for event in batch],
                                           latest_replay_id=replay_bytes(position),
                                           pending_num_requested=counts.requested - counts.sent)
                    continue
                more.clear()
                waits = [asyncio.ensure_future(more.wait()), asyncio.ensure_future(self.bus.next_append().wait())]
                done, pending = await asyncio.wait(waits, timeout=self.keepalive,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for waiting in pending:
                    waiting.cancel()
                if not done:
                    # The latest id only when nothing of the channel is held back: resuming after it skips nothing.
                    held = self.bus.after(position, entities, 1)
                    yield pb.FetchResponse(latest_replay_id=replay_bytes(position if held else self.bus.latest),
                                           pending_num_requested=counts.requested - counts.sent)
        finally:
            reader.cancel()


async def start_server(bus: EventBus, accepts: Callable[[str], bool], *, host: str, port: int,
                       keepalive: float = 270.0) -> tuple[grpc.aio.Server, PubSubService]:
    """A started plaintext gRPC server serving `bus` on host:port (the sandbox has no certificate)."""
    server = grpc.aio.server()
    service = PubSubService(bus, accepts, keepalive=keepalive)
    services.add_PubSubServicer_to_server(service, server)
    try:
        server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # grpc's way of saying the port is taken
        raise OSError(f"cannot listen for the Pub/Sub API: {exc}") from exc
    await server.start()
    return server, service
