"""The catalog: every rule module is listed, named after its rule, with the documented defaults."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

from concord.drift import catalog, rules
from concord.drift.config import load
from concord.drift.rule import SECTIONS, Rule
from concord.tables.state import empty
from tests.unit.drift.builders import KEY, context

# id: (name, grace seconds, severity, action)
DEFAULTS = {
    "D01": ("entitlement_unpaid", 3600, "high", "support.suspend_entitlement"),
    "D02": ("paying_without_entitlement", 900, "high", "support.grant_entitlement"),
    "D03": ("entitlement_tier_mismatch", 900, "medium", "support.set_tier"),
    "D04": ("invoice_missing_in_erp", 3600, "high", "erp.upsert_invoice"),
    "D05": ("invoice_amount_mismatch", 0, "high", "review"),
    "D06": ("invoice_payment_mismatch", 7200, "medium", "erp.apply_payment"),
    "D07": ("refund_without_credit_memo", 86400, "medium", "erp.create_credit_memo"),
    "D08": ("customer_missing_in_erp", 3600, "medium", "erp.upsert_customer"),
    "D09": ("customer_master_mismatch", 3600, "low", "update_customer"),
    "D10": ("closed_won_not_provisioned", 3600, "high", "saga.resume"),
    "D11": ("closed_won_value_mismatch", 3600, "medium", "review"),
    "D12": ("broken_cross_reference", 3600, "medium", "review"),
    "D13": ("merged_account_reference", 900, "medium", "update_customer"),
    "D14": ("correction_stuck", 1800, "high", "concord.probe"),
    "D15": ("case_without_paid_entitlement", 0, "low", "review"),
}


def test_ids_are_d01_to_d15_in_order_and_unique() -> None:
    assert [rule.id for rule in catalog.RULES] == [f"D{n:02d}" for n in range(1, 16)]
    assert list(catalog.BY_ID) == [rule.id for rule in catalog.RULES]


def test_every_rule_module_is_in_the_catalog_under_its_own_name() -> None:
    modules = {m.name for m in pkgutil.iter_modules(rules.__path__) if not m.name.startswith("_")}
    assert modules == {rule.name for rule in catalog.RULES}
    for rule in catalog.RULES:
        assert importlib.import_module(f"concord.drift.rules.{rule.name}").RULE is rule


def test_defaults_match_the_rule_table() -> None:
    actual = {r.id: (r.name, r.defaults.grace_seconds, r.defaults.severity, r.defaults.action) for r in catalog.RULES}
    assert actual == DEFAULTS
    assert catalog.default_configs() == {r.id: r.defaults for r in catalog.RULES}
    assert all(r.defaults.enabled and not r.defaults.dry_run for r in catalog.RULES)


def test_reads_are_sections_and_every_rule_has_a_title() -> None:
    for rule in catalog.RULES:
        assert rule.reads and rule.reads <= SECTIONS, rule.id
        assert rule.title


@pytest.mark.parametrize("rule", catalog.RULES, ids=lambda r: r.id)
def test_an_empty_state_has_no_findings(rule: Rule) -> None:
    assert rule.check(empty(KEY), 0, context(rule)) == []


def test_the_rules_file_overrides_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text('{"rules": {"D05": {"amount_tolerance": 2}}, "plan_tiers": {"pro": "gold"}}')
    config = load(path, catalog.default_configs())
    assert config.rules["D05"].amount_tolerance == 2
    assert config.rules["D05"].severity == "high"
    assert config.rules["D01"] == catalog.BY_ID["D01"].defaults
    assert config.plan_tiers == {"pro": "gold"}


def test_docs_have_a_section_per_rule_and_a_valid_example(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "rules.md").read_text()
    for rule in catalog.RULES:
        assert f"## {rule.id} {rule.name}\n" in text, rule.id
    example = text.split("```json\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "rules.json"
    path.write_text(example)
    config = load(path, catalog.default_configs())
    assert config.rules["D15"].enabled is False
    assert config.ownership["currency"] == "netsuite"
