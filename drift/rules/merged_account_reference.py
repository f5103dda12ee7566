"""D13: an account was merged away in the CRM, but records elsewhere still name it.

Evaluated on the merge winner: after the merge, identity re-points the loser's platform ids to the
winner, so its records (stripe customer, zendesk organization, netsuite customer) arrive in the
winner's state still carrying the loser as `crm_account_id`. Each must be re-pointed to the winner;
once its system sends the record back naming the winner, the finding resolves here. (Evaluated on
the loser instead, the fix would never be seen: corrected records no longer reach the loser.)
One finding per record, subject `<system>:<record id>`; `since` is the merge. The action: the
configured verb (`update_customer`) prefixed by the record's system domain
(`billing.update_customer` on stripe), target `customer_id`, payload `{"crm_account_id": winner}`.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import observed, parties, system_action
from concord.tables.state import CustomerState


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not state.absorbed:
        return []
    winner = state.key
    merged_at = dict(state.absorbed)
    return [
        Finding(
            rule=RULE.id,
            customer_key=winner,
            subject=f"{system}:{record.id}",
            since=merged_at[loser],
            evidence=(
                observed("salesforce", loser, "merged_into", winner, merged_at[loser], merged_at[loser]),
                observed(system, record.id, "crm_account_id", loser, record.stamp.ts, record.stamp.ts),
            ),
            action=system_action(ctx, system, {"customer_id": record.id}, {"crm_account_id": winner}),
            summary=f"{system} customer {record.id} still names account {loser}, merged into {winner}",
        )
        for system, record in parties(state)
        if (loser := record.crm_account_id) is not None and loser in merged_at
    ]


RULE = Rule(
    id="D13",
    name="merged_account_reference",
    title="Record still naming an account merged away in the CRM",
    reads=frozenset({"identity", "billing.customers", "support.organizations", "erp.customers"}),
    defaults=RuleConfig(grace_seconds=900, severity="medium", action="update_customer", owner="sales_ops"),
    check=check,
)
