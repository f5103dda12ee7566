"""The snapshot readers' pure parts: wrapping, queries, retries (connectors/snapshots.py)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from concord.codecs import stripe as stripe_codec
from concord.codecs.model import CustomerUpserted, InvoiceChanged, PaymentChanged, SubscriptionChanged
from concord.codecs.salesforce import record_fields
from concord.connectors.base import ConnectorError, ErrorKind
from concord.connectors.http import HttpResponse
from concord.connectors.snapshots import (
    BACKOFF_S,
    MAX_RETRY_AFTER_S,
    answered_at_ms,
    fetch,
    netsuite_account,
    soql,
    stripe_event,
    suiteql,
)

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "stripe" / "objects"


def _object(kind: str, **fields: object) -> bytes:
    base: dict[str, object] = {"id": f"{kind[:3]}_1", "object": kind, "created": 1_700_000_000, "livemode": False}
    return msgspec.json.encode({**base, **fields})


def test_a_listed_stripe_object_decodes_as_the_event_of_its_kind_versioned_as_of_the_page() -> None:
    as_of = 1_790_000_123_456
    customer = _object("customer", email="a@example.com", name="Acme", metadata={"salesforce_id": "001A"})
    object_id, event = stripe_event(customer, as_of)
    assert object_id == "cus_1"
    [decoded] = stripe_codec.decode(event)
    assert isinstance(decoded, CustomerUpserted) and decoded.customer_id == "cus_1"
    assert decoded.version.ts == 1_790_000_123_000  # Stripe's seconds, as its events
    # Read again within the same second: the same event (the state drops it as a duplicate).
    assert stripe_event(customer, as_of + 500) == (object_id, event)


@pytest.mark.parametrize(("kind", "fields", "expected"), [
    ("subscription", {"customer": "cus_1", "status": "canceled", "items": {"object": "list", "data": []},
                      "currency": "usd", "current_period_end": 1_700_100_000}, SubscriptionChanged),
    ("invoice", {"customer": "cus_1", "status": "paid", "total": 1000, "currency": "usd", "amount_remaining": 0,
                 "number": "INV-1"}, InvoiceChanged),
    ("charge", {"customer": "cus_1", "status": "succeeded", "amount": 1000, "currency": "usd", "invoice": "in_1",
                "refunded": False, "amount_refunded": 0, "captured": True, "paid": True}, PaymentChanged),
])
def test_each_listed_kind_is_read_by_the_stripe_codec(kind: str, fields: dict[str, object], expected: type) -> None:
    _, event = stripe_event(_object(kind, **fields), 1_790_000_000_000)
    decoded = stripe_codec.decode(event)
    assert decoded and all(isinstance(e, expected) for e in decoded)


def test_the_real_fixture_objects_wrap_into_events_the_codec_reads() -> None:
    paths = sorted(FIXTURES.glob("customer_*.json"))
    if not paths:
        pytest.skip("the shared Stripe fixtures are not mounted")
    for path in paths:
        [decoded] = stripe_codec.decode(stripe_event(path.read_bytes(), 1_790_000_000_000)[1])
        assert isinstance(decoded, CustomerUpserted)


def test_the_soql_asks_for_the_codec_fields_and_since_when() -> None:
    assert soql("Account", ("Id", "Name"), None) == (
        "SELECT Id, Name, SystemModstamp, IsDeleted FROM Account ORDER BY SystemModstamp ASC")
    assert soql("Opportunity", ("StageName",), 1_793_491_200_000) == (
        "SELECT Id, StageName, SystemModstamp, IsDeleted FROM Opportunity WHERE SystemModstamp >= "
        "2026-11-01T00:00:00Z ORDER BY SystemModstamp ASC")
    # The reader asks for what the codec reads: the opportunity's quantity (what the subscription bills) too.
    assert "TotalOpportunityQuantity, " in soql("Opportunity", record_fields("Opportunity", "Plan__c"), None)


def test_the_answer_time_is_the_platforms_date_header_else_the_clock() -> None:
    dated = HttpResponse(status=200, headers={"date": "Sun, 01 Nov 2026 00:00:05 GMT"})
    assert answered_at_ms(dated, lambda: 1.0) == 1_793_491_205_000
    assert answered_at_ms(HttpResponse(status=200), lambda: 12.5) == 12_500
    assert answered_at_ms(HttpResponse(status=200, headers={"date": "yesterday"}), lambda: 2.0) == 2_000


async def test_transient_failures_are_retried_after_the_platforms_wait_and_others_raise_at_once() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    answers: list[ConnectorError | HttpResponse] = [
        ConnectorError(ErrorKind.TRANSIENT, "429", status=429, retry_after=7.0),
        ConnectorError(ErrorKind.TRANSIENT, "503", status=503),
        ConnectorError(ErrorKind.TRANSIENT, "429", status=429, retry_after=3600.0),
        HttpResponse(status=200, body=b"{}"),
    ]

    async def call() -> HttpResponse:
        answer = answers.pop(0)
        if isinstance(answer, ConnectorError):
            raise answer
        return answer

    assert (await fetch(call, sleep)).status == 200
    assert slept == [7.0, BACKOFF_S[1], MAX_RETRY_AFTER_S]

    async def refused() -> HttpResponse:
        raise ConnectorError(ErrorKind.AUTH, "401", status=401)

    with pytest.raises(ConnectorError, match="401"):
        await fetch(refused, sleep)
    assert len(slept) == 3

    async def down() -> HttpResponse:
        raise ConnectorError(ErrorKind.TRANSIENT, "503", status=503)

    with pytest.raises(ConnectorError, match="503"):
        await fetch(down, sleep, retries=3)


def test_the_suiteql_lists_ids_of_one_record_type_oldest_first() -> None:
    assert suiteql("customer", None) == "SELECT id, lastmodifieddate FROM customer ORDER BY id ASC"
    assert suiteql("creditmemo", 1_793_491_200_000) == (
        "SELECT id, lastmodifieddate FROM transaction WHERE type = 'CustCred' AND lastmodifieddate >= "
        "'2026-11-01T00:00:00Z' ORDER BY id ASC")


def test_the_netsuite_account_is_read_from_its_rest_url() -> None:
    assert netsuite_account("https://1234567-sb1.suitetalk.api.netsuite.com") == "1234567_SB1"
    assert netsuite_account("http://127.0.0.1:6070") == "127.0.0.1:6070"


def test_a_complete_listing_tells_what_is_gone_of_the_kinds_the_platform_deletes() -> None:
    from concord.connectors.snapshots import gone

    known = [("cus_1", "customer", "001A"), ("cus_2", "customer", "001B"), ("sub_9", "subscription", "001B"),
             ("cus_3", "customer", "001C")]
    listed = {"customer": {"cus_1", "cus_3"}, "subscription": set()}
    # A subscription is canceled in Stripe, never deleted: only the customer no longer listed is gone.
    assert gone("stripe", listed, known) == [("customer", "cus_2", "001B")]
    assert gone("netsuite", {}, [("7", "invoice", "001A"), ("8", "payment", "001A")]) == [("invoice", "7", "001A")]


def test_each_deletion_applies_as_one_to_the_customers_state() -> None:
    from concord.connectors.snapshots import TOMBSTONED, deletions
    from concord.tables.state import apply, empty

    at = 1_793_491_200_000
    for platform, kinds in TOMBSTONED.items():
        for kind in sorted(kinds):
            events = deletions(platform, kind, "1001", "001A", at, "pass-1")
            assert events and {e.customer_key for e in events} == {"001A"}
            assert all(e.version.ts == at and getattr(e, "deleted", False) for e in events), (platform, kind)
            state = empty("001A")
            for event in events:
                state, _ = apply(state, event)  # the state takes each (a model's required fields are filled)
            assert len({e.event_id for e in events}) == len(events)
