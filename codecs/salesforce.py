"""Salesforce Change Data Capture message -> canonical events.

`decode` takes the bytes of one CDC message and returns zero or more canonical events. It detects
which of the three delivery shapes it was given:

* **CometD / Streaming API**: `{"data": {"schema", "payload", "event"}, "channel"}` (or the `data`
  part alone: `{"schema": "<id>", "payload": ..., "event": ...}`). The payload holds only what the
  change carries: an absent field did not change. Dates are ISO strings.
* **Pub/Sub API**, decoded to JSON: the payload itself, `ChangeEventHeader` at top level, every
  field present (null when unchanged), dates as epoch milliseconds, `changedFields` as field names or
  as raw bitmaps (`["0x400000", "4-0x01"]`).
* **Kafka Connect** Salesforce CDC source record (JsonConverter, with or without the
  `{"schema", "payload"}` envelope): the payload shape plus `Id`, `ReplayId`, `_ObjectType` and
  `_EventType`; the header nested as `ChangeEventHeader` or flattened by the Flatten transform
  (`ChangeEventHeader.changeType` or `ChangeEventHeader_changeType`). Timestamps are epoch ms, Date
  fields days since the epoch.

Only Account and Opportunity changes become events; other objects and platform events decode to
`[]`. Every event names one record: a header with several `recordIds` fans out to one event per
id. `event_id` is `transactionKey:sequenceNumber` (plus `:recordId` when fanned out), the same in
every shape; `EventUuid`, then `replay:<replayId>`, only when a message has no transactionKey.
`version` is `(commitTimestamp, commitNumber)`. An Account DELETE with `MasterRecordId` is a merge
(`AccountMerged`, keyed by the winner); `GAP_*` change types and wildcard record ids (`001*`)
become `ResyncRequired` (entity id `*` when no record is named, as in `GAP_OVERFLOW`).

**REST records** (`decode_record`, also detected by `decode`): an sObject as the REST API returns
it, `{"attributes": {"type": "Account", "url": ...}, "Id": ..., "LastModifiedDate": ..., <fields>}`
(`GET .../sobjects/<type>/<Id>`, a SOQL query record). It decodes to the events a change event
carrying every field the record holds would give: absent fields stay UNSET (not read), null ones are
None; the address is read from the flat `Billing*` fields. `occurred_at` is `LastModifiedDate` (else
`SystemModstamp`); `version` is `(the end of the later one's second, 0)`: Salesforce times records to
the second, and the read holds every change of that second made before it, so a change event of the
same second does not pass for newer; `event_id` is `sobject:<Id>:<the later time, ms>`
(`:deleted` appended for a deletion). `IsDeleted: true` reads as a deletion (`MasterRecordId` set on
an Account: a merge), as a DELETE change event would. A re-read Concord fetched after a gap event
(connectors/rereads.py) arrives in this shape.

Limits, by design:

* A Pub/Sub UPDATE whose `changedFields` is a bitmap cannot be mapped to names without the Avro
  schema: non-null fields count as changed, and a field cleared to null is not seen (unless
  `nulledFields` names it). The bitmaps are still checked for syntax.
* An address is one line in the model; an UPDATE that changes only some of its parts cannot
  rebuild it. Then `address` stays UNSET but is listed in `changed`: re-read the account.
* Amounts convert exactly to the minor unit of the currency in the same event (ISO 4217 digits),
  and say which decimals they are counted in (`amount_digits`): an amount-only UPDATE carries no
  currency, so it is counted in the fewest decimals, at least 2, that keep it exact, and the state
  reads it in the record's currency.
* `TotalOpportunityQuantity` (a double in Salesforce: the units sold, what the subscription bills) is
  read as a whole number: a fraction or a negative number is refused (`invalid_value`), never rounded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Context, Decimal, Inexact
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Final, NamedTuple, TypeVar, cast

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType, field

from concord.codecs.common import blank_event, epoch_ms
from concord.codecs.config import DEFAULT_CODEC_CONFIG, CodecConfig
from concord.codecs.errors import (
    BAD_TIME,
    INVALID_JSON,
    MISSING_FIELD,
    UNKNOWN_SHAPE,
    DecodeError,
    as_decode_error,
    msgspec_message,
)
from concord.codecs.model import (
    AccountMerged,
    AccountUpserted,
    CanonicalEvent,
    EntityRef,
    Event,
    OpportunityChanged,
    Platform,
    ResyncRequired,
    Version,
)
from concord.core.currency import DEFAULT_MINOR_UNITS, MAX_MINOR_UNITS, minor_units

__all__ = [
    "ACCOUNT_PAYMENT_TERMS_FIELD",
    "ACCOUNT_TAX_ID_FIELD",
    "FieldBitmap",
    "decode",
    "decode_record",
    "parse_field_bitmap",
    "record_fields",
]

# Account custom fields read for tax id and payment terms. Orgs name them differently; these are
# the common names (CodecConfig has no setting for them yet).
ACCOUNT_TAX_ID_FIELD: Final = "Tax_Id__c"
ACCOUNT_PAYMENT_TERMS_FIELD: Final = "Payment_Terms__c"

# DecodeError reasons: short, stable, used as metric labels. INVALID_JSON and UNKNOWN_SHAPE, which
# other codecs give too, are codecs/errors.py's.
INVALID_MESSAGE: Final = "invalid_message"
MISSING_HEADER: Final = "missing_header"
MISSING_PAYLOAD: Final = "missing_payload"
MISSING_EVENT_ID: Final = "missing_event_id"
MISSING_RECORD_ID: Final = "missing_record_id"
INVALID_RECORD_ID: Final = "invalid_record_id"
UNKNOWN_CHANGE_TYPE: Final = "unknown_change_type"
INVALID_FIELD_LIST: Final = "invalid_field_list"
INVALID_VALUE: Final = "invalid_value"
INVALID_AMOUNT: Final = "invalid_amount"
INVALID_DATE: Final = "invalid_date"
INVALID_CURRENCY: Final = "invalid_currency"


class _Shape(StrEnum):
    """How the message was delivered (decides what an absent or null field means)."""

    COMETD = "cometd"
    PUBSUB = "pubsub"
    KAFKA_CONNECT = "kafka_connect"


class FieldBitmap(Struct, frozen=True):
    """A Pub/Sub bitmap field list, decoded to schema positions (the Avro schema names them)."""

    # Positions of top-level fields whose bit is set (0 is the ChangeEventHeader).
    fields: tuple[int, ...]
    # Compound field position -> positions of its changed sub-fields.
    compound: dict[int, tuple[int, ...]]


# ---- wire structs: only what the codec reads is decoded, everything else is skipped ------------

# Up to 9999-12-31T23:59:59.999Z: anything later is not a real commit time.
_MAX_EPOCH_MS: Final = 253_402_300_799_999
_Text = str | None | UnsetType


class _Wire(Struct, gc=False):
    """Base of the message Structs: decoded, read once, never in a cycle, so GC need not track them."""


class _Header(_Wire, kw_only=True):
    entityName: str
    changeType: str
    commitTimestamp: Annotated[int, Meta(ge=0, le=_MAX_EPOCH_MS)]
    recordIds: list[str] | None = None
    transactionKey: str | None = None
    sequenceNumber: Annotated[int, Meta(ge=0)] | None = None
    # Some JSON clients write the 64-bit commit number as a string to keep its digits.
    commitNumber: Annotated[int, Meta(ge=0)] | Annotated[str, Meta(pattern="^[0-9]{1,20}$")] | None = None
    changedFields: list[str] | None = None
    nulledFields: list[str] | None = None
    diffFields: list[str] | None = None


class _EventInfo(_Wire, kw_only=True):
    replayId: int | str | None = None
    EventUuid: str | None = None


class _Probe(_Wire, kw_only=True):
    """The keys of a payload that tell what it is."""

    ChangeEventHeader: _Header | None | UnsetType = UNSET
    object_type: str | None | UnsetType = field(default=UNSET, name="_ObjectType")
    event_type: Raw | UnsetType = field(default=UNSET, name="_EventType")
    replay_id: int | str | None | UnsetType = field(default=UNSET, name="ReplayId")
    record_id: str | None | UnsetType = field(default=UNSET, name="Id")
    flat_header_dot: Raw | UnsetType = field(default=UNSET, name="ChangeEventHeader.entityName")
    flat_header_underscore: Raw | UnsetType = field(default=UNSET, name="ChangeEventHeader_entityName")
    # Platform events always carry these two and never a ChangeEventHeader.
    created_date: Raw | UnsetType = field(default=UNSET, name="CreatedDate")
    created_by: Raw | UnsetType = field(default=UNSET, name="CreatedById")


class _ProbeData(_Wire, kw_only=True):
    payload: _Probe | UnsetType = UNSET
    event: _EventInfo | None | UnsetType = UNSET


class _ProbeEnvelope(_Probe, kw_only=True):
    """Any shape, header only: what a message is when its fields do not fit `_RecordEnvelope`."""

    data: _ProbeData | UnsetType = UNSET
    channel: str | None | UnsetType = UNSET
    schema: Raw | UnsetType = UNSET
    payload: _Probe | UnsetType = UNSET
    event: _EventInfo | None | UnsetType = UNSET


class _Address(_Wire, kw_only=True):
    Street: _Text = UNSET
    City: _Text = UNSET
    State: _Text = UNSET
    PostalCode: _Text = UNSET
    Country: _Text = UNSET


class _CompoundName(_Wire):
    """A compound Name (Contact, Lead): never read, its parts are skipped."""


class _Record(_Probe, kw_only=True):
    """A change event payload with every Account and Opportunity field the codec reads."""

    # Account. Contact and Lead have a compound Name (an object): accepted here, so that their
    # messages decode in one pass; `decode` refuses it for our objects (see `_decode_strictly`).
    Name: str | None | _CompoundName | UnsetType = UNSET
    CurrencyIsoCode: _Text = UNSET
    MasterRecordId: _Text = UNSET
    BillingAddress: _Address | None | UnsetType = UNSET
    # Kafka Connect records also carry the compound address flattened.
    BillingStreet: _Text = UNSET
    BillingCity: _Text = UNSET
    BillingState: _Text = UNSET
    BillingPostalCode: _Text = UNSET
    BillingCountry: _Text = UNSET
    tax_id: str | int | None | UnsetType = field(default=UNSET, name=ACCOUNT_TAX_ID_FIELD)
    payment_terms: str | int | None | UnsetType = field(default=UNSET, name=ACCOUNT_PAYMENT_TERMS_FIELD)
    # Opportunity
    AccountId: _Text = UNSET
    StageName: _Text = UNSET
    IsWon: bool | None | UnsetType = UNSET
    IsClosed: bool | None | UnsetType = UNSET
    # Exact, never through a float: an int for a JSON integer (the usual amount, cheaper), else a
    # Decimal straight from the JSON text. Accepts what `Decimal` alone accepts (see `_strict_decoder`).
    Amount: int | Decimal | None | UnsetType = UNSET
    CloseDate: str | int | None | UnsetType = UNSET
    # A double in Salesforce: an int for a JSON integer, a float for `5.0` (checked whole in `_quantity`).
    TotalOpportunityQuantity: int | float | None | UnsetType = UNSET
    # Renamed per CodecConfig.salesforce_plan_field (see `_reader`).
    plan: Any = field(default=UNSET, name=DEFAULT_CODEC_CONFIG.salesforce_plan_field)


class _RecordData(_Wire, kw_only=True):
    payload: _Record | UnsetType = UNSET
    event: _EventInfo | None | UnsetType = UNSET


class _RecordEnvelope(_Record, kw_only=True):
    """Any shape with its fields: one pass over the bytes decodes the whole message."""

    data: _RecordData | UnsetType = UNSET
    channel: str | None | UnsetType = UNSET
    schema: Raw | UnsetType = UNSET
    payload: _Record | UnsetType = UNSET
    event: _EventInfo | None | UnsetType = UNSET


class _RestProbe(_Wire):
    """The key that tells a REST record from a message of no change-event shape (platform events).

    Not a field of the envelopes: msgspec compares every key a message holds with every field of the
    Struct it decodes into, so one more field would cost every change event (benchmarks.md).
    """

    attributes: Raw | UnsetType = UNSET


class _Attributes(_Wire, kw_only=True):
    """The `attributes` of a REST record: its object type (and its URL, not read)."""

    type: str


# REST datetimes ("2025-03-31T12:00:00.000+0000"), or epoch ms.
_RestTime = datetime | int | None | UnsetType


class _SObject(_Record, kw_only=True):
    """A REST record with every field the codec reads: `_Record`'s (the same names) and these."""

    attributes: _Attributes
    IsDeleted: bool | None | UnsetType = UNSET
    LastModifiedDate: _RestTime = UNSET
    SystemModstamp: _RestTime = UNSET


# ---- constants -----------------------------------------------------------------------------------

_CHANGE_TYPES: Final = frozenset({"CREATE", "UPDATE", "DELETE", "UNDELETE"})
_GAP_CHANGE_TYPES: Final = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"})
_ENTITY_KINDS: Final = {"Account": "account", "Opportunity": "opportunity"}
_RECORD_ID_LENGTHS: Final = (15, 18)
# Custom field type conversions send recordIds ["001*"]: every record of the object.
_WILDCARD_ID = re.compile(r"[A-Za-z0-9]{3}\*")
# Overflow events name the empty record id.
_EMPTY_ID_PREFIX: Final = "000000000000000"
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?")
_PLAIN_BITMAP = re.compile(r"0x([0-9A-Fa-f]*)")
_COMPOUND_BITMAP = re.compile(r"([0-9]{1,6})-0x([0-9A-Fa-f]+)")
_MAX_BITMAP_HEX: Final = 4096
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
# An integer date this small is days since the epoch (Kafka Connect Date), otherwise epoch ms.
_MAX_EPOCH_DAYS: Final = date.max.toordinal() - _EPOCH_ORDINAL
_MS_PER_DAY: Final = 86_400_000
_MAX_MINOR: Final = 2**63 - 1
_MAX_AMOUNT_EXPONENT: Final = 30
# Every whole number up to here is exact as a double (Salesforce's type for quantities).
_MAX_QUANTITY: Final = 2**53
# Wide enough for any in-range amount with its digits; traps instead of rounding.
_EXACT: Final = Context(prec=80, traps=[Inexact])
_NO_NAMES: Final[frozenset[str]] = frozenset()

# Source names under which a change event lists each field (changedFields, nulledFields): the
# Account fields in `_account_events` order, the Opportunity fields in `_opportunity_events` order
# (the reader appends the plan field's names).
_ACCOUNT_NAMES: Final = (("Name",), ("CurrencyIsoCode",), (ACCOUNT_TAX_ID_FIELD,), (ACCOUNT_PAYMENT_TERMS_FIELD,))
_OPPORTUNITY_NAMES: Final = (
    ("AccountId",),
    ("StageName",),
    ("IsWon",),
    ("IsClosed",),
    ("CurrencyIsoCode",),
    ("Amount",),
    ("CloseDate",),
    ("TotalOpportunityQuantity",),
)
# Billing address parts in line order (street, city, state, postal code, country): the names each
# part is listed under, and (below) the parts no Kafka Connect flattening supplied.
_ADDRESS_NAMES: Final = tuple(
    (f"BillingAddress.{part}", "BillingAddress", f"Billing{part}")
    for part in ("Street", "City", "State", "PostalCode", "Country")
)
_NO_FLAT_ADDRESS: Final = (UNSET,) * len(_ADDRESS_NAMES)

# Looked up once: enum attribute access is slow on the hot path.
_SALESFORCE: Final = Platform.SALESFORCE
_COMETD: Final = _Shape.COMETD
_PUBSUB: Final = _Shape.PUBSUB
_KAFKA_CONNECT: Final = _Shape.KAFKA_CONNECT

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Event)
_PROBE_DECODER: Final = msgspec.json.Decoder(_ProbeEnvelope)
_REST_PROBE: Final = msgspec.json.Decoder(_RestProbe)
_replace: Final = msgspec.structs.replace
_RECORD_DECODER: Final = msgspec.json.Decoder(_RecordEnvelope)
_OBJECT_DECODER: Final = msgspec.json.Decoder(dict[str, Any])


class _Located(Struct, gc=False):
    """The change event found in a message (a Struct: built once per message, far cheaper than a NamedTuple)."""

    header: _Header
    shape: _Shape
    # The payload (a `_Record` when the message was decoded with a reader's decoder).
    record: _Probe
    event_uuid: str | None
    replay_id: int | str | None
    # Kafka Connect's `Id`: the record id when the header has no recordIds.
    record_id: str | None


class _Reader(NamedTuple):
    """The decoder for one plan field name, and where the decoded record holds the plan."""

    decoder: msgspec.json.Decoder[_RecordEnvelope]
    plan_field: str
    plan_attr: str
    plan_names: tuple[str]
    # Source names of the Opportunity fields, in `_opportunity_events` order (built once per plan field).
    opportunity_names: tuple[tuple[str, ...], ...]


# ---- public API ----------------------------------------------------------------------------------


def decode(body: bytes, config: CodecConfig = DEFAULT_CODEC_CONFIG) -> list[CanonicalEvent]:
    """Decode one Salesforce CDC message (CometD, Pub/Sub JSON or Kafka Connect) into canonical events.

    Returns one event per record id for Account and Opportunity changes, `[]` for other objects
    and platform events. A REST record (a re-read) is read by `decode_record`. Raises `DecodeError`
    when the bytes are not a message of these shapes.
    """
    try:
        reader = _reader(config.salesforce_plan_field)
        try:
            envelope = reader.decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
            return _decode_strictly(body, reader)
        header = envelope.ChangeEventHeader
        if (
            isinstance(header, _Header)
            and envelope.data is UNSET
            and envelope.payload is UNSET
            and envelope.object_type is UNSET
            and envelope.event_type is UNSET
            and envelope.replay_id is UNSET
            and envelope.flat_header_dot is UNSET
            and envelope.flat_header_underscore is UNSET
        ):
            # Pub/Sub, the usual shape: what `_locate` finds, without building a `_Located`.
            kind = _ENTITY_KINDS.get(header.entityName)
            if kind is None:
                return []
            if type(envelope.Name) is _CompoundName:
                return _decode_strictly(body, reader)
            record_id = envelope.record_id if isinstance(envelope.record_id, str) else None
            return _events(header, _PUBSUB, envelope, None, None, record_id, kind, reader)
        if _is_sobject(envelope, body):
            return _sobject_events(body, reader)
        found = _entity(envelope, body)
        if found is None:
            return []
        if _has_compound_name(envelope):
            return _decode_strictly(body, reader)
        return _events_of(*found, reader)
    except DecodeError:
        raise
    except Exception as exc:  # too deep (RecursionError), too large (MemoryError), a codec bug: named, no value
        raise as_decode_error(exc, "Salesforce message") from None


def decode_record(body: bytes, config: CodecConfig = DEFAULT_CODEC_CONFIG) -> list[CanonicalEvent]:
    """Decode one Salesforce REST record (an sObject GET, a SOQL query record) into canonical events.

    The events are those of a change event carrying every field the record holds (module
    docstring): an AccountUpserted or OpportunityChanged (AccountMerged for a merged-away Account
    read with `IsDeleted`), `[]` for other objects. Raises `DecodeError`, with a named reason, when
    the bytes are not such a record or a field the codec reads cannot be read.
    """
    try:
        return _sobject_events(body, _reader(config.salesforce_plan_field))
    except DecodeError:
        raise
    except Exception as exc:  # too deep (RecursionError), too large (MemoryError), a codec bug: named, no value
        raise as_decode_error(exc, "Salesforce record") from None


def _entity(envelope: _ProbeEnvelope | _RecordEnvelope, body: bytes) -> tuple[_Located, str] | None:
    """The change event in a decoded message and the kind of record it changes; None for anything else."""
    located = _locate(envelope, body)
    if located is None:
        return None
    kind = _ENTITY_KINDS.get(located.header.entityName)
    return None if kind is None else (located, kind)


def _events_of(located: _Located, kind: str, reader: _Reader) -> list[CanonicalEvent]:
    record = cast(_Record, located.record)
    return _events(
        located.header, located.shape, record, located.event_uuid, located.replay_id, located.record_id, kind, reader
    )


def _decode_strictly(body: bytes, reader: _Reader) -> list[CanonicalEvent]:
    """`decode` with `Name` read as text only and `Amount` as Decimal: the slow path of bad input and compound names.

    What a message with a compound Name or another fault decodes to (an error, and which one, or
    `[]` for another object) is defined by this decode, field by field in message order.
    """
    try:
        envelope = _strict_decoder(reader.plan_field).decode(body)
    except msgspec.ValidationError as exc:
        return _mistyped(body, exc, reader)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string: UnicodeDecodeError
        raise DecodeError(INVALID_JSON, f"message is not valid JSON: {_message(exc)}") from None
    if _is_sobject(envelope, body):
        return _sobject_events(body, reader)
    found = _entity(envelope, body)
    return [] if found is None else _events_of(*found, reader)


def parse_field_bitmap(values: Sequence[str]) -> FieldBitmap:
    """Decode a Pub/Sub bitmap field list (`["0x400000", "4-0x01"]`) to schema positions.

    The first element may be the bitmap of top-level fields; the others are `{position}-{bitmap}`
    for the sub-fields of a compound field. Raises `DecodeError` on malformed input.
    """
    fields: tuple[int, ...] = ()
    compound: dict[int, tuple[int, ...]] = {}
    for index, value in enumerate(values):
        plain = _PLAIN_BITMAP.fullmatch(value)
        if plain is not None and index == 0:
            fields = _bit_positions(plain.group(1), values)
            continue
        nested = _COMPOUND_BITMAP.fullmatch(value)
        if nested is None:
            raise DecodeError(
                INVALID_FIELD_LIST,
                f"bitmap element {index} ({len(value)} characters) is malformed: expected '0x<hex>' first, "
                "then '<position>-0x<hex>' per compound field",
            )
        position = int(nested.group(1))
        if position == 0 or position in compound:
            raise DecodeError(INVALID_FIELD_LIST, f"bitmap names compound position {position} wrongly")
        compound[position] = _bit_positions(nested.group(2), values)
    return FieldBitmap(fields=fields, compound=compound)


# ---- shape detection -----------------------------------------------------------------------------


def _mistyped(body: bytes, error: msgspec.ValidationError, reader: _Reader) -> list[CanonicalEvent]:
    """A field the codec reads has another type: fine for other objects, an error for ours."""
    probe = _decode_part(_PROBE_DECODER, body, "message")
    if _is_sobject(probe, body):
        return _sobject_events(body, reader)  # a REST record: its own decode names the field
    located = _locate(probe, body)
    if located is None or located.header.entityName not in _ENTITY_KINDS:
        return []
    raise DecodeError(INVALID_VALUE, f"{located.header.entityName} change event: {msgspec_message(error)}")


def _is_sobject(envelope: _ProbeEnvelope | _RecordEnvelope, body: bytes) -> bool:
    """Whether a message with none of the change-event shapes' keys is a REST record (`attributes`)."""
    return (
        envelope.ChangeEventHeader is UNSET
        and envelope.data is UNSET
        and envelope.payload is UNSET
        and envelope.object_type is UNSET
        and envelope.event_type is UNSET
        and envelope.replay_id is UNSET
        and envelope.flat_header_dot is UNSET
        and envelope.flat_header_underscore is UNSET
        and _REST_PROBE.decode(body).attributes is not UNSET
    )


def _has_compound_name(envelope: _RecordEnvelope) -> bool:
    """Whether a `Name` in the message (top level, `payload`, `data.payload`) is an object."""
    # `type() is` and `is UNSET`: isinstance is slow when it fails on a Struct class (metaclass check).
    if type(envelope.Name) is _CompoundName:
        return True
    payload = envelope.payload
    if payload is not UNSET and type(payload.Name) is _CompoundName:
        return True
    data = envelope.data
    return data is not UNSET and data.payload is not UNSET and type(data.payload.Name) is _CompoundName


def _locate(envelope: _ProbeEnvelope | _RecordEnvelope, body: bytes) -> _Located | None:
    """The change event in a decoded message, or None for a valid message that is not one."""
    # `is UNSET` rather than isinstance: UNSET is a singleton, and this runs for every message.
    data = envelope.data
    if data is not UNSET:
        if data.payload is UNSET:
            raise DecodeError(MISSING_PAYLOAD, "CometD message has 'data' but no 'data.payload'")
        return _cometd(data.payload, data.event, envelope.channel)
    if envelope.payload is not UNSET:
        # CometD's data part has a string schema id (and an event); Kafka Connect's JsonConverter
        # envelope has a schema object (or null).
        if envelope.event is not UNSET or _is_json_string(envelope.schema):
            return _cometd(envelope.payload, envelope.event, envelope.channel)
        return _connect_or_pubsub(envelope.payload, body, in_envelope=True)
    return _connect_or_pubsub(envelope, body, in_envelope=False)


def _cometd(record: _Probe, event: _EventInfo | None | UnsetType, channel: str | None | UnsetType) -> _Located | None:
    header = record.ChangeEventHeader
    if not isinstance(header, _Header):
        if isinstance(channel, str) and channel.startswith("/data/"):
            raise DecodeError(MISSING_HEADER, "CometD message on a change channel (/data/...) has no ChangeEventHeader")
        return None  # a platform event or another streaming message
    info = event if isinstance(event, _EventInfo) else _EventInfo()
    return _Located(header, _COMETD, record, info.EventUuid, info.replayId, None)


def _connect_or_pubsub(record: _Probe, body: bytes, in_envelope: bool) -> _Located | None:
    connect = not (
        record.object_type is UNSET
        and record.event_type is UNSET
        and record.replay_id is UNSET
        and record.flat_header_dot is UNSET
        and record.flat_header_underscore is UNSET
    )
    header = record.ChangeEventHeader
    if not isinstance(header, _Header) and connect:
        header = _flattened_header(body, in_envelope)
    if not isinstance(header, _Header):
        object_type = record.object_type
        if isinstance(object_type, str) and object_type.endswith("ChangeEvent"):
            raise DecodeError(
                MISSING_HEADER,
                "Kafka Connect record of a change event (`_ObjectType` ends with ChangeEvent) has no "
                "ChangeEventHeader (nested or flattened); "
                "check that no transform drops it",
            )
        if connect or not (record.created_date is UNSET or record.created_by is UNSET):
            return None  # a platform event (Pub/Sub JSON or a Connect platform-event record)
        raise DecodeError(
            UNKNOWN_SHAPE,
            "JSON object is none of: CometD message ('data'), Pub/Sub payload ('ChangeEventHeader'), "
            "Kafka Connect record ('_ObjectType', 'ReplayId')",
        )
    record_id = record.record_id if isinstance(record.record_id, str) else None
    replay_id = None if record.replay_id is UNSET else record.replay_id
    shape = _KAFKA_CONNECT if connect else _PUBSUB
    return _Located(header, shape, record, None, replay_id, record_id)


def _flattened_header(body: bytes, in_envelope: bool) -> _Header | None:
    """The header the Flatten transform spread over `ChangeEventHeader.<field>` keys (rare: slow path)."""
    message = _decode_part(_OBJECT_DECODER, body, "record")
    record = message.get("payload") if in_envelope else message
    if not isinstance(record, dict):
        return None
    for prefix in ("ChangeEventHeader.", "ChangeEventHeader_"):
        flat = {key[len(prefix) :]: value for key, value in record.items() if key.startswith(prefix)}
        if flat:
            try:
                return msgspec.convert(flat, _Header)
            except msgspec.ValidationError as exc:
                raise DecodeError(INVALID_MESSAGE, f"flattened ChangeEventHeader: {msgspec_message(exc)}") from None
    return None


def _is_json_string(raw: Raw | UnsetType) -> bool:
    return isinstance(raw, Raw) and bytes(memoryview(raw)[:1]) == b'"'


def _decode_part(decoder: msgspec.json.Decoder[_T], data: bytes, where: str) -> _T:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError(INVALID_MESSAGE, f"{where}: {msgspec_message(exc)}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(INVALID_JSON, f"{where} is not valid JSON: {_message(exc)}") from None


def _message(exc: msgspec.DecodeError | UnicodeDecodeError) -> str:
    """What is wrong with the JSON, without its bytes (bad UTF-8: only the position)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    return msgspec_message(exc)


@lru_cache(maxsize=16)
def _reader(plan_field: str) -> _Reader:
    """The message decoder that reads `plan_field` as the plan (built once per name)."""
    names = (*_OPPORTUNITY_NAMES, (plan_field,))
    # One JSON key backs one struct field: a plan field the record already reads is read there.
    for info in msgspec.structs.fields(_Record):
        if info.encode_name == plan_field:
            # An Amount read as the plan must stay a Decimal (its type names in errors).
            decoder = _strict_decoder(plan_field) if info.name == "Amount" else _RECORD_DECODER
            return _Reader(decoder, plan_field, info.name, (plan_field,), names)
    decoder = msgspec.json.Decoder(_envelope_with(_plan_fields(plan_field)))
    return _Reader(decoder, plan_field, "plan", (plan_field,), names)


@lru_cache(maxsize=16)
def _strict_decoder(plan_field: str) -> msgspec.json.Decoder[_RecordEnvelope]:
    """`_reader`'s decoder with `Name` as text only (`_decode_strictly`; built on first use)."""
    # Errors are worded by this decode: one where `Name` is text or null, `Amount` a Decimal.
    # Amount as Decimal alone: a wrongly typed Amount is worded as it was before ints were read.
    strict = [("Name", _Text, UNSET), ("Amount", Decimal | None | UnsetType, UNSET)]
    return msgspec.json.Decoder(_envelope_with([*_plan_fields(plan_field), *strict]))


def _plan_fields(plan_field: str) -> list[Any]:
    """The `_Record` field to add so that `plan` reads `plan_field` (none if the record reads it already)."""
    if any(info.encode_name == plan_field for info in msgspec.structs.fields(_Record)):
        return []
    return [("plan", Any, field(default=UNSET, name=plan_field))]


def _envelope_with(fields: list[Any]) -> type[_RecordEnvelope]:
    """`_RecordEnvelope` with `fields` added to or replaced in the record, down to the CometD payload in `data`."""
    record = msgspec.defstruct("_PlanRecord", fields, bases=(_Record,), kw_only=True)
    data_fields: list[Any] = [("payload", record | UnsetType, UNSET)]
    data = msgspec.defstruct("_PlanRecordData", data_fields, bases=(_RecordData,), kw_only=True)
    envelope_fields: list[Any] = [*fields, ("data", data | UnsetType, UNSET), ("payload", record | UnsetType, UNSET)]
    envelope = msgspec.defstruct("_PlanRecordEnvelope", envelope_fields, bases=(_RecordEnvelope,), kw_only=True)
    return cast(type[_RecordEnvelope], envelope)


# ---- header --------------------------------------------------------------------------------------


def _field_list(values: list[str] | None, what: str) -> frozenset[str] | None:
    """Field names in a header field list; None when absent, empty or a (checked) bitmap."""
    return _parse_field_list(tuple(values), what) if values else None


@lru_cache(maxsize=1024)
def _parse_field_list(values: tuple[str, ...], what: str) -> frozenset[str] | None:
    # Cached: the same lists recur for every update of the same kind.
    if values[0][:1].isdigit():
        parse_field_bitmap(values)
        return None
    for index, value in enumerate(values):
        if _FIELD_NAME.fullmatch(value) is None:
            raise DecodeError(
                INVALID_FIELD_LIST,
                f"{what} mixes names and bitmaps or has a bad name: element {index} ({len(value)} characters)",
            )
    return frozenset(values)


def _bit_positions(hex_digits: str, values: Sequence[str]) -> tuple[int, ...]:
    if len(hex_digits) > _MAX_BITMAP_HEX:
        raise DecodeError(INVALID_FIELD_LIST, f"bitmap element of {len(hex_digits)} digits exceeds {_MAX_BITMAP_HEX}")
    bits = bin(int(hex_digits, 16))[:1:-1] if hex_digits else ""
    return tuple(position for position, bit in enumerate(bits) if bit == "1")


def _record_ids(header: _Header, fallback: str | None) -> tuple[list[str], bool]:
    """The record ids the event names (each once), and whether one of them is a wildcard."""
    ids = header.recordIds or ([fallback] if fallback else [])
    unique = list(dict.fromkeys(ids)) if len(ids) > 1 else ids  # one event per record
    wildcard = False
    for index, rid in enumerate(unique):
        # `_is_record_id`, inlined: this runs for every record of every message.
        if not (len(rid) in _RECORD_ID_LENGTHS and rid.isascii() and rid.isalnum()):
            if _WILDCARD_ID.fullmatch(rid) is None:
                raise DecodeError(
                    INVALID_RECORD_ID,
                    f"{header.entityName} recordIds[{index}] ({len(rid)} characters) is not a Salesforce id "
                    "(15 or 18 letters and digits)",
                )
            wildcard = True
    return unique, wildcard


def _event_id_base(header: _Header, event_uuid: str | None, replay_id: int | str | None) -> str:
    # transactionKey:sequenceNumber is in every shape, so one change delivered through two
    # pipelines dedups to one id; EventUuid and replayId exist only in some shapes.
    if header.transactionKey and header.sequenceNumber is not None:
        return f"{header.transactionKey}:{header.sequenceNumber}"
    if event_uuid:
        return event_uuid
    if replay_id is not None and replay_id != "":
        return f"replay:{replay_id}"
    raise DecodeError(
        MISSING_EVENT_ID,
        f"{header.entityName} change event has no transactionKey+sequenceNumber, EventUuid or replayId",
    )


# ---- events --------------------------------------------------------------------------------------


def _events(
    header: _Header,
    shape: _Shape,
    record: _Record,
    event_uuid: str | None,
    replay_id: int | str | None,
    record_id: str | None,
    kind: str,
    reader: _Reader,
) -> list[CanonicalEvent]:
    """The events of a located change event of ours (`record` holds its fields)."""
    change = header.changeType
    if change not in _CHANGE_TYPES and change not in _GAP_CHANGE_TYPES:
        raise DecodeError(
            UNKNOWN_CHANGE_TYPE,
            f"{header.entityName} change event has an unknown changeType ({len(change)} characters); expected one of "
            f"{sorted(_CHANGE_TYPES | _GAP_CHANGE_TYPES)}",
        )
    # The field lists are usually empty: skip the call then.
    changed_names = _field_list(header.changedFields, "changedFields") if header.changedFields else None
    nulled_names = (_field_list(header.nulledFields, "nulledFields") if header.nulledFields else None) or _NO_NAMES
    if header.diffFields:
        _field_list(header.diffFields, "diffFields")
    ids = header.recordIds
    if (
        ids is not None
        and len(ids) == 1
        and len(ids[0]) in _RECORD_ID_LENGTHS
        and ids[0].isascii()
        and ids[0].isalnum()
    ):
        record_ids, wildcard = ids, False  # the usual case, what `_record_ids` gives for it
    else:
        record_ids, wildcard = _record_ids(header, record_id)
    base_id = _event_id_base(header, event_uuid, replay_id)
    if wildcard or change in _GAP_CHANGE_TYPES:
        return _resync_events(header, kind, record_ids, base_id)
    if not record_ids:
        raise DecodeError(
            MISSING_RECORD_ID,
            f"{header.entityName} {change} event has no recordIds",
        )
    if change != "UPDATE":
        carry = _ALL_PRESENT
    elif changed_names is not None:
        carry = _Carry(_NAMED, changed_names, nulled_names)
    elif not nulled_names:
        carry = _PRESENT_ONLY if shape is _COMETD else _NON_NULL_ONLY
    else:
        carry = _Carry(_PRESENT if shape is _COMETD else _NON_NULL, _NO_NAMES, nulled_names)
    # One event per record, same values; the record id keeps the event ids unique.
    targets = [(record_ids[0], base_id)] if len(record_ids) == 1 else [(rid, f"{base_id}:{rid}") for rid in record_ids]
    if kind == "account":
        return _account_events(header, targets, record, carry)
    return _opportunity_events(header, targets, record, carry, reader)


def _resync_events(header: _Header, kind: str, record_ids: list[str], base_id: str) -> list[CanonicalEvent]:
    """One ResyncRequired per named record; one for the whole object when no record is named."""
    wildcard = any(rid.endswith("*") for rid in record_ids)
    reason = header.changeType if header.changeType in _GAP_CHANGE_TYPES else f"WILDCARD_{header.changeType}"
    named = [] if wildcard else [rid for rid in record_ids if not rid.startswith(_EMPTY_ID_PREFIX)]
    if not named:
        resync = _stamped(_RESYNC, header, kind, None, base_id, None)
        return [_replace(resync, reason=reason, object_type=header.entityName)]
    events: list[CanonicalEvent] = []
    for rid in named:
        event_id = base_id if len(named) == 1 else f"{base_id}:{rid}"
        resync = _stamped(_RESYNC, header, kind, rid, event_id, rid if kind == "account" else None)
        events.append(_replace(resync, reason=reason, object_type=header.entityName, record_ids=(rid,)))
    return events


def _account_events(
    header: _Header, targets: list[tuple[str, str]], record: _Record, carry: _Carry
) -> list[CanonicalEvent]:
    """One AccountUpserted (or AccountMerged) per (record id, event id) in `targets`."""
    events: list[CanonicalEvent] = []
    if header.changeType == "DELETE":
        master = record.MasterRecordId
        if isinstance(master, str):
            # A merge deletes the losers with MasterRecordId naming the winner.
            winner = _record_id(master, "Account.MasterRecordId")
            for record_id, event_id in targets:
                merged = _stamped(_MERGED, header, "account", record_id, event_id, winner)
                events.append(_replace(merged, winner_id=master, loser_ids=(record_id,)))
            return events
        for record_id, event_id in targets:
            account = _stamped(_ACCOUNT, header, "account", record_id, event_id, record_id)
            events.append(_replace(account, deleted=True))
        return events

    # `decode` has refused a compound Name for accounts.
    values = (cast(_Text, record.Name), record.CurrencyIsoCode, record.tax_id, record.payment_terms)
    if carry is not _ALL_PRESENT:
        values = carry.pick_all(values, _ACCOUNT_NAMES)
    name, currency, tax_id, payment_terms = values
    if isinstance(currency, str):
        _currency(currency)
    tax_id = _code(tax_id)
    payment_terms = _code(payment_terms)
    parts = _address_parts(record, carry)
    carried = len(parts) - parts.count(UNSET)
    country = parts[-1]
    # Only a change that carries every part can rebuild the one-line address.
    address = _one_line_address(parts) if carried == len(parts) else UNSET
    changed = []
    if name is not UNSET:
        changed.append("name")
    if country is not UNSET:
        changed.append("country")
    if currency is not UNSET:
        changed.append("currency")
    if tax_id is not UNSET:
        changed.append("tax_id")
    if carried:
        changed.append("address")  # also when only some parts changed and `address` stays UNSET
    if payment_terms is not UNSET:
        changed.append("payment_terms")
    changed_names = tuple(changed)
    for record_id, event_id in targets:
        account = _stamped(_ACCOUNT, header, "account", record_id, event_id, record_id)
        events.append(
            _replace(
                account,
                name=name,
                country=country,
                currency=currency,
                tax_id=tax_id,
                address=address,
                payment_terms=payment_terms,
                changed=changed_names,
            )
        )
    return events


def _opportunity_events(
    header: _Header, targets: list[tuple[str, str]], record: _Record, carry: _Carry, reader: _Reader
) -> list[CanonicalEvent]:
    """One OpportunityChanged per (record id, event id) in `targets`."""
    events: list[CanonicalEvent] = []
    if header.changeType == "DELETE":
        for record_id, event_id in targets:
            opportunity = _stamped(_OPPORTUNITY, header, "opportunity", record_id, event_id, None)
            events.append(_replace(opportunity, opportunity_id=record_id, deleted=True))
        return events
    values = (
        record.AccountId,
        record.StageName,
        record.IsWon,
        record.IsClosed,
        record.CurrencyIsoCode,
        record.Amount,
        record.CloseDate,
        record.TotalOpportunityQuantity,
        getattr(record, reader.plan_attr),
    )
    if carry is not _ALL_PRESENT:
        values = carry.pick_all(values, reader.opportunity_names)
    account_id, stage, is_won, is_closed, currency, amount, close_date, quantity, plan = values
    # The checks and conversions below are called only for values that need them (the calls
    # cost more than the checks); same order as the fields, so the first bad one is reported.
    if isinstance(account_id, str) and not (
        len(account_id) in _RECORD_ID_LENGTHS and account_id.isascii() and account_id.isalnum()
    ):
        _record_id(account_id, "Opportunity.AccountId")
    if isinstance(currency, str):
        _currency(currency)
    digits: int | None | UnsetType = None if amount is None else UNSET  # follows the amount
    if amount is not None and amount is not UNSET:
        amount, digits = _amount(amount, currency)
    if close_date is not None and close_date is not UNSET:
        close_date = _close_date(close_date)
    if quantity is not None and quantity is not UNSET:
        quantity = _quantity(quantity)
    if not (plan is None or plan is UNSET or isinstance(plan, str)):
        _text(plan, reader.plan_names[0])
    changed = []
    if account_id is not UNSET:
        changed.append("account_id")
    if stage is not UNSET:
        changed.append("stage")
    if is_won is not UNSET:
        changed.append("is_won")
    if is_closed is not UNSET:
        changed.append("is_closed")
    if amount is not UNSET:
        changed.append("amount")
    if currency is not UNSET:
        changed.append("currency")
    if close_date is not UNSET:
        changed.append("close_date")
    if quantity is not UNSET:
        changed.append("quantity")
    if plan is not UNSET:
        changed.append("plan")
    changed_names = tuple(changed)
    customer_key = account_id if isinstance(account_id, str) else None
    for record_id, event_id in targets:
        opportunity = _stamped(_OPPORTUNITY, header, "opportunity", record_id, event_id, customer_key)
        events.append(
            _replace(
                opportunity,
                opportunity_id=record_id,
                account_id=account_id,
                stage=stage,
                is_won=is_won,
                is_closed=is_closed,
                amount=amount,
                currency=currency,
                close_date=close_date,
                plan=plan,
                quantity=quantity,
                changed=changed_names,
                amount_digits=digits,
            )
        )
    return events


# Building events: a blank of the event's class gets what every Salesforce event carries from
# `_stamped`, then its own fields in one `replace` call (see `blank_event`).
_ACCOUNT: Final = blank_event(AccountUpserted, _SALESFORCE)
_MERGED: Final = blank_event(AccountMerged, _SALESFORCE, winner_id="", loser_ids=())
_OPPORTUNITY: Final = blank_event(OpportunityChanged, _SALESFORCE, opportunity_id="")
_RESYNC: Final = blank_event(ResyncRequired, _SALESFORCE, reason="", object_type="")


def _stamped(
    blank: _E, header: _Header, kind: str, record_id: str | None, event_id: str, customer_key: str | None
) -> _E:
    """`blank` with the fields every Salesforce event sets the same way.

    `version` is `(commitTimestamp, commitNumber)` and `correlation_id` the transactionKey, shared by
    every event of one transaction. `record_id` None: the event is about every record of the object
    (entity id `*`, no local customer).
    """
    occurred_at = header.commitTimestamp
    return _replace(
        blank,
        event_id=event_id,
        entity=EntityRef(kind, "*" if record_id is None else record_id),
        occurred_at=occurred_at,
        version=Version(occurred_at, int(header.commitNumber or 0)),
        customer_key=customer_key,
        local_customer=None if record_id is None else f"salesforce:{record_id}",
        # A dict of its own: a copy would share the blank's.
        xrefs={},
        correlation_id=header.transactionKey or "",
    )


# Carry modes: which fields of the payload an event sets.
_FULL: Final = 0  # CREATE/UNDELETE: every field present is the record's value
_NAMED: Final = 1  # UPDATE with changedFields as names: exactly those (CometD may add enriched fields)
_PRESENT: Final = 2  # CometD UPDATE without names: CometD drops unchanged fields, so present = changed
_NON_NULL: Final = 3  # Pub/Sub, Connect UPDATE without names: every field is sent, null when unchanged


class _Carry:
    """Which source fields an event sets, by change type and shape."""

    __slots__ = ("mode", "names", "nulled")

    def __init__(self, mode: int, names: frozenset[str], nulled: frozenset[str]) -> None:
        self.mode = mode
        self.names = names
        self.nulled = nulled

    def pick(self, value: Any, source_names: tuple[str, ...]) -> Any:
        """The value this event sets for a field listed under `source_names`, or UNSET."""
        mode = self.mode
        if mode == _FULL:
            return value
        if mode == _NAMED:
            if not self.names.isdisjoint(source_names):
                # Named as changed but absent: CometD leaves out fields set to null.
                return None if value is UNSET else value
        elif value is not UNSET and (mode == _PRESENT or value is not None):
            return value
        return None if self.nulled and not self.nulled.isdisjoint(source_names) else UNSET

    def pick_all(self, values: tuple[Any, ...], source_names: tuple[tuple[str, ...], ...]) -> tuple[Any, ...]:
        """`pick` for several fields (one `source_names` entry per value), with shortcuts for the usual modes."""
        mode = self.mode
        if mode == _FULL:
            return values
        if mode == _NON_NULL and not self.nulled:
            # Every field is sent and none was cleared: the non-null ones are the change.
            return tuple([UNSET if value is None else value for value in values])
        return tuple(map(self.pick, values, source_names))


# Shared: the modes without field lists need no object of their own.
_ALL_PRESENT: Final = _Carry(_FULL, _NO_NAMES, _NO_NAMES)
_PRESENT_ONLY: Final = _Carry(_PRESENT, _NO_NAMES, _NO_NAMES)
_NON_NULL_ONLY: Final = _Carry(_NON_NULL, _NO_NAMES, _NO_NAMES)


def _address_parts(record: _Record, carry: _Carry) -> tuple[Any, ...]:
    """The billing address parts this event sets, in line order (UNSET: not set by this event)."""
    compound = record.BillingAddress
    full = carry.mode == _FULL
    nested: tuple[Any, ...]
    if isinstance(compound, _Address):
        nested = (compound.Street, compound.City, compound.State, compound.PostalCode, compound.Country)
        if full and UNSET in nested:
            # A created record's address lists only its non-empty parts.
            nested = tuple(None if part is UNSET else part for part in nested)
    else:
        nested = (compound,) * len(_ADDRESS_NAMES)
    flat = (
        record.BillingStreet,
        record.BillingCity,
        record.BillingState,
        record.BillingPostalCode,
        record.BillingCountry,
    )
    # Only Kafka Connect records carry the parts flattened too; otherwise the nested parts are the values.
    parts = nested if flat == _NO_FLAT_ADDRESS else tuple(map(_address_part, nested, flat))
    return carry.pick_all(parts, _ADDRESS_NAMES)


def _address_part(nested: Any, flat: Any) -> Any:
    if isinstance(nested, str):
        return nested
    if isinstance(flat, str):
        return flat
    return None if nested is None or flat is None else UNSET


def _one_line_address(parts: Sequence[Any]) -> str | None:
    street, city, state, postal_code, country = parts
    lines = map(str.strip, street.splitlines()) if street else ()
    region = f"{state} {postal_code}" if state and postal_code else state or postal_code
    # filter(None, ...) drops the empty pieces (and is cheaper than a generator expression).
    return ", ".join(filter(None, (*lines, city, region, country))) or None


# ---- REST records --------------------------------------------------------------------------------

# The fields of each object `decode_record` reads, in REST names (the plan field is added per config).
_RECORD_FIELDS: Final = {
    "Account": ("Id", "IsDeleted", "MasterRecordId", "Name", "CurrencyIsoCode", "BillingStreet", "BillingCity",
                "BillingState", "BillingPostalCode", "BillingCountry", ACCOUNT_TAX_ID_FIELD,
                ACCOUNT_PAYMENT_TERMS_FIELD, "LastModifiedDate", "SystemModstamp"),
    "Opportunity": ("Id", "IsDeleted", "AccountId", "StageName", "IsWon", "IsClosed", "CurrencyIsoCode", "Amount",
                    "CloseDate", "TotalOpportunityQuantity", "LastModifiedDate", "SystemModstamp"),
}


def record_fields(object_type: str, plan_field: str = DEFAULT_CODEC_CONFIG.salesforce_plan_field) -> tuple[str, ...]:
    """The fields of an `object_type` record (Account, Opportunity) that `decode_record` reads.

    What a REST GET (`?fields=`) or a SOQL query must ask for so that the record decodes with every
    field known. KeyError for an object the codec does not read.
    """
    fields = _RECORD_FIELDS[object_type]
    return (*fields, plan_field) if object_type == "Opportunity" and plan_field not in fields else fields


# A REST time that fails to parse is a bad time, not a bad value.
_TIME_FIELDS: Final = ("`$.LastModifiedDate`", "`$.SystemModstamp`")


def _sobject_events(body: bytes, reader: _Reader) -> list[CanonicalEvent]:
    """The events of a REST record (`decode_record`): those of a CREATE (or DELETE) change event of it."""
    record = _decode_sobject(body, reader.plan_field)
    object_type = record.attributes.type
    kind = _ENTITY_KINDS.get(object_type)
    if kind is None:
        return []
    record_id = record.record_id
    if not isinstance(record_id, str):
        raise DecodeError(MISSING_RECORD_ID, f"{object_type} record has no Id")
    _record_id(record_id, f"{object_type}.Id")
    if type(record.Name) is _CompoundName:
        raise DecodeError(INVALID_VALUE, f"{object_type} record: Name should be text, got an object")
    modified = _rest_time(record.LastModifiedDate, object_type, "LastModifiedDate")
    modstamp = _rest_time(record.SystemModstamp, object_type, "SystemModstamp")
    if modified is None:
        if modstamp is None:
            raise DecodeError(MISSING_FIELD, f"{object_type} record has neither LastModifiedDate nor SystemModstamp: "
                              "the time it was read as of is unknown")
        modified = modstamp
    # As of its last change by anyone (a system change moves SystemModstamp only).
    as_of = modified if modstamp is None else max(modified, modstamp)
    deleted = record.IsDeleted is True
    # A CREATE change event sets every field it holds (the others stay UNSET); a deletion, none.
    header = _Header(entityName=object_type, changeType="DELETE" if deleted else "CREATE", commitTimestamp=as_of)
    event_id = f"sobject:{record_id}:{as_of}:deleted" if deleted else f"sobject:{record_id}:{as_of}"
    # The address is the flat Billing* fields; the REST compound (lower-case parts) is not read.
    record = _replace(record, BillingAddress=UNSET)
    targets = [(record_id, event_id)]
    if kind == "account":
        events = _account_events(header, targets, record, _ALL_PRESENT)
    else:
        events = _opportunity_events(header, targets, record, _ALL_PRESENT, reader)
    # Salesforce times a record to the second, a change event to the millisecond (or to the same second): the
    # read holds every change of its second made before it, so it is versioned at the end of that second and
    # a change event of the same second does not pass for newer (a change made after the read within that
    # very second is taken for older: rare, and the next change event or read settles it).
    version = Version(as_of - as_of % 1000 + 999, 0)
    return [_replace(event, occurred_at=modified, version=version) for event in events]


def _decode_sobject(body: bytes, plan_field: str) -> _SObject:
    try:
        return _sobject_decoder(plan_field).decode(body)
    except msgspec.ValidationError as exc:
        message = msgspec_message(exc)
        if message.startswith("Object missing required field"):
            raise DecodeError(MISSING_FIELD, f"REST record: {message}") from None
        reason = BAD_TIME if message.endswith(_TIME_FIELDS) else INVALID_VALUE
        raise DecodeError(reason, f"REST record: {message}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string: UnicodeDecodeError
        raise DecodeError(INVALID_JSON, f"record is not valid JSON: {_message(exc)}") from None


@lru_cache(maxsize=16)
def _sobject_decoder(plan_field: str) -> msgspec.json.Decoder[_SObject]:
    """The REST record decoder that reads `plan_field` as the plan (built once per name, as `_reader`)."""
    fields = _plan_fields(plan_field)
    if not fields:
        return msgspec.json.Decoder(_SObject)
    record = msgspec.defstruct("_PlanSObject", fields, bases=(_SObject,), kw_only=True)
    return cast(msgspec.json.Decoder[_SObject], msgspec.json.Decoder(record))


def _rest_time(value: _RestTime, object_type: str, name: str) -> int | None:
    """Epoch ms of a REST datetime (or of epoch ms); None when absent or null."""
    if value is None or value is UNSET:
        return None
    ms = value if isinstance(value, int) else epoch_ms(value, f"{object_type}.{name}", " (REST times end in +0000)")
    if not 0 <= ms <= _MAX_EPOCH_MS:
        raise DecodeError(BAD_TIME, f"{object_type}.{name} is not a time from 1970 to 9999")
    return ms


# ---- values --------------------------------------------------------------------------------------


def _is_record_id(value: str) -> bool:
    """15 or 18 ASCII letters and digits (string methods: a few times faster than a regex match)."""
    return len(value) in _RECORD_ID_LENGTHS and value.isascii() and value.isalnum()


def _record_id(value: str, where: str) -> str:
    if not _is_record_id(value):
        raise DecodeError(
            INVALID_RECORD_ID, f"{where} ({len(value)} characters) is not a Salesforce id (15 or 18 letters and digits)"
        )
    return value


def _text(value: Any, source_name: str) -> str | None | UnsetType:
    if value is None or value is UNSET or isinstance(value, str):
        return value
    raise DecodeError(INVALID_VALUE, f"Opportunity.{source_name} should be text, got {type(value).__name__}")


def _code(value: str | int | None | UnsetType) -> str | None | UnsetType:
    # Tax ids and payment terms are text in most orgs, a number in some (net days).
    return str(value) if isinstance(value, int) else value


def _currency(value: str | None | UnsetType) -> str | None | UnsetType:
    # Three ASCII upper-case letters; string methods are a few times faster than a regex match.
    if isinstance(value, str) and not (len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()):
        raise DecodeError(
            INVALID_CURRENCY, f"CurrencyIsoCode ({len(value)} characters) is not an upper-case ISO 4217 code"
        )
    return value


def _amount(value: int | Decimal, currency: str | None | UnsetType) -> tuple[int, int]:
    """Exact integer minor units of `value`, and the decimals they are counted in.

    In `currency`'s decimals when the event names it; otherwise (an amount-only UPDATE names no
    currency) in the fewest decimals, at least 2, that keep it exact: the state reads the amount in
    the record's currency (`Opportunity.amount_in`).
    """
    digits = minor_units(currency) if isinstance(currency, str) else DEFAULT_MINOR_UNITS
    if isinstance(value, int):
        # A JSON integer: exact in integers, without Decimal arithmetic.
        minor = value * 10**digits
        if -_MAX_MINOR <= minor <= _MAX_MINOR:
            return minor, digits
        value = Decimal(value)  # out of range: the error is worded below, as for any amount
    if not value.is_finite() or (value and value.adjusted() > _MAX_AMOUNT_EXPONENT):
        raise DecodeError(
            INVALID_AMOUNT, f"Opportunity.Amount is not a finite amount in range (at most {_MAX_MINOR} minor units)"
        )
    # A whole amount (the usual case) scales exactly in integers, without the Decimal context;
    # int() is cheap here because the exponent is bounded above.
    whole = int(value)
    if whole == value:
        minor = whole * 10**digits
    else:
        if not isinstance(currency, str):
            decimals = -int(value.normalize().as_tuple().exponent)
            digits = min(max(decimals, DEFAULT_MINOR_UNITS), MAX_MINOR_UNITS)
        minor = _fractional_minor(value, digits, currency)
    if not -_MAX_MINOR <= minor <= _MAX_MINOR:
        raise DecodeError(INVALID_AMOUNT, f"Opportunity.Amount is out of range (at most {_MAX_MINOR} minor units)")
    return minor, digits


def _fractional_minor(value: Decimal, digits: int, currency: str | None | UnsetType) -> int:
    """`value` (not a whole number) in minor units, if it has at most `digits` decimals."""
    try:
        # _EXACT traps Inexact: more decimals than the currency has is an error, never rounded.
        return int(_EXACT.to_integral_exact(_EXACT.scaleb(value, digits)))
    except Inexact:
        raise DecodeError(
            INVALID_AMOUNT,
            f"Opportunity.Amount has more than {digits} decimals ({currency or 'event without currency'})",
        ) from None


def _quantity(value: int | float) -> int:
    """A whole, non-negative TotalOpportunityQuantity as an int (a double in Salesforce: `5.0` is 5).

    A fraction or a negative number is refused, never rounded: the quantity is what the subscription bills.
    """
    if isinstance(value, float):
        if not value.is_integer():
            raise DecodeError(INVALID_VALUE, "Opportunity.TotalOpportunityQuantity is not a whole number "
                              "(a subscription bills whole units)")
        value = int(value)
    if not 0 <= value <= _MAX_QUANTITY:
        raise DecodeError(INVALID_VALUE, f"Opportunity.TotalOpportunityQuantity is out of range (0 to {_MAX_QUANTITY})")
    return value


def _close_date(value: str | int | None | UnsetType) -> str | None | UnsetType:
    """`YYYY-MM-DD` from an ISO date (CometD), epoch ms (Pub/Sub) or epoch days (Kafka Connect Date)."""
    if value is None or value is UNSET:
        return value
    iso = _iso_date(value)
    if iso is None:
        kind = f"text of {len(value)} characters" if isinstance(value, str) else "a number out of range"
        raise DecodeError(INVALID_DATE, f"Opportunity.CloseDate ({kind}) is not a date (ISO, epoch ms or days)")
    return iso


@lru_cache(maxsize=4096)
def _iso_date(value: str | int) -> str | None:
    # Cached: close dates repeat across a stream, and formatting dominates the cost.
    if isinstance(value, str):
        if _DATE.match(value) and (len(value) == 10 or value[10:11] == "T"):
            try:
                return date.fromisoformat(value[:10]).isoformat()
            except ValueError:
                return None
        return None
    days = value if -_MAX_EPOCH_DAYS <= value <= _MAX_EPOCH_DAYS else value // _MS_PER_DAY
    ordinal = _EPOCH_ORDINAL + days
    return date.fromordinal(ordinal).isoformat() if 1 <= ordinal <= date.max.toordinal() else None
