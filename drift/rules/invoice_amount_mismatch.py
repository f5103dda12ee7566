"""D05: a billing invoice and the ERP invoice booking it disagree on total, currency or tax.

Pairs: a finalized billing invoice and each live ERP invoice whose `billing_invoice_id` names it.
Totals and taxes may differ by up to `amount_tolerance` minor units; a tax either side does not
state is not compared. One finding per pair (subject `<billing invoice id>|<ERP invoice id>`),
whose evidence holds both sides of every field that differs. Always a person's decision: which
side is wrong is an accounting question.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding, Observation
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import action, is_finalized, observed
from concord.tables.state import CustomerState, Invoice


def _differences(billing: Invoice, erp: Invoice, tolerance: int) -> list[str]:
    fields: list[str] = []
    if abs(billing.total - erp.total) > tolerance:
        fields.append("total")
    if billing.currency.upper() != erp.currency.upper():
        fields.append("currency")
    if billing.tax is not None and erp.tax is not None and abs(billing.tax - erp.tax) > tolerance:
        fields.append("tax")
    return fields


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not state.erp.invoices or not state.billing.invoices:
        return []
    findings: list[Finding] = []
    for erp in state.erp.invoices.values():
        billing = state.billing.invoices.get(erp.billing_invoice_id or "")
        if erp.deleted or billing is None or not is_finalized(billing):
            continue
        fields = _differences(billing, erp, ctx.rule.amount_tolerance)
        if not fields:
            continue
        evidence: list[Observation] = []
        for field in fields:
            evidence.append(observed("stripe", billing.id, field, getattr(billing, field), billing.stamp.ts,
                                     billing.since))
            evidence.append(observed("netsuite", erp.id, field, getattr(erp, field), erp.stamp.ts, erp.since))
        findings.append(
            Finding(
                rule=RULE.id,
                customer_key=state.key,
                subject=f"{billing.id}|{erp.id}",
                since=max(billing.since, erp.since),
                evidence=tuple(evidence),
                action=action(ctx, "netsuite", {"external_id": billing.id}),
                summary=f"invoice {billing.number or billing.id}: {', '.join(fields)} differ between billing "
                f"and the ERP ({erp.id})",
            )
        )
    return findings


RULE = Rule(
    id="D05",
    name="invoice_amount_mismatch",
    title="Invoice total, currency or tax differ between billing and the ERP",
    reads=frozenset({"billing.invoices", "erp.invoices"}),
    defaults=RuleConfig(grace_seconds=0, severity="high", action="review", owner="finance"),
    check=check,
)
