"""Salesforce REST records (`decode_record`): the events of a change event carrying the whole record.

A re-read after a gap event (and a SOQL query record) is an sObject in the REST shape. Its events must
be those the CDC change event of the same record gives, with every field known: the REST records here
restate the values of the real change events in ../shared/fixtures/salesforce, in REST form.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec import UNSET

from concord.codecs.config import CodecConfig
from concord.codecs.errors import DecodeError
from concord.codecs.model import AccountMerged, AccountUpserted, CanonicalEvent, OpportunityChanged, Version
from concord.codecs.salesforce import decode, decode_record, record_fields

ACCOUNT_VALUES = ("name", "country", "currency", "tax_id", "address", "payment_terms")
OPPORTUNITY_VALUES = ("account_id", "stage", "is_won", "is_closed", "amount", "currency", "close_date", "plan",
                      "amount_digits", "quantity")
COMMON = ("entity", "customer_key", "local_customer", "source", "deleted")


def rest(object_type: str, record_id: str, **fields: Any) -> bytes:
    """An sObject as `GET /services/data/v62.0/sobjects/<type>/<id>` returns it."""
    url = f"/services/data/v62.0/sobjects/{object_type}/{record_id}"
    return msgspec.json.encode({"attributes": {"type": object_type, "url": url}, "Id": record_id, **fields})


def only(events: list[CanonicalEvent]) -> Any:
    assert len(events) == 1, events
    return events[0]


def assert_same_record(read: Any, change: Any, values: tuple[str, ...]) -> None:
    """`read` (a REST record's event) knows every field, and agrees with `change` on every field it carries."""
    for name in (*values, *COMMON):
        assert getattr(read, name) is not UNSET, name
        if getattr(change, name) is not UNSET:
            assert getattr(read, name) == getattr(change, name), name


def test_a_rest_opportunity_reads_as_the_change_event_that_created_it(shared_fixtures: Path) -> None:
    cdc = json.loads((shared_fixtures / "salesforce" / "pubsub_OpportunityChangeEvent_CREATE.json").read_text())
    created = only(decode(json.dumps(cdc).encode()))
    body = rest("Opportunity", "006SM0000001Tb3YAE", AccountId=cdc["AccountId"], StageName=cdc["StageName"],
                IsWon=cdc["IsWon"], IsClosed=cdc["IsClosed"], CurrencyIsoCode="USD", Amount=cdc["Amount"],
                CloseDate="2022-05-31", Plan__c=None, TotalOpportunityQuantity=cdc["TotalOpportunityQuantity"],
                IsDeleted=False,
                LastModifiedDate="2022-05-19T16:32:13.000+0000", SystemModstamp="2022-05-19T16:32:13.000+0000")
    read = only(decode_record(body))
    assert isinstance(read, OpportunityChanged) and isinstance(created, OpportunityChanged)
    assert_same_record(read, created, OPPORTUNITY_VALUES)
    assert (read.amount, read.amount_digits, read.close_date) == (4_000_000, 2, "2022-05-31")
    assert read.occurred_at == created.occurred_at == 1652977933000
    # Timed to the second, the read holds every change of that second made before it: versioned at its end.
    assert read.version == Version(1652977933999, 0)
    assert read.event_id == "sobject:006SM0000001Tb3YAE:1652977933000" and read.correlation_id == ""
    assert decode(body) == [read]  # the raw topic's decoder tells the REST shape apart


def test_a_rest_account_reads_as_the_change_event_that_created_it(shared_fixtures: Path) -> None:
    line = (shared_fixtures / "salesforce" / "pubsub_lead_conversion_transaction.jsonl").read_text().splitlines()[0]
    cdc = json.loads(line)
    created = only(decode(line.encode()))
    address = cdc["BillingAddress"]
    body = rest("Account", "0015f00002JUX1JAAX", Name=cdc["Name"], CurrencyIsoCode="USD",
                BillingStreet=address["Street"], BillingCity=address["City"], BillingState=address["State"],
                BillingPostalCode=address["PostalCode"], BillingCountry=address["Country"],
                BillingAddress={"street": None, "city": None, "state": "IL", "postalCode": None, "country": "USA",
                                "latitude": None, "longitude": None, "geocodeAccuracy": None},
                Tax_Id__c=None, Payment_Terms__c=None, IsDeleted=False, MasterRecordId=None,
                LastModifiedDate="2024-04-26T17:49:39.000+0000", SystemModstamp="2024-04-26T17:49:39.000+0000")
    read = only(decode_record(body))
    assert isinstance(read, AccountUpserted) and isinstance(created, AccountUpserted)
    assert_same_record(read, created, ACCOUNT_VALUES)
    assert (read.name, read.country, read.address) == ("Cadinal Inc.", "USA", "IL, USA")
    assert (read.tax_id, read.payment_terms) == (None, None)  # known empty, not unknown
    assert read.changed == ACCOUNT_VALUES


def test_the_record_is_as_of_its_last_change_by_anyone_and_occurred_at_its_last_modification() -> None:
    body = rest("Account", "0015f00002JUX1JAAX", Name="Acme", LastModifiedDate="2025-03-31T12:00:00.000+0000",
                SystemModstamp="2025-03-31T12:05:00.000+0000")
    read = only(decode_record(body))
    assert read.occurred_at == 1743422400000
    assert read.version == Version(1743422700999, 0)  # a system change later: SystemModstamp, its second's end
    assert read.event_id == "sobject:0015f00002JUX1JAAX:1743422700000"
    only_modstamp = only(decode_record(rest("Account", "0015f00002JUX1JAAX", SystemModstamp="2025-03-31T12:05:00Z")))
    assert (only_modstamp.occurred_at, only_modstamp.version.ts) == (1743422700000, 1743422700999)
    epoch_ms = only(decode_record(rest("Account", "0015f00002JUX1JAAX", LastModifiedDate=1743422400000)))
    assert epoch_ms.occurred_at == 1743422400000


def test_fields_the_record_does_not_hold_stay_unknown() -> None:
    # A SOQL query that selected only Name: the rest is not read, so it is UNSET, not None.
    read = only(decode_record(rest("Account", "0015f00002JUX1JAAX", Name="Acme",
                                   BillingAddress={"street": "1 Main St", "country": "US"},
                                   LastModifiedDate="2025-03-31T12:00:00.000+0000")))
    assert read.name == "Acme" and read.changed == ("name",)
    for name in ACCOUNT_VALUES[1:]:
        assert getattr(read, name) is UNSET, name  # the REST compound address is not read


def test_a_deleted_record_reads_as_a_deletion_and_a_merged_one_as_a_merge() -> None:
    tombstone = rest("Account", "0015f00002JUX1JAAX", IsDeleted=True, SystemModstamp="2025-03-31T12:00:01.000+0000")
    deleted = only(decode_record(tombstone))
    assert isinstance(deleted, AccountUpserted) and deleted.deleted
    assert deleted.event_id == "sobject:0015f00002JUX1JAAX:1743422401000:deleted"
    assert all(getattr(deleted, name) is UNSET for name in ACCOUNT_VALUES)
    merged = only(decode_record(rest("Account", "0015f00002JUX1JAAX", IsDeleted=True,
                                     MasterRecordId="0015f00002JUXA8AAP",
                                     LastModifiedDate="2025-03-31T12:00:01.000+0000")))
    assert isinstance(merged, AccountMerged)
    assert (merged.winner_id, merged.loser_ids, merged.customer_key) == (
        "0015f00002JUXA8AAP", ("0015f00002JUX1JAAX",), "0015f00002JUXA8AAP")
    gone = only(decode_record(rest("Opportunity", "006SM0000001Tb3YAE", IsDeleted=True,
                                   SystemModstamp="2025-03-31T12:00:01.000+0000")))
    assert isinstance(gone, OpportunityChanged) and gone.deleted and gone.customer_key is None


def test_asking_for_record_fields_gives_a_record_with_every_field_known() -> None:
    for object_type, record_id, values in (("Account", "0015f00002JUX1JAAX", ACCOUNT_VALUES),
                                           ("Opportunity", "006SM0000001Tb3YAE", OPPORTUNITY_VALUES)):
        fields = dict.fromkeys(record_fields(object_type, "Product__c"))
        fields.update(Id=record_id, LastModifiedDate="2025-03-31T12:00:00.000+0000")
        body = rest(object_type, record_id, **{k: v for k, v in fields.items() if k != "Id"})
        read = only(decode_record(body, CodecConfig(salesforce_plan_field="Product__c")))
        assert all(getattr(read, name) is not UNSET for name in values), read
    assert record_fields("Opportunity", "Product__c")[-1] == "Product__c"
    assert "Product__c" not in record_fields("Account", "Product__c")


def test_the_plan_is_read_from_the_configured_field() -> None:
    body = rest("Opportunity", "006SM0000001Tb3YAE", Product__c="enterprise", Plan__c="pro",
                LastModifiedDate="2025-03-31T12:00:00.000+0000")
    assert only(decode_record(body, CodecConfig(salesforce_plan_field="Product__c"))).plan == "enterprise"
    assert only(decode(body, CodecConfig(salesforce_plan_field="Product__c"))).plan == "enterprise"
    assert only(decode_record(body)).plan == "pro"


def test_the_quantity_is_read_whole_like_the_amount() -> None:
    def read(quantity: Any) -> Any:
        return only(decode_record(rest("Opportunity", "006SM0000001Tb3YAE", TotalOpportunityQuantity=quantity,
                                       Amount=1200.0, LastModifiedDate="2025-03-31T12:00:00.000+0000")))

    assert (read(3.0).quantity, read(3.0).changed) == (3, ("amount", "quantity"))
    assert read(None).quantity is None  # no products on the deal (or cleared)
    assert only(decode_record(rest("Opportunity", "006SM0000001Tb3YAE",
                                   LastModifiedDate="2025-03-31T12:00:00.000+0000"))).quantity is UNSET
    with pytest.raises(DecodeError) as caught:
        read(2.5)
    assert caught.value.reason == "invalid_value" and "TotalOpportunityQuantity" in caught.value.detail
    assert "TotalOpportunityQuantity" in record_fields("Opportunity")


def test_records_of_other_objects_decode_to_nothing() -> None:
    assert decode_record(rest("Contact", "0035f00002EztxDAAR", Name="Brenda Mcclure")) == []
    assert decode(rest("Contact", "0035f00002EztxDAAR", LastModifiedDate="2025-03-31T12:00:00Z")) == []


@pytest.mark.parametrize(("record", "reason", "names"), [
    ({"attributes": {"type": "Account"}, "LastModifiedDate": "2025-03-31T12:00:00Z"}, "missing_record_id", "Id"),
    ({"attributes": {"type": "Account"}, "Id": "001-not-an-id", "LastModifiedDate": "2025-03-31T12:00:00Z"},
     "invalid_record_id", "Account.Id"),
    ({"attributes": {"type": "Account"}, "Id": "0015f00002JUX1JAAX"}, "missing_field", "LastModifiedDate"),
    ({"attributes": {"type": "Account"}, "Id": "0015f00002JUX1JAAX", "LastModifiedDate": "yesterday"},
     "bad_time", "LastModifiedDate"),
    ({"attributes": {"type": "Account"}, "Id": "0015f00002JUX1JAAX", "LastModifiedDate": "2025-03-31T12:00:00"},
     "bad_time", "UTC offset"),
    ({"attributes": {}, "Id": "0015f00002JUX1JAAX"}, "missing_field", "type"),
    ({"attributes": {"type": "Opportunity"}, "Id": "006SM0000001Tb3YAE", "Amount": "forty",
      "LastModifiedDate": "2025-03-31T12:00:00Z"}, "invalid_value", "Amount"),
    ({"attributes": {"type": "Opportunity"}, "Id": "006SM0000001Tb3YAE", "Amount": 1.005, "CurrencyIsoCode": "USD",
      "LastModifiedDate": "2025-03-31T12:00:00Z"}, "invalid_amount", "more than 2 decimals"),
    ({"attributes": {"type": "Opportunity"}, "Id": "006SM0000001Tb3YAE", "CloseDate": "31/03/2025",
      "LastModifiedDate": "2025-03-31T12:00:00Z"}, "invalid_date", "CloseDate"),
    ({"attributes": {"type": "Account"}, "Id": "0015f00002JUX1JAAX", "CurrencyIsoCode": "usd",
      "LastModifiedDate": "2025-03-31T12:00:00Z"}, "invalid_currency", "CurrencyIsoCode"),
    ({"attributes": {"type": "Account"}, "Id": "0015f00002JUX1JAAX", "Name": {"FirstName": "A"},
      "LastModifiedDate": "2025-03-31T12:00:00Z"}, "invalid_value", "Name"),
])
def test_what_cannot_be_read_is_refused_with_a_named_reason(record: dict[str, Any], reason: str, names: str) -> None:
    body = msgspec.json.encode(record)
    for reader in (decode_record, decode):  # the same through the raw topic's decoder
        with pytest.raises(DecodeError) as caught:
            reader(body)
        assert caught.value.reason == reason and names in caught.value.detail, caught.value
        assert "forty" not in caught.value.detail and "yesterday" not in caught.value.detail  # no payload value


def test_what_is_not_a_record_is_refused_too() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_record(b'{"attributes": {"type": "Account"}')
    assert caught.value.reason == "invalid_json"
    with pytest.raises(DecodeError) as caught:
        decode_record(b'[1, 2]')
    assert caught.value.reason == "invalid_value"
