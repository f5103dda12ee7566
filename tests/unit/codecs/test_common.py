"""Helpers the codecs share: time conversion, decode error mapping, common event fields, blanks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from msgspec import Struct

from concord.codecs import errors
from concord.codecs.common import blank_event, decode_json, epoch_ms, event_fields
from concord.codecs.errors import DecodeError
from concord.codecs.model import (
    EntityRef,
    InvoiceChanged,
    Platform,
    ResyncRequired,
    SupportCaseChanged,
    Version,
)

# --- epoch_ms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
        (datetime(2023, 2, 6, 9, 48, tzinfo=UTC), 1_675_676_880_000),
        # Another offset is the same instant in UTC.
        (datetime(2023, 2, 6, 10, 48, tzinfo=timezone(timedelta(hours=1))), 1_675_676_880_000),
        # Microseconds are dropped towards the past, also before the epoch.
        (datetime(1970, 1, 1, 0, 0, 0, 1999, tzinfo=UTC), 1),
        (datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC), -1),
    ],
)
def test_epoch_ms(value: datetime, expected: int) -> None:
    assert epoch_ms(value, "t") == expected


def test_epoch_ms_refuses_a_time_without_offset() -> None:
    with pytest.raises(DecodeError) as caught:
        epoch_ms(datetime(2023, 2, 6, 9, 48), "envelope lastModifiedDate", " (send ISO 8601 with Z)")
    assert caught.value.reason == errors.BAD_TIME
    assert caught.value.detail == (
        "envelope lastModifiedDate has no UTC offset (send ISO 8601 with Z)"
    )


# --- decode_json ------------------------------------------------------------------------------------


class _Thing(Struct):
    id: int
    name: str | None = None


_thing = msgspec.json.Decoder(_Thing)


def test_decode_json_returns_the_value() -> None:
    assert decode_json(_thing, b'{"id": 7, "other": [1]}', "thing") == _Thing(id=7)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"name": "x"}', errors.MISSING_FIELD),
        (b'{"id": "7"}', errors.BAD_TYPE),
        (b"[1, 2]", errors.BAD_TYPE),
        (b'{"id": 7', errors.INVALID_JSON),
        (b'{"id": 7, "name": "\xff"}', errors.INVALID_JSON),
    ],
)
def test_decode_json_maps_every_failure_to_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_json(_thing, body, "ticket 12")
    assert caught.value.reason == reason
    assert caught.value.detail.startswith("ticket 12: ")


def test_decode_json_names_too_deep_nesting() -> None:
    # Valid JSON, deeper than msgspec's recursion limit (a RecursionError underneath).
    body = b'{"id": 1, "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(DecodeError) as caught:
        decode_json(_thing, body, "ticket 12")
    assert caught.value.reason == errors.TOO_DEEP
    assert caught.value.detail.startswith("ticket 12 is nested too deeply")


# --- event_fields -----------------------------------------------------------------------------------


def test_event_fields_cross_reference_the_crm_account() -> None:
    version = Version(1_700_000_000_000, 1)
    fields = event_fields(
        Platform.NETSUITE,
        "customer:42:1700000000000",
        EntityRef("customer", "42"),
        version,
        crm_account_id="001000000000001AAA",
        local_customer="netsuite:42",
    )
    assert fields == {
        "event_id": "customer:42:1700000000000",
        "source": Platform.NETSUITE,
        "entity": EntityRef("customer", "42"),
        "occurred_at": 1_700_000_000_000,
        "version": version,
        "customer_key": "001000000000001AAA",
        "local_customer": "netsuite:42",
        "xrefs": {"salesforce": "001000000000001AAA"},
    }


def test_event_fields_without_crm_account_are_the_event_defaults() -> None:
    version = Version(5)
    fields = event_fields(
        Platform.ZENDESK, "ticket:9:5", EntityRef("ticket", "9"), version, crm_account_id=None, local_customer=None
    )
    built = SupportCaseChanged(**fields, ticket_id="9")
    assert built == SupportCaseChanged(
        event_id="ticket:9:5",
        source=Platform.ZENDESK,
        entity=EntityRef("ticket", "9"),
        occurred_at=5,
        version=version,
        ticket_id="9",
    )


# --- blank_event ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "required"),
    [
        (InvoiceChanged, {"system": Platform.STRIPE, "invoice_id": "", "status": "", "total": 0, "currency": ""}),
        (ResyncRequired, {"reason": "", "object_type": ""}),
    ],
)
def test_blank_event_is_completed_by_replace(cls: Any, required: dict[str, Any]) -> None:
    blank = blank_event(cls, Platform.STRIPE, **required)
    assert (blank.source, blank.event_id, blank.occurred_at, blank.version) == (Platform.STRIPE, "", 0, Version(0))
    fields = {"event_id": "e", "entity": EntityRef("x", "1"), "occurred_at": 3, "version": Version(3)}
    values = {name: f"{name}!" if value == "" else value for name, value in required.items()}
    assert msgspec.structs.replace(blank, **fields, **values) == cls(source=Platform.STRIPE, **fields, **values)
