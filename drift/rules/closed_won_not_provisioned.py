"""D10: an opportunity is closed-won (and not deleted) while billing has no subscription.

Any subscription counts as provisioned, whatever its status (D01 and D02 judge its status), even
one Stripe reports as deleted: `customer.subscription.deleted` is how Stripe says a subscription
was canceled, and a canceled customer was provisioned once. `since` is when the opportunity was
marked won. Subject: the opportunity id. The action resumes the quote-to-cash saga of that
opportunity.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import absent, action, is_won, observed, won_at
from concord.tables.state import CustomerState


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not state.crm.opportunities:
        return []
    if state.billing.subscriptions:
        return []
    findings: list[Finding] = []
    for opp in state.crm.opportunities.values():
        if not is_won(opp):
            continue
        won = won_at(opp)  # once: it looks up the field's stamp
        findings.append(
            Finding(
                rule=RULE.id,
                customer_key=state.key,
                subject=opp.id,
                since=won,
                evidence=(
                    observed("salesforce", opp.id, "is_won", True, won, won),
                    absent("stripe", "subscription"),
                ),
                action=action(ctx, "concord", {"opportunity_id": opp.id}),
                summary=f"opportunity {opp.id} is closed-won but billing has no subscription",
            )
        )
    return findings


RULE = Rule(
    id="D10",
    name="closed_won_not_provisioned",
    title="Closed-won opportunity without a subscription",
    reads=frozenset({"crm.opportunities", "billing.subscriptions"}),
    defaults=RuleConfig(grace_seconds=3600, severity="high", action="saga.resume", owner="sales_ops"),
    check=check,
)
