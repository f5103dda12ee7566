"""D15: an open support case is being worked for a customer without a paid entitlement.

Fires per open case (status not solved, closed or deleted; not deleted) while the customer has no
active entitlement, or no paying (active or trialing) subscription. Support time spent on a customer
who does not pay for it is a commercial decision, so a person reviews it. Subject: the case id.
`since` is the later of the case's creation and the moment the customer stopped being entitled (the
last change of its entitlements or subscriptions, when one is missing).
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding, Observation
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import absent, action, active_entitlements, newest, observed, paying_subscriptions
from concord.tables.state import Case, CustomerState

_CLOSED = frozenset({"solved", "closed", "deleted"})


def _is_open(case: Case) -> bool:
    return not case.deleted and (case.status or "").lower() not in _CLOSED


def _entitlement_side(state: CustomerState) -> Observation:
    entitlements = state.support.entitlements.values()
    if not entitlements:
        return absent("zendesk", "entitlement_status")
    ent = max(entitlements, key=lambda e: e.stamp)
    status = "deleted" if ent.deleted else ent.status
    return observed("zendesk", ent.organization_id, "entitlement_status", status, ent.stamp.ts, ent.since)


def _subscription_side(state: CustomerState) -> Observation:
    subs = state.billing.subscriptions.values()
    if not subs:
        return absent("stripe", "subscription")
    sub = newest(subs)
    return observed("stripe", sub.id, "status", "deleted" if sub.deleted else sub.status, sub.stamp.ts, sub.since)


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    cases = [c for c in state.support.cases.values() if _is_open(c)]
    if not cases:
        return []
    entitled = bool(active_entitlements(state))
    paying = bool(paying_subscriptions(state))
    if entitled and paying:
        return []
    lapsed = 0
    if not entitled:
        lapsed = max((e.since for e in state.support.entitlements.values()), default=0)
    if not paying:
        lapsed = max(lapsed, max((s.since for s in state.billing.subscriptions.values()), default=0))
    sides = (_entitlement_side(state), _subscription_side(state))
    reason = "no active support entitlement" if not entitled else "no paying subscription"
    return [
        Finding(
            rule=RULE.id,
            customer_key=state.key,
            subject=case.id,
            since=max(case.created_at or case.since, lapsed),
            evidence=(observed("zendesk", case.id, "status", case.status, case.stamp.ts, case.since), *sides),
            action=action(ctx, "zendesk", {"ticket_id": case.id}),
            summary=f"case {case.id} is {case.status} while the customer has {reason}",
        )
        for case in cases
    ]


RULE = Rule(
    id="D15",
    name="case_without_paid_entitlement",
    title="Open support case for a customer without a paid entitlement",
    reads=frozenset({"support.cases", "support.entitlements", "billing.subscriptions"}),
    defaults=RuleConfig(grace_seconds=0, severity="low", action="review", owner="support"),
    check=check,
)
