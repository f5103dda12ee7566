"""What the sandbox's company sells: its plans, named the same way in every platform.

A plan is at once a Stripe price (`price_id`: a recurring per-seat monthly price of `unit_amount`
minor units, the same figure in each of the account's currencies, as a price with
`currency_options` has), the NetSuite item of a sales order line (its externalId is the price id,
`item_id` its internal id), the Zendesk support tier it entitles to, and the value of the
opportunity's plan field. So a deal names its plan once and every system understands it.

The catalogue is fixed for a run and existed before it, so it is constants, not world records: a
record would be announced by an event (a Stripe `price.created` the account never sent), and the
platform modules only need to look a plan up (`plan_of`) to answer for it.
"""

from __future__ import annotations

from typing import Final

from msgspec import Struct


class Plan(Struct, frozen=True, kw_only=True):
    """A plan sold in the sandbox: its Stripe price, its NetSuite item and its Zendesk support tier."""

    name: str
    price_id: str  # also the opportunity's plan field and the NetSuite item's externalId
    unit_amount: int  # minor units per seat and month, in any of CURRENCIES
    tier: str
    item_id: str  # the NetSuite item's internal id


PLANS: Final = (
    Plan(name="Basic", price_id="price_basic_monthly", unit_amount=4_900, tier="silver", item_id="501"),
    Plan(name="Pro", price_id="price_pro_monthly", unit_amount=19_900, tier="gold", item_id="502"),
    Plan(name="Enterprise", price_id="price_enterprise_monthly", unit_amount=99_900, tier="platinum", item_id="503"),
)
# The plan -> tier map Concord needs in its rules file (`plan_tiers`) for D03 to judge sandbox tiers.
PLAN_TIERS: Final = {plan.price_id: plan.tier for plan in PLANS}
# The currencies every price is offered in (Stripe's lower case), the first its default currency: what a
# subscription is billed in when neither the request nor the customer names one, as Stripe does.
CURRENCIES: Final = ("usd", "eur", "gbp", "cad")
DEFAULT_CURRENCY: Final = CURRENCIES[0]

_BY_PRICE: Final = {plan.price_id: plan for plan in PLANS}


def plan_of(price_id: str) -> Plan | None:
    """The plan whose Stripe price (and NetSuite item externalId) is `price_id`; None for another id."""
    return _BY_PRICE.get(price_id)
