"""D02: a Stripe subscription is paying (active or trialing) and no organization has an active entitlement.

One finding per customer (subject: the customer key): the customer needs one entitlement, however
many subscriptions pay. The action targets the customer's organization (the lowest id when there are
several, which D12 reports) or, without one, the CRM account (`crm_account_id`) so the connector can
find or create it; the payload carries the tier the newest paying subscription's plan maps to.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import (
    absent,
    action,
    active_entitlements,
    live,
    newest,
    observed,
    paying_subscriptions,
    tier_for,
)
from concord.tables.state import CustomerState


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    paying = paying_subscriptions(state)
    if not paying or active_entitlements(state):
        return []
    sub = newest(paying)
    orgs = sorted(r.id for r in live(state.support.organizations))
    entitlements = state.support.entitlements
    # Evidence: the target organization's entitlement, else the newest one known, else none.
    entitlement = entitlements.get(orgs[0]) if orgs else None
    if entitlement is None and entitlements:
        entitlement = max(entitlements.values(), key=lambda e: e.stamp)
    if entitlement is not None:
        support_side = observed("zendesk", entitlement.organization_id, "entitlement_status", entitlement.status,
                                entitlement.stamp.ts, entitlement.since)
    else:
        support_side = absent("zendesk", "entitlement_status")
    target = {"organization_id": orgs[0]} if orgs else {"crm_account_id": state.key}
    began_paying = min(s.since for s in paying)
    lost = max((e.since for e in entitlements.values()), default=0)
    return [
        Finding(
            rule=RULE.id,
            customer_key=state.key,
            subject=state.key,
            since=max(began_paying, lost),
            evidence=(observed("stripe", sub.id, "status", sub.status, sub.stamp.ts, sub.since), support_side),
            action=action(ctx, "zendesk", target, {"tier": tier_for(sub.plan, ctx)}),
            summary=f"subscription {sub.id} is {sub.status} but no organization has an active support entitlement",
        )
    ]


RULE = Rule(
    id="D02",
    name="paying_without_entitlement",
    title="Paying subscription without an active support entitlement",
    reads=frozenset({"billing.subscriptions", "support.entitlements", "support.organizations"}),
    defaults=RuleConfig(grace_seconds=900, severity="high", action="support.grant_entitlement", owner="support"),
    check=check,
)
