"""Synthetic Stripe payloads for the codec tests.

The recorded fixtures (../shared/fixtures/stripe) are API 2020-08-27 and older. Stripe's
2025-03-31.basil release changed the shapes the codec must read, and no recording of them is
available, so the objects below are built from the documented basil shapes:

* invoice: `subscription` moved to `parent.subscription_details.subscription`; `paid`, `charge`,
  `payment_intent`, `tax` and `total_tax_amounts` are gone; taxes are listed in `total_taxes`.
* subscription: `current_period_start/end` moved from the subscription to each item.
* charge: no `invoice`; credit note: no `refund` (a `refunds` list instead).

Every builder returns a fresh dict, so a test may change it freely.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path("stripe") / "events-2020-08-27"
OBJECTS_DIR = Path("stripe") / "objects"

BASIL = "2025-03-31.basil"
# 2025-04-01T00:00:00Z
T0 = 1_743_465_600


def load(path: Path) -> dict[str, Any]:
    """A fixture file as a dict (the file itself is never changed)."""
    data: dict[str, Any] = json.loads(path.read_bytes())
    return data


def envelope(
    obj: dict[str, Any],
    event_type: str,
    *,
    event_id: str = "evt_1TestEnvelope000001",
    created: int = T0,
    api_version: str | None = BASIL,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A webhook Event around `obj`, shaped like the ones Stripe sends."""
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def to_bytes(payload: Any) -> bytes:
    """JSON bytes, indented like Stripe's own webhook bodies."""
    return json.dumps(payload, indent=2).encode()


def basil_price(price_id: str, unit_amount: int | None, currency: str = "eur") -> dict[str, Any]:
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": T0 - 86_400,
        "currency": currency,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": "prod_Basil0001",
        "recurring": {"interval": "month", "interval_count": 1, "meter": None, "usage_type": "licensed"},
        "tax_behavior": "exclusive",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": None if unit_amount is None else str(unit_amount),
    }


def basil_subscription_item(
    item_id: str, price: dict[str, Any], quantity: int | None, period_end: int
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": T0,
        "current_period_end": period_end,
        "current_period_start": period_end - 2_592_000,
        "discounts": [],
        "metadata": {},
        "price": price,
        "subscription": "sub_Basil0001",
        "tax_rates": [],
    }
    if quantity is not None:
        item["quantity"] = quantity
    return item


def basil_subscription(**overrides: Any) -> dict[str, Any]:
    """An active two-item subscription: 3 x 50.00 EUR + 2 x 10.00 EUR, items ending at different times."""
    sub: dict[str, Any] = {
        "id": "sub_Basil0001",
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": T0,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"type": "classic"},
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": T0,
        "currency": "eur",
        "customer": "cus_Basil0001",
        "days_until_due": None,
        "default_payment_method": "pm_Basil0001",
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": [
                basil_subscription_item("si_Basil0001", basil_price("price_Pro", 5000), 3, T0 + 2_592_000),
                basil_subscription_item("si_Basil0002", basil_price("price_Seat", 1000), 2, T0 + 5_184_000),
            ],
            "has_more": False,
            "total_count": 2,
            "url": "/v1/subscription_items?subscription=sub_Basil0001",
        },
        "latest_invoice": "in_Basil0001",
        "livemode": False,
        "metadata": {},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": T0,
        "status": "active",
        "test_clock": None,
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }
    sub.update(overrides)
    return sub


def basil_invoice(**overrides: Any) -> dict[str, Any]:
    """A paid subscription invoice: 100.00 EUR net + 19.00 EUR tax."""
    inv: dict[str, Any] = {
        "id": "in_Basil0001",
        "object": "invoice",
        "account_country": "DE",
        "account_name": "Example GmbH",
        "account_tax_ids": None,
        "amount_due": 11900,
        "amount_overpaid": 0,
        "amount_paid": 11900,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": False,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "status": None},
        "automatically_finalizes_at": None,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "confirmation_secret": None,
        "created": T0 - 3_600,
        "currency": "eur",
        "custom_fields": None,
        "customer": "cus_Basil0001",
        "customer_address": None,
        "customer_email": "billing@example.com",
        "customer_name": "Example Customer",
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": T0 - 3_000,
        "ending_balance": 0,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_test/test_basil",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_test/test_basil/pdf",
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": "il_Basil0001",
                    "object": "line_item",
                    "amount": 10000,
                    "currency": "eur",
                    "description": "2 x Pro (at 50.00 EUR / month)",
                    "discount_amounts": [],
                    "discountable": True,
                    "discounts": [],
                    "invoice": "in_Basil0001",
                    "livemode": False,
                    "metadata": {},
                    "parent": {
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": "sub_Basil0001",
                            "subscription_item": "si_Basil0001",
                        },
                        "type": "subscription_item_details",
                    },
                    "period": {"end": T0 + 2_592_000, "start": T0},
                    "pretax_credit_amounts": [],
                    "pricing": {
                        "price_details": {"price": "price_Pro", "product": "prod_Basil0001"},
                        "type": "price_details",
                        "unit_amount_decimal": "5000",
                    },
                    "quantity": 2,
                    "taxes": [
                        {
                            "amount": 1900,
                            "tax_behavior": "exclusive",
                            "tax_rate_details": {"tax_rate": "txr_Basil0001"},
                            "taxability_reason": "standard_rated",
                            "taxable_amount": 10000,
                            "type": "tax_rate_details",
                        }
                    ],
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": "/v1/invoices/in_Basil0001/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": "BASIL-0001",
        "on_behalf_of": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": "sub_Basil0001"},
            "type": "subscription_details",
        },
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": T0,
        "period_start": T0 - 2_592_000,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "paid",
        "status_transitions": {
            "finalized_at": T0 - 3_000,
            "marked_uncollectible_at": None,
            "paid_at": T0 - 2_000,
            "voided_at": None,
        },
        "subtotal": 10000,
        "subtotal_excluding_tax": 10000,
        "test_clock": None,
        "total": 11900,
        "total_discount_amounts": [],
        "total_excluding_tax": 10000,
        "total_pretax_credit_amounts": [],
        "total_taxes": [
            {
                "amount": 1900,
                "tax_behavior": "exclusive",
                "tax_rate_details": {"tax_rate": "txr_Basil0001"},
                "taxability_reason": "standard_rated",
                "taxable_amount": 10000,
                "type": "tax_rate_details",
            }
        ],
        "webhooks_delivered_at": T0 - 2_000,
    }
    inv.update(overrides)
    return inv


def basil_charge(**overrides: Any) -> dict[str, Any]:
    """A captured card charge of 119.00 EUR; basil charges name no invoice."""
    charge: dict[str, Any] = {
        "id": "ch_Basil0001",
        "object": "charge",
        "amount": 11900,
        "amount_captured": 11900,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": "txn_Basil0001",
        "billing_details": {"address": None, "email": None, "name": None, "phone": None, "tax_id": None},
        "calculated_statement_descriptor": "EXAMPLE",
        "captured": True,
        "created": T0 - 2_000,
        "currency": "eur",
        "customer": "cus_Basil0001",
        "description": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {"network_status": "approved_by_network", "type": "authorized"},
        "paid": True,
        "payment_intent": "pi_Basil0001",
        "payment_method": "pm_Basil0001",
        "receipt_email": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    charge.update(overrides)
    return charge


def basil_refund(**overrides: Any) -> dict[str, Any]:
    refund: dict[str, Any] = {
        "id": "re_Basil0001",
        "object": "refund",
        "amount": 5000,
        "balance_transaction": "txn_Basil0002",
        "charge": "ch_Basil0001",
        "created": T0,
        "currency": "eur",
        "destination_details": {"card": {"reference_status": "pending", "type": "refund"}, "type": "card"},
        "metadata": {},
        "payment_intent": "pi_Basil0001",
        "reason": "requested_by_customer",
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "pending",
        "transfer_reversal": None,
    }
    refund.update(overrides)
    return refund


def basil_credit_note(**overrides: Any) -> dict[str, Any]:
    """A credit note for 59.50 EUR (50.00 net + 9.50 tax) on the basil invoice, refunded to the card."""
    note: dict[str, Any] = {
        "id": "cn_Basil0001",
        "object": "credit_note",
        "amount": 5950,
        "amount_shipping": 0,
        "created": T0,
        "currency": "eur",
        "customer": "cus_Basil0001",
        "customer_balance_transaction": None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": T0,
        "invoice": "in_Basil0001",
        "lines": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": "/v1/credit_notes/cn_Basil0001/lines",
        },
        "livemode": False,
        "memo": None,
        "metadata": {},
        "number": "BASIL-0001-CN-01",
        "out_of_band_amount": None,
        "pdf": "https://pay.stripe.com/credit_notes/acct_test/test_basil/pdf",
        "post_payment_amount": 5950,
        "pre_payment_amount": 0,
        "pretax_credit_amounts": [],
        "reason": "product_unsatisfactory",
        "refunds": [{"amount_refunded": 5950, "refund": "re_Basil0001"}],
        "shipping_cost": None,
        "status": "issued",
        "subtotal": 5000,
        "subtotal_excluding_tax": 5000,
        "total": 5950,
        "total_excluding_tax": 5000,
        "total_taxes": [
            {
                "amount": 950,
                "tax_behavior": "exclusive",
                "tax_rate_details": {"tax_rate": "txr_Basil0001"},
                "taxability_reason": "standard_rated",
                "taxable_amount": 5000,
                "type": "tax_rate_details",
            }
        ],
        "type": "post_payment",
        "voided_at": None,
    }
    note.update(overrides)
    return note


def basil_customer(**overrides: Any) -> dict[str, Any]:
    """A customer linked to a Salesforce account, with an address and an expanded tax id list."""
    cus: dict[str, Any] = {
        "id": "cus_Basil0001",
        "object": "customer",
        "address": {
            "city": "Berlin",
            "country": "DE",
            "line1": "Unter den Linden 1",
            "line2": "",
            "postal_code": "10117",
            "state": None,
        },
        "balance": 0,
        "created": T0 - 86_400,
        "currency": "eur",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": "billing@example.com",
        "invoice_prefix": "BASIL",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": "pm_Basil0001",
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {"salesforce_account_id": "001Ws00000BasilAAA", "segment": "smb"},
        "name": "Example GmbH",
        "next_invoice_sequence": 2,
        "phone": None,
        "preferred_locales": ["de"],
        "shipping": None,
        "tax_exempt": "none",
        "tax_ids": {
            "object": "list",
            "data": [
                {
                    "id": "txi_Basil0001",
                    "object": "tax_id",
                    "country": "DE",
                    "created": T0 - 86_400,
                    "customer": "cus_Basil0001",
                    "livemode": False,
                    "type": "eu_vat",
                    "value": "DE123456789",
                    "verification": {"status": "verified", "verified_address": None, "verified_name": None},
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": "/v1/customers/cus_Basil0001/tax_ids",
        },
        "test_clock": None,
    }
    cus.update(overrides)
    return cus
