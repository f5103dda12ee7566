"""The process APIs' answers built from a state (app/lookups.py): entitlement, invoices, subscriptions."""

from __future__ import annotations

import msgspec

from concord.app import lookups
from concord.connectors.search_index import SearchHit, SearchId, SearchResults
from concord.drift.config import DriftConfig
from concord.tables.state import CustomerState
from tests.unit.app.test_customer_view import T, drifting, judged
from tests.unit.tables.state_builders import (
    KEY,
    NETSUITE,
    account,
    entitlement,
    fold,
    invoice,
    opportunity,
    subscription,
)

CONFIG = DriftConfig(plan_tiers={"pro": "premium", "team": "standard"})


def test_a_paying_customer_is_entitled_to_its_plans_tier_and_a_wrong_tier_disagrees() -> None:
    state = drifting()  # sub_1 active on plan pro (premium), organization 9 active with tier standard
    answer = lookups.entitlement(state, CONFIG)
    assert (answer.entitled, answer.tier, answer.billing, answer.accepted_tiers) == (True, "premium", "paying",
                                                                                  ["premium"])
    assert [(e.id, e.status, e.plan, e.tier, e.paying) for e in answer.evidence] == [
        ("sub_1", "active", "pro", "premium", True)]
    assert [(g.organization_id, g.tier, g.active) for g in answer.support] == [("9", "standard", True)]
    assert answer.disagrees and "organization 9" in answer.disagreement
    assert [f.rule for f in answer.findings] == ["D03"]  # the finding that says so, reported


def test_a_canceled_subscription_entitles_to_nothing_and_an_active_grant_disagrees() -> None:
    state = fold([subscription(T, "canceled", plan="pro"), entitlement(T, "active", "9", tier="premium")])
    answer = lookups.entitlement(state, CONFIG)
    assert (answer.entitled, answer.tier, answer.billing) == (False, None, "ended")
    assert [e.paying for e in answer.evidence] == [False]  # no paying one: every subscription is the evidence
    assert answer.disagrees and "no subscription pays" in answer.disagreement


def test_dunning_neither_grants_nor_takes_and_agreement_is_quiet() -> None:
    dunning = lookups.entitlement(fold([subscription(T, "past_due"), entitlement(T, "active", "9")]), CONFIG)
    assert (dunning.entitled, dunning.billing, dunning.disagrees) == (False, "dunning", False)
    paid = lookups.entitlement(fold([subscription(T, "active", plan="team"),
                                     entitlement(T, "active", "9", tier=" Standard ")]), CONFIG)
    assert (paid.entitled, paid.tier, paid.disagrees, paid.findings) == (True, "standard", False, [])
    missing = lookups.entitlement(fold([subscription(T, "trialing", plan="unmapped")]), CONFIG)
    assert (missing.entitled, missing.tier, missing.support) == (True, None, [])
    assert missing.disagrees and "no organization" in missing.disagreement
    nothing = lookups.entitlement(CustomerState(key=KEY), CONFIG)
    assert (nothing.entitled, nothing.billing, nothing.evidence, nothing.disagrees) == (False, "none", [], False)


def test_invoices_side_by_side_with_their_status_and_findings() -> None:
    answer = lookups.invoices(drifting())
    by_id = {i.billing_invoice_id: i for i in answer.invoices}
    differs = by_id["in_1"]
    assert differs.billing is not None and differs.erp is not None
    assert (differs.billing.total, differs.erp.total, differs.status) == (1000, 900, "differs")
    assert [f.rule for f in differs.findings] == ["D05"]
    assert by_id["in_2"].status == "billing_only" and [f.rule for f in by_id["in_2"].findings] == ["D04"]
    agreed = lookups.invoices(fold([invoice(T, "in_1", "paid", total=1000),
                                    invoice(T, "701", "paid", system=NETSUITE, total=1000, billing_invoice_id="in_1"),
                                    invoice(T + 1, "702", "open", system=NETSUITE, total=50)]))
    assert [(i.billing_invoice_id, i.status) for i in agreed.invoices] == [("in_1", "paid"), ("", "erp_only")]
    assert agreed.invoices[0].billing is not None and agreed.invoices[0].billing.settled


def test_subscriptions_with_the_deal_they_come_from_and_won_deals_not_provisioned() -> None:
    won = opportunity(T, "006A", stage="Closed Won", is_won=True, is_closed=True, amount=1000, currency="USD",
                      plan="pro")
    state = judged(fold([account(T, name="Acme"), won, subscription(T, "active", "sub_1", plan="pro", amount=1000,
                                                                      currency="USD")]))
    answer = lookups.subscriptions(state, CONFIG)
    (sub,) = answer.subscriptions
    assert (sub.id, sub.status, sub.tier, sub.paying, sub.ended) == ("sub_1", "active", "premium", True, False)
    assert sub.deal is not None and (sub.deal.opportunity_id, sub.deal.won, sub.deal.amount) == ("006A", True, 1000)
    assert answer.not_provisioned == [] and answer.findings == []

    unprovisioned = lookups.subscriptions(judged(fold([account(T, name="Acme"), won])), CONFIG)
    assert unprovisioned.subscriptions == [] and [d.opportunity_id for d in unprovisioned.not_provisioned] == ["006A"]
    assert [f.rule for f in unprovisioned.findings] == ["D10"]


def test_answers_encode_as_their_structs() -> None:
    state = drifting()
    for answer, kind in ((lookups.entitlement(state, CONFIG), lookups.EntitlementAnswer),
                         (lookups.invoices(state), lookups.InvoicesAnswer),
                         (lookups.subscriptions(state, CONFIG), lookups.SubscriptionsAnswer)):
        assert msgspec.json.decode(msgspec.json.encode(answer), type=kind) == answer


def test_an_id_of_another_system_names_its_customer_through_the_search_results() -> None:
    def hit(key: str, match: str, *records: tuple[str, str]) -> SearchHit:
        return SearchHit(key=key, name=None, match=match, matched="x",
                         records=tuple(SearchId(id="x", system=s, kind=k) for s, k in records))

    results = SearchResults(query="360007", limit=100, hits=[
        hit("001A", "id", ("zendesk", "organization")), hit("001B", "id", ("netsuite", "customer")),
        hit("001C", "name")])
    assert lookups.keys_for(results, "zendesk") == ["001A"]
    assert lookups.keys_for(results, "netsuite") == ["001B"]
    assert lookups.keys_for(results, "stripe") == []  # a name that starts with the id is no id
    both = SearchResults(query="7", limit=100, hits=[hit("001A", "id", ("netsuite", "invoice")),
                                                     hit("001B", "id", ("netsuite", "customer"))])
    assert lookups.keys_for(both, "netsuite") == ["001A", "001B"]  # ambiguous: the API answers 409
