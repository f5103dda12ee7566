"""Salesforce CDC codec: real fixtures, the three delivery shapes, fan-out, merges, gaps, fuzz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from concord.codecs import model
from concord.codecs.config import CodecConfig
from concord.codecs.errors import DecodeError
from concord.codecs.model import (
    AccountMerged,
    AccountUpserted,
    CanonicalEvent,
    EntityRef,
    OpportunityChanged,
    Platform,
    ResyncRequired,
    Version,
)
from concord.codecs.salesforce import FieldBitmap, decode, parse_field_bitmap
from concord.tables.state import apply, empty

from .salesforce_payloads import (
    ACCOUNT_FIELDS,
    ACCOUNT_ID,
    COMMIT_NUMBER,
    COMMIT_TIMESTAMP,
    CONNECT_ACCOUNT_FIELDS,
    MERGED_EVENT_ACCOUNT_IDS,
    OPPORTUNITY_ACCOUNT_ID,
    OPPORTUNITY_FIELDS,
    OPPORTUNITY_ID,
    OTHER_ACCOUNT_ID,
    TRANSACTION_KEY,
    cometd,
    connect,
    header,
    pubsub,
)

OPPORTUNITY_VALUE_FIELDS = (
    "account_id",
    "stage",
    "is_won",
    "is_closed",
    "amount",
    "currency",
    "close_date",
    "plan",
    "quantity",
)
ACCOUNT_VALUE_FIELDS = ("name", "country", "currency", "tax_id", "address", "payment_terms")


def salesforce_dir(shared_fixtures: Path) -> Path:
    return shared_fixtures / "salesforce"


def only(events: list[CanonicalEvent]) -> CanonicalEvent:
    assert len(events) == 1, events
    return events[0]


def opportunity(events: list[CanonicalEvent]) -> OpportunityChanged:
    event = only(events)
    assert isinstance(event, OpportunityChanged)
    return event


def account(events: list[CanonicalEvent]) -> AccountUpserted:
    event = only(events)
    assert isinstance(event, AccountUpserted)
    return event


def assert_unset_except(event: Any, names: tuple[str, ...], set_names: set[str]) -> None:
    for name in names:
        if name not in set_names:
            assert getattr(event, name) is UNSET, name


# ---- real fixtures ---------------------------------------------------------------------------


def test_cometd_custom_object_create_is_parsed_and_ignored(shared_fixtures: Path) -> None:
    path = salesforce_dir(shared_fixtures) / "cometd_Employee__ChangeEvent_CREATE.abrarsheikhsony-readme.json"
    body = path.read_bytes()
    assert decode(body) == []
    # The header is still read: a broken one in the same message is an error, not ignored.
    broken = json.loads(body)
    broken["data"]["payload"]["ChangeEventHeader"]["commitTimestamp"] = "2019-05-02T11:27:36Z"
    with pytest.raises(DecodeError) as excinfo:
        decode(json.dumps(broken).encode())
    assert excinfo.value.reason == "invalid_message"
    assert "commitTimestamp" in excinfo.value.detail


def test_cometd_platform_event_is_ignored(shared_fixtures: Path) -> None:
    body = (salesforce_dir(shared_fixtures) / "cometd_platform_event_Low_Ink__e.json").read_bytes()
    assert decode(body) == []


def test_pubsub_account_update_with_compound_bitmap(shared_fixtures: Path) -> None:
    path = salesforce_dir(shared_fixtures) / "pubsub_AccountChangeEvent_UPDATE_compound_bitmap.json"
    event = account(decode(path.read_bytes()))
    assert event.event_id == "00006bf0-edfd-6e54-a3f9-e8cefdb2c2b7:1"
    assert event.source is Platform.SALESFORCE
    assert event.entity == EntityRef("account", "0015f00002JUXA8AAP")
    assert event.occurred_at == 1714156703000
    assert event.version == Version(ts=1714156703000, seq=1100671026205)
    assert event.customer_key == "0015f00002JUXA8AAP"
    assert event.local_customer == "salesforce:0015f00002JUXA8AAP"
    assert event.correlation_id == "00006bf0-edfd-6e54-a3f9-e8cefdb2c2b7"
    assert event.xrefs == {}
    assert event.deleted is False
    # Only BillingAddress.Street changed: the one-line address cannot be rebuilt from one part,
    # so it stays UNSET but is reported as changed; nothing else is touched.
    assert event.changed == ("address",)
    assert_unset_except(event, ACCOUNT_VALUE_FIELDS, set())


def test_pubsub_opportunity_create_keeps_commit_number_exact(shared_fixtures: Path) -> None:
    body = (salesforce_dir(shared_fixtures) / "pubsub_OpportunityChangeEvent_CREATE.json").read_bytes()
    event = opportunity(decode(body))
    assert event.event_id == "00000466-3d4f-bbe3-9c2b-5ab0fb45cc02:1"
    assert event.entity == EntityRef("opportunity", "006SM0000001Tb3YAE")
    assert event.opportunity_id == "006SM0000001Tb3YAE"
    assert event.version == Version(ts=1652977933000, seq=1652977933433528300)
    assert event.version.seq > 2**53 and isinstance(event.version.seq, int)
    assert event.occurred_at == 1652977933000
    assert event.customer_key == "001SM0000000iibYAA"
    assert event.local_customer == "salesforce:006SM0000001Tb3YAE"
    assert event.correlation_id == "00000466-3d4f-bbe3-9c2b-5ab0fb45cc02"
    assert event.account_id == "001SM0000000iibYAA"
    assert event.stage == "Prospecting"
    assert event.is_won is False
    assert event.is_closed is False
    assert event.amount == 4_000_000  # 40000 in cents
    assert event.close_date == "2022-05-31"
    # The org has neither multi-currency nor a plan field: absent from the schema, so UNSET.
    assert event.currency is UNSET
    assert event.plan is UNSET
    assert event.quantity is None  # TotalOpportunityQuantity: null (no products on the deal)
    assert event.changed == ("account_id", "stage", "is_won", "is_closed", "amount", "close_date", "quantity")
    # The commit number survives the canonical encoding too.
    assert model.decode(model.encode(event)) == event
    assert b"1652977933433528300" in model.encode(event)


def test_pubsub_lead_conversion_transaction(shared_fixtures: Path) -> None:
    lines = (salesforce_dir(shared_fixtures) / "pubsub_lead_conversion_transaction.jsonl").read_bytes().splitlines()
    assert len(lines) == 4
    account_events, contact_events, opportunity_events, lead_events = (decode(line) for line in lines)
    assert contact_events == [] and lead_events == []  # Contact and Lead are not ours

    created = account(account_events)
    assert created.event_id == "00006948-0ac9-7da3-edb3-ea0e31b2334a:1"
    assert created.entity == EntityRef("account", "0015f00002JUX1JAAX")
    assert created.version == Version(ts=1714153779000, seq=1100638524517)
    assert created.name == "Cadinal Inc."
    assert created.country == "USA"
    assert created.address == "IL, USA"
    assert created.currency is UNSET and created.tax_id is UNSET and created.payment_terms is UNSET
    assert created.changed == ("name", "country", "address")

    deal = opportunity(opportunity_events)
    assert deal.event_id == "00006948-0ac9-7da3-edb3-ea0e31b2334a:3"
    assert deal.opportunity_id == "0065f00000UloqVAAR"
    assert deal.account_id == "0015f00002JUX1JAAX"
    assert deal.customer_key == "0015f00002JUX1JAAX"
    assert deal.amount is None  # created without an amount
    assert deal.close_date == "2024-06-30"
    assert deal.stage == "Prospecting"
    assert deal.version == created.version  # one transaction, one commit
    assert deal.correlation_id == created.correlation_id == "00006948-0ac9-7da3-edb3-ea0e31b2334a"


def test_every_fixture_decodes(shared_fixtures: Path) -> None:
    bodies = [
        line
        for path in sorted(salesforce_dir(shared_fixtures).iterdir())
        if path.suffix in (".json", ".jsonl")
        for line in ([path.read_bytes()] if path.suffix == ".json" else path.read_bytes().splitlines())
    ]
    assert len(bodies) == 8
    events = [event for body in bodies for event in decode(body)]
    assert len(events) == 4
    assert len({event.event_id for event in events}) == 4
    for event in events:
        assert model.decode(model.encode(event)) == event


# ---- UPDATE: what is not changed stays UNSET, in every shape --------------------------------


def test_cometd_update_sets_only_changed_fields() -> None:
    body = cometd(
        header(changed_fields=["StageName", "IsWon", "IsClosed", "LastModifiedDate"]),
        {
            "StageName": "Closed Won",
            "IsWon": True,
            "IsClosed": True,
            "LastModifiedDate": "2022-05-19T16:32:13Z",
        },
    )
    event = opportunity(decode(body))
    assert (event.stage, event.is_won, event.is_closed) == ("Closed Won", True, True)
    assert event.changed == ("stage", "is_won", "is_closed")
    assert_unset_except(event, OPPORTUNITY_VALUE_FIELDS, {"stage", "is_won", "is_closed"})
    assert event.customer_key is None  # AccountId did not change: identity resolves it
    assert event.local_customer == f"salesforce:{OPPORTUNITY_ID}"


def test_cometd_update_without_changed_fields_uses_presence() -> None:
    # Before API 47 the CometD header had no changedFields: present fields are the change,
    # and a field present with null was cleared.
    body = cometd(header(changed_fields=None), {"Amount": None, "CloseDate": "2022-06-30"})
    event = opportunity(decode(body))
    assert event.amount is None
    assert event.close_date == "2022-06-30"
    assert_unset_except(event, OPPORTUNITY_VALUE_FIELDS, {"amount", "close_date"})


def test_cometd_update_field_named_as_changed_but_absent_was_cleared() -> None:
    body = cometd(header(changed_fields=["Amount", "LastModifiedDate"]), {"LastModifiedDate": "2022-05-19T16:32:13Z"})
    event = opportunity(decode(body))
    assert event.amount is None
    assert event.changed == ("amount",)


def test_cometd_update_ignores_enriched_fields_that_did_not_change() -> None:
    # Enrichment adds fields to every event; only changedFields says what changed.
    body = cometd(
        header(changed_fields=["Plan__c", "LastModifiedDate"]),
        {"Plan__c": "Enterprise", "AccountId": OPPORTUNITY_ACCOUNT_ID, "StageName": "Prospecting"},
    )
    event = opportunity(decode(body))
    assert event.plan == "Enterprise"
    assert_unset_except(event, OPPORTUNITY_VALUE_FIELDS, {"plan"})


def test_pubsub_update_with_field_names() -> None:
    body = pubsub(
        header(changed_fields=["StageName", "Amount", "LastModifiedDate"], nulledFields=["Amount"]),
        {"StageName": "Negotiation/Review", "LastModifiedDate": 1652977990000},
        OPPORTUNITY_FIELDS,
    )
    event = opportunity(decode(body))
    assert event.stage == "Negotiation/Review"
    assert event.amount is None  # listed as changed and nulled
    assert event.changed == ("stage", "amount")
    assert_unset_except(event, OPPORTUNITY_VALUE_FIELDS, {"stage", "amount"})


def test_pubsub_update_with_bitmap_counts_non_null_fields() -> None:
    body = pubsub(
        header(changed_fields=["0x8010"]),
        {"StageName": "Closed Lost", "IsClosed": True, "LastModifiedDate": 1652977990000},
        OPPORTUNITY_FIELDS,
    )
    event = opportunity(decode(body))
    assert (event.stage, event.is_closed) == ("Closed Lost", True)
    assert_unset_except(event, OPPORTUNITY_VALUE_FIELDS, {"stage", "is_closed"})


def test_kafka_connect_update_sets_only_changed_fields() -> None:
    body = connect(
        header(changed_fields=["Amount", "CurrencyIsoCode", "LastModifiedDate"]),
        {"Amount": 1234.5, "CurrencyIsoCode": "EUR", "LastModifiedDate": 1652977990000},
        OPPORTUNITY_FIELDS,
    )
    event = opportunity(decode(body))
    assert (event.amount, event.currency) == (123450, "EUR")
    assert_unset_except(event, OPPORTUNITY_VALUE_FIELDS, {"amount", "currency"})


def test_kafka_connect_update_clearing_a_field() -> None:
    body = connect(header(changed_fields=["CloseDate", "LastModifiedDate"]), {}, OPPORTUNITY_FIELDS)
    event = opportunity(decode(body))
    assert event.close_date is None
    assert event.changed == ("close_date",)


@pytest.mark.parametrize("delimiter", [".", "_"])
@pytest.mark.parametrize("with_schema", [False, True])
def test_kafka_connect_flattened_header_and_schema_envelope(delimiter: str, with_schema: bool) -> None:
    body = connect(
        header(changed_fields=["StageName"]),
        {"StageName": "Closed Won"},
        OPPORTUNITY_FIELDS,
        flatten=delimiter,
        with_schema=with_schema,
    )
    event = opportunity(decode(body))
    assert event.stage == "Closed Won"
    assert event.event_id == f"{TRANSACTION_KEY}:1"
    assert event.version == Version(ts=COMMIT_TIMESTAMP, seq=COMMIT_NUMBER)


def test_kafka_connect_uses_record_id_when_header_has_none() -> None:
    record = json.loads(connect(header(changed_fields=["StageName"]), {"StageName": "Closed Won"}, OPPORTUNITY_FIELDS))
    del record["ChangeEventHeader"]["recordIds"]
    event = opportunity(decode(json.dumps(record).encode()))
    assert event.opportunity_id == OPPORTUNITY_ID


# ---- the same change in every shape: same dedup and ordering keys ---------------------------


def same_change_in_every_shape() -> dict[str, bytes]:
    changed = ["StageName", "IsWon", "IsClosed", "Amount", "LastModifiedDate"]
    values = {"StageName": "Closed Won", "IsWon": True, "IsClosed": True, "Amount": 40000.25}
    return {
        "cometd": cometd(header(changed_fields=changed), {**values, "LastModifiedDate": "2022-05-19T16:32:13Z"}),
        "cometd_data_part": cometd(header(changed_fields=changed), values, envelope=False),
        "pubsub": pubsub(
            header(changed_fields=changed), {**values, "LastModifiedDate": 1652977933000}, OPPORTUNITY_FIELDS
        ),
        "kafka_connect": connect(header(changed_fields=changed), values, OPPORTUNITY_FIELDS),
        "kafka_connect_schema": connect(header(changed_fields=changed), values, OPPORTUNITY_FIELDS, with_schema=True),
    }


@pytest.mark.parametrize("shape", sorted(same_change_in_every_shape()))
def test_dedup_and_ordering_keys_per_shape(shape: str) -> None:
    event = opportunity(decode(same_change_in_every_shape()[shape]))
    assert event.event_id == f"{TRANSACTION_KEY}:1"
    assert event.version == Version(ts=COMMIT_TIMESTAMP, seq=COMMIT_NUMBER)
    assert event.occurred_at == COMMIT_TIMESTAMP
    assert event.correlation_id == TRANSACTION_KEY
    assert event.entity == EntityRef("opportunity", OPPORTUNITY_ID)
    assert (event.stage, event.is_won, event.is_closed, event.amount) == ("Closed Won", True, True, 4_000_025)
    assert_unset_except(event, OPPORTUNITY_VALUE_FIELDS, {"stage", "is_won", "is_closed", "amount"})


def test_every_shape_decodes_to_the_same_event() -> None:
    events = {shape: decode(body) for shape, body in same_change_in_every_shape().items()}
    assert len({model.encode(only(found)) for found in events.values()}) == 1


def test_redelivery_gives_the_same_event() -> None:
    body = same_change_in_every_shape()["cometd"]
    assert decode(body) == decode(body)


def test_later_commit_orders_after() -> None:
    first = opportunity(decode(pubsub(header(changed_fields=["StageName"]), {"StageName": "A"}, OPPORTUNITY_FIELDS)))
    later_header = header(
        changed_fields=["StageName"], commitTimestamp=COMMIT_TIMESTAMP + 1000, commitNumber=COMMIT_NUMBER + 1
    )
    later = opportunity(decode(pubsub(later_header, {"StageName": "B"}, OPPORTUNITY_FIELDS)))
    assert later.version > first.version


def test_event_id_falls_back_to_event_uuid_then_replay_id() -> None:
    no_key = header(changed_fields=["StageName"], transactionKey=None)
    with_uuid = cometd(no_key, {"StageName": "X"}, event_uuid="2ec0e371-1395-457f-9275-be1b527a72f7")
    assert only(decode(with_uuid)).event_id == "2ec0e371-1395-457f-9275-be1b527a72f7"
    assert only(decode(cometd(no_key, {"StageName": "X"}, replay_id=2112))).event_id == "replay:2112"
    assert only(decode(connect(no_key, {"StageName": "X"}, OPPORTUNITY_FIELDS))).event_id == "replay:1305887"
    with pytest.raises(DecodeError) as excinfo:
        decode(pubsub(no_key, {"StageName": "X"}, OPPORTUNITY_FIELDS))
    assert excinfo.value.reason == "missing_event_id"


def test_commit_number_as_string_keeps_every_digit() -> None:
    body = pubsub(header(commitNumber=str(COMMIT_NUMBER + 7)), {}, OPPORTUNITY_FIELDS)
    assert only(decode(body)).version.seq == COMMIT_NUMBER + 7


# ---- CREATE, UNDELETE, DELETE, accounts -------------------------------------------------------


def test_cometd_account_create_with_custom_fields_and_address() -> None:
    body = cometd(
        header("Account", "CREATE", [ACCOUNT_ID]),
        {
            "Name": "Acme",
            "CurrencyIsoCode": "USD",
            "Tax_Id__c": "US-94-1234567",
            "Payment_Terms__c": 30,
            "BillingAddress": {
                "Street": "415 Mission Street\nSuite B",
                "City": "San Francisco",
                "State": "CA",
                "PostalCode": "94105",
                "Country": "USA",
            },
        },
    )
    event = account(decode(body))
    assert event.name == "Acme"
    assert event.currency == "USD"
    assert event.tax_id == "US-94-1234567"
    assert event.payment_terms == "30"
    assert event.country == "USA"
    assert event.address == "415 Mission Street, Suite B, San Francisco, CA 94105, USA"
    assert event.changed == ACCOUNT_VALUE_FIELDS
    assert event.customer_key == ACCOUNT_ID


def test_every_event_has_its_own_xrefs() -> None:
    # Events are copies of one blank per class: a shared dict would carry one event's xrefs into all.
    account_event = account(decode(cometd(header("Account", "CREATE", [ACCOUNT_ID]), {"Name": "Acme"})))
    other = account(decode(cometd(header("Account", "CREATE", [OTHER_ACCOUNT_ID]), {"Name": "Other"})))
    assert account_event.xrefs == other.xrefs == {}
    assert account_event.xrefs is not other.xrefs


def test_kafka_connect_account_create_with_flat_address() -> None:
    body = connect(
        header("Account", "CREATE", [ACCOUNT_ID]),
        {"Name": "Acme", "BillingStreet": "1 Main St", "BillingCity": "Springfield", "BillingCountry": "US"},
        CONNECT_ACCOUNT_FIELDS,
    )
    event = account(decode(body))
    assert event.address == "1 Main St, Springfield, US"
    assert event.country == "US"
    assert event.tax_id is None  # created empty


def test_account_update_of_country_only() -> None:
    body = cometd(
        header("Account", "UPDATE", [ACCOUNT_ID], ["BillingAddress.Country", "LastModifiedDate"]),
        {"BillingAddress": {"Country": "Germany"}},
    )
    event = account(decode(body))
    assert event.country == "Germany"
    assert event.address is UNSET  # one part of five: cannot rebuild the line
    assert event.changed == ("country", "address")


def test_account_update_of_whole_address() -> None:
    parts = {
        "Street": "1 Main St",
        "City": "Springfield",
        "State": None,
        "PostalCode": "12345",
        "Country": "US",
    }
    body = pubsub(
        header("Account", "UPDATE", [ACCOUNT_ID], ["BillingAddress", "LastModifiedDate"]),
        {"BillingAddress": parts},
        ACCOUNT_FIELDS,
    )
    assert account(decode(body)).address == "1 Main St, Springfield, 12345, US"


def test_undelete_sets_everything_present() -> None:
    body = cometd(header("Account", "UNDELETE", [ACCOUNT_ID]), {"Name": "Acme", "CurrencyIsoCode": "EUR"})
    event = account(decode(body))
    assert (event.name, event.currency, event.deleted) == ("Acme", "EUR", False)
    assert event.changed == ("name", "currency")


def test_delete_account_and_opportunity() -> None:
    gone = account(decode(pubsub(header("Account", "DELETE", [ACCOUNT_ID]), {}, ACCOUNT_FIELDS)))
    assert gone.deleted is True
    assert gone.changed == ()
    assert_unset_except(gone, ACCOUNT_VALUE_FIELDS, set())
    deal = opportunity(decode(cometd(header("Opportunity", "DELETE"), {})))
    assert deal.deleted is True
    assert_unset_except(deal, OPPORTUNITY_VALUE_FIELDS, set())


def test_custom_plan_field_from_config() -> None:
    config = CodecConfig(salesforce_plan_field="Product_Plan__c")
    values = {"Product_Plan__c": "Growth", "Plan__c": "ignored"}
    assert opportunity(decode(cometd(header(change_type="CREATE"), values), config)).plan == "Growth"
    body = pubsub(header(changed_fields=["Product_Plan__c"]), values, OPPORTUNITY_FIELDS)
    event = opportunity(decode(body, config))
    assert (event.plan, event.changed) == ("Growth", ("plan",))
    assert opportunity(decode(body)).plan is UNSET  # default config: Plan__c did not change
    # A plan field that is also a field the codec reads (Type, StageName...) still works.
    body = cometd(header(change_type="CREATE"), {"StageName": "Closed Won"})
    assert opportunity(decode(body, CodecConfig(salesforce_plan_field="StageName"))).plan == "Closed Won"


# ---- fan-out, merges, gaps -------------------------------------------------------------------


def test_several_record_ids_fan_out() -> None:
    body = cometd(
        header("Account", "UPDATE", MERGED_EVENT_ACCOUNT_IDS, ["Name", "LastModifiedDate"]),
        {"Name": "Apparel Co"},
    )
    events = decode(body)
    assert [event.entity for event in events] == [EntityRef("account", rid) for rid in MERGED_EVENT_ACCOUNT_IDS]
    assert [event.event_id for event in events] == [f"{TRANSACTION_KEY}:1:{rid}" for rid in MERGED_EVENT_ACCOUNT_IDS]
    for event in events:
        assert isinstance(event, AccountUpserted)
        assert event.name == "Apparel Co"
        assert event.customer_key == event.entity.id
        assert event.version == Version(ts=COMMIT_TIMESTAMP, seq=COMMIT_NUMBER)


def test_repeated_record_id_gives_one_event() -> None:
    body = pubsub(header(record_ids=[OPPORTUNITY_ID, OPPORTUNITY_ID]), {}, OPPORTUNITY_FIELDS)
    assert only(decode(body)).event_id == f"{TRANSACTION_KEY}:1"


def test_delete_with_master_record_id_is_a_merge() -> None:
    losers = MERGED_EVENT_ACCOUNT_IDS[1:]
    body = cometd(header("Account", "DELETE", losers), {"MasterRecordId": OTHER_ACCOUNT_ID})
    events = decode(body)
    assert len(events) == 2
    for event, loser in zip(events, losers, strict=True):
        assert isinstance(event, AccountMerged)
        assert event.winner_id == OTHER_ACCOUNT_ID
        assert event.loser_ids == (loser,)
        assert event.entity == EntityRef("account", loser)
        assert event.customer_key == OTHER_ACCOUNT_ID
        assert event.local_customer == f"salesforce:{loser}"
        assert event.event_id == f"{TRANSACTION_KEY}:1:{loser}"


def test_merge_in_pubsub_shape() -> None:
    body = pubsub(header("Account", "DELETE", [ACCOUNT_ID]), {"MasterRecordId": OTHER_ACCOUNT_ID}, ACCOUNT_FIELDS)
    merged = only(decode(body))
    assert isinstance(merged, AccountMerged)
    assert (merged.winner_id, merged.loser_ids) == (OTHER_ACCOUNT_ID, (ACCOUNT_ID,))


@pytest.mark.parametrize("change_type", ["GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"])
def test_gap_events_require_a_resync(change_type: str) -> None:
    body = cometd(header("Account", change_type, MERGED_EVENT_ACCOUNT_IDS[:2], transactionKey="0Mcxx000000000B"), {})
    events = decode(body)
    assert len(events) == 2
    for event, rid in zip(events, MERGED_EVENT_ACCOUNT_IDS[:2], strict=True):
        assert isinstance(event, ResyncRequired)
        assert event.reason == change_type
        assert event.object_type == "Account"
        assert event.record_ids == (rid,)
        assert event.entity == EntityRef("account", rid)
        assert event.customer_key == rid
        assert event.event_id == f"0Mcxx000000000B:1:{rid}"


def test_gap_for_one_opportunity() -> None:
    event = only(decode(pubsub(header(change_type="GAP_UPDATE"), {}, OPPORTUNITY_FIELDS)))
    assert isinstance(event, ResyncRequired)
    assert (event.reason, event.object_type, event.record_ids) == (
        "GAP_UPDATE",
        "Opportunity",
        (OPPORTUNITY_ID,),
    )
    assert event.customer_key is None
    assert event.event_id == f"{TRANSACTION_KEY}:1"


def test_overflow_names_no_record() -> None:
    body = pubsub(header("Account", "GAP_OVERFLOW", ["000000000000000AAA"]), {}, ACCOUNT_FIELDS)
    event = only(decode(body))
    assert isinstance(event, ResyncRequired)
    assert (event.reason, event.object_type, event.record_ids) == ("GAP_OVERFLOW", "Account", ())
    assert event.entity == EntityRef("account", "*")
    assert event.customer_key is None
    # About the whole object: no one customer's event.
    assert event.local_customer is None


def test_wildcard_record_id_requires_a_resync_of_the_object() -> None:
    event = only(decode(cometd(header("Account", "UPDATE", ["001*"], ["Tax_Id__c"]), {})))
    assert isinstance(event, ResyncRequired)
    assert (event.reason, event.record_ids, event.entity.id) == ("WILDCARD_UPDATE", (), "*")


def test_gap_of_other_object_is_ignored() -> None:
    assert decode(cometd(header("Contact", "GAP_UPDATE", ["0035f00002EztxDAAR"]), {})) == []


# ---- values ----------------------------------------------------------------------------------


def created_with_raw_json(members: bytes) -> bytes:
    """A Pub/Sub Opportunity CREATE with JSON members written verbatim (numbers keep their text)."""
    template = pubsub(header(change_type="CREATE"), {}, ["StageName"])
    return template[:-1] + b", " + members + b"}"


@pytest.mark.parametrize(
    ("amount_json", "currency", "minor"),
    [
        (b"1234.56", "USD", 123456),
        (b"0.29", "USD", 29),  # 0.29 * 100 is 28.999999999999996 in floats
        (b"1.1", None, 110),
        (b"1e3", "EUR", 100000),
        (b"-15.5", "USD", -1550),
        (b"0", "USD", 0),
        (b'"19.99"', "USD", 1999),
        (b"5000", "JPY", 5000),
        (b"1.234", "KWD", 1234),
        (b"99999999999999.99", "USD", 9999999999999999),
    ],
)
def test_amount_is_exact_minor_units(amount_json: bytes, currency: str | None, minor: int) -> None:
    currency_json = b', "CurrencyIsoCode": "' + currency.encode() + b'"' if currency else b""
    assert opportunity(decode(created_with_raw_json(b'"Amount": ' + amount_json + currency_json))).amount == minor


@pytest.mark.parametrize(("amount_json", "currency"), [
    (b"1.005", "USD"), (b"0.5", "JPY"), (b"1.00005", None), (b'"NaN"', None), (b'"Infinity"', None), (b"1e40", None),
    (b'"12,5"', None),
])
def test_bad_amount_is_a_decode_error(amount_json: bytes, currency: str | None) -> None:
    currency_json = b', "CurrencyIsoCode": "' + currency.encode() + b'"' if currency else b""
    with pytest.raises(DecodeError) as excinfo:
        decode(created_with_raw_json(b'"Amount": ' + amount_json + currency_json))
    assert excinfo.value.reason in {"invalid_amount", "invalid_value"}


@pytest.mark.parametrize(
    ("amount_json", "currency", "minor", "digits"),
    [
        (b"5000", "JPY", 5000, 0),
        (b"12.5", "USD", 1250, 2),
        (b"1.234", "KWD", 1234, 3),
        # No currency in the event (an amount-only update): the fewest decimals, at least 2, kept exact.
        (b"5000", None, 500000, 2),
        (b"1.234", None, 1234, 3),
        (b"1.2345", None, 12345, 4),
    ],
)
def test_amount_says_which_decimals_it_is_counted_in(amount_json: bytes, currency: str | None, minor: int,
                                                     digits: int) -> None:
    currency_json = b', "CurrencyIsoCode": "' + currency.encode() + b'"' if currency else b""
    event = opportunity(decode(created_with_raw_json(b'"Amount": ' + amount_json + currency_json)))
    assert (event.amount, event.amount_digits) == (minor, digits)


@pytest.mark.parametrize(("quantity_json", "quantity"), [(b"5", 5), (b"5.0", 5), (b"0", 0), (b"1e2", 100),
                                                        (b"null", None)])
def test_quantity_is_a_whole_number_of_units(quantity_json: bytes, quantity: int | None) -> None:
    event = opportunity(decode(created_with_raw_json(b'"TotalOpportunityQuantity": ' + quantity_json)))
    assert event.quantity == quantity and type(event.quantity) is type(quantity)
    assert "quantity" in event.changed


@pytest.mark.parametrize(("quantity_json", "words"), [
    (b"2.5", "not a whole number"), (b"-1", "out of range"), (b"1e300", "out of range"), (b'"3"', "got `str`"),
    (b"true", "got `bool`"),
])
def test_a_fractional_negative_or_mistyped_quantity_is_a_decode_error(quantity_json: bytes, words: str) -> None:
    with pytest.raises(DecodeError) as excinfo:
        decode(created_with_raw_json(b'"TotalOpportunityQuantity": ' + quantity_json))
    assert excinfo.value.reason == "invalid_value"
    assert "TotalOpportunityQuantity" in excinfo.value.detail and words in excinfo.value.detail


def test_a_quantity_update_in_every_shape() -> None:
    changed = header(changed_fields=["TotalOpportunityQuantity", "LastModifiedDate"])
    fields = {"TotalOpportunityQuantity": 12.0, "LastModifiedDate": 1652977990000}
    for body in (cometd(changed, fields), pubsub(changed, fields, OPPORTUNITY_FIELDS),
                 connect(changed, fields, OPPORTUNITY_FIELDS)):
        event = opportunity(decode(body))
        assert (event.quantity, event.changed) == (12, ("quantity",))
        assert_unset_except(event, OPPORTUNITY_VALUE_FIELDS, {"quantity"})
    # Cleared: named as changed and nulled (Pub/Sub), or present as null (CometD without names).
    cleared = pubsub(header(changed_fields=["TotalOpportunityQuantity"], nulledFields=["TotalOpportunityQuantity"]),
                     {}, OPPORTUNITY_FIELDS)
    assert opportunity(decode(cleared)).quantity is None
    assert opportunity(decode(cometd(header(changed_fields=None), {"TotalOpportunityQuantity": None}))).quantity is None


@pytest.mark.parametrize(
    ("close_date", "expected"),
    [
        ("2022-05-31", "2022-05-31"),
        ("2022-05-31T00:00:00.000Z", "2022-05-31"),
        (1653955200000, "2022-05-31"),  # Pub/Sub: epoch ms
        (19143, "2022-05-31"),  # Kafka Connect Date: days since the epoch
        (None, None),
    ],
)
def test_close_date_forms(close_date: Any, expected: str | None) -> None:
    event = opportunity(decode(cometd(header(change_type="CREATE"), {"CloseDate": close_date})))
    assert event.close_date == expected


@pytest.mark.parametrize("close_date", ["31/05/2022", "2022-02-30", "2022-05-31 trailing", 10**18, True])
def test_bad_close_date_is_a_decode_error(close_date: Any) -> None:
    with pytest.raises(DecodeError):
        decode(cometd(header(change_type="CREATE"), {"CloseDate": close_date}))


def test_parse_field_bitmap() -> None:
    assert parse_field_bitmap(["0x400000", "4-0x01"]) == FieldBitmap(fields=(22,), compound={4: (0,)})
    assert parse_field_bitmap(["0x08F81000"]).fields == (12, 19, 20, 21, 22, 23, 27)
    assert parse_field_bitmap(["0x"]) == FieldBitmap(fields=(), compound={})


@pytest.mark.parametrize(
    "bitmap",
    [
        ["0xZZ"],
        ["4-0x01", "0x01"],
        ["0x01", "0-0x01"],
        ["0x01", "4-0x01", "4-0x02"],
        ["0x01", "4-01"],
        ["0x01", "Name"],
    ],
)
def test_malformed_bitmap_is_a_decode_error(bitmap: list[str]) -> None:
    with pytest.raises(DecodeError) as excinfo:
        decode(pubsub(header(changed_fields=bitmap), {}, OPPORTUNITY_FIELDS))
    assert excinfo.value.reason == "invalid_field_list"


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "invalid_json"),
        (b"not json", "invalid_json"),
        (b'{"data": ', "invalid_json"),
        (b"[1, 2]", "invalid_message"),
        (b'"text"', "invalid_message"),
        (b"{}", "unknown_shape"),
        (b'{"Name": "Acme"}', "unknown_shape"),
        (b'{"data": {"schema": "x"}, "channel": "/data/AccountChangeEvent"}', "missing_payload"),
        (b'{"data": {"payload": {"Name": "x"}}, "channel": "/data/AccountChangeEvent"}', "missing_header"),
        (
            b'{"_ObjectType": "AccountChangeEvent", "Id": "0015f00002JUXA8AAP", "ReplayId": "1"}',
            "missing_header",
        ),
        (b'{"ChangeEventHeader": {"entityName": "Account"}}', "invalid_message"),
    ],
)
def test_bad_input_is_a_decode_error(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as excinfo:
        decode(body)
    assert excinfo.value.reason == reason
    assert excinfo.value.detail


@pytest.mark.parametrize(
    ("header_fields", "fields", "reason"),
    [
        (header(change_type="MERGE"), {}, "unknown_change_type"),
        (header(record_ids=["not-an-id"]), {}, "invalid_record_id"),
        (header(record_ids=[]), {}, "missing_record_id"),
        (header(change_type="CREATE"), {"AccountId": "nope"}, "invalid_record_id"),
        (header(change_type="CREATE"), {"CurrencyIsoCode": "usd"}, "invalid_currency"),
        (header(change_type="CREATE"), {"IsWon": "yes"}, "invalid_value"),
        (header(change_type="CREATE"), {"Plan__c": 3}, "invalid_value"),
        (header(changed_fields=["Stage Name"]), {}, "invalid_field_list"),
        (header(commitTimestamp=-1), {}, "invalid_message"),
    ],
)
def test_bad_values_are_decode_errors(header_fields: dict[str, Any], fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecodeError) as excinfo:
        decode(cometd(header_fields, fields))
    assert excinfo.value.reason == reason


def test_field_of_another_type_is_an_error_only_for_our_objects() -> None:
    # Contact's Name is a compound field; the codec reads Name as text for accounts.
    compound_name = {"Name": {"Salutation": None, "FirstName": "Brenda", "LastName": "Mcclure"}}
    assert decode(cometd(header("Contact", "CREATE", ["0035f00002EztxDAAR"]), compound_name)) == []
    with pytest.raises(DecodeError) as excinfo:
        decode(cometd(header("Account", "CREATE", [ACCOUNT_ID]), compound_name))
    assert excinfo.value.reason == "invalid_value"
    assert "Account" in excinfo.value.detail and "Name" in excinfo.value.detail


def test_platform_events_in_other_shapes_are_ignored() -> None:
    pubsub_event = {
        "CreatedDate": 1681065100517,
        "CreatedById": "005D0000001cSZs",
        "Printer_Model__c": "XZO-5",
    }
    assert decode(msgspec.json.encode(pubsub_event)) == []
    connect_event = {**pubsub_event, "_ObjectType": "Low_Ink__e", "_EventType": "dffQ2QLzDNHqwB8_sHMxdA"}
    assert decode(msgspec.json.encode(connect_event)) == []


# ---- fuzz: nothing but DecodeError escapes ---------------------------------------------------


@pytest.fixture(scope="module")
def samples(shared_fixtures: Path) -> list[bytes]:
    """Real payloads plus built envelopes around real values: the seeds the fuzzers mutate."""
    directory = salesforce_dir(shared_fixtures)
    bodies = [path.read_bytes() for path in sorted(directory.glob("*.json"))]
    bodies += (directory / "pubsub_lead_conversion_transaction.jsonl").read_bytes().splitlines()
    bodies += list(same_change_in_every_shape().values())
    bodies.append(cometd(header("Account", "DELETE", [ACCOUNT_ID]), {"MasterRecordId": OTHER_ACCOUNT_ID}))
    bodies.append(
        connect(header("Account", "CREATE", [ACCOUNT_ID]), {"Name": "Acme"}, CONNECT_ACCOUNT_FIELDS, flatten=".")
    )
    return bodies


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


def decode_only_raises_decode_error(body: bytes) -> None:
    try:
        events = decode(body)
    except DecodeError as exc:
        assert exc.reason and exc.detail
        return
    for event in events:
        assert model.decode(model.encode(event)) == event


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += paths(child, (*prefix, index))
    return found


def replaced(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = node.copy()
    copy[path[0]] = replaced(node[path[0]], path[1:], value)
    return copy


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(body: bytes) -> None:
    decode_only_raises_decode_error(body)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_real_payloads(samples: list[bytes], data: st.DataObject) -> None:
    body = data.draw(st.sampled_from(samples))
    tree = json.loads(body)
    path = data.draw(st.sampled_from(paths(tree)))
    value = data.draw(json_values)
    decode_only_raises_decode_error(json.dumps(replaced(tree, path, value)).encode())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_byte_edits_of_real_payloads(samples: list[bytes], data: st.DataObject) -> None:
    body = data.draw(st.sampled_from(samples))
    start = data.draw(st.integers(0, len(body)))
    end = data.draw(st.integers(start, min(len(body), start + 8)))
    insert = data.draw(st.binary(max_size=8))
    decode_only_raises_decode_error(body[:start] + insert + body[end:])


def test_an_amount_only_update_is_read_in_the_opportunity_currency() -> None:
    """Pub/Sub sends an amount-only UPDATE without CurrencyIsoCode: the state must not read it as cents."""
    created = opportunity(decode(pubsub(header(change_type="CREATE", commitTimestamp=COMMIT_TIMESTAMP),
                                        {"StageName": "Closed Won", "Amount": 5000, "CurrencyIsoCode": "JPY",
                                         "AccountId": ACCOUNT_ID}, [])))
    updated = opportunity(decode(pubsub(header(changed_fields=["Amount"], commitTimestamp=COMMIT_TIMESTAMP + 1,
                                               sequenceNumber=2), {"Amount": 6000}, ["CurrencyIsoCode", "StageName"])))
    assert (updated.amount, updated.amount_digits, updated.currency) == (600000, 2, UNSET)
    state = empty(ACCOUNT_ID)
    for event in (created, msgspec.structs.replace(updated, customer_key=ACCOUNT_ID)):
        state, _ = apply(state, event)
    opp = state.crm.opportunities[OPPORTUNITY_ID]
    assert (opp.amount_in(opp.currency), opp.currency) == (6000, "JPY")
