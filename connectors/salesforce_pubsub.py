"""Salesforce Change Data Capture over the Pub/Sub API -> `<prefix>.raw.salesforce`: the bridge's logic.

`concord bridge salesforce` (app/bridge.py) runs one `ChannelBridge` per CDC channel. Each subscribes
(core/proto/pubsub_api.proto), decodes every event's Avro payload with its schema (GetSchema, cached by
schema id), turns it into the CometD message the ingest already reads from the raw topic (what the
sandbox produces with Kafka delivery, and what a CometD pipeline would), produces it and only then
stores the event's replay id:

**A crash replays, never skips.** A batch is produced with acks=all and every send awaited; the replay
id of its last event is stored in Redis (`<prefix>:bridge:salesforce:replay:<channel>`, hex) only after
that. A bridge that dies in between resubscribes after the previous stored id and produces the batch
again: duplicates, which the ingest drops by event id (`transactionKey:sequenceNumber`), never a hole.

**Flow control.** The first FetchRequest asks for `batch` events; after each batch is in Kafka and its
replay id stored, the bridge asks for as many as it received. At most `batch` events ever wait in the
bridge, whatever Salesforce holds.

**Where a channel starts.** After its stored replay id (CUSTOM), else at the configured preset
(LATEST by default). A stored id Salesforce no longer has (past the 72-hour retention, the
`...replayid.corrupted` error) is a gap: the changes between are lost to the bridge. It produces one
`GAP_OVERFLOW` change event per entity of the channel (no record named, so the ingest marks the
object stale until a reconciliation: agents/ingest.py `gap_overflow`, docs/reconcile.md), requests a
Salesforce reconciliation pass (`request_pass`: the process sets connectors/reconcile.py's
`request_key`, and a worker with a Salesforce schedule starts a pass at its next tick instead of
waiting for the interval), forgets the stored id and resubscribes from LATEST.

**Auth.** Every call carries `accesstoken`, `instanceurl` and `tenantid` (metadata). The token comes
from the process's Salesforce token source (connectors/tokens.py: a static token, or a flow that renews
it and answers with the instance URL and the org id); an UNAUTHENTICATED answer renews it once and
resubscribes; a second one in a row stops the bridge (`E_AUTH`).

**An event it cannot decode** (payload and schema disagree) is produced as it came, in an envelope no
codec shape matches (`undecodable`): the ingest dead-letters it, bytes kept, and the bridge goes on.

**Errors.** UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED, ABORTED, UNKNOWN and CANCELLED
(Salesforce closes idle or long streams so) reconnect with a capped exponential backoff; any other
status stops the bridge with its message.

Pure parts (tested without a server): `field_names` (bitmaps -> field paths), `AvroSchema`,
`to_cometd`, `gap_message`, `channel_entities`, `tenant_id`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

import fastavro
import grpc
import msgspec
from msgspec import Struct

from concord.codecs.errors import DecodeError
from concord.codecs.salesforce import parse_field_bitmap
from concord.connectors.executor import REDIS_ERRORS
from concord.connectors.tokens import AccessTokens, Token
from concord.core import pubsub_api
from concord.core.pubsub_api import pb, services

log = logging.getLogger("concord.bridge.salesforce")

ALL_CHANGES: Final = "/data/ChangeEvents"
# The entities Concord's codec reads (codecs/salesforce.py): what `/data/ChangeEvents` is assumed to carry
# when a gap has to be declared for it.
CODEC_ENTITIES: Final = ("Account", "Opportunity")
HEADER: Final = "ChangeEventHeader"
FIELD_LISTS: Final = ("changedFields", "nulledFields", "diffFields")
# Fixed namespace of the uuid5 transaction keys of the gap events the bridge makes.
_GAP_NAMESPACE: Final = uuid.UUID("3f1d2c4b-8a6e-4f0d-9b7c-5e2a1d3c4b6f")
TRANSIENT: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                              grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED,
                              grpc.StatusCode.ABORTED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED})

# What a payload the schema cannot read, or a field list it does not match, raises (fastavro, the codec's
# bitmap parser, `field_names`).
UNDECODABLE: Final = (ValueError, IndexError, KeyError, EOFError, TypeError, DecodeError)

E_AUTH: Final = ("Salesforce refused the access token on {channel} twice, the second time just after a refresh "
                 "({error}): set CONCORD_SALESFORCE_ACCESS_TOKEN to a valid session of the connected app's "
                 "integration user (docs/ingestion.md, the bridge)")
E_NO_ORG: Final = ("the bridge needs the org id (tenantid): set CONCORD_SALESFORCE_ORG_ID (00D...), or use an access "
                   "token that starts with it (00D...!...)")
E_NO_INSTANCE: Final = ("the bridge needs CONCORD_SALESFORCE_INSTANCE_URL (https://<my-domain>.my.salesforce.com): "
                        "Salesforce checks it against the token")
E_REFUSED: Final = ("Salesforce refused the subscription to {channel}: {code} {error} (error code {error_code}); "
                    "is the channel right (CONCORD_SALESFORCE_CDC_CHANNELS) and the entity selected for Change Data "
                    "Capture in Setup?")
E_BITMAP: Final = "{entity} change event: {field} is not a field bitmap of schema {schema_id}: {error}"


class BridgeError(Exception):
    """The bridge cannot go on; the message says why and what to do."""


# --- pure ----------------------------------------------------------------------------------------


def channel_entities(channel: str) -> tuple[str, ...]:
    """The entities a channel carries: `/data/AccountChangeEvent` -> Account, custom `Foo__ChangeEvent` ->
    Foo__c; `/data/ChangeEvents` -> those Concord reads."""
    if channel == ALL_CHANGES:
        return CODEC_ENTITIES
    name = channel.removeprefix("/data/").removesuffix("ChangeEvent")
    return (name + "c",) if name.endswith("__") else (name,)


def tenant_id(org_id: str, token: str) -> str:
    """The org id to send as `tenantid`: the setting, else the prefix of a session id (`00D...!...`)."""
    if org_id:
        return org_id
    prefix, bang, _ = token.partition("!")
    if bang and prefix.startswith("00D") and len(prefix) in (15, 18):
        return prefix
    raise BridgeError(E_NO_ORG)


class AvroSchema:
    """One event schema: decodes payloads and knows the field positions the bitmaps count."""

    def __init__(self, schema_id: str, schema_json: str) -> None:
        self.schema_id = schema_id
        raw = msgspec.json.decode(schema_json)
        self.parsed = fastavro.parse_schema(raw)
        self.fields: list[str] = [field["name"] for field in raw["fields"]]
        # Compound field position -> its parts' names (the record branch of a ["null", record] union).
        self.parts: dict[int, list[str]] = {}
        for position, field in enumerate(raw["fields"]):
            branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
            for branch in branches:
                if isinstance(branch, dict) and branch.get("type") == "record" and field["name"] != HEADER:
                    self.parts[position] = [part["name"] for part in branch["fields"]]

    def decode(self, payload: bytes) -> dict[str, Any]:
        record = fastavro.schemaless_reader(io.BytesIO(payload), self.parsed, self.parsed)
        if not isinstance(record, dict):
            raise ValueError(f"schema {self.schema_id} is not a record schema")
        return record


def field_names(values: Sequence[str], schema: AvroSchema) -> list[str]:
    """A header field list as field paths: bitmaps (`["0x400000", "4-0x01"]`) mapped through the schema to
    `["LastModifiedDate", "BillingAddress.Street"]`, as CometD names them; a list of names is kept.

    Raises `DecodeError` (from the codec's bitmap parser) or `IndexError` for a bit past the schema."""
    if not values or not values[0].startswith("0x") and "-0x" not in values[0]:
        return list(values)
    bitmap = parse_field_bitmap(values)
    names = [schema.fields[position] for position in bitmap.fields]
    for position, parts in sorted(bitmap.compound.items()):
        compound = schema.fields[position]
        names.extend(f"{compound}.{schema.parts[position][part]}" for part in parts)
    return names


class RawRecord(Struct, frozen=True):
    """What goes to `<prefix>.raw.salesforce`: the key the sandbox's CDC producer uses (the record id)."""

    key: bytes
    value: bytes


def cometd_channel(entity: str) -> str:
    """The per-entity channel a CometD message names: Account -> /data/AccountChangeEvent,
    Foo__c -> /data/Foo__ChangeEvent."""
    return f"/data/{entity.removesuffix('c') if entity.endswith('__c') else entity}ChangeEvent"


def to_cometd(record: dict[str, Any], schema: AvroSchema, replay_id: bytes) -> RawRecord:
    """A decoded Pub/Sub change event -> the CometD message on the raw topic.

    CometD carries only what the change carries: the non-null fields (compound parts likewise), the
    header's field lists as names; times stay epoch milliseconds (the codec reads both forms); the
    replay id is the opaque bytes read as a big-endian number."""
    header = dict(record[HEADER])
    entity = header["entityName"]
    for key in FIELD_LISTS:
        try:
            header[key] = field_names(header.get(key) or [], schema)
        except (DecodeError, IndexError, KeyError) as exc:
            raise ValueError(E_BITMAP.format(entity=entity, field=key, schema_id=schema.schema_id, error=exc)) from exc
    payload: dict[str, Any] = {}
    for name, value in record.items():
        if name == HEADER or value is None:
            continue
        if isinstance(value, dict):
            value = {part: part_value for part, part_value in value.items() if part_value is not None}
            if not value:
                continue
        payload[name] = value
    payload[HEADER] = header
    message = {"data": {"schema": schema.schema_id, "payload": payload,
                        "event": {"replayId": int.from_bytes(replay_id, "big")}},
               "channel": cometd_channel(entity)}
    record_ids = header.get("recordIds") or []
    key = record_ids[0] if record_ids else entity
    return RawRecord(key=key.encode(), value=msgspec.json.encode(message))


def undecodable(channel: str, event: Any, reason: str) -> RawRecord:
    """An event the bridge cannot decode, as it came: a JSON object no codec shape matches, so the ingest
    dead-letters it with its bytes (base64 payload, schema id, replay id) rather than the bridge stopping on it
    or dropping it."""
    message = {"bridgeError": reason, "channel": channel, "eventId": event.event.id,
               "schemaId": event.event.schema_id, "replayId": event.replay_id.hex(),
               "avroPayload": base64.b64encode(event.event.payload).decode()}
    return RawRecord(key=b"undecodable", value=msgspec.json.encode(message))


def gap_message(entity: str, channel: str, at_ms: int, lost_after: bytes, user: str = "") -> RawRecord:
    """A GAP_OVERFLOW change event for `entity`: changes after replay id `lost_after` are lost to the bridge.

    Named by no record, so the ingest marks the whole object stale (`gap_overflow`); its transaction key is
    derived from the channel and the lost replay id, so the same gap declared twice is one event."""
    transaction = str(uuid.uuid5(_GAP_NAMESPACE, f"{channel}:{lost_after.hex()}:{entity}"))
    header = {"entityName": entity, "recordIds": [], "changeType": "GAP_OVERFLOW",
              "changeOrigin": "concord-bridge", "transactionKey": transaction, "sequenceNumber": 1,
              "commitTimestamp": at_ms, "commitNumber": 0, "commitUser": user, "nulledFields": [],
              "diffFields": [], "changedFields": []}
    message = {"data": {"schema": "", "payload": {HEADER: header}, "event": {}}, "channel": cometd_channel(entity)}
    return RawRecord(key=entity.encode(), value=msgspec.json.encode(message))


# --- the interfaces the bridge is given -----------------------------------------------------------


class ReplayStore(Protocol):
    """Where each channel's last replay id is kept (Redis in the process; tests inject failures)."""

    async def load(self, channel: str) -> bytes | None: ...

    async def save(self, channel: str, replay_id: bytes) -> None: ...

    async def forget(self, channel: str) -> None: ...


class RedisReplayStore:
    """`<prefix>:bridge:salesforce:replay:<channel>` -> the replay id in hex.

    Redis down is waited out (retried with a capped backoff, said once per outage): meanwhile the bridge asks
    Salesforce for nothing more, and nothing is stored before it is in Kafka, so an outage costs only time."""

    def __init__(self, redis: Any, prefix: str, *, retry_max: float = 5.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._redis = redis
        self._prefix = prefix
        self._retry_max = retry_max
        self._sleep = sleep

    def key(self, channel: str) -> str:
        return f"{self._prefix}:bridge:salesforce:replay:{channel}"

    async def load(self, channel: str) -> bytes | None:
        value = await self._patiently(lambda: self._redis.get(self.key(channel)))
        if value is None:
            return None
        return bytes.fromhex(value.decode() if isinstance(value, bytes) else value)

    async def save(self, channel: str, replay_id: bytes) -> None:
        await self._patiently(lambda: self._redis.set(self.key(channel), replay_id.hex()))

    async def forget(self, channel: str) -> None:
        await self._patiently(lambda: self._redis.delete(self.key(channel)))

    async def _patiently(self, call: Callable[[], Awaitable[Any]]) -> Any:
        attempt = 0
        while True:
            try:
                return await call()
            except REDIS_ERRORS as exc:
                if attempt == 0:
                    log.warning("bridge: Redis unreachable (%r); the replay ids wait, and so does Salesforce", exc)
                await self._sleep(min(self._retry_max, 0.1 * 2 ** attempt))
                attempt += 1


# Produces one batch of records and returns once Kafka acknowledged every one (acks=all).
Produce = Callable[[Sequence[RawRecord]], Awaitable[None]]


class BridgeHooks(Struct, kw_only=True):
    """What the bridge reports as it goes (the process counts them in core/metrics.py)."""

    bridged: Callable[[str, int], None] = lambda channel, count: None
    stored: Callable[[str], None] = lambda channel: None
    gap: Callable[[str, str], None] = lambda channel, entity: None
    reconnect: Callable[[str, str], None] = lambda channel, reason: None


class BridgeConfig(Struct, frozen=True, kw_only=True):
    instance_url: str = ""  # "" : the one the token's flow answered with
    org_id: str = ""
    batch: int = 100
    preset: str = "LATEST"
    backoff_base: float = 0.5
    backoff_max: float = 30.0


# --- the subscription ----------------------------------------------------------------------------


class ChannelBridge:
    """One channel from Salesforce to Kafka; `run()` returns only by raising `BridgeError` (or cancelled)."""

    def __init__(self, channel: str, stub: Any, *, tokens: AccessTokens, store: ReplayStore, produce: Produce,
                 config: BridgeConfig, hooks: BridgeHooks | None = None,
                 request_pass: Callable[[int], Awaitable[None]] | None = None,
                 clock_ms: Callable[[], int] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.channel = channel
        self._stub = stub
        self._tokens = tokens
        self._store = store
        self._produce = produce
        self._config = config
        self._hooks = hooks or BridgeHooks()
        self._clock_ms = clock_ms or _now_ms
        self._sleep = sleep
        self._request_pass = request_pass
        self._schemas: dict[str, AvroSchema] = {}

    async def run(self) -> None:
        attempt = 0
        refused_auth: grpc.aio.AioRpcError | None = None
        token = await self._tokens.current()
        after_gap = False  # once a gap was declared, a channel with nothing stored starts at LATEST
        while True:
            stored = await self._store.load(self.channel)
            preset = "CUSTOM" if stored is not None else "LATEST" if after_gap else self._config.preset
            try:
                async for _ in self._subscribe(token, preset, stored or b""):
                    attempt, refused_auth = 0, None
            except grpc.aio.AioRpcError as exc:
                error_code = _error_code(exc)
                if error_code == pubsub_api.REPLAY_ID_CORRUPTED and stored is not None:
                    await self._gap(stored, exc)
                    after_gap = True
                    continue
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    if refused_auth is not None:
                        raise BridgeError(E_AUTH.format(channel=self.channel, error=exc.details())) from exc
                    refused_auth = exc
                    log.warning("bridge %s: Salesforce refused the access token (%s); refreshing it once",
                                self.channel, exc.details())
                    await self._tokens.refresh(token.value)
                    token = await self._tokens.current()
                    self._hooks.reconnect(self.channel, "auth")
                    continue
                if exc.code() not in TRANSIENT:
                    raise BridgeError(E_REFUSED.format(channel=self.channel, code=exc.code().name,
                                                       error=exc.details(), error_code=error_code)) from exc
                delay = min(self._config.backoff_max, self._config.backoff_base * 2 ** attempt)
                attempt += 1
                log.warning("bridge %s: %s (%s); resubscribing in %.1fs", self.channel, exc.code().name,
                            exc.details(), delay)
                self._hooks.reconnect(self.channel, exc.code().name.lower())
                await self._sleep(delay)
                continue
            # The server ended the stream without an error: resubscribe where the store says.
            self._hooks.reconnect(self.channel, "closed")
            await self._sleep(min(self._config.backoff_max, self._config.backoff_base * 2 ** attempt))
            attempt += 1

    async def _subscribe(self, token: Token, preset: str, replay_id: bytes) -> AsyncIterator[int]:
        """Subscribe and bridge until the stream ends; yields the count of each batch bridged."""
        requests: asyncio.Queue[Any] = asyncio.Queue()
        batch = self._config.batch
        requests.put_nowait(pb.FetchRequest(topic_name=self.channel, replay_preset=pb.ReplayPreset.Value(preset),
                                            replay_id=replay_id, num_requested=batch))

        async def fetch_requests() -> AsyncIterator[Any]:
            while True:
                yield await requests.get()

        metadata = self._metadata(token)
        call = self._stub.Subscribe(fetch_requests(), metadata=metadata)
        log.info("bridge %s: subscribed (%s%s)", self.channel, preset,
                 f" after {replay_id.hex()}" if preset == "CUSTOM" else "")
        try:
            async for response in call:
                if not response.events:
                    # A keepalive: everything received is bridged, so resuming after the latest id skips nothing.
                    if response.latest_replay_id:
                        await self._store.save(self.channel, response.latest_replay_id)
                    continue
                records = [await self._record(event, metadata) for event in response.events]
                await self._produce(records)
                await self._store.save(self.channel, response.events[-1].replay_id)
                self._hooks.bridged(self.channel, len(records))
                self._hooks.stored(self.channel)
                requests.put_nowait(pb.FetchRequest(topic_name=self.channel, num_requested=len(records)))
                yield len(records)
        finally:
            call.cancel()

    async def _record(self, event: Any, metadata: tuple[tuple[str, str], ...]) -> RawRecord:
        schema_id = event.event.schema_id
        schema = self._schemas.get(schema_id)
        if schema is None:
            info = await self._stub.GetSchema(pb.SchemaRequest(schema_id=schema_id), metadata=metadata)
            schema = self._schemas[schema_id] = AvroSchema(schema_id, info.schema_json)
        try:
            return to_cometd(schema.decode(event.event.payload), schema, event.replay_id)
        except UNDECODABLE as exc:
            log.error("bridge %s: event %s (replay id %s) cannot be decoded (%s): produced as it came, for the "
                      "ingest to dead-letter", self.channel, event.event.id, event.replay_id.hex(), exc)
            return undecodable(self.channel, event, repr(exc))

    async def _gap(self, stored: bytes, exc: grpc.aio.AioRpcError) -> None:
        entities = channel_entities(self.channel)
        log.error("bridge %s: Salesforce can no longer replay after %s (%s): the changes since are lost to the "
                  "bridge; declaring a gap (GAP_OVERFLOW) for %s and resubscribing from LATEST", self.channel,
                  stored.hex(), exc.details(), ", ".join(entities))
        now = self._clock_ms()
        await self._produce([gap_message(entity, self.channel, now, stored) for entity in entities])
        await self._store.forget(self.channel)
        if self._request_pass is not None:
            await self._request_pass(now)
        for entity in entities:
            self._hooks.gap(self.channel, entity)

    def _metadata(self, token: Token) -> tuple[tuple[str, str], ...]:
        return call_metadata(token, self._config)


def call_metadata(token: Token, config: BridgeConfig) -> tuple[tuple[str, str], ...]:
    """`accesstoken`, `instanceurl` and `tenantid` of a call: the instance and the org of the settings, else those
    the token's flow answered with (connectors/tokens.py)."""
    instance_url = config.instance_url or token.instance_url
    if not instance_url:
        raise BridgeError(E_NO_INSTANCE)
    return ((pubsub_api.ACCESS_TOKEN_KEY, token.value), (pubsub_api.INSTANCE_URL_KEY, instance_url),
            (pubsub_api.TENANT_ID_KEY, tenant_id(config.org_id or token.org_id, token.value)))


class TopicAccess(Struct, frozen=True, kw_only=True):
    """What `GetTopic` says of a channel for this user (`concord doctor`)."""

    channel: str
    can_subscribe: bool
    schema_id: str = ""


async def topic_access(pubsub: Any, channel_name: str, token: Token, config: BridgeConfig,
                       timeout: float = 15.0) -> TopicAccess:
    """`GetTopic` of one channel; `grpc.aio.AioRpcError` when Salesforce refuses (unknown channel, auth)."""
    info = await pubsub.GetTopic(pb.TopicRequest(topic_name=channel_name), metadata=call_metadata(token, config),
                                 timeout=timeout)
    return TopicAccess(channel=channel_name, can_subscribe=bool(info.can_subscribe), schema_id=info.schema_id)


def _error_code(exc: grpc.aio.AioRpcError) -> str:
    for key, value in exc.trailing_metadata() or ():
        if key == pubsub_api.ERROR_CODE_KEY:
            return str(value)
    return ""


def _now_ms() -> int:
    return int(time.time() * 1000)


def channel(url: str) -> grpc.aio.Channel:
    """A gRPC channel to `grpcs://host:port` (TLS, the system's roots) or `grpc://host:port` (plaintext)."""
    target = url.split("://", 1)[1]
    if url.startswith("grpcs://"):
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
    return grpc.aio.insecure_channel(target)


def stub(grpc_channel: grpc.aio.Channel) -> Any:
    return services.PubSubStub(grpc_channel)
