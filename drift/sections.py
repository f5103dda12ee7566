"""The parts of a customer's state that rules read, and which part each canonical event changes.

A rule runs again only when a part it reads changed (or on a deadline tick): an invoice event runs
the invoice rules, not the customer-master comparison. Fine parts keep the per-event cost low.
"""

from __future__ import annotations

from typing import Final

from concord.codecs.model import (
    AccountMerged,
    AccountUpserted,
    CanonicalEvent,
    CustomerUpserted,
    EntitlementChanged,
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
)

SECTIONS: Final = frozenset({
    "crm.account", "crm.opportunities",
    "billing.customers", "billing.subscriptions", "billing.invoices", "billing.payments", "billing.refunds",
    "support.organizations", "support.entitlements", "support.cases",
    "erp.customers", "erp.flags", "erp.invoices", "erp.payments", "erp.credit_memos", "erp.sales_orders",
    "identity", "drift", "sagas",
})

_FIXED: Final[dict[type, frozenset[str]]] = {
    AccountUpserted: frozenset({"crm.account"}),
    OpportunityChanged: frozenset({"crm.opportunities"}),
    AccountMerged: frozenset({"identity"}),
    SubscriptionChanged: frozenset({"billing.subscriptions"}),
    EntitlementChanged: frozenset({"support.entitlements"}),
    SupportCaseChanged: frozenset({"support.cases"}),
    FinancialFlagsChanged: frozenset({"erp.flags"}),
    SalesOrderChanged: frozenset({"erp.sales_orders"}),
    ResyncRequired: frozenset(),
}
_BY_SYSTEM: Final[dict[tuple[type, Platform], frozenset[str]]] = {
    (CustomerUpserted, Platform.STRIPE): frozenset({"billing.customers"}),
    (CustomerUpserted, Platform.ZENDESK): frozenset({"support.organizations"}),
    (CustomerUpserted, Platform.NETSUITE): frozenset({"erp.customers"}),
    (InvoiceChanged, Platform.STRIPE): frozenset({"billing.invoices"}),
    (InvoiceChanged, Platform.NETSUITE): frozenset({"erp.invoices"}),
    (PaymentChanged, Platform.STRIPE): frozenset({"billing.payments"}),
    (PaymentChanged, Platform.NETSUITE): frozenset({"erp.payments"}),
    (RefundChanged, Platform.STRIPE): frozenset({"billing.refunds"}),
    (RefundChanged, Platform.NETSUITE): frozenset({"erp.credit_memos"}),
}


def sections_of(event: CanonicalEvent) -> frozenset[str]:
    """The parts of the state `event` can change."""
    fixed = _FIXED.get(type(event))
    if fixed is not None:
        return fixed
    return _BY_SYSTEM.get((type(event), getattr(event, "system", None)), frozenset())  # type: ignore[arg-type]
