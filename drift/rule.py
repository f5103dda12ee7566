"""The rule contract: a pure function over one customer's state."""

from __future__ import annotations

from collections.abc import Callable

from msgspec import Struct

from concord.drift.config import DriftConfig, RuleConfig
from concord.drift.finding import Finding
from concord.drift.sections import SECTIONS
from concord.tables.state import CustomerState

__all__ = ["SECTIONS", "Check", "Context", "Rule"]


class Context(Struct, frozen=True):
    """What a rule may know besides the state: its own settings and the shared maps."""

    rule: RuleConfig
    config: DriftConfig


Check = Callable[[CustomerState, int, Context], list[Finding]]


class Rule(Struct, frozen=True, kw_only=True):
    id: str  # "D01"
    name: str  # "entitlement_unpaid": what it checks, also the module name
    title: str  # one line for `concord rules` and the board
    reads: frozenset[str]  # parts of the state it reads (subset of drift.sections.SECTIONS)
    defaults: RuleConfig
    check: Check
