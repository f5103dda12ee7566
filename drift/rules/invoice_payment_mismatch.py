"""D06: an invoice is paid on one side and still open on the other.

Pairs as in D05 (a billing invoice and the live ERP invoice whose `billing_invoice_id` names it).
Two directions, two subjects:

* `<billing id>|<ERP id>|paid_in_billing`: billing says `paid` while the ERP still has more than
  `amount_tolerance` remaining (its `amount_remaining`; when the ERP does not state it, the whole
  total of an unpaid invoice). Action: apply that amount as a payment in the ERP.
* `<billing id>|<ERP id>|paid_in_erp`: the ERP says paid (status `paid`, or open with no more than
  `amount_tolerance` remaining) while billing is `open`. Money billing does not know of, or a
  payment booked against the wrong invoice: a person reviews it, whatever the configured action.

Void, draft and deleted invoices on either side are left to the other rules.
"""

from __future__ import annotations

from concord.drift.config import RuleConfig
from concord.drift.finding import REVIEW, Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import action, observed
from concord.tables.state import CustomerState, Invoice


def _outstanding(erp: Invoice) -> int:
    if erp.amount_remaining is not None:
        return erp.amount_remaining
    return 0 if erp.status == "paid" else erp.total


def _settled_in_erp(erp: Invoice, tolerance: int) -> bool:
    if erp.status == "paid":
        return True
    return erp.status == "open" and erp.amount_remaining is not None and erp.amount_remaining <= tolerance


def _finding(state: CustomerState, billing: Invoice, erp: Invoice, direction: str, ctx: Context) -> Finding:
    remaining = _outstanding(erp)
    if direction == "paid_in_billing":
        fix = action(ctx, "netsuite", {"external_id": billing.id},
                     {"amount": remaining, "currency": erp.currency, "paid_at": billing.paid_at})
        summary = f"invoice {billing.number or billing.id} is paid in billing, the ERP has {remaining} outstanding"
    else:
        fix = REVIEW
        summary = f"invoice {billing.number or billing.id} is paid in the ERP ({erp.id}), open in billing"
    return Finding(
        rule=RULE.id,
        customer_key=state.key,
        subject=f"{billing.id}|{erp.id}|{direction}",
        since=max(billing.since, erp.since),
        evidence=(
            observed("stripe", billing.id, "status", billing.status, billing.stamp.ts, billing.since),
            observed("stripe", billing.id, "amount_remaining", billing.amount_remaining, billing.stamp.ts,
                     billing.since),
            observed("netsuite", erp.id, "status", erp.status, erp.stamp.ts, erp.since),
            observed("netsuite", erp.id, "amount_remaining", erp.amount_remaining, erp.stamp.ts, erp.since),
        ),
        action=fix,
        summary=summary,
    )


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not state.erp.invoices or not state.billing.invoices:
        return []
    tolerance = ctx.rule.amount_tolerance
    findings: list[Finding] = []
    for erp in state.erp.invoices.values():
        billing = state.billing.invoices.get(erp.billing_invoice_id or "")
        if billing is None or billing.deleted or erp.deleted or erp.status not in ("open", "paid"):
            continue
        if billing.status == "paid" and _outstanding(erp) > tolerance:
            findings.append(_finding(state, billing, erp, "paid_in_billing", ctx))
        elif billing.status == "open" and _settled_in_erp(erp, tolerance):
            findings.append(_finding(state, billing, erp, "paid_in_erp", ctx))
    return findings


RULE = Rule(
    id="D06",
    name="invoice_payment_mismatch",
    title="Invoice paid on one side, open on the other",
    reads=frozenset({"billing.invoices", "erp.invoices"}),
    defaults=RuleConfig(grace_seconds=7200, severity="medium", action="erp.apply_payment", owner="finance"),
    check=check,
)
