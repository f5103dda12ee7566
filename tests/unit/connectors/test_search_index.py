"""The search index's pure parts: normalization, what a state is found by, and when that changes."""

from __future__ import annotations

import pytest

from concord.connectors.search_index import (
    E_EMPTY_QUERY,
    MAX_QUERY,
    QueryError,
    SearchId,
    card_of,
    display_name,
    fold,
    members,
    name_terms,
    query_text,
    terms_changed,
)
from concord.tables.state import Limits, apply
from tests.unit.tables.state_builders import (
    KEY,
    NETSUITE,
    STRIPE,
    ZENDESK,
    account,
    case,
    customer,
    invoice,
    merged,
    opportunity,
    payment,
    sales_order,
    subscription,
)
from tests.unit.tables.state_builders import (
    fold as fold_events,
)


def typical() -> list:
    return [
        account(1, name="Bäckerei Müller GmbH", country="DE"),
        opportunity(2, "006A", stage="Closed Won", is_won=True),
        customer(3, STRIPE, "cus_1", name="Backerei Muller GmbH", email=" Billing@Mueller.example "),
        subscription(4, "active", "sub_1"),
        invoice(5, "in_1"),
        customer(6, ZENDESK, "9", name="Müller", email="support@mueller.example"),
        case(7, "t1"),
        customer(8, NETSUITE, "7", name="Bäckerei Müller GmbH", crm_account_id=KEY),
        invoice(9, "701", system=NETSUITE, billing_invoice_id="in_1"),
        sales_order(10, "so_1"),
        payment(11, "py_1"),
    ]


def ids_of(card) -> set[tuple[str, str, str]]:
    return {(i.system, i.kind, i.id) for i in card.ids}


def test_fold_drops_accents_and_case_and_collapses_whitespace() -> None:
    assert fold("  Bäckerei   MÜLLER\tGmbH ") == "backerei muller gmbh"
    assert fold("Straße") == "strasse"
    assert fold("Ｃａｆé") == "cafe"  # compatibility forms too
    assert fold("a\x00b") == "ab"  # never a separator of the index's members


def test_query_text_strips_and_refuses_empty_long_and_control_characters() -> None:
    assert query_text("  cus_1 ") == "cus_1"
    for bad in (None, "", "   "):
        with pytest.raises(QueryError, match="empty query"):
            query_text(bad)
    assert E_EMPTY_QUERY.startswith("empty query")
    with pytest.raises(QueryError, match=f"at most {MAX_QUERY}"):
        query_text("x" * (MAX_QUERY + 1))
    with pytest.raises(QueryError, match="control characters"):
        query_text("cus_1\x00001A")


def test_a_state_is_found_by_every_id_it_holds_its_emails_and_names() -> None:
    card = card_of(fold_events(typical()))
    assert card is not None and card.key == KEY
    assert ids_of(card) == {
        ("salesforce", "account", KEY), ("salesforce", "opportunity", "006A"),
        ("stripe", "customer", "cus_1"), ("stripe", "subscription", "sub_1"), ("stripe", "invoice", "in_1"),
        ("zendesk", "organization", "9"), ("zendesk", "ticket", "t1"),
        ("netsuite", "customer", "7"), ("netsuite", "invoice", "701"), ("netsuite", "invoice_external_id", "in_1"),
        ("netsuite", "sales_order", "so_1"),
    }  # payments are not searched for; the NetSuite customer's external id is the key itself
    assert card.emails == ("billing@mueller.example", "support@mueller.example")  # lower-cased, stripped
    assert card.name == "Bäckerei Müller GmbH"  # the CRM's
    assert card.names == ("Bäckerei Müller GmbH", "Müller")  # one per folded form
    assert display_name(fold_events(typical())) == card.name


def test_name_terms_start_at_each_word_so_a_later_word_is_found_by_its_prefix() -> None:
    assert name_terms("Bäckerei Müller GmbH") == ["backerei muller gmbh", "muller gmbh", "gmbh"]
    assert len(name_terms("a b c d e f")) == 4
    found = members(card_of(fold_events(typical())))
    assert b"muller gmbh\x00" + KEY.encode() in found.names
    assert b"in_1\x00" + KEY.encode() + b"\x00stripe\x00invoice" in found.ids
    assert b"in_1\x00" + KEY.encode() + b"\x00netsuite\x00invoice_external_id" in found.ids
    assert b"billing@mueller.example\x00" + KEY.encode() in found.emails
    assert members(None).ids == frozenset()


def test_deleted_records_are_not_found_and_a_merged_away_account_is_not_found_at_all() -> None:
    state = fold_events([*typical(), subscription(20, "canceled", "sub_1", deleted=True),
                         customer(21, STRIPE, "cus_1", deleted=True)])
    card = card_of(state)
    assert card is not None
    assert ("stripe", "subscription", "sub_1") not in ids_of(card)
    assert ("stripe", "customer", "cus_1") not in ids_of(card)
    assert card.emails == ("support@mueller.example",)  # the deleted Stripe customer's email went with it
    loser = fold_events([account(1, name="Old"), merged(5, "001W", (KEY,))])
    assert loser.merged_into == "001W" and card_of(loser) is None
    winner = card_of(fold_events([merged(5, KEY, ("001L",))]))
    assert winner is not None and SearchId(id="001L", system="salesforce", kind="merged_account") in winner.ids


def test_an_evicted_invoice_leaves_the_card() -> None:
    limits = Limits(closed_invoices=1)
    state = fold_events([invoice(1, "in_old", "paid"), invoice(2, "in_new", "paid")], limits=limits)
    card = card_of(state)
    assert card is not None
    assert {i.id for i in card.ids if i.kind == "invoice"} == {"in_new"}


def test_terms_change_only_when_an_id_comes_or_goes_or_a_name_or_email_changes() -> None:
    state = fold_events(typical())

    def after(event):  # noqa: ANN001, ANN202
        return apply(state, event)[0]

    # An invoice paid, a subscription's plan, a ticket solved, an account's country: same ids, names, emails.
    for event in (invoice(30, "in_1", "paid"), subscription(30, "active", "sub_1", plan="max"),
                  case(30, "t1", "solved"), account(30, country="FR")):
        new = after(event)
        assert new is not state
        assert not terms_changed(state, new), event
        assert card_of(new) == card_of(state)
    # A new invoice, a deleted ticket, a renamed account, a changed email, an ERP invoice's external id.
    for event in (invoice(30, "in_2"), case(30, "t1", deleted=True), account(30, name="Müller & Söhne"),
                  customer(30, STRIPE, "cus_1", email="ap@mueller.example"),
                  invoice(30, "701", system=NETSUITE, billing_invoice_id="in_9")):
        new = after(event)
        assert terms_changed(state, new), event
        assert card_of(new) != card_of(state)
    assert not terms_changed(state, state)
