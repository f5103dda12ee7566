"""D03: an active entitlement's tier differs from the tier the paying subscription's plan maps to.

The plan-to-tier map is `plan_tiers` in the drift configuration. Plans it does not map are skipped
(no guessing). With several paying subscriptions, a tier mapped from any of them is accepted; a
finding asks for the tier of the newest one. Tiers compare ignoring case and whitespace; an active
entitlement without a tier disagrees. Subject: the organization id, so the finding stays the same
one while either side changes (a plan upgrade, a tier edit) until they agree.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import (
    action,
    active_entitlements,
    newest,
    norm,
    observed,
    paying_subscriptions,
    tier_for,
)
from concord.tables.state import CustomerState


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not ctx.config.plan_tiers:
        return []
    mapped = [s for s in paying_subscriptions(state) if tier_for(s.plan, ctx) is not None]
    if not mapped:
        return []
    accepted = {norm(ctx.config.plan_tiers[s.plan]) for s in mapped if s.plan is not None}
    sub = newest(mapped)
    expected = tier_for(sub.plan, ctx)
    return [
        Finding(
            rule=RULE.id,
            customer_key=state.key,
            subject=ent.organization_id,
            since=max(ent.since, sub.since),
            evidence=(
                observed("zendesk", ent.organization_id, "tier", ent.tier, ent.stamp.ts, ent.since),
                observed("stripe", sub.id, "tier", expected, sub.stamp.ts, sub.since),
            ),
            action=action(ctx, "zendesk", {"organization_id": ent.organization_id}, {"tier": expected}),
            summary=f"organization {ent.organization_id} has support tier {ent.tier!r}, "
            f"plan {sub.plan!r} of subscription {sub.id} maps to {expected!r}",
        )
        for ent in active_entitlements(state)
        if ent.tier is None or norm(ent.tier) not in accepted
    ]


RULE = Rule(
    id="D03",
    name="entitlement_tier_mismatch",
    title="Support tier differs from the tier of the paid plan",
    reads=frozenset({"billing.subscriptions", "support.entitlements"}),
    defaults=RuleConfig(grace_seconds=900, severity="medium", action="support.set_tier", owner="support"),
    check=check,
)
