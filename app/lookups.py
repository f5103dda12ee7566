"""The governed lookups other systems call instead of re-deriving them (issue 14, process APIs): what
support should grant a customer, each invoice's status in billing and the ERP, and each subscription
with the deal it comes from.

Concord holds all four systems' view of a customer, so a support desk opening a case, a finance tool or
a CRM page ask it rather than each integration reading Stripe and NetSuite and judging on its own. The
answers use the rules' own vocabulary (drift/rules/_common.py: paying, ended, active, the plan-to-tier
map through `tier_for`), so a lookup and the findings never disagree on what "paying" means; each answer
carries its evidence (which record, which status, since when) and the unresolved findings about it.

Pure: built from the customer's state and the drift configuration alone, on the worker that owns the
customer (app/owner.py), like the customer view. Amounts in minor units of their currency, times in
epoch ms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

from msgspec import Struct

from concord.connectors.search_index import SearchResults
from concord.core.messages import DriftItem
from concord.drift import catalog
from concord.drift.config import DriftConfig, RuleConfig
from concord.drift.rule import Context
from concord.drift.rules._common import (
    active_entitlements,
    is_active,
    is_ended,
    is_paying,
    is_won,
    newest,
    norm,
    paying_subscriptions,
    tier_for,
    won_at,
)
from concord.tables.state import CustomerState, Entitlement, Invoice, Opportunity, Subscription

#: A finding still to act on: reported and not resolved (open, commanded, escalated).
ACTIVE: Final = frozenset({"open", "commanded", "escalated"})

Billing = Literal["paying", "dunning", "ended", "none"]
#: The systems whose ids a lookup takes instead of the customer key (`?by=`).
System = Literal["salesforce", "stripe", "zendesk", "netsuite"]
SYSTEMS: Final = ("salesforce", "stripe", "zendesk", "netsuite")


class FindingRef(Struct, frozen=True, kw_only=True):
    """An unresolved finding about what an answer shows (`/api/v1/drift/{fingerprint}` has the rest)."""

    fingerprint: str
    rule: str
    status: str
    summary: str


def keys_for(results: SearchResults, system: str) -> list[str]:
    """The customers that an id of `system` names, from a search for that id: a support desk often has
    only a Zendesk organization or a Stripe id at hand (`?by=zendesk`)."""
    return sorted({hit.key for hit in results.hits
                   if hit.match == "id" and any(r.system == system for r in hit.records)})


# ---------------------------------------------------------------- entitlement


class SubscriptionEvidence(Struct, frozen=True, kw_only=True):
    """A subscription as billing holds it, and the support tier its plan maps to (rules file `plan_tiers`)."""

    id: str
    status: str
    plan: str | None
    tier: str | None  # None: the plan is not mapped
    paying: bool
    since: int  # when billing set this status


class SupportGrant(Struct, frozen=True, kw_only=True):
    """An organization's entitlement as Zendesk holds it now."""

    organization_id: str
    status: str | None
    tier: str | None
    active: bool
    since: int
    unread_since: int = 0  # changed in Zendesk in ways Concord has not read yet, since (0: read): unknown


class EntitlementAnswer(Struct, frozen=True, kw_only=True):
    """`GET /api/v1/customers/{key}/entitlement`: what support should grant, from billing truth."""

    key: str
    entitled: bool  # a subscription is paying (active or trialing)
    tier: str | None  # the tier of the newest paying subscription's plan; None: not entitled, or not mapped
    accepted_tiers: list[str]  # any paying subscription's tier is accepted (the rule D03 judges so)
    billing: Billing  # paying; dunning (past_due, incomplete: nothing granted or taken); ended; none
    evidence: list[SubscriptionEvidence]  # the paying subscriptions, newest first; else every subscription
    support: list[SupportGrant]  # what Zendesk holds now, by organization
    disagrees: bool
    disagreement: str = ""  # what support holds that billing does not warrant, or lacks
    findings: list[FindingRef] = []


def _context(config: DriftConfig) -> Context:
    return Context(rule=RuleConfig(), config=config)


def _billing(subs: list[Subscription]) -> Billing:
    if any(is_paying(s) for s in subs):
        return "paying"
    if not subs:
        return "none"
    return "ended" if all(is_ended(s) for s in subs) else "dunning"


def _grant(entitlement: Entitlement, state: CustomerState) -> SupportGrant:
    unread = state.support.unread.get(entitlement.organization_id, (0, 0))[0]
    return SupportGrant(organization_id=entitlement.organization_id, status=entitlement.status,
                        tier=entitlement.tier, active=is_active(entitlement), since=entitlement.since,
                        unread_since=unread)


def _reading(*sections: str) -> frozenset[str]:
    """The rules that judge what an answer shows: those reading every one of `sections`."""
    return frozenset(r.id for r in catalog.RULES if r.reads >= set(sections))


#: The rules whose findings each answer lists: support entitlements against billing (D01, D02, D03, D15),
#: invoices across billing and the ERP (D04, D05, D06), deals against subscriptions (D10, D11).
ENTITLEMENT_RULES: Final = _reading("billing.subscriptions", "support.entitlements")
INVOICE_RULES: Final = _reading("billing.invoices", "erp.invoices")
SUBSCRIPTION_RULES: Final = _reading("crm.opportunities", "billing.subscriptions")


def _refs(items: Iterable[DriftItem], rules: frozenset[str], records: set[str] | None = None) -> list[FindingRef]:
    """The unresolved findings of `rules` (naming one of `records` in their evidence, when given)."""
    return [FindingRef(fingerprint=i.fingerprint, rule=i.rule, status=i.status, summary=i.summary)
            for i in sorted(items, key=lambda i: i.fingerprint)
            if i.status in ACTIVE and i.rule in rules
            and (records is None or any(o.record in records for o in i.evidence))]


def _entitlement_disagreement(billing: Billing, accepted: set[str], active: list[Entitlement]) -> str:
    if billing == "paying" and not active:
        return "billing pays, and no organization has an active support entitlement"
    if billing in ("ended", "none") and active:
        return "support grants an active entitlement, and no subscription pays for it"
    if billing == "paying" and accepted:
        wrong = sorted(e.organization_id for e in active if e.tier is None or norm(e.tier) not in accepted)
        if wrong:
            return f"organization {', '.join(wrong)} has a tier the paid plan does not map to"
    return ""


def entitlement(state: CustomerState, config: DriftConfig) -> EntitlementAnswer:
    """What support should grant the customer of `state`, from billing, beside what Zendesk holds."""
    ctx = _context(config)
    subs = sorted(state.billing.subscriptions.values(), key=lambda s: s.stamp, reverse=True)
    paying = paying_subscriptions(state)
    billing = _billing(subs)
    tier = tier_for(newest(paying).plan, ctx) if paying else None
    accepted = {t for t in (tier_for(s.plan, ctx) for s in paying) if t is not None}
    shown = [s for s in subs if is_paying(s)] or subs
    evidence = [SubscriptionEvidence(id=s.id, status=s.status, plan=s.plan, tier=tier_for(s.plan, ctx),
                                     paying=is_paying(s), since=s.since) for s in shown]
    grants = sorted(state.support.entitlements.values(), key=lambda e: e.organization_id)
    disagreement = _entitlement_disagreement(billing, {norm(t) for t in accepted}, active_entitlements(state))
    return EntitlementAnswer(
        key=state.key, entitled=bool(paying), tier=tier, accepted_tiers=sorted(accepted), billing=billing,
        evidence=evidence, support=[_grant(e, state) for e in grants], disagrees=bool(disagreement),
        disagreement=disagreement, findings=_refs(state.drift.values(), ENTITLEMENT_RULES),
    )


# ---------------------------------------------------------------- invoices


class InvoiceSide(Struct, frozen=True, kw_only=True):
    """An invoice as one system holds it."""

    id: str
    number: str | None
    status: str
    total: int
    tax: int | None
    amount_remaining: int | None
    currency: str
    due_at: int | None
    paid_at: int | None
    settled: bool  # paid: status `paid`, or nothing remaining
    since: int


InvoiceState = Literal["paid", "open", "differs", "billing_only", "erp_only", "void"]


class InvoiceStatus(Struct, frozen=True, kw_only=True):
    """One invoice in billing beside the ERP invoice that books it."""

    billing_invoice_id: str  # "" for an ERP invoice that names no billing invoice
    billing: InvoiceSide | None
    erp: InvoiceSide | None
    status: InvoiceState  # paid or open on both sides; differs; on one side only; void or deleted in billing
    findings: list[FindingRef] = []  # what the rules found about the pair (amounts, payment, missing)


class InvoicesAnswer(Struct, frozen=True, kw_only=True):
    """`GET /api/v1/customers/{key}/invoices`: newest first (the state keeps the open ones and the last closed)."""

    key: str
    invoices: list[InvoiceStatus]


def _side(invoice: Invoice) -> InvoiceSide:
    settled = invoice.status == "paid" or (invoice.status == "open" and invoice.amount_remaining == 0)
    return InvoiceSide(id=invoice.id, number=invoice.number, status=invoice.status, total=invoice.total,
                       tax=invoice.tax, amount_remaining=invoice.amount_remaining, currency=invoice.currency,
                       due_at=invoice.due_at, paid_at=invoice.paid_at, settled=settled, since=invoice.since)


def _invoice_state(billing: Invoice | None, erp: Invoice | None) -> InvoiceState:
    if billing is not None and (billing.deleted or billing.status in ("void", "draft")):
        return "void"
    if billing is None or billing.deleted:
        return "erp_only"
    if erp is None or erp.deleted:
        return "billing_only"
    b, e = _side(billing), _side(erp)
    if b.settled != e.settled or b.total != e.total or b.currency.upper() != e.currency.upper():
        return "differs"
    return "paid" if b.settled else "open"


def invoices(state: CustomerState) -> InvoicesAnswer:
    """Each billing invoice of `state` beside the ERP invoice booking it, newest first."""
    booked: dict[str, Invoice] = {}
    unbooked: list[Invoice] = []
    for erp in sorted(state.erp.invoices.values(), key=lambda i: i.id):
        ref = erp.billing_invoice_id
        if ref and ref not in booked and not erp.deleted:
            booked[ref] = erp
        else:
            unbooked.append(erp)
    pairs: list[tuple[str, Invoice | None, Invoice | None]] = [
        (bid, state.billing.invoices.get(bid), booked.get(bid)) for bid in {**state.billing.invoices, **booked}]
    pairs.sort(key=lambda p: (-max(i.stamp.ts for i in p[1:] if i is not None), p[0]))
    pairs += [("", None, erp) for erp in unbooked]
    items = state.drift.values()
    return InvoicesAnswer(key=state.key, invoices=[
        InvoiceStatus(billing_invoice_id=bid, billing=_side(b) if b is not None else None,
                      erp=_side(e) if e is not None else None, status=_invoice_state(b, e),
                      findings=_refs(items, INVOICE_RULES, {i.id for i in (b, e) if i is not None} | {bid} - {""}))
        for bid, b, e in pairs
    ])


# ---------------------------------------------------------------- subscriptions and contracts


class ContractDeal(Struct, frozen=True, kw_only=True):
    """A CRM opportunity: the contract a subscription comes from."""

    opportunity_id: str
    stage: str | None
    won: bool
    closed: bool
    amount: int | None  # minor units of `currency`
    currency: str | None
    plan: str | None
    close_date: str | None
    won_at: int  # when it was marked won (0: not won)


class SubscriptionContract(Struct, frozen=True, kw_only=True):
    """A subscription, what it means for the customer, and the won deal it provisions."""

    id: str
    status: str
    plan: str | None
    tier: str | None
    quantity: int
    amount: int | None
    currency: str | None
    current_period_end: int | None
    cancel_at_period_end: bool
    canceled_at: int | None
    paying: bool
    ended: bool
    since: int
    deal: ContractDeal | None  # the won opportunity on its plan (or the only one, for a single subscription)


class SubscriptionsAnswer(Struct, frozen=True, kw_only=True):
    """`GET /api/v1/customers/{key}/subscriptions`: subscriptions newest first, and the won deals not provisioned."""

    key: str
    subscriptions: list[SubscriptionContract]
    not_provisioned: list[ContractDeal]  # won while billing has no subscription at all (the rule D10)
    findings: list[FindingRef] = []


def _deal(opp: Opportunity, account_currency: str | None) -> ContractDeal:
    currency = opp.currency or account_currency
    return ContractDeal(opportunity_id=opp.id, stage=opp.stage, won=is_won(opp), closed=bool(opp.is_closed),
                        amount=opp.amount_in(currency), currency=currency, plan=opp.plan, close_date=opp.close_date,
                        won_at=won_at(opp) if is_won(opp) else 0)


def _deal_of(sub: Subscription, won: list[Opportunity], single: bool) -> Opportunity | None:
    """The most recently won deal on the subscription's plan; for a customer's only subscription, a deal
    naming no plan counts too (as the rule D11 pairs them)."""
    candidates = [o for o in won if (o.plan is not None and o.plan == sub.plan) or (o.plan is None and single)]
    return max(candidates, key=lambda o: (won_at(o), o.id), default=None)


def subscriptions(state: CustomerState, config: DriftConfig) -> SubscriptionsAnswer:
    """The subscriptions of `state` with the deal each comes from, and the won deals billing lacks."""
    ctx = _context(config)
    account_currency = state.crm.account.currency if state.crm.account is not None else None
    won = [o for o in state.crm.opportunities.values() if is_won(o)]
    subs = sorted(state.billing.subscriptions.values(), key=lambda s: (s.stamp, s.id), reverse=True)
    out = []
    for sub in subs:
        deal = _deal_of(sub, won, len(subs) == 1)
        out.append(SubscriptionContract(
            id=sub.id, status=sub.status, plan=sub.plan, tier=tier_for(sub.plan, ctx), quantity=sub.quantity,
            amount=sub.amount, currency=sub.currency, current_period_end=sub.current_period_end,
            cancel_at_period_end=sub.cancel_at_period_end, canceled_at=sub.canceled_at, paying=is_paying(sub),
            ended=is_ended(sub), since=sub.since, deal=_deal(deal, account_currency) if deal is not None else None,
        ))
    missing = [] if subs else sorted((_deal(o, account_currency) for o in won), key=lambda d: -d.won_at)
    return SubscriptionsAnswer(key=state.key, subscriptions=out, not_provisioned=missing,
                               findings=_refs(state.drift.values(), SUBSCRIPTION_RULES))
