"""Deals: the lifecycles Concord's quote-to-cash saga provisions, and the ground truth of each (issue 17).

A deal's onboarding is only a Salesforce Account and an Opportunity (plan, seats, amount, currency)
marked won: nothing in Stripe, NetSuite or Zendesk. Concord's saga must provision it (ERP customer,
billing customer, subscription, sales order, entitlement) or, when a step fails for good, undo what
it did. The traffic (sandbox/traffic.py) plays the variants; this module says what each must end
as and keeps the ground truth (`Deal`, `GET /_sandbox/deals`):

| variant | what the sandbox does | expected |
|---|---|---|
| provision | a valid deal, won | completed |
| erp_refuses | as provision, but NetSuite refuses its sales order for good (from before the win) | compensated |
| reopened | as provision, then 2 steps after the win the opportunity is reopened | compensated |
| amended | as provision, then 2 steps after the win its seats (and amount) change | completed, at the new seats |
| incomplete | D10: the account misses a field the saga validates; nobody fixes it | paused (the reason code) |
| fixed | D10: as incomplete, a person fixes the account 1 step after the win; nobody resumes the saga | completed |

Validation is the saga contract's, kept here on purpose rather than taken from the engine: the
sandbox is the oracle that judges Concord, so it computes the reason a deal pauses on from the
records themselves (`validate`), and a rule changed on one side shows up as a disagreement.
"""

from __future__ import annotations

from typing import Any, Final

from msgspec import Struct

from concord.sandbox import salesforce as sf
from concord.sandbox.world import Record

# The deal_rate share of customers rotates over these (a short run covers them all).
VARIANTS: Final = ("provision", "erp_refuses", "reopened", "amended")
# The variants of a D10-broken customer's deal, and the account field it misses at the win.
D10_VARIANTS: Final = ("incomplete", "fixed")
DEFECTS: Final = ("missing_tax_id", "missing_billing_country")
# What Concord's saga must have done once the deal's script has played.
EXPECTED: Final[dict[str, str]] = {
    "provision": "completed",
    "fixed": "completed",
    "amended": "completed",
    "incomplete": "paused",
    "erp_refuses": "compensated",
    "reopened": "compensated",
}
OUTCOMES: Final = ("completed", "paused", "compensated")
# The EU VAT area: an account billed there needs its tax id.
EU_VAT_COUNTRIES: Final = frozenset({"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU",
                                     "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES",
                                     "SE"})
# The saga's validation reason codes, in the order its checks run (the first failing one is reported).
REASONS: Final = ("missing_name", "missing_billing_country", "missing_currency", "missing_tax_id", "missing_plan",
                  "missing_quantity", "currency_mismatch")


class Deal(Struct, frozen=True, kw_only=True):
    """One deal the traffic played to its end: what Concord's saga must have made of it."""

    opportunity_id: str
    customer_key: str  # the CRM account id
    variant: str  # one of VARIANTS or D10_VARIANTS
    expected: str  # completed | paused | compensated
    reason: str = ""  # the validation reason code a paused deal stops on ("" otherwise)
    plan: str  # the Stripe price id (the opportunity's plan field)
    quantity: int  # the seats the subscription must bill at the end (an amended deal's new seats)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def validate(account: Record, opportunity: Record, plan_field: str = sf.PLAN_FIELD) -> str:
    """The reason code of the first validation check the deal fails, "" when it passes them all.

    Account: Name, BillingCountry and CurrencyIsoCode set, and the tax id when BillingCountry is in
    the EU VAT area. Opportunity: the plan set, TotalOpportunityQuantity at least 1, and the
    account's currency.
    """
    country = account.get("BillingCountry")
    quantity = opportunity.get("TotalOpportunityQuantity")
    failed = (
        ("missing_name", _blank(account.get("Name"))),
        ("missing_billing_country", _blank(country)),
        ("missing_currency", _blank(account.get("CurrencyIsoCode"))),
        ("missing_tax_id", str(country or "").upper() in EU_VAT_COUNTRIES and _blank(account.get(sf.TAX_ID_FIELD))),
        ("missing_plan", _blank(opportunity.get(plan_field))),
        ("missing_quantity", not isinstance(quantity, int | float) or quantity < 1),
        ("currency_mismatch", str(opportunity.get("CurrencyIsoCode") or "").upper()
         != str(account.get("CurrencyIsoCode") or "").upper()),
    )
    return next((reason for reason, failing in failed if failing), "")


def counts(deals: list[Deal]) -> dict[str, int]:
    """Deals per expected outcome (`/_sandbox/status`), every outcome present."""
    found = dict.fromkeys(OUTCOMES, 0)
    for deal in deals:
        found[deal.expected] += 1
    return found
