"""D04: a finalized billing invoice (open, paid or uncollectible; not deleted) has no ERP invoice.

The ERP invoice books a billing invoice when its `billing_invoice_id` (NetSuite externalId) equals
the billing invoice id; a deleted ERP invoice does not count. Closed billing invoices older than the
ERP section's eviction horizon are not judged (their ERP counterpart may have been evicted from the
bounded state). Subject: the billing invoice id.
"""

from __future__ import annotations

from typing import Any

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import absent, action, is_finalized, maybe_evicted, observed
from concord.tables.state import CustomerState, Invoice


def _payload(state: CustomerState, inv: Invoice) -> dict[str, Any]:
    return {
        "customer_key": state.key,
        "number": inv.number,
        "total": inv.total,
        "tax": inv.tax,
        "currency": inv.currency,
        "due_at": inv.due_at,
        "status": inv.status,
    }


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not state.billing.invoices:
        return []
    # Booked first: once the ERP books every billing invoice (the common case) none is judged.
    booked = {e.billing_invoice_id for e in state.erp.invoices.values() if not e.deleted}
    horizon = state.erp.horizon
    missing = [
        inv for inv in state.billing.invoices.values()
        if inv.id not in booked and is_finalized(inv)
        and not (inv.status != "open" and maybe_evicted(inv.stamp, horizon))
    ]
    return [
        Finding(
            rule=RULE.id,
            customer_key=state.key,
            subject=inv.id,
            since=inv.since,
            evidence=(
                observed("stripe", inv.id, "status", inv.status, inv.stamp.ts, inv.since),
                absent("netsuite", "invoice"),
            ),
            action=action(ctx, "netsuite", {"external_id": inv.id}, _payload(state, inv)),
            summary=f"billing invoice {inv.number or inv.id} ({inv.status}) is not in the ERP",
        )
        for inv in missing
    ]


RULE = Rule(
    id="D04",
    name="invoice_missing_in_erp",
    title="Finalized billing invoice missing in the ERP",
    reads=frozenset({"billing.invoices", "erp.invoices"}),
    defaults=RuleConfig(grace_seconds=3600, severity="high", action="erp.upsert_invoice", owner="finance"),
    check=check,
)
