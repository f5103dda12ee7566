"""D08: a customer the business has won or bills is missing in the ERP.

Fires when the CRM has a won opportunity (not deleted) or billing has a live customer, and the ERP
has no live customer record. Subject: the customer key (one ERP customer per CRM account); `since`
is when the first of those appeared. The action upserts the ERP customer by external id (the
customer key) with name, currency and country, each taken from the system that owns the field
(`ownership`) when it has a value, else from the CRM account, else from the billing customer.
"""

from __future__ import annotations

from typing import Any

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import absent, action, is_won, live, observed, won_at
from concord.tables.state import Account, CustomerState, PartyRecord

_FIELDS = ("name", "currency", "country")


def _master(field: str, account: Account | None, billing: list[PartyRecord], owner: str | None) -> Any:
    crm = [getattr(account, field)] if account is not None and not account.deleted else []
    stripe = [getattr(c, field) for c in billing]
    ordered = stripe + crm if owner == "stripe" else crm + stripe
    return next((v for v in ordered if v is not None), None)


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if live(state.erp.customers):
        return []
    won = [o for o in state.crm.opportunities.values() if is_won(o)]
    billing = sorted(live(state.billing.customers), key=lambda c: c.id)
    if not won and not billing:
        return []
    present = [observed("salesforce", o.id, "is_won", True, won_at(o), won_at(o)) for o in won]
    present += [observed("stripe", c.id, "crm_account_id", c.crm_account_id, c.stamp.ts, c.stamp.ts) for c in billing]
    account = state.crm.account
    payload = {f: _master(f, account, billing, ctx.config.ownership.get(f)) for f in _FIELDS}
    return [
        Finding(
            rule=RULE.id,
            customer_key=state.key,
            subject=state.key,
            since=min(o.at for o in present),
            evidence=(*present, absent("netsuite", "customer")),
            action=action(ctx, "netsuite", {"external_id": state.key}, payload),
            summary=f"customer {payload['name'] or state.key} is "
            + ("won in the CRM" if won else "billed")
            + " but has no ERP customer record",
        )
    ]


RULE = Rule(
    id="D08",
    name="customer_missing_in_erp",
    title="Won or billed customer missing in the ERP",
    reads=frozenset({"crm.account", "crm.opportunities", "billing.customers", "erp.customers"}),
    defaults=RuleConfig(grace_seconds=3600, severity="medium", action="erp.upsert_customer"),
    check=check,
)
