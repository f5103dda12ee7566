"""`apply(state, event, limits)`: per-kind transitions, dedup, watermarks, bounds, and order independence."""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concord.bench.workload import history as typical_history
from concord.codecs.model import CanonicalEvent, Platform
from concord.drift.sections import sections_of
from concord.tables.state import (
    DEFAULT_LIMITS,
    ZERO,
    CustomerState,
    Limits,
    apply,
    dump,
    empty,
    load,
)
from tests.unit.tables.state_builders import (
    KEY,
    NETSUITE,
    STRIPE,
    ZENDESK,
    account,
    case,
    customer,
    entitlement,
    flags,
    fold,
    invoice,
    merged,
    opportunity,
    payment,
    refund,
    resync,
    sales_order,
    subscription,
)


def records(state: CustomerState) -> tuple[Any, ...]:
    """What a state knows of the customer's records, without the bookkeeping of the events seen."""
    return state.crm, state.billing, state.support, state.erp, state.merged_into, state.merged_stamp


def step(state: CustomerState, event: CanonicalEvent, limits: Limits = DEFAULT_LIMITS) -> CustomerState:
    """Apply an event that must change a record."""
    state, changed = apply(state, event, limits)
    assert changed, event
    return state


# ---------------------------------------------------------------- CRM: per-field watermarks


def test_account_partial_updates_change_only_the_fields_they_carry() -> None:
    state = fold([account(1, name="Acme", country="US", currency="USD", tax_id="T1"), account(2, name="Acme Inc")])
    acc = state.crm.account
    assert acc is not None
    assert (acc.name, acc.country, acc.currency, acc.tax_id) == ("Acme Inc", "US", "USD", "T1")
    assert acc.address is None and not acc.deleted


def test_account_older_change_to_another_field_is_not_lost() -> None:
    state = step(fold([account(5, name="Acme Inc")]), account(3, country="DE"))
    assert state.crm.account is not None
    assert (state.crm.account.name, state.crm.account.country) == ("Acme Inc", "DE")


def test_account_older_change_to_the_same_field_is_ignored() -> None:
    before = fold([account(5, name="Acme Inc")])
    after, changed = apply(before, account(3, name="Acme"))
    assert not changed
    assert records(after) == records(before)


def test_account_older_change_applies_only_to_its_fields_that_are_older() -> None:
    state = step(fold([account(5, name="New"), account(2, country="US")]), account(3, name="Old", country="DE"))
    assert state.crm.account is not None
    assert (state.crm.account.name, state.crm.account.country) == ("New", "DE")


def test_account_none_clears_a_field_and_delete_survives_an_older_edit() -> None:
    state = fold([account(1, name="Acme", tax_id="T1"), account(2, tax_id=None), account(4, deleted=True)])
    state = step(state, account(3, name="Acme Old"))
    acc = state.crm.account
    assert acc is not None
    assert (acc.name, acc.tax_id, acc.deleted) == ("Acme Old", None, True)


def test_account_equal_versions_resolve_the_same_in_either_order() -> None:
    first, second = account(7, name="A", event_id="evt_a"), account(7, name="B", event_id="evt_b")
    assert fold([first, second]) == fold([second, first])


def test_opportunity_fields_are_watermarked_per_opportunity_and_per_field() -> None:
    state = fold([
        opportunity(1, stage="Prospecting", amount=100_00, currency="USD"),
        opportunity(4, stage="Closed Won", is_won=True, is_closed=True),
        opportunity(2, stage="Negotiation", amount=120_00),  # stage is older than what we hold, amount is not
        opportunity(3, "006B", stage="Qualification", plan="pro"),
    ])
    won, other = state.crm.opportunities["006A"], state.crm.opportunities["006B"]
    assert (won.stage, won.is_won, won.is_closed, won.amount, won.currency) == ("Closed Won", True, True, 120_00, "USD")
    assert (other.id, other.stage, other.plan, other.amount) == ("006B", "Qualification", "pro", None)


def test_opportunity_amount_is_read_in_the_currency_that_holds() -> None:
    # An amount-only update names no currency: the codec counted 123 (JPY) in 2 decimals.
    created = opportunity(1, amount=100, currency="JPY", amount_digits=0)
    amount_only = opportunity(2, amount=12300, amount_digits=2)
    for history in ([created, amount_only], [amount_only, created]):
        opp = fold(history).crm.opportunities["006A"]
        assert (opp.amount_in(opp.currency), opp.currency) == (123, "JPY")
    # A currency-only change keeps the number (123 JPY becomes 123.00 USD, as Salesforce shows it).
    moved = fold([created, amount_only, opportunity(3, currency="USD")]).crm.opportunities["006A"]
    assert moved.amount_in(moved.currency) == 123_00
    # States and events from before `amount_digits` read the amount as stored.
    legacy = fold([opportunity(1, amount=12300, currency="JPY")]).crm.opportunities["006A"]
    assert legacy.amount_in("JPY") == 12300


def test_opportunity_quantity_is_stamped_like_the_other_fields() -> None:
    history = [opportunity(1, stage="Closed Won", quantity=5), opportunity(3, quantity=8), opportunity(2, quantity=6)]
    for events in (history, history[::-1]):
        opp = fold(events).crm.opportunities["006A"]
        assert (opp.quantity, opp.stamp_of("quantity").ts, opp.stage) == (8, 3, "Closed Won")
    cleared = fold([*history, opportunity(4, quantity=None)]).crm.opportunities["006A"]
    assert cleared.quantity is None and cleared.stamp_of("quantity").ts == 4
    untouched = fold([*history, opportunity(5, stage="Closed Lost")]).crm.opportunities["006A"]
    assert untouched.quantity == 8  # a change that does not carry the quantity keeps it


def test_an_opportunity_stored_before_its_quantity_still_loads() -> None:
    from concord.tables.state import Crm, Opportunity

    opp = fold([opportunity(1, stage="Closed Won", amount=100_00, currency="USD", amount_digits=2)]
               ).crm.opportunities["006A"]
    encoded = msgspec.msgpack.decode(msgspec.msgpack.encode(opp))
    assert len(encoded) == len(msgspec.structs.fields(Opportunity)) and encoded[-1] is None  # quantity: last
    stored = msgspec.msgpack.encode([None, {"006A": encoded[:-1]}])  # a Crm as stored before the quantity
    loaded = msgspec.msgpack.decode(stored, type=Crm).opportunities["006A"]
    assert loaded == opp and loaded.quantity is None and loaded.stamp_of("quantity") == ZERO
    state = msgspec.structs.replace(empty(KEY), crm=msgspec.structs.replace(empty(KEY).crm, opportunities={
        "006A": loaded}))
    assert load(dump(state)) == state
    assert step(state, opportunity(2, quantity=3)).crm.opportunities["006A"].quantity == 3


def test_a_change_stamps_all_the_fields_it_sets_at_once() -> None:
    state = fold([account(1, name="Acme", country="US"), account(2, name="Acme Inc")])
    acc = state.crm.account
    assert acc is not None
    assert [s.ts for s, _ in acc.stamps] == [1, 2]  # one stamp per change, not per field
    assert (acc.stamp_of("name").ts, acc.stamp_of("country").ts, acc.stamp_of("tax_id")) == (2, 1, ZERO)
    assert acc.stamp.ts == 2


def test_a_stamp_whose_fields_were_all_set_again_is_dropped() -> None:
    state = fold([account(1, name="Acme", country="US"), account(2, name="Acme Inc"), account(3, country="DE")])
    acc = state.crm.account
    assert acc is not None
    assert [s.ts for s, _ in acc.stamps] == [2, 3]
    assert (acc.stamp_of("name").ts, acc.stamp_of("country").ts) == (2, 3)


def test_an_older_change_takes_its_place_among_the_stamps() -> None:
    state = fold([account(5, name="Acme Inc"), account(1, name="Acme", country="US"), account(3, tax_id="T1")])
    acc = state.crm.account
    assert acc is not None
    assert [s.ts for s, _ in acc.stamps] == [1, 3, 5]
    assert [acc.stamp_of(f).ts for f in ("name", "country", "tax_id", "address")] == [5, 1, 3, 0]


def test_an_exact_tie_of_stamps_keeps_one_stamp() -> None:
    # Two changes at one version whose event ids hash alike in the 32 bits of the tie-break.
    state = fold([account(3, name="Old", country="DE"), account(7, name="A", event_id="evt_1fdc0ee9"),
                  account(7, country="US", event_id="evt_5fb19e8e")])
    acc = state.crm.account
    assert acc is not None
    assert len(acc.stamps) == 1 and acc.stamp_of("name") == acc.stamp_of("country") == acc.stamp


# ---------------------------------------------------------------- customers per system


@pytest.mark.parametrize(("system", "section", "attr"), [
    (STRIPE, "billing", "customers"),
    (ZENDESK, "support", "organizations"),
    (NETSUITE, "erp", "customers"),
])
def test_customer_goes_to_its_system_section(system: Platform, section: str, attr: str) -> None:
    state = fold([customer(1, system, name="Acme", email="a@acme.test", crm_account_id=KEY),
                  customer(2, system, name="Acme Inc", email="billing@acme.test", crm_account_id=KEY)])
    party = getattr(getattr(state, section), attr)
    (only,) = party.values()
    assert (only.name, only.email, only.crm_account_id, only.deleted) == ("Acme Inc", "billing@acme.test", KEY, False)
    stale, changed = apply(state, customer(1, system, name="Acme", event_id="late"))
    assert not changed and records(stale) == records(state)
    others = {"billing": state.billing.customers, "support": state.support.organizations, "erp": state.erp.customers}
    assert [name for name, found in others.items() if found] == [section]


def test_zendesk_partial_organization_keeps_the_fields_it_leaves_unset() -> None:
    full = customer(1, ZENDESK, name="Acme", email="help@acme.test", country="US")
    partial = customer(2, ZENDESK, name="Acme Inc", crm_account_id=KEY)  # email and country UNSET
    for history in ([full, partial], [partial, full]):
        org = fold(history).support.organizations["9"]
        assert (org.name, org.email, org.country, org.crm_account_id) == ("Acme Inc", "help@acme.test", "US", KEY)


def test_deleted_customer_stub_keeps_the_last_known_fields() -> None:
    snapshot = customer(1, STRIPE, name="Acme", email="a@acme.test")
    stub = customer(2, STRIPE, deleted=True)
    for history in ([snapshot, stub], [stub, snapshot]):
        cus = fold(history).billing.customers["cus_1"]
        assert (cus.name, cus.email, cus.deleted) == ("Acme", "a@acme.test", True)


# ---------------------------------------------------------------- whole-record kinds


def test_subscription_newest_change_wins_with_its_source_time() -> None:
    state = fold([subscription(1, "trialing", occurred_at=100), subscription(3, "active", occurred_at=300, quantity=5),
                  subscription(2, "past_due", occurred_at=200)])
    sub = state.billing.subscriptions["sub_1"]
    assert (sub.status, sub.quantity, sub.plan, sub.since, sub.customer_id) == ("active", 5, "pro", 300, "cus_1")


@pytest.mark.parametrize(("system", "section"), [(STRIPE, "billing"), (NETSUITE, "erp")])
def test_invoice_goes_to_billing_or_erp(system: Platform, section: str) -> None:
    state = fold([
        invoice(1, "in_1", "open", system, total=1200, tax=200, due_at=50, billing_invoice_id="in_1"),
        invoice(3, "in_1", "paid", system, total=1200, tax=200, due_at=50, paid_at=300, billing_invoice_id="in_1"),
        invoice(2, "in_1", "open", system, total=999),
    ])
    inv = getattr(state, section).invoices["in_1"]
    assert (inv.status, inv.total, inv.tax, inv.paid_at, inv.billing_invoice_id) == ("paid", 1200, 200, 300, "in_1")
    other = state.erp if section == "billing" else state.billing
    assert other.invoices == {}


@pytest.mark.parametrize(("billing_invoice_id", "occurred_at"), [("in_1", 5), ("in_9", 3), (None, 7)])
def test_invoice_values_stored_once_read_back_as_sent(billing_invoice_id: str | None, occurred_at: int) -> None:
    state = fold([invoice(5, "in_1", "paid", NETSUITE, billing_invoice_id=billing_invoice_id, occurred_at=occurred_at)])
    inv = load(dump(state)).erp.invoices["in_1"]
    assert (inv.billing_invoice_id, inv.since, inv.stamp.ts) == (billing_invoice_id, occurred_at, 5)


@pytest.mark.parametrize(("system", "section"), [(STRIPE, "billing"), (NETSUITE, "erp")])
def test_payment_goes_to_billing_or_erp(system: Platform, section: str) -> None:
    state = fold([payment(1, "py_1", "pending", system, invoice_id="in_1"),
                  payment(2, "py_1", "succeeded", system, invoice_id="in_1", amount=1500)])
    pay = getattr(state, section).payments["py_1"]
    assert (pay.status, pay.amount, pay.invoice_id) == ("succeeded", 1500, "in_1")


def test_refunds_go_to_billing_and_credit_memos_to_erp() -> None:
    state = fold([
        refund(1, "re_1", "pending", charge_id="ch_1"),
        refund(2, "re_1", "succeeded", charge_id="ch_1", invoice_id="in_1"),
        refund(3, "cn_1", "issued", document="credit_note", invoice_id="in_1"),
        refund(4, "cm_1", "open", NETSUITE, billing_refund_id="re_1", amount=400),
    ])
    assert {k: (r.document, r.status) for k, r in state.billing.refunds.items()} == {
        "re_1": ("refund", "succeeded"), "cn_1": ("credit_note", "issued")}
    memo = state.erp.credit_memos["cm_1"]
    assert (memo.document, memo.billing_refund_id, memo.amount) == ("credit_memo", "re_1", 400)
    assert "cm_1" not in state.billing.refunds


def test_a_deleted_credit_memo_or_payment_stays_deleted_whatever_arrives_late() -> None:
    edit = refund(4, "cm_1", "open", NETSUITE, billing_refund_id="re_1", amount=400)
    delete = refund(6, "cm_1", "void", NETSUITE, seq=1, amount=0, currency="XXX", deleted=True)
    for history in ([edit, delete], [delete, edit]):
        assert fold(history).erp.credit_memos["cm_1"].deleted
    paid = payment(4, "9001", "deposited", NETSUITE, invoice_id="555")
    gone = payment(6, "9001", "deposited", NETSUITE, invoice_id="555", deleted=True)
    assert fold([gone, paid]).erp.payments["9001"].deleted


def test_entitlement_newest_change_wins() -> None:
    state = fold([entitlement(1, "active", tier="pro", end_date="2026-01-31", tags=("paid",)),
                  entitlement(3, "suspended", tier="pro"), entitlement(2, "active", tier="enterprise")])
    ent = state.support.entitlements["9"]
    assert (ent.status, ent.tier, ent.end_date, ent.tags) == ("suspended", "pro", None, ())


def test_case_newest_change_wins() -> None:
    state = fold([case(1, "t1", "new", subject="Login", priority="high", created_at=1),
                  case(3, "t1", "solved", subject="Login", priority="high", created_at=1),
                  case(2, "t1", "pending", subject="Login"), case(2, "t2", "open")])
    assert {k: c.status for k, c in state.support.cases.items()} == {"t1": "solved", "t2": "open"}
    assert state.support.cases["t1"].priority == "high"


def test_financial_flags_newest_change_wins() -> None:
    state = fold([flags(2, overdue_balance=5000, currency="USD", credit_hold=True),
                  flags(1, overdue_balance=0, currency="USD", credit_hold=False)])
    flag = state.erp.flags["7"]
    assert (flag.overdue_balance, flag.credit_hold) == (5000, True)


def test_sales_order_newest_change_wins() -> None:
    state = fold([sales_order(1, opportunity_id="006A", status="pending", total=1200, currency="USD"),
                  sales_order(2, opportunity_id="006A", status="billed", total=1200, currency="USD")])
    order = state.erp.sales_orders["so_1"]
    assert (order.status, order.opportunity_id, order.total) == ("billed", "006A", 1200)


# ---------------------------------------------------------------- identity and no-op kinds


def test_merge_retires_the_loser_and_the_winner_remembers_what_it_absorbed() -> None:
    merge = merged(5, winner="001W", losers=(KEY, "001X"))
    loser = step(fold([account(1, name="Acme")]), merge)
    assert (loser.merged_into, loser.crm.account is not None, loser.absorbed) == ("001W", True, ())
    winner_before = fold([account(1, name="Acme W")], empty("001W"))
    winner_after, changed = apply(winner_before, merge)
    assert changed and records(winner_after) == records(winner_before)
    assert winner_after.merged_into is None
    assert {loser for loser, _ in winner_after.absorbed} == {KEY, "001X"}
    again, changed = apply(winner_after, msgspec.structs.replace(merge, event_id="again"))
    assert not changed and again.absorbed == winner_after.absorbed


def test_an_older_merge_does_not_replace_a_newer_one() -> None:
    state = fold([merged(5, "001W", (KEY,)), merged(3, "001OLD", (KEY,))])
    assert state.merged_into == "001W"


def test_resync_required_changes_no_record() -> None:
    before = fold([account(1, name="Acme"), invoice(2)])
    after, changed = apply(before, resync(3))
    assert not changed and records(after) == records(before)
    assert sections_of(resync(3)) == frozenset()  # no rule needs to run again


# ---------------------------------------------------------------- dedup and stale events

_ONE_OF_EACH: list[CanonicalEvent] = [
    account(5, name="Acme"), opportunity(5, stage="Closed Won"), customer(5, STRIPE, name="Acme"),
    customer(5, ZENDESK, name="Acme"), customer(5, NETSUITE, name="Acme"), subscription(5), invoice(5),
    invoice(5, system=NETSUITE), payment(5), payment(5, system=NETSUITE), refund(5), refund(5, system=NETSUITE),
    entitlement(5), case(5), flags(5, credit_hold=True), sales_order(5, status="billed"),
    merged(5, "001W", (KEY,)),
]


@pytest.mark.parametrize("event", _ONE_OF_EACH, ids=lambda e: f"{type(e).__name__}:{e.entity.id}:{e.source}")
def test_a_duplicate_is_dropped_and_returns_the_same_state(event: CanonicalEvent) -> None:
    once = step(empty(KEY), event)
    twice, changed = apply(once, event)
    assert not changed and twice is once


def test_a_duplicate_older_than_the_dedup_ring_still_changes_nothing() -> None:
    limits = Limits(recent_event_ids=2)
    first = invoice(1, "in_1", "paid")
    state = fold([first, invoice(2, "in_2"), invoice(3, "in_3")], limits=limits)
    assert len(state.recent) == 2
    again, changed = apply(state, first, limits)
    assert not changed and again == state


@pytest.mark.parametrize("event", _ONE_OF_EACH, ids=lambda e: f"{type(e).__name__}:{e.entity.id}:{e.source}")
def test_the_stamps_alone_make_a_duplicate_a_no_op(event: CanonicalEvent) -> None:
    # The dedup ring only drops a duplicate early: without it the transition changes nothing either.
    no_ring = Limits(recent_event_ids=0)
    once = step(empty(KEY), event, no_ring)
    twice, changed = apply(once, event, no_ring)
    assert not changed and twice == once


def test_the_horizon_alone_makes_a_duplicate_of_an_evicted_record_a_no_op() -> None:
    no_ring = Limits(recent_event_ids=0, closed_invoices=1)
    first = invoice(1, "in_1", "paid")
    state = fold([first, invoice(2, "in_2", "paid")], limits=no_ring)
    assert "in_1" not in state.billing.invoices
    again, changed = apply(state, first, no_ring)
    assert not changed and again == state


def _older(event: CanonicalEvent) -> CanonicalEvent:
    """The same change, one version earlier, with other values where the kind has any."""
    older = msgspec.structs.replace(event, event_id=event.event_id + ":older",
                                    version=msgspec.structs.replace(event.version, ts=event.version.ts - 1))
    for field, value in (("name", "Old"), ("stage", "Prospecting"), ("status", "old"), ("credit_hold", False),
                         ("winner_id", "001OLD")):
        if hasattr(older, field):
            older = msgspec.structs.replace(older, **{field: value})
    return older


@pytest.mark.parametrize("event", _ONE_OF_EACH, ids=lambda e: f"{type(e).__name__}:{e.entity.id}:{e.source}")
def test_a_stale_event_does_not_regress_its_record(event: CanonicalEvent) -> None:
    current = step(empty(KEY), event)
    after, changed = apply(current, _older(event))
    assert not changed and records(after) == records(current)


def test_every_event_seen_is_remembered_even_when_stale() -> None:
    state = fold([invoice(5, occurred_at=500), invoice(4, status="void", occurred_at=900)])
    assert len(state.recent) == 2 and state.last_event_at == 900
    assert state.local_ids == ("stripe:cus_1",)


def test_the_dedup_ring_keeps_the_newest_ids_in_order() -> None:
    limits = Limits(recent_event_ids=3)
    state = fold([resync(ts) for ts in (5, 1, 9, 3, 7)], limits=limits)
    assert [ts for ts, _ in state.recent] == [5, 7, 9]


# ---------------------------------------------------------------- bounds


def test_closed_invoices_beyond_the_limit_are_evicted_and_open_ones_kept() -> None:
    limits = Limits(closed_invoices=3)
    history = [invoice(n, f"in_{n}", "open") for n in range(1, 6)]  # five open
    history += [invoice(10 + n, f"in_{n}", "paid") for n in range(6, 12)]  # six paid, never open here
    state = fold(history, limits=limits)
    assert sorted(state.billing.invoices) == ["in_1", "in_10", "in_11", "in_2", "in_3", "in_4", "in_5", "in_9"]
    assert state.billing.horizon.ts == 18  # the newest evicted: in_8, paid at 18


def test_open_invoices_are_capped_too() -> None:
    limits = Limits(open_records=2)
    state = fold([invoice(n, f"in_{n}", "open", NETSUITE) for n in range(1, 5)], limits=limits)
    assert sorted(state.erp.invoices) == ["in_3", "in_4"]
    assert state.erp.horizon.ts == 2


@pytest.mark.parametrize("system", [STRIPE, NETSUITE])
def test_payments_beyond_the_limit_are_evicted_oldest_first(system: Platform) -> None:
    state = fold([payment(n, f"py_{n}", system=system) for n in range(1, 8)], limits=Limits(payments=4))
    section = state.billing if system is STRIPE else state.erp
    assert sorted(section.payments) == ["py_4", "py_5", "py_6", "py_7"]


def test_refunds_and_credit_memos_are_bounded() -> None:
    limits = Limits(refunds=2)
    state = fold([refund(n, f"re_{n}") for n in range(1, 5)] + [refund(n, f"cm_{n}", system=NETSUITE)
                                                                for n in range(1, 5)], limits=limits)
    assert sorted(state.billing.refunds) == ["re_3", "re_4"]
    assert sorted(state.erp.credit_memos) == ["cm_3", "cm_4"]


def test_solved_cases_beyond_the_limit_are_evicted_and_open_ones_kept() -> None:
    limits = Limits(closed_cases=2)
    history = [case(1, "t_open", "open")] + [case(n, f"t_{n}", "solved") for n in range(2, 7)]
    state = fold(history, limits=limits)
    assert sorted(state.support.cases) == ["t_5", "t_6", "t_open"]


def test_an_open_record_that_closes_is_evicted_once_it_is_the_oldest_closed() -> None:
    limits = Limits(closed_invoices=2)
    state = fold([invoice(1, "in_1", "open"), invoice(2, "in_2", "paid"), invoice(3, "in_3", "paid"),
                  invoice(4, "in_1", "paid")], limits=limits)
    assert sorted(state.billing.invoices) == ["in_1", "in_3"]


def test_the_horizon_stops_a_stale_event_from_resurrecting_an_evicted_record() -> None:
    limits = Limits(closed_invoices=2)
    history = [invoice(1, "in_1", "open"), invoice(2, "in_1", "paid"), invoice(3, "in_2", "paid"),
               invoice(4, "in_3", "paid")]
    state = fold(history, limits=limits)
    assert "in_1" not in state.billing.invoices
    late_open = invoice(1, "in_1", "open", event_id="redelivered")  # an older change of the evicted invoice
    after, changed = apply(state, late_open, limits)
    assert not changed and records(after) == records(state)
    newer, changed = apply(state, invoice(5, "in_1", "void"), limits)  # a real new change still gets in
    assert changed and newer.billing.invoices["in_1"].status == "void"


def test_an_unknown_record_below_the_horizon_is_taken_for_an_evicted_one() -> None:
    # The one order-dependent case, by design: the state cannot tell "evicted" from "never seen" without
    # remembering every evicted id. In version order this open invoice arrives before the horizon passes it.
    limits = Limits(closed_invoices=1)
    closed = [invoice(2, "in_2", "paid"), invoice(3, "in_3", "paid")]
    in_order = fold([invoice(1, "in_1", "open"), *closed], limits=limits)
    late = fold([*closed, invoice(1, "in_1", "open")], limits=limits)
    assert "in_1" in in_order.billing.invoices and "in_1" not in late.billing.invoices


def test_memory_stays_flat_with_years_of_monthly_invoices() -> None:
    start, month_ms = 1_767_225_600_000, 30 * 86_400_000  # real epoch ms: every time encodes at full width

    def months(count: int) -> CustomerState:
        state = fold([account(start, name="Acme", country="US", currency="USD"), customer(start, STRIPE, name="Acme"),
                      subscription(start)])
        for month in range(count):
            ts, inv = start + month * month_ms, f"in_{month:04d}"
            for event in (invoice(ts, inv, "open", total=1000, due_at=ts + 5),
                          invoice(ts + 1, inv, "paid", total=1000, paid_at=ts + 1),
                          payment(ts + 1, f"py_{month:04d}", invoice_id=inv)):
                state = step(state, event)
        return state

    year, decades = months(24), months(1000)
    assert len(decades.billing.invoices) == DEFAULT_LIMITS.closed_invoices
    assert len(decades.billing.payments) == DEFAULT_LIMITS.payments
    assert len(decades.recent) == DEFAULT_LIMITS.recent_event_ids
    assert len(dump(decades)) < 3072
    assert abs(len(dump(decades)) - len(dump(year))) <= 16  # hashes that happen to encode shorter


def test_a_typical_customer_dumps_to_under_1700_bytes() -> None:
    # 100k of them in the customers table under 2 KiB each, with the bytes object, key and dict slot.
    events = typical_history(0, random.Random(1))
    state = fold(events, empty(events[0].customer_key))
    assert len(dump(state)) < 1700


def test_dump_and_load_round_trip() -> None:
    state = fold([*_ONE_OF_EACH, account(6, tax_id=None), opportunity(6, "006B", amount=2**40),
                  customer(6, ZENDESK, "10", name="Other"), case(6, "t2", "solved")])
    assert load(dump(state)) == state
    assert load(dump(empty(KEY))) == empty(KEY)


def test_apply_leaves_its_input_untouched() -> None:
    limits = Limits(closed_invoices=1, payments=1, refunds=1, closed_cases=1)
    before = fold(_ONE_OF_EACH, limits=limits)
    encoded = dump(before)
    for event in [*(_older(e) for e in _ONE_OF_EACH), account(9, name="New", country="FR"),
                  customer(9, ZENDESK, name="New"), invoice(9, "in_2", "paid"), payment(9, "py_2"),
                  refund(9, "re_2"), refund(9, "cm_2", system=NETSUITE), case(9, "t2", "solved")]:
        apply(before, event, limits)
    assert dump(before) == encoded


def test_transitions_import_no_faust_and_no_io_library() -> None:
    probe = ("import sys, concord.tables.state; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'mode', 'aiokafka', 'aiohttp', "
             "'redis', 'asyncio', 'socket'}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


# ---------------------------------------------------------------- order independence
#
# Property: any permutation of a customer's history, with any events repeated, folds to the same state
# as the history in version order. Last-writer-wins per record (per field for partial updates) with a
# total order of stamps makes every record order-independent; the dedup ring, the local ids and
# `last_event_at` are order-free summaries of the set of events seen (newest ring entries, sorted ids,
# a maximum).
#
# Histories stay within the bounds on purpose. Eviction keeps the newest closed records and raises the
# section's horizon to the newest evicted stamp; an event for a record the state does not hold, at or
# below the horizon, is then dropped as a stale change of an evicted record. That is order-dependent
# exactly for such events: in version order an event arrives before the horizon passes its stamp and is
# kept (an old open invoice, say), in another order it may arrive after and be dropped (see
# test_an_unknown_record_below_the_horizon_is_taken_for_an_evicted_one). Events above the horizon, and
# events for records still held, apply the same in any order. With no more distinct records per bounded
# collection than its limit, no order ever evicts, the horizon stays at zero and the property is exact;
# eviction itself is tested deterministically above.

_BOUND = 4  # distinct records per bounded collection: equal to the limits below, never above
_LIMITS = Limits(closed_invoices=_BOUND, payments=_BOUND, refunds=_BOUND, closed_cases=_BOUND, open_records=_BOUND,
                 recent_event_ids=8, local_ids=3)  # a small ring and id list, so their truncation is exercised

_ts = st.integers(1, 12)  # few distinct versions: equal versions are common
_seq = st.sampled_from([0, 0, 1, 2**62 + 1])  # Salesforce commitNumber can exceed 2**53
_at = st.integers(0, 2_000)  # source time, independent of the version
_ids = st.sampled_from([f"x{n}" for n in range(_BOUND)])
_text = st.sampled_from(["Acme", "Acme Inc", "ACME GmbH"]) | st.none()
_country = st.sampled_from(["US", "DE", "FR"]) | st.none()
_currency = st.sampled_from(["USD", "EUR"])
_money = st.integers(0, 10_000)
_when = st.integers(0, 2_000) | st.none()


_account_fields = st.fixed_dictionaries({}, optional={
    "name": _text, "country": _country, "currency": _currency | st.none(), "tax_id": _text, "address": _text,
    "payment_terms": st.sampled_from(["Net 30", "Net 60"]) | st.none(), "deleted": st.booleans()})
_opportunity_fields = st.fixed_dictionaries({}, optional={
    "account_id": st.just(KEY) | st.none(), "stage": st.sampled_from(["Prospecting", "Closed Won"]),
    "is_won": st.booleans(), "is_closed": st.booleans(), "amount": _money | st.none(),
    "currency": _currency, "close_date": st.just("2026-03-31"), "plan": st.sampled_from(["pro", "team"])})
_customer_fields = st.fixed_dictionaries({}, optional={
    "name": _text, "email": st.sampled_from(["a@acme.test", "b@acme.test"]) | st.none(), "country": _country,
    "currency": _currency, "tax_id": _text, "address": _text, "payment_terms": _text,
    "crm_account_id": st.just(KEY) | st.none(), "deleted": st.booleans()})

_events: st.SearchStrategy[CanonicalEvent] = st.one_of(
    st.builds(lambda ts, seq, at, f: account(ts, seq, occurred_at=at, **f), _ts, _seq, _at, _account_fields),
    st.builds(lambda ts, oid, seq, at, f: opportunity(ts, oid, seq, occurred_at=at, **f),
              _ts, st.sampled_from(["006A", "006B"]), _seq, _at, _opportunity_fields),
    st.builds(lambda ts, system, cid, seq, at, f: customer(ts, system, cid, seq, occurred_at=at, **f),
              _ts, st.sampled_from([STRIPE, ZENDESK, NETSUITE]), st.sampled_from(["c1", "c2"]), _seq, _at,
              _customer_fields),
    st.builds(subscription, _ts, st.sampled_from(["active", "past_due", "canceled"]), st.sampled_from(["s1", "s2"]),
              seq=_seq, occurred_at=_at, quantity=st.integers(1, 3), amount=_money),
    st.builds(invoice, _ts, _ids, st.sampled_from(["draft", "open", "paid", "void"]),
              st.sampled_from([STRIPE, NETSUITE]), seq=_seq, occurred_at=_at, total=_money, paid_at=_when),
    st.builds(payment, _ts, _ids, st.sampled_from(["pending", "succeeded", "failed"]),
              st.sampled_from([STRIPE, NETSUITE]), seq=_seq, occurred_at=_at, amount=_money),
    st.builds(refund, _ts, _ids, st.sampled_from(["pending", "succeeded"]), st.sampled_from([STRIPE, NETSUITE]),
              seq=_seq, occurred_at=_at, amount=_money),
    st.builds(entitlement, _ts, st.sampled_from(["active", "suspended"]) | st.none(), st.sampled_from(["9", "10"]),
              seq=_seq, occurred_at=_at, tier=st.sampled_from(["pro", "enterprise"]), deleted=st.booleans()),
    st.builds(case, _ts, _ids, st.sampled_from(["new", "open", "solved", "closed"]) | st.none(), seq=_seq,
              occurred_at=_at, priority=st.sampled_from(["low", "high"]), deleted=st.booleans()),
    st.builds(flags, _ts, seq=_seq, occurred_at=_at, overdue_balance=_money, credit_hold=st.booleans()),
    st.builds(sales_order, _ts, st.sampled_from(["so_1", "so_2"]), seq=_seq, occurred_at=_at,
              status=st.sampled_from(["pending", "billed"])),
    st.builds(merged, _ts, st.sampled_from(["001W", "001V"]), st.sampled_from([(KEY,), ("001X",), (KEY, "001X")])),
    st.builds(resync, _ts),
)


@st.composite
def histories(draw: st.DrawFn) -> list[CanonicalEvent]:
    """A few dozen distinct events of one customer across every kind, in version order."""
    drawn = draw(st.lists(_events, min_size=10, max_size=60))
    locals_ = st.sampled_from(["stripe:cus_1", "stripe:cus_2", "zendesk:9", "netsuite:7", "netsuite:8"]) | st.none()
    events = [msgspec.structs.replace(e, event_id=f"evt_{n}", local_customer=draw(locals_))
              for n, e in enumerate(drawn)]
    return sorted(events, key=lambda e: e.version)


@st.composite
def histories_and_deliveries(draw: st.DrawFn) -> tuple[list[CanonicalEvent], list[CanonicalEvent]]:
    """A history and one way it may be delivered: any order, some events more than once."""
    history = draw(histories())
    repeated = draw(st.lists(st.sampled_from(history), max_size=len(history)))
    return history, draw(st.permutations(history + repeated))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories_and_deliveries())
def test_any_order_with_duplicates_folds_to_the_same_state(
    history_and_delivery: tuple[list[CanonicalEvent], list[CanonicalEvent]],
) -> None:
    history, delivered = history_and_delivery
    expected = fold(history, limits=_LIMITS)
    assert fold(delivered, limits=_LIMITS) == expected
    assert load(dump(expected)) == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories_and_deliveries())
def test_without_the_dedup_ring_any_order_with_duplicates_folds_to_the_same_state(
    history_and_delivery: tuple[list[CanonicalEvent], list[CanonicalEvent]],
) -> None:
    history, delivered = history_and_delivery
    no_ring = msgspec.structs.replace(_LIMITS, recent_event_ids=0)
    assert fold(delivered, limits=no_ring) == fold(history, limits=no_ring)


def test_an_organization_changed_but_not_read_leaves_its_entitlement_unread_until_the_re_read() -> None:
    from tests.unit.tables.state_builders import entitlement, fold, organization_unread, resync

    state = fold([entitlement(100, "active"), organization_unread(200), organization_unread(300)])
    assert state.support.unread == {"9": (200, 300)}  # since the first change not read, up to the latest
    assert state.support.entitlements["9"].status == "active"  # what was read stays: unknown, not absent
    older = fold([entitlement(250, "inactive", event_id="e250")], state)
    assert older.support.unread == {"9": (200, 300)}  # read as of before the latest change: still unread
    read = fold([entitlement(300, "inactive", event_id="e300")], state)
    assert read.support.unread == {} and read.support.entitlements["9"].status == "inactive"
    # A change the state already holds (the re-read came first) leaves nothing unread.
    assert fold([organization_unread(300, event_id="late")], read).support.unread == {}
    # Another source's re-read request (Salesforce GAP_*) changes nothing here.
    assert fold([resync(400)], read).support.unread == {}


def test_a_re_read_equal_to_what_the_state_holds_still_makes_the_entitlement_known() -> None:
    from tests.unit.tables.state_builders import entitlement, fold, organization_unread

    state = fold([entitlement(300, "active", event_id="first"), organization_unread(300, event_id="hook")])
    assert state.support.unread == {}  # held as of that change already
    state = fold([organization_unread(400, event_id="hook2")], state)
    assert fold([entitlement(400, "active", event_id="reread")], state).support.unread == {}


# ---------------------------------------------------------------- CRM records unread after a Salesforce gap

S = 1_000  # Salesforce times its changes to the second
T = 1_743_422_400_000  # 2025-03-31T12:00:00Z
WHOLE_ACCOUNT = {"name": "Acme", "country": "US", "currency": "USD", "tax_id": None, "address": "1 Main St, US",
                 "payment_terms": None}
WHOLE_OPPORTUNITY = {"account_id": KEY, "stage": "Closed Won", "is_won": True, "is_closed": True, "amount": 1000,
                     "currency": "USD", "close_date": "2025-03-31", "plan": "pro", "amount_digits": 2,
                     "quantity": 5}


def read_account(ts: int, event_id: str | None = None, **fields: Any) -> CanonicalEvent:
    """The account read whole (a re-read, a change event carrying every field)."""
    return account(ts, event_id=event_id or f"read:{ts}", **{**WHOLE_ACCOUNT, **fields})


def test_a_gap_leaves_the_account_unread_until_it_is_read_whole_as_of_the_latest_gap() -> None:
    from tests.unit.tables.state_builders import record_gap

    state = fold([read_account(T), record_gap(T + 10 * S), record_gap(T + 20 * S)])
    assert state.crm.unread == {KEY: (T + 10 * S, T + 20 * S)}  # since the first change not read, to the latest
    assert state.crm.account is not None and state.crm.account.name == "Acme"  # what was read stays
    older = fold([read_account(T + 15 * S, name="Acme Old")], state)
    assert older.crm.unread == state.crm.unread  # read as of before the latest change: still unread
    partial = fold([account(T + 30 * S, name="Acme Inc")], state)
    assert partial.crm.unread == state.crm.unread  # a change of one field says nothing of the others
    in_second = fold([read_account(T + 20 * S + 400, name="Acme Inc")], state)  # a change of the gap's second
    assert in_second.crm.unread == state.crm.unread  # it may be the earlier of two changes in that second
    # A re-read of the gap's second (the codec versions a REST record at the end of its second).
    read = fold([read_account(T + 20 * S + 999, name="Acme Inc")], state)
    assert read.crm.unread == {} and read.crm.account is not None and read.crm.account.name == "Acme Inc"
    # A gap the state already holds the record for (its re-read came first) leaves nothing unread.
    assert fold([record_gap(T + 20 * S, event_id="late")], read).crm.unread == {}
    # The rest of the customer's state does not care: Zendesk's entitlements stay as they were.
    assert read.support == state.support


def test_a_gap_is_settled_by_a_read_of_its_second_never_by_a_change_of_that_second() -> None:
    from tests.unit.tables.state_builders import record_gap

    # Salesforce times records to the second: two changes in one second cannot be told apart. A change event
    # carrying every field in the gap's second may be the earlier one; a re-read of that second (versioned at
    # its end by the codec) holds every change of it.
    state = fold([read_account(T), record_gap(T + 9 * S + 700)])
    before, _ = apply(state, read_account(T + 9 * S + 200, event_id="create"))
    assert before.crm.unread == state.crm.unread
    after, changed = apply(state, read_account(T + 9 * S + 999))
    assert changed and after.crm.unread == {}
    assert fold([record_gap(T + 9 * S + 900, event_id="again")], after).crm.unread == {}


def test_a_deletion_as_of_the_gap_settles_it() -> None:
    from tests.unit.tables.state_builders import record_gap

    state = fold([account(T, name="Acme"), record_gap(T + 10 * S)])
    assert fold([account(T + 9 * S, deleted=True)], state).crm.unread == state.crm.unread
    gone = fold([account(T + 11 * S, deleted=True)], state)  # the re-read's 404, as a tombstone
    assert gone.crm.unread == {} and gone.crm.account is not None and gone.crm.account.deleted


def test_an_opportunity_gap_leaves_that_opportunity_unread_until_read() -> None:
    from tests.unit.tables.state_builders import record_gap

    state = fold([read_account(T), opportunity(T, "006A", **WHOLE_OPPORTUNITY),
                  record_gap(T + 10 * S, "006A", "Opportunity"), record_gap(T + 11 * S, "006B", "Opportunity")])
    assert state.crm.unread == {"006A": (T + 10 * S, T + 10 * S), "006B": (T + 11 * S, T + 11 * S)}
    state = fold([opportunity(T + 12 * S, "006A", event_id="reread", **{**WHOLE_OPPORTUNITY, "stage": "Closed"})],
                 state)
    assert state.crm.unread == {"006B": (T + 11 * S, T + 11 * S)}  # a record never read before is read whole too
    state = fold([opportunity(T + 12 * S, "006B", event_id="reread-b", **WHOLE_OPPORTUNITY)], state)
    assert state.crm.unread == {}


def test_another_accounts_gap_and_changes_re_addressed_here_change_nothing() -> None:
    from tests.unit.tables.state_builders import record_gap

    state = fold([read_account(T)])
    after, changed = apply(state, record_gap(T + 10 * S, "001LOSER"))
    assert not changed and after.crm == state.crm
    loser = msgspec.structs.replace(account(T + 20 * S, deleted=True), entity=msgspec.structs.replace(
        account(T).entity, id="001LOSER"))
    after, changed = apply(state, loser)  # a merged-away account's deletion, re-addressed to the winner
    assert not changed and after.crm == state.crm


def test_states_stored_before_crm_unread_still_load() -> None:
    from concord.tables.state import Crm

    stored = msgspec.msgpack.encode([None, {}])  # a Crm as it was stored: account, opportunities
    assert msgspec.msgpack.decode(stored, type=Crm).unread == {}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations([
    account(T, name="Acme"), read_account(T + 3 * S), account(T + 4 * S, country="DE"),
    read_account(T + 6 * S, event_id="read6"), account(T + 8 * S, deleted=True),
]), st.lists(st.integers(0, 9), min_size=1, max_size=4))
def test_what_is_unread_does_not_depend_on_the_order_of_delivery(events: list[CanonicalEvent],
                                                                  gap_seconds: list[int]) -> None:
    from tests.unit.tables.state_builders import record_gap

    gaps = [record_gap(T + g * S + 100, event_id=f"gap{n}") for n, g in enumerate(gap_seconds)]
    in_order = sorted([*events, *gaps], key=lambda e: e.version)
    expected = set(fold(in_order).crm.unread)
    # Read whole as of T+6 s, deleted at T+8 s: a gap of the deletion's second may be a later change.
    assert expected == ({KEY} if max(gap_seconds) >= 8 else set())
    assert set(fold([*gaps, *events]).crm.unread) == expected
    assert set(fold([*events, *gaps]).crm.unread) == expected


def test_a_country_filled_in_alone_completes_the_one_line_address() -> None:
    from concord.tables.state import recountried
    assert recountried("1 Main St, Portland, 97201", None, "US") == "1 Main St, Portland, 97201, US"
    assert recountried("1 Main St, Berlin, 10115, AT", "AT", "DE") == "1 Main St, Berlin, 10115, DE"
    assert recountried("1 Main St, Berlin, 10115, DE", "DE", None) == "1 Main St, Berlin, 10115"
