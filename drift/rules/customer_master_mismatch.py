"""D09: a customer-master field differs from the value of the system that owns it.

`ownership` (drift configuration) names the owning system of each field: name, country, address,
tax_id, currency, payment_terms. For each field, the owner's value (the CRM account, or the owner's
live customer record) is compared with every other system's live record that holds the field. A
side without a value is not compared; text compares ignoring case and runs of whitespace. When the
owner holds several records that disagree among themselves, the field is skipped (D12 reports the
duplicate records). Unknown fields or systems in `ownership` are ignored.

One finding per disagreeing record and field, subject `<field>|<system>:<record id>`. The action
pushes the owner's value to that record: the configured verb (`update_customer`) prefixed by the
system's domain, e.g. `erp.update_customer` on netsuite, target `customer_id`.
"""

from __future__ import annotations

from typing import NamedTuple

from concord.drift.config import RuleConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.drift.rules._common import DOMAIN, MASTER_FIELDS, norm, observed, parties, system_action
from concord.tables.state import Account, CustomerState, PartyRecord


class _Value(NamedTuple):
    system: str
    record: str
    value: str
    version: int


def _values(state: CustomerState, field: str) -> list[_Value]:
    """Every live record's value of `field`, where it has one."""
    found: list[_Value] = []
    account = state.crm.account
    if account is not None and not account.deleted and (value := getattr(account, field)) is not None:
        found.append(_Value("salesforce", state.key, value, account.stamp_of(field).ts))
    for system, record in parties(state):
        if (value := getattr(record, field)) is not None:
            found.append(_Value(system, record.id, value, record.stamp.ts))
    return found


def _finding(state: CustomerState, field: str, owner: _Value, other: _Value, ctx: Context) -> Finding:
    return Finding(
        rule=RULE.id,
        customer_key=state.key,
        subject=f"{field}|{other.system}:{other.record}",
        since=max(owner.version, other.version),
        evidence=(
            observed(owner.system, owner.record, field, owner.value, owner.version, owner.version),
            observed(other.system, other.record, field, other.value, other.version, other.version),
        ),
        action=system_action(ctx, other.system, {"customer_id": other.record}, {field: owner.value}),
        summary=f"{field} of {other.system} customer {other.record} is {other.value!r}, "
        f"its owner {owner.system} says {owner.value!r}",
    )


def _holders(state: CustomerState) -> list[Account | PartyRecord]:
    """Every live record that holds master fields: the CRM account, then the parties (as `parties`)."""
    account = state.crm.account
    found: list[Account | PartyRecord] = [account] if account is not None and not account.deleted else []
    for records in (state.billing.customers, state.support.organizations, state.erp.customers):
        found += [record for record in records.values() if not record.deleted]
    return found


def _any_two_differ(holders: list[Account | PartyRecord]) -> bool:
    """Whether two of the records hold different values of some master field.

    When none do (the common case: every system holds the same name, country...), no field can
    disagree with its owner, whatever the ownership: equal text normalizes alike.
    """
    for field in MASTER_FIELDS:
        first = None
        for record in holders:
            value = getattr(record, field)
            if value is not None and value != first:
                if first is not None:
                    return True
                first = value
    return False


def check(state: CustomerState, now_ms: int, ctx: Context) -> list[Finding]:
    if not _any_two_differ(_holders(state)):
        return []
    findings: list[Finding] = []
    for field, owner_system in ctx.config.ownership.items():
        if field not in MASTER_FIELDS or owner_system not in DOMAIN:
            continue
        values = _values(state, field)
        owned = [v for v in values if v.system == owner_system]
        if not owned or len({norm(v.value) for v in owned}) > 1:
            continue
        owner = min(owned, key=lambda v: v.record)
        expected = norm(owner.value)
        findings.extend(
            _finding(state, field, owner, other, ctx)
            for other in values
            if other.system != owner_system and norm(other.value) != expected
        )
    return findings


RULE = Rule(
    id="D09",
    name="customer_master_mismatch",
    title="Customer-master field differs from its owning system",
    reads=frozenset({"crm.account", "billing.customers", "support.organizations", "erp.customers"}),
    defaults=RuleConfig(grace_seconds=3600, severity="low", action="update_customer", owner="sales_ops"),
    check=check,
)
