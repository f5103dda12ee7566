"""D08: a customer the business has won or bills is missing in the ERP.

Fires when the CRM has a won opportunity (not deleted) or billing has a live customer, and the ERP
has no live customer record. A won deal a quote-to-cash saga took does not count: the ERP customer is
the saga's step (drift/saga.py), and a saga that stopped is D10's to report; correcting it here too
would write the ERP customer twice, racing the saga. Subject: the customer key (one ERP customer per
CRM account); `since` is when the first of those appeared. The action upserts the ERP customer by external id (the
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
    """The first value of `field`: the CRM account's, then the billing customers' (these first when
    billing owns the field)."""
    crm = getattr(account, field) if account is not None and not account.deleted else None
    if crm is not None and owner != "stripe":
        return crm
    for customer in billing:
        if (value := getattr(customer, field)) is not None:
            return value
    return crm


def _by_id(record: PartyRecord) -> str:
    return record.id


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if live(state.erp.customers):
        return []
    won = [o for o in state.crm.opportunities.values() if is_won(o) and o.id not in state.sagas]
    billing = live(state.billing.customers)
    if not won and not billing:
        return []
    if len(billing) > 1:
        billing.sort(key=_by_id)
    present = []
    for o in won:
        at = won_at(o)
        present.append(observed("salesforce", o.id, "is_won", True, at, at))
    for c in billing:
        at = c.stamp.ts
        present.append(observed("stripe", c.id, "crm_account_id", c.crm_account_id, at, at))
    account = state.crm.account
    ownership = ctx.config.ownership
    payload = {f: _master(f, account, billing, ownership.get(f)) for f in _FIELDS}
    return [
        Finding(
            rule=RULE.id,
            customer_key=state.key,
            subject=state.key,
            since=min([o.at for o in present]),
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
    reads=frozenset({"sagas", "crm.account", "crm.opportunities", "billing.customers", "erp.customers"}),
    defaults=RuleConfig(grace_seconds=3600, severity="medium", action="erp.upsert_customer", owner="finance"),
    check=check,
)
