"""D07: a billing refund (status `succeeded`) or credit note (status `issued`) has no ERP credit memo.

An ERP credit memo books it when its `billing_refund_id` (NetSuite externalId) equals the refund or
credit note id; a void or deleted credit memo does not count. Refunds older than the ERP section's eviction
horizon are not judged. Subject: the refund or credit note id.

Stripe can issue a credit note together with a refund of the same money; both are billing
documents here, and each needs its own credit memo unless the ERP books them under one externalId.

A `charge.refunded` event without its refund list (API 2022-11-15 on) gives a charge-level refund
keyed by the charge id. Once the charge's own refunds (`refund.*` events) are known, that total is
the same money seen twice: it is not judged, or every refund would raise a second finding.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import absent, action, is_booked_refund, maybe_evicted, observed
from concord.tables.state import CustomerState


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    horizon = state.erp.horizon
    refunds = [r for r in state.billing.refunds.values()
               if is_booked_refund(r) and not maybe_evicted(r.stamp, horizon)]
    itemized = {r.charge_id for r in refunds if r.charge_id and r.id != r.charge_id}
    refunds = [r for r in refunds if not (r.id == r.charge_id and r.id in itemized)]
    if not refunds:
        return []
    booked = {m.billing_refund_id for m in state.erp.credit_memos.values() if m.status != "void" and not m.deleted}
    return [
        Finding(
            rule=RULE.id,
            customer_key=state.key,
            subject=refund.id,
            since=refund.since,
            evidence=(
                observed("stripe", refund.id, "status", refund.status, refund.stamp.ts, refund.since),
                absent("netsuite", "credit_memo"),
            ),
            action=action(
                ctx,
                "netsuite",
                {"external_id": refund.id},
                {
                    "customer_key": state.key,
                    "document": refund.document,
                    "invoice_id": refund.invoice_id,
                    "charge_id": refund.charge_id,
                    "amount": refund.amount,
                    "currency": refund.currency,
                },
            ),
            summary=f"billing {refund.document.replace('_', ' ')} {refund.id} of {refund.amount} {refund.currency} "
            "has no credit memo in the ERP",
        )
        for refund in refunds
        if refund.id not in booked
    ]


RULE = Rule(
    id="D07",
    name="refund_without_credit_memo",
    title="Billing refund or credit note without an ERP credit memo",
    reads=frozenset({"billing.refunds", "erp.credit_memos"}),
    defaults=RuleConfig(grace_seconds=86400, severity="medium", action="erp.create_credit_memo", owner="finance"),
    check=check,
)
