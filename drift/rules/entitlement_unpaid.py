"""D01: a Zendesk entitlement is active while no Stripe subscription is paying for it.

Fires per active entitlement when every subscription of the customer has ended (canceled, unpaid,
incomplete_expired, paused, deleted) or there is none. `past_due` and `incomplete` do not fire: the
customer is in dunning or mid-checkout. Subject: the organization id.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import absent, action, active_entitlements, is_ended, newest, observed
from concord.tables.state import CustomerState


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    entitlements = active_entitlements(state)
    if not entitlements:
        return []
    subs = state.billing.subscriptions.values()
    if not all(is_ended(s) for s in subs):
        return []
    last = newest(subs) if subs else None
    sub_side = (
        observed("stripe", last.id, "status", "deleted" if last.deleted else last.status, last.stamp.ts, last.since)
        if last is not None
        else absent("stripe", "subscription")
    )
    ended_at = max((s.since for s in subs), default=0)
    return [
        Finding(
            rule=RULE.id,
            customer_key=state.key,
            subject=ent.organization_id,
            since=max(ent.since, ended_at),
            evidence=(
                observed("zendesk", ent.organization_id, "entitlement_status", ent.status, ent.stamp.ts, ent.since),
                sub_side,
            ),
            action=action(ctx, "zendesk", {"organization_id": ent.organization_id}),
            summary=f"support entitlement of organization {ent.organization_id} is active, "
            + (f"subscription {last.id} is {sub_side.value}" if last is not None else "no subscription exists"),
        )
        for ent in entitlements
    ]


RULE = Rule(
    id="D01",
    name="entitlement_unpaid",
    title="Support entitlement active while no subscription is paying",
    reads=frozenset({"support.entitlements", "billing.subscriptions"}),
    defaults=RuleConfig(grace_seconds=3600, severity="high", action="support.suspend_entitlement", owner="support"),
    check=check,
)
