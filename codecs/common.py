"""Pieces more than one codec needs, so that the codecs agree on them (not a public API)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict, TypeVar

import msgspec
from msgspec import Raw

from concord.codecs.errors import BAD_TIME, MISSING_FIELD, DecodeError, as_decode_error, msgspec_message
from concord.codecs.model import EntityRef, Event, Platform, Version

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Event)


def epoch_ms(value: datetime, field: str, hint: str = "") -> int:
    """UTC epoch milliseconds of an aware time (sub-millisecond digits dropped, towards the past).

    A time without an offset is refused rather than guessed: taken as local time, the same payload
    would order differently on two workers. `hint` ends the error detail (what the sender should do).
    """
    if value.tzinfo is None:
        raise DecodeError(BAD_TIME, f"{field} has no UTC offset{hint}")
    return (value - _EPOCH) // _MS


def decode_json(decoder: msgspec.json.Decoder[_T], data: bytes | Raw, where: str) -> _T:
    """msgspec decode with every failure turned into a DecodeError naming the place (never a value)."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        message = msgspec_message(exc)
        if message.startswith("Object missing required field"):
            raise DecodeError(MISSING_FIELD, f"{where}: {message}") from None
        raise as_decode_error(exc, where) from None
    except Exception as exc:  # malformed JSON, bad UTF-8, too deep (RecursionError), too large
        raise as_decode_error(exc, where) from None


class EventFields(TypedDict):
    """The fields every canonical event has, as keyword arguments for its constructor."""

    event_id: str
    source: Platform
    entity: EntityRef
    occurred_at: int
    version: Version
    customer_key: str | None
    local_customer: str | None
    xrefs: dict[str, str]


def event_fields(
    source: Platform,
    event_id: str,
    entity: EntityRef,
    version: Version,
    *,
    crm_account_id: str | None,
    local_customer: str | None,
) -> EventFields:
    """The common fields of an event from a platform other than the CRM (Zendesk, NetSuite).

    Such a payload names the customer's CRM account, if at all, by an id the CRM gave it: that id
    is the customer key and the cross-reference to Salesforce. The event occurred at its version.
    """
    return EventFields(
        event_id=event_id,
        source=source,
        entity=entity,
        occurred_at=version.ts,
        version=version,
        customer_key=crm_account_id,
        local_customer=local_customer,
        xrefs={"salesforce": crm_account_id} if crm_account_id else {},
    )


def blank_event(cls: type[_E], source: Platform, **required: Any) -> _E:
    """An event of `cls` from `source` whose other required fields hold placeholders.

    The speed-sensitive codecs build events by copying a blank with `msgspec.structs.replace`
    and setting every field that matters: one constructor call with more than 15 keyword arguments
    (or a helper taking `**fields`) makes CPython pass them in a dict, several times slower. A copy
    shares the blank's values, so each copy must be given its own mutable ones (`xrefs`).
    """
    return cls(event_id="", source=source, entity=EntityRef("", ""), occurred_at=0, version=Version(0), **required)
