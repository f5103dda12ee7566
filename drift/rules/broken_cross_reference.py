"""D12: a cross-reference between the CRM account and another system's records is broken.

Two kinds, per system (stripe customers, zendesk organizations, netsuite customers):

* `duplicate|<system>`: more than one live record of the system belongs to this account (names it
  as `crm_account_id`, or names none). Invoices, tickets and corrections then split between them.
  `since` is when the second record appeared (its last change).
* `foreign|<system>:<record id>`: a live record resolved to this account names another account as
  `crm_account_id`. A record naming an account merged into this one (or the account this one was
  merged into) is D13's concern, not a broken reference.

A record that names no account is not reported on its own: identity linked it by its platform id,
and not every payload carries the reference.
Always a person's decision: which record is the real one is not something to guess.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding, Observation
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import action, live, observed
from concord.tables.state import CustomerState, PartyRecord


def _crm_side(state: CustomerState) -> Observation:
    account = state.crm.account
    version = account.stamp.ts if account is not None else 0
    return observed("salesforce", state.key, "account_id", state.key, version, version)


def _record_side(system: str, record: PartyRecord) -> Observation:
    return observed(system, record.id, "crm_account_id", record.crm_account_id, record.stamp.ts, record.stamp.ts)


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    ours = (None, state.key)
    # Records naming an account merged into this one (or this one's own winner) are D13's concern.
    moved = (None, state.key, state.merged_into, *[loser for loser, _ in state.absorbed])
    for system, records in (
        ("stripe", state.billing.customers),
        ("zendesk", state.support.organizations),
        ("netsuite", state.erp.customers),
    ):
        if not records:
            continue
        alive = live(records)
        # By id: the evidence is the same whatever order the records reached the state in.
        mine = sorted((r for r in alive if r.crm_account_id in ours), key=lambda r: r.id)
        if len(mine) > 1:
            findings.append(
                Finding(
                    rule=RULE.id,
                    customer_key=state.key,
                    subject=f"duplicate|{system}",
                    since=sorted(r.stamp.ts for r in mine)[1],
                    evidence=(_crm_side(state), *(_record_side(system, r) for r in mine)),
                    action=action(ctx, system, {"crm_account_id": state.key}),
                    summary=f"account {state.key} has {len(mine)} {system} customers: "
                    + ", ".join(sorted(r.id for r in mine)),
                )
            )
        for r in alive:
            if r.crm_account_id not in moved:
                findings.append(
                    Finding(
                        rule=RULE.id,
                        customer_key=state.key,
                        subject=f"foreign|{system}:{r.id}",
                        since=r.stamp.ts,
                        evidence=(_crm_side(state), _record_side(system, r)),
                        action=action(ctx, system, {"customer_id": r.id}),
                        summary=f"{system} customer {r.id} belongs to account {state.key} "
                        f"but names {r.crm_account_id}",
                    )
                )
    return findings


RULE = Rule(
    id="D12",
    name="broken_cross_reference",
    title="One account mapped to several records, or a record naming another account",
    reads=frozenset({"billing.customers", "support.organizations", "erp.customers", "identity"}),
    defaults=RuleConfig(grace_seconds=3600, severity="medium", action="review", owner="sales_ops"),
    check=check,
)
