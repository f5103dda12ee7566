"""D13: this account was merged away in the CRM, but records elsewhere still name it.

When `merged_into` is set (Salesforce merged this account into another), every live stripe customer,
zendesk organization and netsuite customer whose `crm_account_id` is still this customer key must
be re-pointed to the winner. One finding per record, subject `<system>:<record id>`; `since` is the
merge. The action: the configured verb (`update_customer`) prefixed by the record's system domain
(`billing.update_customer` on stripe), target `customer_id`, payload `{"crm_account_id": winner}`.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import observed, parties, system_action
from concord.tables.state import CustomerState


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    winner = state.merged_into
    if winner is None:
        return []
    merged_at = state.merged_stamp.ts
    return [
        Finding(
            rule=RULE.id,
            customer_key=state.key,
            subject=f"{system}:{record.id}",
            since=merged_at,
            evidence=(
                observed("salesforce", state.key, "merged_into", winner, merged_at, merged_at),
                observed(system, record.id, "crm_account_id", record.crm_account_id, record.stamp.ts,
                         record.stamp.ts),
            ),
            action=system_action(ctx, system, {"customer_id": record.id}, {"crm_account_id": winner}),
            summary=f"{system} customer {record.id} still names account {state.key}, merged into {winner}",
        )
        for system, record in parties(state)
        if record.crm_account_id == state.key
    ]


RULE = Rule(
    id="D13",
    name="merged_account_reference",
    title="Record still naming an account merged away in the CRM",
    reads=frozenset({"identity", "billing.customers", "support.organizations", "erp.customers"}),
    defaults=RuleConfig(grace_seconds=900, severity="medium", action="update_customer"),
    check=check,
)
