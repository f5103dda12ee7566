"""Small builders of canonical events and states for the drift rule tests.

States are built the way the worker builds them: canonical events folded with
`concord.tables.state.apply`. Times are plain integers (epoch ms); every event gets a unique id.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from concord.codecs.model import (
    AccountMerged,
    AccountUpserted,
    CanonicalEvent,
    CustomerUpserted,
    EntitlementChanged,
    EntityRef,
    InvoiceChanged,
    OpportunityChanged,
    Platform,
    RefundChanged,
    SubscriptionChanged,
    SupportCaseChanged,
    Version,
)
from concord.drift.config import DEFAULT_OWNERSHIP, DriftConfig
from concord.drift.finding import Finding
from concord.drift.rule import Context, Rule
from concord.tables.state import CustomerState, DriftItem, apply, empty

KEY = "001A"
HOUR = 3_600_000
_ids = itertools.count(1)


def _common(source: Platform, kind: str, entity_id: str, at: int) -> dict[str, Any]:
    return {
        "event_id": f"{source}:{kind}:{entity_id}:{next(_ids)}",
        "source": source,
        "entity": EntityRef(kind, entity_id),
        "occurred_at": at,
        "version": Version(at),
        "customer_key": KEY,
    }


def account(at: int, **fields: Any) -> AccountUpserted:
    return AccountUpserted(**_common(Platform.SALESFORCE, "account", KEY, at), **fields)


def opportunity(opp_id: str, at: int, **fields: Any) -> OpportunityChanged:
    return OpportunityChanged(**_common(Platform.SALESFORCE, "opportunity", opp_id, at), opportunity_id=opp_id,
                              account_id=KEY, **fields)


def won(opp_id: str, at: int, **fields: Any) -> OpportunityChanged:
    """The opportunity marked closed-won at `at` (USD unless a currency is given)."""
    fields.setdefault("currency", "USD")
    return opportunity(opp_id, at, stage="Closed Won", is_won=True, is_closed=True, **fields)


def merged(winner: str, at: int) -> AccountMerged:
    return AccountMerged(**_common(Platform.SALESFORCE, "account", winner, at), winner_id=winner, loser_ids=(KEY,))


def customer(system: Platform, customer_id: str, at: int, **fields: Any) -> CustomerUpserted:
    fields.setdefault("crm_account_id", KEY)
    return CustomerUpserted(**_common(system, "customer", customer_id, at), system=system, customer_id=customer_id,
                            **fields)


def subscription(sub_id: str, status: str, at: int, **fields: Any) -> SubscriptionChanged:
    fields.setdefault("customer_id", "cus_1")
    return SubscriptionChanged(**_common(Platform.STRIPE, "subscription", sub_id, at), subscription_id=sub_id,
                               status=status, **fields)


def invoice(system: Platform, invoice_id: str, status: str, total: int, at: int, **fields: Any) -> InvoiceChanged:
    fields.setdefault("currency", "USD")
    if system is Platform.STRIPE:
        fields.setdefault("billing_invoice_id", invoice_id)
    return InvoiceChanged(**_common(system, "invoice", invoice_id, at), system=system, invoice_id=invoice_id,
                          status=status, total=total, **fields)


def refund(system: Platform, refund_id: str, document: str, status: str, amount: int, at: int,
           **fields: Any) -> RefundChanged:
    fields.setdefault("currency", "USD")
    return RefundChanged(**_common(system, document, refund_id, at), system=system, refund_id=refund_id,
                         document=document, status=status, amount=amount, **fields)


def entitlement(org_id: str, status: str | None, at: int, **fields: Any) -> EntitlementChanged:
    return EntitlementChanged(**_common(Platform.ZENDESK, "organization", org_id, at), organization_id=org_id,
                              status=status, **fields)


def case(ticket_id: str, status: str, at: int, **fields: Any) -> SupportCaseChanged:
    fields.setdefault("organization_id", "org_1")
    return SupportCaseChanged(**_common(Platform.ZENDESK, "ticket", ticket_id, at), ticket_id=ticket_id,
                              status=status, **fields)


def state_of(*events: CanonicalEvent, base: CustomerState | None = None) -> CustomerState:
    """`base` (or an empty state) after `events`, in order."""
    state = base if base is not None else empty(KEY)
    for event in events:
        state, _ = apply(state, event)
    return state


def with_drift(state: CustomerState, *items: DriftItem) -> CustomerState:
    return msgspec.structs.replace(state, drift={**state.drift, **{i.fingerprint: i for i in items}})


def context(rule: Rule, *, plan_tiers: dict[str, str] | None = None, ownership: dict[str, str] | None = None,
            correction_timeout_seconds: int = 1800, **overrides: Any) -> Context:
    """The rule's defaults with `overrides`, in a drift configuration with the given maps."""
    settings = msgspec.structs.replace(rule.defaults, **overrides) if overrides else rule.defaults
    config = DriftConfig(rules={rule.id: settings}, plan_tiers=plan_tiers or {},
                         ownership=dict(DEFAULT_OWNERSHIP) if ownership is None else ownership,
                         correction_timeout_seconds=correction_timeout_seconds)
    return Context(rule=config.rule(rule.id, settings), config=config)


def run(rule: Rule, state: CustomerState, now: int = 100 * HOUR, **ctx: Any) -> list[Finding]:
    return rule.check(state, now, context(rule, **ctx))


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def systems(finding: Finding) -> set[str]:
    return {o.system for o in finding.evidence}
