"""Every drift rule, in id order, and their built-in settings (the rules file overrides them)."""

from __future__ import annotations

from typing import Final

from concord.drift.config import RuleConfig
from concord.drift.rule import Rule
from concord.drift.rules import (
    broken_cross_reference,
    case_without_paid_entitlement,
    closed_won_not_provisioned,
    closed_won_value_mismatch,
    correction_stuck,
    customer_master_mismatch,
    customer_missing_in_erp,
    entitlement_tier_mismatch,
    entitlement_unpaid,
    invoice_amount_mismatch,
    invoice_missing_in_erp,
    invoice_payment_mismatch,
    merged_account_reference,
    paying_without_entitlement,
    refund_without_credit_memo,
)

RULES: Final[tuple[Rule, ...]] = (
    entitlement_unpaid.RULE,
    paying_without_entitlement.RULE,
    entitlement_tier_mismatch.RULE,
    invoice_missing_in_erp.RULE,
    invoice_amount_mismatch.RULE,
    invoice_payment_mismatch.RULE,
    refund_without_credit_memo.RULE,
    customer_missing_in_erp.RULE,
    customer_master_mismatch.RULE,
    closed_won_not_provisioned.RULE,
    closed_won_value_mismatch.RULE,
    broken_cross_reference.RULE,
    merged_account_reference.RULE,
    correction_stuck.RULE,
    case_without_paid_entitlement.RULE,
)
BY_ID: Final[dict[str, Rule]] = {rule.id: rule for rule in RULES}


def default_configs() -> dict[str, RuleConfig]:
    """Rule id -> its built-in settings: the base `concord.drift.config.load` overrides per rule."""
    return {rule.id: rule.defaults for rule in RULES}
