"""What several rules share: what "paying" and "active" mean, evidence builders, action builders.

Vocabulary (one place, so the rules agree with each other):

* A subscription is **paying** when it is `active` or `trialing` (and not deleted).
* A subscription is **ended** when it is deleted or `canceled`, `unpaid`, `incomplete_expired` or
  `paused`. `past_due` and `incomplete` are neither: the customer is in dunning or mid-checkout, and
  no rule suspends or grants anything on them.
* An entitlement is **active** when its Zendesk status field reads `active` (case-insensitive) and
  the organization is not deleted.
* A billing invoice is **finalized** when it is `open`, `paid` or `uncollectible` (not draft, void
  or deleted): from then on its number and amounts are fixed and the ERP must book it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

from concord.drift.finding import REVIEW, Action, Observation
from concord.drift.rule import Context
from concord.tables.state import (
    CustomerState,
    Entitlement,
    Invoice,
    Opportunity,
    PartyRecord,
    Refund,
    Stamp,
    Subscription,
)

PAYING: Final = frozenset({"active", "trialing"})
ENDED: Final = frozenset({"canceled", "unpaid", "incomplete_expired", "paused"})
FINALIZED: Final = frozenset({"open", "paid", "uncollectible"})

# The part of the business each platform serves: the prefix of its per-system action names
# (D09, D13 configure only the verb, `update_customer`; the target system picks the prefix).
DOMAIN: Final = {"salesforce": "crm", "stripe": "billing", "zendesk": "support", "netsuite": "erp"}
MASTER_FIELDS: Final = ("name", "country", "address", "tax_id", "currency", "payment_terms")


def is_paying(sub: Subscription) -> bool:
    return not sub.deleted and sub.status in PAYING


def is_ended(sub: Subscription) -> bool:
    return sub.deleted or sub.status in ENDED


def is_active(ent: Entitlement) -> bool:
    return not ent.deleted and (ent.status or "").strip().lower() == "active"


def paying_subscriptions(state: CustomerState) -> list[Subscription]:
    return [s for s in state.billing.subscriptions.values() if is_paying(s)]


def active_entitlements(state: CustomerState) -> list[Entitlement]:
    return [e for e in state.support.entitlements.values() if is_active(e)]


def is_won(opp: Opportunity) -> bool:
    return bool(opp.is_won) and not opp.deleted


def won_at(opp: Opportunity) -> int:
    """Source time the opportunity was marked won (its `is_won` field stamp)."""
    return opp.stamp_of("is_won").ts


def is_finalized(inv: Invoice) -> bool:
    return not inv.deleted and inv.status in FINALIZED


def is_booked_refund(refund: Refund) -> bool:
    """A billing refund that moved money (`succeeded`) or a credit note in force (`issued`)."""
    if refund.document == "credit_note":
        return refund.status == "issued"
    return refund.status == "succeeded"


def newest(subs: Iterable[Subscription]) -> Subscription:
    """The most recently changed of (at least one) subscriptions: a deterministic pick among several."""
    return max(subs, key=lambda s: s.stamp)


def tier_for(plan: str | None, ctx: Context) -> str | None:
    return ctx.config.plan_tiers.get(plan) if plan is not None else None


def live(records: dict[str, PartyRecord]) -> list[PartyRecord]:
    return [r for r in records.values() if not r.deleted]


def parties(state: CustomerState) -> Iterator[tuple[str, PartyRecord]]:
    """Every live customer record outside the CRM, with its system name."""
    for system, records in (
        ("stripe", state.billing.customers),
        ("zendesk", state.support.organizations),
        ("netsuite", state.erp.customers),
    ):
        for record in records.values():
            if not record.deleted:
                yield system, record


def maybe_evicted(stamp: Stamp, erp_horizon: Stamp) -> bool:
    """A billing record this old may have had its ERP counterpart evicted from the bounded state.

    The ERP books a billing document after billing changed it, so a counterpart evicted from the ERP
    section (its stamp at or below the horizon) belongs to a billing record at or below it too.
    Such records are not judged missing: that would be Concord's own forgetting, not drift.
    """
    return erp_horizon.ts > 0 and stamp.ts <= erp_horizon.ts


def norm(text: str) -> str:
    """Text compared ignoring case and runs of whitespace ("ACME  corp" and "Acme Corp" agree)."""
    return " ".join(text.split()).casefold()


def observed(system: str, record: str, field: str, value: Any, version: int, at: int) -> Observation:
    return Observation(system=system, record=record, field=field, value=value, version=version, at=at)


def absent(system: str, field: str) -> Observation:
    """The side of a disagreement where the record does not exist."""
    return Observation(system=system, record="", field=field, value=None)


def action(ctx: Context, platform: str, target: dict[str, str], payload: dict[str, Any] | None = None) -> Action:
    """The configured action for this rule, or REVIEW when the rule is configured to `review`."""
    if ctx.rule.action == "review":
        return REVIEW
    return Action(name=ctx.rule.action, platform=platform, target=target, payload=payload or {})


def system_action(ctx: Context, system: str, target: dict[str, str], payload: dict[str, Any]) -> Action:
    """The configured verb sent to `system`: `update_customer` on netsuite is `erp.update_customer`."""
    if ctx.rule.action == "review":
        return REVIEW
    return Action(name=f"{DOMAIN[system]}.{ctx.rule.action}", platform=system, target=target, payload=payload)
