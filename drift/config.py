"""Drift configuration: per-rule settings, the plan-to-tier map and field ownership."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final, Literal

import msgspec
from msgspec import Struct

Severity = Literal["low", "medium", "high", "critical"]
#: The team that takes a rule's findings when a person must decide (shown on the board, filterable).
Owner = Literal["finance", "support", "sales_ops", "integration"]
#: How the board and `concord rules` name each team.
OWNER_TITLES: Final[dict[str, str]] = {
    "finance": "Finance",
    "support": "Support",
    "sales_ops": "Sales operations",
    "integration": "Integration (platform team)",
}


class RuleConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one rule runs. Every field may be overridden per rule in the rules file."""

    enabled: bool = True
    grace_seconds: int = 3600  # a disagreement younger than this is not reported
    amount_tolerance: int = 0  # minor units two amounts may differ by
    date_skew_seconds: int = 0  # seconds two dates may differ by
    severity: Severity = "medium"
    action: str = "review"  # the corrective action, or "review" (a person decides)
    dry_run: bool = False  # detect and report, never command
    # Who takes the exception. A rule that names no team lands with the team that runs Concord.
    owner: Owner = "integration"
    # `approve`: its corrections wait on the console until an operator approves (or rejects) each one.
    mode: Literal["auto", "approve"] = "auto"


DEFAULT_OWNERSHIP: Final = {
    "name": "salesforce",
    "country": "salesforce",
    "address": "salesforce",
    "tax_id": "salesforce",
    "currency": "stripe",
    "payment_terms": "netsuite",
}


class DriftConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rules: dict[str, RuleConfig] = {}
    # Stripe plan / price id (or nickname) -> Zendesk support tier.
    plan_tiers: dict[str, str] = {}
    # Which system owns each customer-master field; the others must agree with it (D09).
    ownership: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_OWNERSHIP))
    # Corrections tried for one finding before it is escalated to a person.
    max_corrections: int = 3
    # After a command, how long the systems get to converge before the next correction (or D14).
    correction_timeout_seconds: int = 1800
    # Resolved findings kept in a customer's state (the Redis index keeps the history).
    resolved_kept: int = 10
    # How long a due finding waits for an input Concord cannot read yet (a Zendesk entitlement whose
    # re-read is pending or failing) before it is reported as "cannot judge", with no command.
    unread_bound_seconds: int = 3600

    def rule(self, rule_id: str, defaults: RuleConfig) -> RuleConfig:
        return self.rules.get(rule_id, defaults)

    def owner(self, rule_id: str) -> str:
        """The team that takes `rule_id`'s exceptions (a rule this configuration does not list: the default)."""
        found = self.rules.get(rule_id)
        return found.owner if found is not None else RuleConfig().owner


E_RULES_FILE: Final = "rules file {path}: {problem} (see docs/rules.md for its format)"


def load(path: str | Path | None, defaults: dict[str, RuleConfig]) -> DriftConfig:
    """The drift configuration: built-in defaults, overridden by the JSON rules file if given.

    The file: {"rules": {"D01": {"grace_seconds": 600, "dry_run": true}, ...}, "plan_tiers": {...},
    "ownership": {...}, "max_corrections": 3, ...}. Per-rule entries override only the fields given.
    """
    merged: dict[str, RuleConfig] = dict(defaults)
    if not path:
        return DriftConfig(rules=merged)
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(E_RULES_FILE.format(path=path, problem=str(exc))) from None
    overrides = raw.pop("rules", {}) if isinstance(raw, dict) else {}
    try:
        for rule_id, fields in overrides.items():
            if rule_id not in merged:
                raise ValueError(f"unknown rule {rule_id!r}; rules: {', '.join(sorted(merged))}")
            base = msgspec.structs.asdict(merged[rule_id])
            merged[rule_id] = msgspec.convert({**base, **fields}, RuleConfig)
        return msgspec.structs.replace(msgspec.convert(raw, DriftConfig), rules=merged)
    except msgspec.ValidationError as exc:
        raise ValueError(E_RULES_FILE.format(path=path, problem=str(exc))) from None


def all_dry_run(config: DriftConfig) -> DriftConfig:
    """`config` with every rule in dry-run (`CONCORD_DRY_RUN`): findings reported, no correction commanded."""
    rules = {rule_id: msgspec.structs.replace(rule, dry_run=True) for rule_id, rule in config.rules.items()}
    return msgspec.structs.replace(config, rules=rules)
