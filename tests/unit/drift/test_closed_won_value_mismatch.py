from __future__ import annotations

from msgspec import UNSET

from concord.drift.finding import REVIEW
from concord.drift.rules.closed_won_value_mismatch import RULE
from tests.unit.drift.builders import HOUR, account, only, run, state_of, subscription, systems, won


def test_fires_when_the_won_amount_differs_from_the_recurring_amount() -> None:
    state = state_of(won("006A", HOUR, amount=50_000), subscription("sub_1", "active", 2 * HOUR, amount=45_000,
                                                                     currency="USD"))
    finding = only(run(RULE, state))
    assert finding.subject == "006A|sub_1"
    assert finding.since == 2 * HOUR
    assert finding.action == REVIEW
    assert systems(finding) == {"salesforce", "stripe"}
    assert [(o.system, o.field, o.value) for o in finding.evidence] == [
        ("salesforce", "amount", 50_000), ("salesforce", "currency", "USD"),
        ("stripe", "amount", 45_000), ("stripe", "currency", "USD")]


def test_respects_the_amount_tolerance() -> None:
    state = state_of(won("006A", HOUR, amount=50_000), subscription("sub_1", "active", HOUR, amount=49_900,
                                                                     currency="USD"))
    assert run(RULE, state, amount_tolerance=100) == []
    assert run(RULE, state, amount_tolerance=99)


def test_different_currencies_disagree_and_the_account_currency_is_the_fallback() -> None:
    state = state_of(won("006A", HOUR, amount=100, currency=None), account(HOUR, currency="EUR"),
                     subscription("sub_1", "active", HOUR, amount=100, currency="USD"))
    assert only(run(RULE, state)).evidence[1].value == "EUR"


def test_no_comparison_without_a_currency_or_a_subscription() -> None:
    assert run(RULE, state_of(won("006A", HOUR, amount=100, currency=None),
                              subscription("sub_1", "active", HOUR, amount=90, currency="USD"))) == []
    assert run(RULE, state_of(won("006A", HOUR, amount=100))) == []


def test_pairs_by_plan_and_skips_ambiguity() -> None:
    subs = (subscription("sub_1", "active", HOUR, plan="pro", amount=100, currency="USD"),
            subscription("sub_2", "active", HOUR, plan="addon", amount=10, currency="USD"))
    assert run(RULE, state_of(won("006A", HOUR, amount=100, plan="pro"), *subs)) == []
    assert only(run(RULE, state_of(won("006A", HOUR, amount=90, plan="pro"), *subs))).subject == "006A|sub_1"
    assert run(RULE, state_of(won("006A", HOUR, amount=5), *subs)) == []


def test_only_the_latest_won_opportunity_is_compared() -> None:
    state = state_of(won("006A", HOUR, amount=100), won("006B", 2 * HOUR, amount=150),
                     subscription("sub_1", "active", 3 * HOUR, amount=150, currency="USD"))
    assert run(RULE, state) == []


def test_converges_and_keeps_its_fingerprint() -> None:
    state = state_of(won("006A", HOUR, amount=100), subscription("sub_1", "active", HOUR, amount=80, currency="USD"))
    before = only(run(RULE, state))
    state = state_of(subscription("sub_1", "active", 2 * HOUR, amount=90, currency="USD"), base=state)
    after = only(run(RULE, state))
    assert after.fingerprint == before.fingerprint
    state = state_of(subscription("sub_1", "active", 3 * HOUR, amount=100, currency="USD"), base=state)
    assert run(RULE, state) == []


def test_compares_an_amount_only_update_in_the_opportunity_currency() -> None:
    # Salesforce sends an amount-only UPDATE without CurrencyIsoCode: the codec counted it in 2 decimals.
    state = state_of(won("006A", HOUR, amount=50_000, currency="JPY", amount_digits=0),
                     won("006A", 2 * HOUR, amount=4_500_000, currency=UNSET, amount_digits=2),
                     subscription("sub_1", "active", HOUR, amount=45_000, currency="JPY"))
    assert run(RULE, state) == []
    state = state_of(subscription("sub_1", "active", 3 * HOUR, amount=46_000, currency="JPY"), base=state)
    assert [o.value for o in only(run(RULE, state)).evidence if o.field == "amount"] == [45_000, 46_000]
