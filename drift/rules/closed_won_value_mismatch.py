"""D11: a closed-won opportunity's amount differs from the value of the subscription it bought.

Assumption about billing periods: the opportunity `amount` is the recurring value per billing period
of the subscription it provisions (what the quote-to-cash saga bills), and it is compared with the
subscription's recurring `amount` (the sum of price x quantity over its items) as is. Neither record
carries the billing interval, so an annual contract value booked against a monthly subscription is
not converted: teams that book annual values set `amount_tolerance` for it or disable the rule. No
proration, discount or tax is guessed.

Pairing, fair or not at all: a won opportunity with a `plan` is compared with the paying
subscription on that plan, one without a plan with the customer's only paying subscription; when
that is not exactly one subscription, nothing is compared. A subscription is compared only with the
opportunity won most recently among those paired with it (later deals replace earlier ones). The
currency is the opportunity's, else the CRM account's; without one, nothing is compared. Different
currencies disagree; equal currencies disagree when the amounts differ by more than
`amount_tolerance`. Without a subscription there is nothing to compare (D10 reports that).

Subject: `<opportunity id>|<subscription id>`. Always a person's decision.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import action, is_won, observed, paying_subscriptions, won_at
from concord.tables.state import CustomerState, Opportunity, Subscription


def _pairs(state: CustomerState) -> dict[str, tuple[Opportunity, Subscription]]:
    """Subscription id -> (the most recently won opportunity paired with it, the subscription)."""
    paying = [s for s in paying_subscriptions(state) if s.amount is not None]
    pairs: dict[str, tuple[Opportunity, Subscription]] = {}
    if not paying:
        return pairs
    for opp in state.crm.opportunities.values():
        if not is_won(opp) or opp.amount is None:
            continue
        candidates = [s for s in paying if opp.plan is None or s.plan == opp.plan]
        if len(candidates) != 1:
            continue
        sub = candidates[0]
        current = pairs.get(sub.id)
        if current is None or (won_at(opp), opp.id) > (won_at(current[0]), current[0].id):
            pairs[sub.id] = (opp, sub)
    return pairs


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not state.crm.opportunities or not state.billing.subscriptions:
        return []
    account_currency = state.crm.account.currency if state.crm.account is not None else None
    findings: list[Finding] = []
    for opp, sub in _pairs(state).values():
        currency = opp.currency or account_currency
        amount = opp.amount_in(currency)
        if currency is None or sub.currency is None or sub.amount is None or amount is None:
            continue
        same_currency = currency.upper() == sub.currency.upper()
        if same_currency and abs(amount - sub.amount) <= ctx.rule.amount_tolerance:
            continue
        opp_at = max(won_at(opp), opp.stamp_of("amount").ts, opp.stamp_of("currency").ts)
        findings.append(
            Finding(
                rule=RULE.id,
                customer_key=state.key,
                subject=f"{opp.id}|{sub.id}",
                since=max(opp_at, sub.since),
                evidence=(
                    observed("salesforce", opp.id, "amount", amount, opp_at, opp_at),
                    observed("salesforce", opp.id, "currency", currency, opp_at, opp_at),
                    observed("stripe", sub.id, "amount", sub.amount, sub.stamp.ts, sub.since),
                    observed("stripe", sub.id, "currency", sub.currency, sub.stamp.ts, sub.since),
                ),
                action=action(ctx, "concord", {"opportunity_id": opp.id, "subscription_id": sub.id}),
                summary=f"opportunity {opp.id} was won at {amount} {currency}, "
                f"subscription {sub.id} bills {sub.amount} {sub.currency}",
            )
        )
    return findings


RULE = Rule(
    id="D11",
    name="closed_won_value_mismatch",
    title="Closed-won amount differs from the subscription's recurring amount",
    reads=frozenset({"crm.account", "crm.opportunities", "billing.subscriptions"}),
    defaults=RuleConfig(grace_seconds=3600, severity="medium", action="review", owner="sales_ops"),
    check=check,
)
