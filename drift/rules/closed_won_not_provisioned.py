"""D10: a closed-won opportunity is not being provisioned: its saga stopped, or billing has no subscription
and no saga took the deal.

The quote-to-cash saga (drift/saga.py) provisions a won deal billing knows no subscription of. D10 and the
saga agree: a saga running (within its step deadlines, which end in a pause), compensating, completed or
compensated is not drift (a compensated deal was undone on purpose, with its reason on the saga); a saga
paused or failed is, whatever billing holds, and so is a won deal without any subscription that no saga
took (sagas switched off, or started before they were). Any subscription counts as provisioned, whatever
its status (D01 and D02 judge its status), even one Stripe reports as deleted: a canceled customer was
provisioned once. `since` is when the opportunity was marked won. Subject: the opportunity id. The action,
`saga.resume`, resumes the opportunity's saga from the step that stopped it (or starts one).
"""

from __future__ import annotations

from typing import Final

from concord.core.messages import Observation
from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import absent, action, is_won, observed, won_at
from concord.tables.state import CustomerState

_STOPPED: Final = frozenset({"paused", "failed"})


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not state.crm.opportunities:
        return []
    if state.billing.subscriptions and not state.sagas:
        return []
    findings: list[Finding] = []
    for opp in state.crm.opportunities.values():
        if not is_won(opp):
            continue
        saga = state.sagas.get(opp.id)
        if saga is not None and saga not in _STOPPED:
            continue
        if saga is None and state.billing.subscriptions:
            continue
        won = won_at(opp)  # once: it looks up the field's stamp
        billing = (absent("stripe", "subscription") if not state.billing.subscriptions else
                   observed("stripe", "", "subscriptions", len(state.billing.subscriptions), 0, 0))
        evidence: tuple[Observation, ...] = (observed("salesforce", opp.id, "is_won", True, won, won), billing)
        if saga is not None:
            evidence += (observed("concord", opp.id, "saga", saga, 0, 0),)
        findings.append(
            Finding(
                rule=RULE.id,
                customer_key=state.key,
                subject=opp.id,
                since=won,
                evidence=evidence,
                action=action(ctx, "concord", {"opportunity_id": opp.id}),
                summary=(f"opportunity {opp.id} is closed-won and its saga is {saga}" if saga is not None else
                         f"opportunity {opp.id} is closed-won but billing has no subscription"),
            )
        )
    return findings


RULE = Rule(
    id="D10",
    name="closed_won_not_provisioned",
    title="Closed-won opportunity without a subscription",
    reads=frozenset({"crm.opportunities", "billing.subscriptions", "sagas"}),
    defaults=RuleConfig(grace_seconds=3600, severity="high", action="saga.resume", owner="sales_ops"),
    check=check,
)
