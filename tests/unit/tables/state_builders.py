"""Canonical events for state tests: every builder takes the version first and fills the rest with
plain defaults, so a test names only what it is about.

The event id defaults to one derived from the kind, entity and version, so two calls with the same
arguments build the same event (a duplicate) and calls that differ build distinct events.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

from concord.codecs.model import (
    AccountMerged,
    AccountUpserted,
    CanonicalEvent,
    CustomerUpserted,
    EntitlementChanged,
    EntityRef,
    FinancialFlagsChanged,
    InvoiceChanged,
    OpportunityChanged,
    PaymentChanged,
    Platform,
    RefundChanged,
    ResyncRequired,
    SalesOrderChanged,
    SubscriptionChanged,
    SupportCaseChanged,
    Version,
)
from concord.tables.state import DEFAULT_LIMITS, CustomerState, Limits, apply, empty

KEY = "001A"
SF, STRIPE, ZENDESK, NETSUITE = Platform.SALESFORCE, Platform.STRIPE, Platform.ZENDESK, Platform.NETSUITE
LOCAL = {SF: None, STRIPE: "stripe:cus_1", ZENDESK: "zendesk:9", NETSUITE: "netsuite:7"}


def _common(source: Platform, kind: str, entity_id: str, ts: int, seq: int, event_id: str | None,
            occurred_at: int | None, local_customer: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or f"{kind}:{entity_id}:{ts}:{seq}",
        "source": source,
        "entity": EntityRef(kind, entity_id),
        "occurred_at": ts if occurred_at is None else occurred_at,
        "version": Version(ts, seq),
        "customer_key": KEY,
        "local_customer": local_customer or LOCAL[source],
    }


def account(ts: int, seq: int = 0, *, event_id: str | None = None, occurred_at: int | None = None,
            **fields: Any) -> AccountUpserted:
    """A Salesforce account change carrying only `fields` (the rest UNSET, as in a CDC UPDATE)."""
    return AccountUpserted(**_common(SF, "account", KEY, ts, seq, event_id, occurred_at),
                           changed=tuple(k for k in fields if k != "deleted"), **fields)


def merged(ts: int, winner: str, losers: tuple[str, ...], *, event_id: str | None = None) -> AccountMerged:
    return AccountMerged(**_common(SF, "account_merged", winner, ts, 0, event_id, None), winner_id=winner,
                         loser_ids=losers)


def opportunity(ts: int, opportunity_id: str = "006A", seq: int = 0, *, event_id: str | None = None,
                occurred_at: int | None = None, **fields: Any) -> OpportunityChanged:
    return OpportunityChanged(**_common(SF, "opportunity", opportunity_id, ts, seq, event_id, occurred_at),
                              opportunity_id=opportunity_id, changed=tuple(fields), **fields)


def customer(ts: int, system: Platform, customer_id: str | None = None, seq: int = 0, *,
             event_id: str | None = None, occurred_at: int | None = None, **fields: Any) -> CustomerUpserted:
    """A customer record in billing, support or ERP; fields not given stay UNSET."""
    cid = customer_id or {STRIPE: "cus_1", ZENDESK: "9", NETSUITE: "7"}[system]
    return CustomerUpserted(**_common(system, "customer", cid, ts, seq, event_id, occurred_at,
                                      f"{system.value}:{cid}"),
                            system=system, customer_id=cid, **fields)


def subscription(ts: int, status: str = "active", subscription_id: str = "sub_1", seq: int = 0, *,
                 event_id: str | None = None, occurred_at: int | None = None, **fields: Any) -> SubscriptionChanged:
    fields.setdefault("plan", "pro")
    return SubscriptionChanged(**_common(STRIPE, "subscription", subscription_id, ts, seq, event_id, occurred_at),
                               subscription_id=subscription_id, customer_id="cus_1", status=status, **fields)


def invoice(ts: int, invoice_id: str = "in_1", status: str = "open", system: Platform = STRIPE, seq: int = 0, *,
            event_id: str | None = None, occurred_at: int | None = None, **fields: Any) -> InvoiceChanged:
    fields.setdefault("total", 1000)
    fields.setdefault("currency", "USD")
    return InvoiceChanged(**_common(system, "invoice", invoice_id, ts, seq, event_id, occurred_at),
                          system=system, invoice_id=invoice_id, status=status, **fields)


def payment(ts: int, payment_id: str = "py_1", status: str = "succeeded", system: Platform = STRIPE, seq: int = 0,
            *, event_id: str | None = None, occurred_at: int | None = None, **fields: Any) -> PaymentChanged:
    fields.setdefault("amount", 1000)
    fields.setdefault("currency", "USD")
    return PaymentChanged(**_common(system, "payment", payment_id, ts, seq, event_id, occurred_at),
                          system=system, payment_id=payment_id, status=status, **fields)


def refund(ts: int, refund_id: str = "re_1", status: str = "succeeded", system: Platform = STRIPE, seq: int = 0,
           *, event_id: str | None = None, occurred_at: int | None = None, **fields: Any) -> RefundChanged:
    fields.setdefault("document", "refund" if system is STRIPE else "credit_memo")
    fields.setdefault("amount", 500)
    fields.setdefault("currency", "USD")
    return RefundChanged(**_common(system, "refund", refund_id, ts, seq, event_id, occurred_at),
                         system=system, refund_id=refund_id, status=status, **fields)


def entitlement(ts: int, status: str | None = "active", organization_id: str = "9", seq: int = 0, *,
                event_id: str | None = None, occurred_at: int | None = None, **fields: Any) -> EntitlementChanged:
    return EntitlementChanged(**_common(ZENDESK, "entitlement", organization_id, ts, seq, event_id, occurred_at),
                              organization_id=organization_id, status=status, **fields)


def case(ts: int, ticket_id: str = "t1", status: str | None = "open", seq: int = 0, *,
         event_id: str | None = None, occurred_at: int | None = None, **fields: Any) -> SupportCaseChanged:
    fields.setdefault("organization_id", "9")
    return SupportCaseChanged(**_common(ZENDESK, "ticket", ticket_id, ts, seq, event_id, occurred_at),
                              ticket_id=ticket_id, status=status, **fields)


def flags(ts: int, seq: int = 0, *, event_id: str | None = None, occurred_at: int | None = None,
          **fields: Any) -> FinancialFlagsChanged:
    return FinancialFlagsChanged(**_common(NETSUITE, "financial_flags", "7", ts, seq, event_id, occurred_at),
                                 system=NETSUITE, customer_id="7", **fields)


def sales_order(ts: int, order_id: str = "so_1", seq: int = 0, *, event_id: str | None = None,
                occurred_at: int | None = None, **fields: Any) -> SalesOrderChanged:
    return SalesOrderChanged(**_common(NETSUITE, "sales_order", order_id, ts, seq, event_id, occurred_at),
                             system=NETSUITE, order_id=order_id, **fields)


def resync(ts: int, *, event_id: str | None = None) -> ResyncRequired:
    """A Salesforce GAP_OVERFLOW: changes of some Accounts were lost, none named (no record to mark unread)."""
    return ResyncRequired(**_common(SF, "resync", KEY, ts, 0, event_id, None), reason="GAP_OVERFLOW",
                          object_type="Account")


def record_gap(ts: int, record_id: str = KEY, object_type: str = "Account", *,
               event_id: str | None = None) -> ResyncRequired:
    """A Salesforce gap event (GAP_UPDATE) naming one record: it changed, but how is not in the event."""
    kind = "account" if object_type == "Account" else "opportunity"
    return ResyncRequired(**_common(SF, kind, record_id, ts, 0, event_id, None), reason="GAP_UPDATE",
                          object_type=object_type, record_ids=(record_id,))


def organization_unread(ts: int, organization_id: str = "9", *, event_id: str | None = None) -> ResyncRequired:
    """A Zendesk organization webhook: it changed, but its entitlement is not in the payload (re-read it)."""
    return ResyncRequired(**_common(ZENDESK, "organization", organization_id, ts, 0, event_id, None),
                          reason="webhook_without_fields", object_type="organization", record_ids=(organization_id,))


def fold(events: list[CanonicalEvent] | tuple[CanonicalEvent, ...], state: CustomerState | None = None,
         limits: Limits = DEFAULT_LIMITS) -> CustomerState:
    """The state after applying `events` one by one, from `state` (an empty customer by default)."""
    return reduce(lambda s, e: apply(s, e, limits)[0], events, state or empty(KEY))
