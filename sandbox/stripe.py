"""The sandbox's Stripe: operations on the world's Stripe objects, and the `/v1` API routes.

Records are Stripe objects as API version 2025-03-31.basil returns them (`customer`,
`subscription` with billing periods on `items.data[]`, `invoice` with
`parent.subscription_details.subscription` and `status_transitions`, `charge`, `refund`). Money is
integer minor units, currencies lower-case, times epoch seconds. Every write is one `World.put`
whose `event` is the Stripe event type it would produce.

Operations (plain functions on a `World`; ids come from `world.new_id`, so runs are deterministic):

* `create_customer(world, *, name, email=None, country=None, address=None, currency=None,
  salesforce_account_id=None, tax_id=None, metadata=None) -> Record` - "customer.created"
* `update_customer(world, customer_id, params) -> Record` - Stripe's update semantics: `metadata`
  and `address` merge key by key, "" clears a key - "customer.updated"
* `set_tax_id(world, customer_id, value) -> Record` - the customer's one tax id ("customer.updated";
  kept in the expanded `tax_ids` list)
* `delete_customer(world, customer_id) -> Record` - "customer.deleted"
* `create_subscription(world, customer_id, *, price_id, unit_amount, currency, quantity=1,
  status="active", interval="month", metadata=None) -> Record` - "customer.subscription.created"; a
  customer without a currency takes the subscription's ("customer.updated" first), and one with
  another currency is refused (ValueError), as Stripe keeps one currency per customer
* `update_subscription(world, subscription_id, *, status=None, price_id=None, unit_amount=None,
  quantity=None, metadata=None) -> Record` - "customer.subscription.updated"
* `advance_period(world, subscription_id) -> Record` - the next billing period starts
* `cancel_subscription(world, subscription_id, *, at_period_end=False) -> Record` - immediately:
  status `canceled`, "customer.subscription.deleted"; at period end: "customer.subscription.updated"
* `pause_subscription` / `resume_subscription(world, subscription_id) -> Record` - status `paused` /
  `active`, "customer.subscription.paused" / "customer.subscription.resumed"
* `create_invoice(world, customer_id, *, subscription_id=None, amount=None, tax=0, currency=None,
  due_days=30, finalize=True) -> Record` - "invoice.created" (draft), then `finalize_invoice`
* `finalize_invoice(world, invoice_id) -> Record` - number assigned, status `open`, "invoice.finalized"
* `pay_invoice(world, invoice_id) -> tuple[invoice, charge]` - a succeeded charge
  ("charge.succeeded"), the invoice `paid` ("invoice.paid"); a `past_due` subscription turns `active`
* `fail_invoice_payment(world, invoice_id, *, code="card_declined") -> tuple[invoice, charge]` - a
  failed charge ("charge.failed"), "invoice.payment_failed", the subscription turns `past_due`
* `void_invoice(world, invoice_id) -> Record` - "invoice.voided"
* `mark_uncollectible(world, invoice_id) -> Record` - "invoice.marked_uncollectible"
* `refund_charge(world, charge_id, *, amount=None, reason=None) -> tuple[refund, charge]` - a
  succeeded refund ("refund.created"), the charge's `amount_refunded` ("charge.refunded")

`routes(world, faults, credentials)` serves the part of the API Concord's connector calls
(form-encoded bodies, `Authorization: Bearer`, `Idempotency-Key` replays, Stripe's error shape), and
the list endpoints a reconciliation reader pages through. Subscriptions, as the quote-to-cash saga
uses them:

* `POST /v1/subscriptions` (`customer`, `items[0][price]`, `items[0][quantity]` (default 1),
  `metadata[...]`, `currency`): the subscription object as `create_subscription` makes it, active at
  once (the sandbox takes no payment). Prices are the plan catalogue's (sandbox/catalog.py), each
  offered in every currency of the catalogue; the currency is `currency`, else the customer's, else
  the price's default (`usd`), as Stripe picks it. A customer or price that does not exist is 400
  `resource_missing` with `param` (`customer`, `items[0][price]`), a missing one 400
  `parameter_missing`; a currency other than the customer's is 400. The sandbox's subscriptions have
  one item: more is refused.
* `POST /v1/subscriptions/{id}`: `quantity`, `cancel_at_period_end`, `metadata[...]`, and
  `items[0][id]` (the subscription's item) with `items[0][price]` and/or `items[0][quantity]`: a plan
  or seat change of that item, which keeps its id. A canceled subscription takes only `metadata`.
* `DELETE /v1/subscriptions/{id}` cancels now; an already canceled subscription is 404
  `resource_missing` ("No such subscription"), as Stripe answers, although GET still shows it.
* Creates and updates go through the same `Idempotency-Key` replay as every write, and are counted
  in the world's effects under that key.

* `GET /v1/customers`, `/v1/subscriptions`, `/v1/invoices`, `/v1/charges`, `/v1/refunds` ->
  `{"object": "list", "url", "has_more", "data"}`, newest first (`created` descending, ties by id
  descending), each object exactly as `GET /v1/<type>/{id}` returns it. Parameters: `limit` (1..100,
  default 10), `starting_after` / `ending_before` (an object id of that type, else 400
  `resource_missing`; the cursor is the object's place in the order, so it works even when the
  object no longer matches the filters), `created` or `created[gt|gte|lt|lte]` (epoch seconds),
  `customer` (subscriptions, invoices, charges), `charge` (refunds), `status` (subscriptions: all but
  `canceled` by default, `all`, `ended` = canceled or incomplete_expired; invoices), `email`
  (customers), `expand[]=data.<field>` one level deep where the object holds that id (customer,
  latest_invoice, charge; `data.tax_ids` is always included already). Deleted customers are gone
  from the world, so they are not listed (an expanded reference to one is `{"id", "object",
  "deleted": true}`, as Stripe shows it). An unknown parameter is a 400, as in Stripe.
  `list_objects(world, type_, params)` is the pure part (raises `ListError`).
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from concord.sandbox import catalog
from concord.sandbox.faults import Faults, Handler, PlatformCredentials, Replays, StoredResponse, WriteCounter, guard
from concord.sandbox.world import Record, World

PLATFORM: Final = "stripe"
_DAY: Final = 86_400
# Billing periods by price interval, in seconds (Stripe counts calendar months; 30 days is close
# enough for a sandbox and keeps periods deterministic).
_INTERVAL_SECONDS: Final = {"day": _DAY, "week": 7 * _DAY, "month": 30 * _DAY, "year": 365 * _DAY}


class NotFound(LookupError):
    """The object does not exist (the API answers 404 `resource_missing`)."""


def _now(world: World) -> int:
    return world.now_ms() // 1000


def _get(world: World, type_: str, id_: str) -> Record:
    record = world.get(PLATFORM, type_, id_)
    if record is None:
        raise NotFound(f"No such {type_}: '{id_}'")
    # Copies: World.put compares the new record with the stored one, so edits go to a copy.
    return copy.deepcopy(record)


def _put(world: World, type_: str, record: Record, event: str) -> Record:
    world.put(PLATFORM, type_, record["id"], record, event=event)
    return record


# --- customers ------------------------------------------------------------------------------------


def _address(country: str | None, parts: dict[str, Any] | None) -> dict[str, Any] | None:
    if country is None and not parts:
        return None
    address: dict[str, Any] = dict.fromkeys(("city", "country", "line1", "line2", "postal_code", "state"))
    address.update(parts or {})
    if country is not None:
        address["country"] = country
    return address


def _tax_ids(customer_id: str, value: str | None, created: int) -> dict[str, Any]:
    """The customer's tax ids as the expanded `tax_ids` list (Stripe includes it when expanded)."""
    data = []
    if value:
        data.append({"id": f"txi_{customer_id.removeprefix('cus_')}", "object": "tax_id", "country": None,
                     "created": created, "customer": customer_id, "livemode": False, "type": "eu_vat",
                     "value": value, "verification": {"status": "unavailable", "verified_address": None,
                                                      "verified_name": None}})
    return {"object": "list", "data": data, "has_more": False, "url": f"/v1/customers/{customer_id}/tax_ids"}


def create_customer(
    world: World,
    *,
    name: str,
    email: str | None = None,
    country: str | None = None,
    address: dict[str, Any] | None = None,
    currency: str | None = None,
    salesforce_account_id: str | None = None,
    tax_id: str | None = None,
    metadata: dict[str, str] | None = None,
) -> Record:
    """A new customer; `salesforce_account_id` goes to `metadata.salesforce_account_id` (the CRM link)."""
    customer_id = world.new_id("cus_")
    created = _now(world)
    meta = dict(metadata or {})
    if salesforce_account_id:
        meta["salesforce_account_id"] = salesforce_account_id
    record: Record = {
        "id": customer_id,
        "object": "customer",
        "address": _address(country, address),
        "balance": 0,
        "created": created,
        "currency": currency.lower() if currency else None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": email,
        "invoice_prefix": customer_id.removeprefix("cus_").upper()[-8:],
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                             "rendering_options": None},
        "livemode": False,
        "metadata": meta,
        "name": name,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "tax_ids": _tax_ids(customer_id, tax_id, created),
        "test_clock": None,
    }
    return _put(world, "customer", record, "customer.created")


def update_customer(world: World, customer_id: str, params: dict[str, Any]) -> Record:
    """Apply update parameters the way `POST /v1/customers/{id}` does.

    `metadata` and `address` merge key by key and an empty string clears a key (Stripe's rule); other
    keys replace the field. Unknown parameters raise `ValueError` like Stripe's 400.
    """
    customer = _get(world, "customer", customer_id)
    for key, value in params.items():
        if key == "metadata":
            customer["metadata"] = _merged_metadata(customer.get("metadata"), value or {})
        elif key == "address":
            customer["address"] = None if value in ("", None) else _address(None, {
                **(customer.get("address") or {}), **{k: v or None for k, v in value.items()}})
        elif key in _UPDATABLE_CUSTOMER_FIELDS:
            customer[key] = value if value != "" else None
        else:
            raise ValueError(f"Received unknown parameter: {key}")
    return _put(world, "customer", customer, "customer.updated")


_UPDATABLE_CUSTOMER_FIELDS: Final = frozenset({"name", "email", "description", "phone", "preferred_locales",
                                               "shipping", "tax_exempt", "invoice_prefix"})
E_CURRENCY_COMBINED: Final = ("You cannot combine currencies on a single customer. This customer has an active "
                              "subscription, subscription schedule, discount, quote, or invoice item with currency "
                              "{customer}; the request asked for {currency}.")


def _merged_metadata(current: dict[str, str] | None, update: dict[str, Any]) -> dict[str, str]:
    """Stripe's metadata update: key by key, an empty value removes the key."""
    merged = dict(current or {})
    for key, value in update.items():
        if value in ("", None):
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return merged


def set_tax_id(world: World, customer_id: str, value: str | None) -> Record:
    """Replace the customer's tax id (`POST /v1/customers/{id}/tax_ids`); None removes it."""
    customer = _get(world, "customer", customer_id)
    customer["tax_ids"] = _tax_ids(customer_id, value or None, _now(world))
    return _put(world, "customer", customer, "customer.updated")


def delete_customer(world: World, customer_id: str) -> Record:
    """Delete the customer (Stripe answers `{"id", "object": "customer", "deleted": true}`)."""
    customer = _get(world, "customer", customer_id)
    world.delete(PLATFORM, "customer", customer_id, event="customer.deleted")
    return customer


# --- subscriptions --------------------------------------------------------------------------------


def _price(price_id: str, unit_amount: int, currency: str, interval: str, created: int) -> dict[str, Any]:
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency.lower(),
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": f"prod_{price_id.removeprefix('price_')}",
        "recurring": {"interval": interval, "interval_count": 1, "meter": None, "usage_type": "licensed"},
        "tax_behavior": "unspecified",
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def create_subscription(
    world: World,
    customer_id: str,
    *,
    price_id: str,
    unit_amount: int,
    currency: str,
    quantity: int = 1,
    status: str = "active",
    interval: str = "month",
    metadata: dict[str, str] | None = None,
) -> Record:
    """A subscription with one item (`price_id` at `unit_amount` x `quantity`), its period starting now.

    Stripe keeps one currency per customer: a customer without one takes the subscription's, one
    with another is refused (ValueError).
    """
    customer = _get(world, "customer", customer_id)
    if interval not in _INTERVAL_SECONDS:
        raise ValueError(f"interval must be one of {sorted(_INTERVAL_SECONDS)}, got {interval!r}")
    if customer.get("currency") not in (None, currency.lower()):
        raise ValueError(E_CURRENCY_COMBINED.format(currency=currency.lower(), customer=customer["currency"]))
    if customer.get("currency") is None:
        customer["currency"] = currency.lower()
        _put(world, "customer", customer, "customer.updated")
    subscription_id = world.new_id("sub_")
    now = _now(world)
    item = {
        "id": world.new_id("si_"),
        "object": "subscription_item",
        "created": now,
        "current_period_start": now,
        "current_period_end": now + _INTERVAL_SECONDS[interval],
        "discounts": [],
        "metadata": {},
        "price": _price(price_id, unit_amount, currency, interval, now),
        "quantity": quantity,
        "subscription": subscription_id,
        "tax_rates": [],
    }
    record: Record = {
        "id": subscription_id,
        "object": "subscription",
        "billing_cycle_anchor": now,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency.lower(),
        "customer": customer_id,
        "days_until_due": None,
        "default_payment_method": None,
        "description": None,
        "ended_at": None,
        "items": {"object": "list", "data": [item], "has_more": False,
                  "url": f"/v1/subscription_items?subscription={subscription_id}"},
        "latest_invoice": None,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "pause_collection": None,
        "start_date": now,
        "status": status,
        "test_clock": None,
        "trial_end": None,
        "trial_start": None,
    }
    return _put(world, "subscription", record, "customer.subscription.created")


def update_subscription(
    world: World,
    subscription_id: str,
    *,
    status: str | None = None,
    price_id: str | None = None,
    unit_amount: int | None = None,
    quantity: int | None = None,
    metadata: dict[str, str] | None = None,
) -> Record:
    """Change the status, the price (id and/or amount) or the quantity of the subscription's item, or its
    metadata (merged key by key, "" clears a key, as Stripe does)."""
    sub = _get(world, "subscription", subscription_id)
    item = sub["items"]["data"][0]
    if metadata is not None:
        sub["metadata"] = _merged_metadata(sub.get("metadata"), metadata)
    if status is not None:
        sub["status"] = status
    if price_id is not None or unit_amount is not None:
        old = item["price"]
        item["price"] = _price(price_id or old["id"], old["unit_amount"] if unit_amount is None else unit_amount,
                               old["currency"], old["recurring"]["interval"], _now(world))
    if quantity is not None:
        item["quantity"] = quantity
    return _put(world, "subscription", sub, "customer.subscription.updated")


def advance_period(world: World, subscription_id: str) -> Record:
    """The subscription's next billing period begins where the current one ended."""
    sub = _get(world, "subscription", subscription_id)
    for item in sub["items"]["data"]:
        length = _INTERVAL_SECONDS[item["price"]["recurring"]["interval"]]
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] += length
    return _put(world, "subscription", sub, "customer.subscription.updated")


def cancel_subscription(world: World, subscription_id: str, *, at_period_end: bool = False) -> Record:
    """Cancel now (status `canceled`) or at the end of the current period (`cancel_at_period_end`)."""
    sub = _get(world, "subscription", subscription_id)
    now = _now(world)
    sub["canceled_at"] = now
    sub["cancellation_details"] = {"comment": None, "feedback": None, "reason": "cancellation_requested"}
    if at_period_end:
        sub["cancel_at_period_end"] = True
        sub["cancel_at"] = max(item["current_period_end"] for item in sub["items"]["data"])
        return _put(world, "subscription", sub, "customer.subscription.updated")
    sub["status"] = "canceled"
    sub["ended_at"] = now
    return _put(world, "subscription", sub, "customer.subscription.deleted")


def pause_subscription(world: World, subscription_id: str) -> Record:
    """Status `paused` (Stripe pauses a subscription whose trial ended without a payment method)."""
    sub = _get(world, "subscription", subscription_id)
    sub["status"] = "paused"
    return _put(world, "subscription", sub, "customer.subscription.paused")


def resume_subscription(world: World, subscription_id: str) -> Record:
    """A paused subscription becomes `active` again."""
    sub = _get(world, "subscription", subscription_id)
    sub["status"] = "active"
    sub["pause_collection"] = None
    return _put(world, "subscription", sub, "customer.subscription.resumed")


# --- invoices, charges, refunds -------------------------------------------------------------------


def create_invoice(
    world: World,
    customer_id: str,
    *,
    subscription_id: str | None = None,
    amount: int | None = None,
    tax: int = 0,
    currency: str | None = None,
    due_days: int = 30,
    finalize: bool = True,
) -> Record:
    """A draft invoice for `amount` + `tax` (default: the subscription's price x quantity), finalized by default.

    Returns the invoice as it stands at the end (open when finalized).
    """
    customer = _get(world, "customer", customer_id)
    sub = _get(world, "subscription", subscription_id) if subscription_id else None
    if sub is not None:
        item = sub["items"]["data"][0]
        amount = item["price"]["unit_amount"] * item["quantity"] if amount is None else amount
        currency = currency or sub["currency"]
    if amount is None or currency is None:
        raise ValueError("an invoice without a subscription needs amount and currency")
    now = _now(world)
    invoice_id = world.new_id("in_")
    total = amount + tax
    period_start = sub["items"]["data"][0]["current_period_start"] if sub else now
    period_end = sub["items"]["data"][0]["current_period_end"] if sub else now
    line = {
        "id": world.new_id("il_"),
        "object": "line_item",
        "amount": amount,
        "currency": currency.lower(),
        "description": None,
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "period": {"end": period_end, "start": period_start},
        "pricing": {"price_details": {"price": sub["items"]["data"][0]["price"]["id"]}} if sub else None,
        "quantity": sub["items"]["data"][0]["quantity"] if sub else 1,
    }
    record: Record = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": total,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "billing_reason": "subscription_cycle" if sub else "manual",
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency.lower(),
        "customer": customer_id,
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "due_date": now + due_days * _DAY,
        "hosted_invoice_url": None,
        "lines": {"object": "list", "data": [line], "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
        "livemode": False,
        "metadata": {},
        "number": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription_id},
            "type": "subscription_details",
        } if subscription_id else None,
        "payments": {"object": "list", "data": [], "has_more": False,
                     "url": f"/v1/invoice_payments?invoice={invoice_id}"},
        "period_end": period_end,
        "period_start": period_start,
        "status": "draft",
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "subtotal": amount,
        "total": total,
        "total_excluding_tax": amount,
        "total_taxes": [{"amount": tax, "tax_behavior": "exclusive", "tax_rate_details": None,
                         "taxability_reason": "standard_rated", "taxable_amount": amount, "type": "tax_rate_details"}]
        if tax else [],
    }
    _put(world, "invoice", record, "invoice.created")
    if sub is not None:
        sub["latest_invoice"] = invoice_id
        _put(world, "subscription", sub, "customer.subscription.updated")
    return finalize_invoice(world, invoice_id) if finalize else record


def finalize_invoice(world: World, invoice_id: str) -> Record:
    """A draft invoice gets its number (`<customer prefix>-<sequence>`) and becomes `open`."""
    invoice = _get(world, "invoice", invoice_id)
    if invoice["status"] != "draft":
        raise ValueError(f"This invoice is already finalized, you can't re-finalize a non-draft invoice ({invoice_id})")
    customer = _get(world, "customer", invoice["customer"])
    sequence = customer["next_invoice_sequence"]
    customer["next_invoice_sequence"] = sequence + 1
    _put(world, "customer", customer, "customer.updated")
    invoice["number"] = f"{customer['invoice_prefix']}-{sequence:04d}"
    invoice["status"] = "open"
    invoice["status_transitions"]["finalized_at"] = _now(world)
    invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/{invoice_id}"
    return _put(world, "invoice", invoice, "invoice.finalized")


def _charge(world: World, invoice: Record, status: str, failure_code: str | None) -> Record:
    charge_id = world.new_id("ch_")
    return {
        "id": charge_id,
        "object": "charge",
        "amount": invoice["amount_remaining"],
        "amount_captured": invoice["amount_remaining"] if status == "succeeded" else 0,
        "amount_refunded": 0,
        "balance_transaction": world.new_id("txn_") if status == "succeeded" else None,
        "billing_details": {"address": None, "email": invoice.get("customer_email"), "name": None, "phone": None},
        "captured": status == "succeeded",
        "created": _now(world),
        "currency": invoice["currency"],
        "customer": invoice["customer"],
        "description": "Subscription update" if invoice.get("parent") else None,
        "disputed": False,
        "failure_code": failure_code,
        "failure_message": "Your card was declined." if failure_code else None,
        "livemode": False,
        "metadata": {},
        "outcome": {"network_status": "approved_by_network" if status == "succeeded" else "declined_by_network",
                    "reason": failure_code, "risk_level": "normal", "seller_message": "Payment complete."
                    if status == "succeeded" else "The bank did not return any further details with this decline.",
                    "type": "authorized" if status == "succeeded" else "issuer_declined"},
        "paid": status == "succeeded",
        "payment_intent": world.new_id("pi_"),
        "payment_method": None,
        "receipt_url": None,
        "refunded": False,
        "status": status,
    }


def _invoice_payment(world: World, invoice: Record, charge: Record, status: str) -> dict[str, Any]:
    now = _now(world)
    return {
        "id": world.new_id("inpay_"),
        "object": "invoice_payment",
        "amount_paid": charge["amount"] if status == "paid" else None,
        "amount_requested": charge["amount"],
        "created": now,
        "currency": invoice["currency"],
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"charge": charge["id"], "type": "charge"},
        "status": status,
        "status_transitions": {"canceled_at": None, "paid_at": now if status == "paid" else None},
    }


def _subscription_status(world: World, invoice: Record, status: str) -> None:
    """Dunning follows the invoice: a failed payment makes the subscription past_due, a paid one active."""
    parent = invoice.get("parent") or {}
    subscription_id = (parent.get("subscription_details") or {}).get("subscription")
    if not subscription_id:
        return
    sub = _get(world, "subscription", subscription_id)
    if sub["status"] in ("canceled", "incomplete_expired") or sub["status"] == status:
        return
    if status == "active" and sub["status"] not in ("past_due", "unpaid", "incomplete"):
        return
    sub["status"] = status
    _put(world, "subscription", sub, "customer.subscription.updated")


def pay_invoice(world: World, invoice_id: str) -> tuple[Record, Record]:
    """The open invoice is paid in full by a new charge; returns (invoice, charge)."""
    invoice = _get(world, "invoice", invoice_id)
    if invoice["status"] not in ("open", "uncollectible"):
        raise ValueError(f"Invoice {invoice_id} is {invoice['status']}; only open invoices can be paid")
    charge = _put(world, "charge", _charge(world, invoice, "succeeded", None), "charge.succeeded")
    invoice["payments"]["data"].append(_invoice_payment(world, invoice, charge, "paid"))
    invoice["amount_paid"] += invoice["amount_remaining"]
    invoice["amount_remaining"] = 0
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    invoice["status"] = "paid"
    invoice["status_transitions"]["paid_at"] = _now(world)
    _put(world, "invoice", invoice, "invoice.paid")
    _subscription_status(world, invoice, "active")
    return invoice, charge


def fail_invoice_payment(world: World, invoice_id: str, *, code: str = "card_declined") -> tuple[Record, Record]:
    """A payment attempt on the open invoice fails; returns (invoice, failed charge)."""
    invoice = _get(world, "invoice", invoice_id)
    if invoice["status"] != "open":
        raise ValueError(f"Invoice {invoice_id} is {invoice['status']}; only open invoices can be attempted")
    charge = _put(world, "charge", _charge(world, invoice, "failed", code), "charge.failed")
    invoice["payments"]["data"].append(_invoice_payment(world, invoice, charge, "failed"))
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    _put(world, "invoice", invoice, "invoice.payment_failed")
    _subscription_status(world, invoice, "past_due")
    return invoice, charge


def void_invoice(world: World, invoice_id: str) -> Record:
    """An open (or uncollectible) invoice is voided."""
    invoice = _get(world, "invoice", invoice_id)
    if invoice["status"] not in ("open", "uncollectible"):
        raise ValueError(f"You can only void an open or uncollectible invoice; {invoice_id} is {invoice['status']}")
    invoice["status"] = "void"
    invoice["status_transitions"]["voided_at"] = _now(world)
    return _put(world, "invoice", invoice, "invoice.voided")


def mark_uncollectible(world: World, invoice_id: str) -> Record:
    """An open invoice is written off as uncollectible."""
    invoice = _get(world, "invoice", invoice_id)
    if invoice["status"] != "open":
        raise ValueError(f"Only open invoices can be marked uncollectible; {invoice_id} is {invoice['status']}")
    invoice["status"] = "uncollectible"
    invoice["status_transitions"]["marked_uncollectible_at"] = _now(world)
    return _put(world, "invoice", invoice, "invoice.marked_uncollectible")


def refund_charge(world: World, charge_id: str, *, amount: int | None = None,
                  reason: str | None = None) -> tuple[Record, Record]:
    """Refund `amount` (default: what is left) of a succeeded charge; returns (refund, charge)."""
    charge = _get(world, "charge", charge_id)
    left = charge["amount"] - charge["amount_refunded"]
    amount = left if amount is None else amount
    if charge["status"] != "succeeded" or amount <= 0 or amount > left:
        raise ValueError(f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})")
    refund: Record = {
        "id": world.new_id("re_"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": world.new_id("txn_"),
        "charge": charge_id,
        "created": _now(world),
        "currency": charge["currency"],
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    _put(world, "refund", refund, "refund.created")
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    _put(world, "charge", charge, "charge.refunded")
    return refund, charge


# --- the HTTP API ---------------------------------------------------------------------------------

_FORM_KEY: Final = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_FORM_INDEX: Final = re.compile(r"\[([^\[\]]*)\]")
# Parameters every endpoint accepts and no operation needs.
_IGNORED_PARAMS: Final = frozenset({"expand"})


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding -> nested params: `metadata[k]=v` -> {"metadata": {"k": "v"}}, `a[0][b]` -> lists.

    Values stay strings (an empty string means "unset" to Stripe). Raises ValueError on a malformed key.
    """
    params: dict[str, Any] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        match = _FORM_KEY.match(name)
        if match is None:
            raise ValueError(f"Invalid parameter name: {name}")
        keys = [match.group(1), *_FORM_INDEX.findall(match.group(2))]
        node = params
        for key in keys[:-1]:
            child = node.setdefault(key or str(len(node)), {})
            if not isinstance(child, dict):
                raise ValueError(f"Invalid array or hash parameter: {name} (after {key!r})")
            node = child
        last = keys[-1]
        node[last or str(len(node))] = value
    return _lists(params)


def _lists(node: dict[str, Any]) -> dict[str, Any]:
    """Turn nested dicts keyed 0, 1, 2 ... into lists (`items[0][price]`, `expand[]`)."""
    for key, value in node.items():
        if isinstance(value, dict):
            value = _lists(value)
            node[key] = [value[k] for k in sorted(value, key=int)] if value and all(
                k.isdigit() for k in value) else value
    return node


# --- lists ----------------------------------------------------------------------------------------

LIST_TYPES: Final = ("customer", "subscription", "invoice", "charge", "refund")
DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 100
_PAGING_PARAMS: Final = frozenset({"limit", "starting_after", "ending_before", "created", "expand"})
# Filters each list accepts, besides paging (a record field of the same name, except `status`).
_LIST_FILTERS: Final = {"customer": ("email",), "subscription": ("customer", "status"),
                        "invoice": ("customer", "status"), "charge": ("customer",), "refund": ("charge",)}
_SUBSCRIPTION_STATUSES: Final = frozenset({"active", "all", "canceled", "ended", "incomplete", "incomplete_expired",
                                           "past_due", "paused", "trialing", "unpaid"})
_INVOICE_STATUSES: Final = frozenset({"draft", "open", "paid", "uncollectible", "void"})
# `expand[]=data.<field>`: the field's object type (None: the field is always shown expanded already).
_EXPANDABLE: Final[dict[str, dict[str, str | None]]] = {
    "customer": {"tax_ids": None}, "subscription": {"customer": "customer", "latest_invoice": "invoice"},
    "invoice": {"customer": "customer"}, "charge": {"customer": "customer"}, "refund": {"charge": "charge"},
}
_CREATED_OPS: Final = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le, "eq": operator.eq}


class ParamError(ValueError):
    """A request Stripe refuses with 400 because of one parameter: the message, that parameter, Stripe's code."""

    def __init__(self, message: str, *, param: str, code: str = "parameter_invalid") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class ListError(ParamError):
    """A list request Stripe refuses with 400."""


def list_objects(world: World, type_: str, params: dict[str, Any]) -> Record:
    """One page of `GET /v1/<type_>s` for parsed query `params` (see the module docstring); raises ListError."""
    unknown = sorted(set(params) - _PAGING_PARAMS - set(_LIST_FILTERS[type_]))
    if unknown:
        raise ListError(f"Received unknown parameter: {unknown[0]}", param=unknown[0], code="parameter_unknown")
    limit = _limit(params.get("limit"))
    expansions = _expansions(type_, params.get("expand"))
    keep = _filter(type_, params)
    ordered = sorted((r for r in world.all(PLATFORM, type_) if keep(r)), key=_list_position, reverse=True)
    page, has_more = _page(ordered, _cursor(world, type_, params, "starting_after"),
                           _cursor(world, type_, params, "ending_before"), limit)
    return {"object": "list", "data": [_expand(world, record, expansions) for record in page], "has_more": has_more,
            "url": f"/v1/{type_}s"}


def _list_position(record: Record) -> tuple[int, str]:
    return record["created"], record["id"]


def _limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not isinstance(value, str) or not value.lstrip("-").isdigit():
        raise ListError(f"Invalid integer: {value}", param="limit", code="parameter_invalid_integer")
    limit = int(value)
    if limit < 1:
        raise ListError("This value must be greater than or equal to 1.", param="limit",
                        code="parameter_invalid_integer")
    if limit > MAX_LIMIT:
        raise ListError(f"This value must be less than or equal to {MAX_LIMIT}.", param="limit",
                        code="parameter_invalid_integer")
    return limit


def _cursor(world: World, type_: str, params: dict[str, Any], name: str) -> tuple[int, str] | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ListError(f"Invalid string: {name} must be an object id", param=name)
    record = world.get(PLATFORM, type_, value)
    if record is None:
        raise ListError(f"No such {type_}: '{value}'", param=name, code="resource_missing")
    return _list_position(record)


def _page(ordered: list[Record], after: tuple[int, str] | None, before: tuple[int, str] | None,
          limit: int) -> tuple[list[Record], bool]:
    """The page of `ordered` (newest first) after or before a cursor, and whether more lie beyond it."""
    if after is not None and before is not None:
        raise ListError("You may only specify one of these parameters: ending_before, starting_after.",
                        param="ending_before")
    if before is not None:
        newer = [r for r in ordered if _list_position(r) > before]
        return newer[-limit:], len(newer) > limit
    rest = ordered if after is None else [r for r in ordered if _list_position(r) < after]
    return rest[:limit], len(rest) > limit


def _filter(type_: str, params: dict[str, Any]) -> Callable[[Record], bool]:
    """The predicate of the `created`, `status` and field filters (checked here, so errors come before paging)."""
    created = _created_bounds(params.get("created"))
    fields: dict[str, str] = {}
    for name in _LIST_FILTERS[type_]:
        value = params.get(name)
        if value is not None and not isinstance(value, str):
            raise ListError(f"Invalid string: {name}", param=name)
        if value:
            fields[name] = value
    statuses = _statuses(type_, fields.pop("status", None))

    def keep(record: Record) -> bool:
        return (all(_CREATED_OPS[op](record["created"], bound) for op, bound in created)
                and (statuses is None or record.get("status") in statuses)
                and all(record.get(name) == value for name, value in fields.items()))

    return keep


def _created_bounds(value: Any) -> list[tuple[str, int]]:
    if value is None or value == "":
        return []
    given = {"eq": value} if isinstance(value, str) else value
    if not isinstance(given, dict):
        raise ListError("Invalid created: give an integer or created[gt|gte|lt|lte]", param="created")
    bounds = []
    for op, bound in given.items():
        param = "created" if op == "eq" else f"created[{op}]"
        if op not in _CREATED_OPS:
            raise ListError(f"Received unknown parameter: {param}", param=param, code="parameter_unknown")
        if not isinstance(bound, str) or not bound.lstrip("-").isdigit():
            raise ListError(f"Invalid integer: {bound}", param=param, code="parameter_invalid_integer")
        bounds.append((op, int(bound)))
    return bounds


def _statuses(type_: str, status: str | None) -> frozenset[str] | None:
    """The statuses a list shows (None: any); subscriptions hide `canceled` unless asked."""
    if type_ == "subscription":
        if status is None:
            return _SUBSCRIPTION_STATUSES - {"all", "canceled", "ended"}
        if status not in _SUBSCRIPTION_STATUSES:
            raise ListError(f"Invalid status: must be one of {', '.join(sorted(_SUBSCRIPTION_STATUSES))}",
                            param="status")
        return {"all": None, "ended": frozenset({"canceled", "incomplete_expired"})}.get(status, frozenset({status}))
    if status is not None and status not in _INVOICE_STATUSES:
        raise ListError(f"Invalid status: must be one of {', '.join(sorted(_INVOICE_STATUSES))}", param="status")
    return None if status is None else frozenset({status})


def _expansions(type_: str, value: Any) -> dict[str, str | None]:
    if value is None:
        return {}
    if not isinstance(value, list) or not all(isinstance(path, str) for path in value):
        raise ListError("Invalid array: give expand[]=data.<field>", param="expand")
    expandable = _EXPANDABLE[type_]
    fields: dict[str, str | None] = {}
    for path in value:
        field = path.removeprefix("data.")
        if not path.startswith("data.") or field not in expandable:
            raise ListError(f"This property cannot be expanded ({path}).", param="expand")
        fields[field] = expandable[field]
    return fields


def _expand(world: World, record: Record, expansions: dict[str, str | None]) -> Record:
    """The record with each expanded id field replaced by its object (a copy: the world's record stays)."""
    expanded = dict(record)
    for field, target_type in expansions.items():
        target_id = record.get(field)
        if target_type is None or not isinstance(target_id, str):
            continue
        target = world.get(PLATFORM, target_type, target_id)
        expanded[field] = target if target is not None else {"id": target_id, "object": target_type, "deleted": True}
    return expanded


def _error(status: int, code: str, message: str, retry_after: float | None = None, *,
           error_type: str | None = None, param: str | None = None) -> web.Response:
    """A Stripe error response: `{"error": {"type", "code", "message"}}`."""
    if error_type is None:
        error_type = "api_error" if status >= 500 else "invalid_request_error"
    error: dict[str, Any] = {"type": error_type, "code": code, "message": message}
    if param:
        error["param"] = param
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    if status == 429:
        error["code"] = "rate_limit"
    return web.json_response({"error": error}, status=status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _int_param(params: dict[str, Any], name: str) -> int | None:
    value = str(params.get(name) or "")
    if not value:
        return None
    if not value.lstrip("-").isdigit():
        raise ValueError(f"Invalid integer: {value}")
    return int(value)


def unauthorized(request: web.Request, credentials: PlatformCredentials) -> web.Response | None:
    """Stripe's 401 for a request without the account's secret key (`Authorization: Bearer sk_...`), else None."""
    expected = credentials.stripe_api_key
    header = request.headers.get("Authorization", "")
    if not header:
        return _error(401, "api_key_required", "You did not provide an API key. You need to provide your API "
                      "key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                      "YOUR_SECRET_KEY').")
    given = header.removeprefix("Bearer ").strip()
    if expected and given != expected:
        return _error(401, "api_key_invalid", f"Invalid API Key provided: {given[:8]}****{given[-4:]}")
    return None


Mutation = Callable[[dict[str, Any], dict[str, str]], tuple[int, Record, str]]
"""A write endpoint's body: (params, path parameters) -> (status, response object, effects key)."""


class _Api:
    """The Stripe endpoints, over one world."""

    def __init__(self, world: World, credentials: PlatformCredentials) -> None:
        self.world = world
        self.credentials = credentials
        self.replays = Replays()
        self.writes = WriteCounter(world)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        return unauthorized(request, self.credentials)

    def read(self, type_: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if (denied := self._unauthorized(request)) is not None:
                return denied
            record = self.world.get(PLATFORM, type_, request.match_info["id"])
            if record is None:
                return _error(404, "resource_missing", f"No such {type_}: '{request.match_info['id']}'", param="id")
            return web.json_response(record, dumps=_dumps)

        return handler

    def list(self, type_: str) -> Handler:
        """`GET /v1/<type_>s`: a page of `list_objects`."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if (denied := self._unauthorized(request)) is not None:
                return denied
            try:
                page = list_objects(self.world, type_, parse_form(request.query_string))
            except ListError as exc:
                return _error(400, exc.code, str(exc), param=exc.param)
            except ValueError as exc:
                return _error(400, "parameter_invalid", str(exc))
            return web.json_response(page, dumps=_dumps)

        return handler

    def write(self, kind: str, mutation: Mutation) -> Handler:
        """A POST/DELETE endpoint with Stripe's idempotency: replay, or 400 idempotency_error on other params."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if (denied := self._unauthorized(request)) is not None:
                return denied
            try:
                params = parse_form(await request.text())
            except ValueError as exc:
                return _error(400, "parameter_invalid", str(exc))
            key = request.headers.get("Idempotency-Key")
            fingerprint = msgspec.json.encode([request.method, request.path, params], order="sorted")
            what = f"{request.method} {request.path}"
            if key:
                stored = self.replays.get(key)
                if stored is not None:
                    return self._replay(key, what, stored, fingerprint)
            before = self.writes.count
            try:
                status, body, record_key = mutation({k: v for k, v in params.items() if k not in _IGNORED_PARAMS},
                                                     dict(request.match_info))
                response = web.json_response(body, status=status, dumps=_dumps)
            except NotFound as exc:
                record_key = f"{kind}:{request.match_info.get('id', '')}"
                response = _error(404, "resource_missing", str(exc), param="id")
            except ParamError as exc:
                record_key = f"{kind}:{request.match_info.get('id', '')}"
                response = _error(400, exc.code, str(exc), param=exc.param)
            except ValueError as exc:
                record_key = f"{kind}:{request.match_info.get('id', '')}"
                response = _error(400, "parameter_invalid", str(exc))
            effects_key = key or record_key
            self.world.effects.request(PLATFORM, effects_key, what)
            if self.writes.count > before:
                self.world.effects.applied(PLATFORM, effects_key, what)
            if key and isinstance(response.body, bytes):
                self.replays.store(key, StoredResponse(fingerprint=fingerprint, status=response.status,
                                                       body=response.body))
                response.headers["Idempotency-Key"] = key
            return response

        return handler

    def _replay(self, key: str, what: str, stored: StoredResponse, fingerprint: bytes) -> web.Response:
        if stored.fingerprint != fingerprint:
            return _error(400, "idempotency_key_in_use", "Keys for idempotent requests can only be used with the "
                          f"same parameters they were first used with. Try using a key other than '{key}' if you "
                          "meant to execute a different request.", error_type="idempotency_error")
        self.world.effects.request(PLATFORM, key, what)
        return web.Response(body=stored.body, status=stored.status, content_type="application/json",
                            headers={"Idempotent-Replayed": "true", "Idempotency-Key": key})

    # --- mutations: (params, path) -> (status, object, effects key) ---

    def create_customer(self, params: dict[str, Any], path: dict[str, str]) -> tuple[int, Record, str]:
        unknown = set(params) - {"name", "email", "address", "metadata", "description", "phone"}
        if unknown:
            raise ValueError(f"Received unknown parameter: {sorted(unknown)[0]}")
        customer = create_customer(self.world, name=params.get("name") or "", email=params.get("email") or None,
                                   address=params.get("address") or None, metadata=params.get("metadata"))
        return 200, customer, f"customer:{customer['id']}"

    def update_customer(self, params: dict[str, Any], path: dict[str, str]) -> tuple[int, Record, str]:
        return 200, update_customer(self.world, path["id"], params), f"customer:{path['id']}"

    def delete_customer(self, params: dict[str, Any], path: dict[str, str]) -> tuple[int, Record, str]:
        delete_customer(self.world, path["id"])
        return 200, {"id": path["id"], "object": "customer", "deleted": True}, f"customer:{path['id']}"

    def create_tax_id(self, params: dict[str, Any], path: dict[str, str]) -> tuple[int, Record, str]:
        if not params.get("type") or not params.get("value"):
            raise ValueError("Missing required param: " + ("type" if not params.get("type") else "value"))
        customer = set_tax_id(self.world, path["id"], params["value"])
        tax_id: Record = {**customer["tax_ids"]["data"][0], "type": params["type"]}
        return 200, tax_id, f"customer:{path['id']}"

    def create_subscription(self, params: dict[str, Any], path: dict[str, str]) -> tuple[int, Record, str]:
        """`POST /v1/subscriptions`: one item of a catalogue price, for an existing customer."""
        _known(params, {"customer", "items", "metadata", "currency"})
        customer_id = _required(params, "customer")
        customer = self.world.get(PLATFORM, "customer", customer_id)
        if customer is None:
            raise ParamError(f"No such customer: '{customer_id}'", param="customer", code="resource_missing")
        item = _one_item(params)
        plan = _catalogue_price(_required(item, "price", "items[0][price]"), "items[0][price]")
        currency = str(params.get("currency") or customer.get("currency") or catalog.DEFAULT_CURRENCY).lower()
        if currency not in catalog.CURRENCIES:
            raise ParamError(f"The price {plan.price_id} is not offered in {currency}: choose one of "
                             f"{', '.join(catalog.CURRENCIES)}", param="currency")
        if customer.get("currency") not in (None, currency):
            raise ParamError(E_CURRENCY_COMBINED.format(currency=currency, customer=customer["currency"]),
                             param="currency")
        quantity = _quantity(item, "items[0][quantity]")
        sub = create_subscription(self.world, customer_id, price_id=plan.price_id, unit_amount=plan.unit_amount,
                                  currency=currency, quantity=1 if quantity is None else quantity,
                                  metadata=_merged_metadata(None, _metadata(params)))
        return 200, sub, f"subscription:{sub['id']}"

    def update_subscription(self, params: dict[str, Any], path: dict[str, str]) -> tuple[int, Record, str]:
        """`POST /v1/subscriptions/{id}`: seats, plan (through its one item), metadata, cancel at period end."""
        _known(params, {"cancel_at_period_end", "quantity", "items", "metadata"})
        sub_id = path["id"]
        sub = _get(self.world, "subscription", sub_id)
        if sub["status"] == "canceled" and set(params) - {"metadata"}:
            raise ValueError(f"A canceled subscription can only update its cancellation_details and metadata "
                             f"({sub_id}).")
        quantity = _quantity(params, "quantity")
        price: catalog.Plan | None = None
        if "items" in params:
            item = _one_item(params)
            item_id = _required(item, "id", "items[0][id]")
            if item_id != sub["items"]["data"][0]["id"]:
                raise ParamError(f"No such subscription item: '{item_id}' on subscription {sub_id}",
                                 param="items[0][id]", code="resource_missing")
            if item.get("price"):
                price = _catalogue_price(str(item["price"]), "items[0][price]")
            item_quantity = _quantity(item, "items[0][quantity]")
            quantity = item_quantity if item_quantity is not None else quantity
        metadata = _metadata(params) if "metadata" in params else None
        # Every parameter checked: only now is anything applied, so a refused request changes nothing.
        if params.get("cancel_at_period_end") == "true":
            cancel_subscription(self.world, sub_id, at_period_end=True)
        if price is None and quantity is None and metadata is None:
            return 200, _get(self.world, "subscription", sub_id), f"subscription:{sub_id}"
        record = update_subscription(self.world, sub_id, quantity=quantity, metadata=metadata,
                                     price_id=price.price_id if price else None,
                                     unit_amount=price.unit_amount if price else None)
        return 200, record, f"subscription:{sub_id}"

    def cancel_subscription(self, params: dict[str, Any], path: dict[str, str]) -> tuple[int, Record, str]:
        """`DELETE /v1/subscriptions/{id}`: cancel now; Stripe no longer finds one already canceled (404)."""
        sub = _get(self.world, "subscription", path["id"])
        if sub["status"] == "canceled":
            raise NotFound(f"No such subscription: '{path['id']}'")
        return 200, cancel_subscription(self.world, path["id"]), f"subscription:{path['id']}"

    def invoice_action(self, action: Callable[[World, str], Any]) -> Mutation:
        def mutation(params: dict[str, Any], path: dict[str, str]) -> tuple[int, Record, str]:
            action(self.world, path["id"])
            return 200, _get(self.world, "invoice", path["id"]), f"invoice:{path['id']}"

        return mutation

    def create_refund(self, params: dict[str, Any], path: dict[str, str]) -> tuple[int, Record, str]:
        charge_id = params.get("charge")
        if not charge_id:
            raise ValueError("Missing required param: charge.")
        refund, _ = refund_charge(self.world, charge_id, amount=_int_param(params, "amount"),
                                  reason=params.get("reason") or None)
        return 200, refund, f"refund:{refund['id']}"


def _known(params: dict[str, Any], accepted: set[str]) -> None:
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ParamError(f"Received unknown parameter: {unknown[0]}", param=unknown[0], code="parameter_unknown")


def _required(params: dict[str, Any], name: str, param: str | None = None) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise ParamError(f"Missing required param: {param or name}.", param=param or name, code="parameter_missing")
    return value


def _one_item(params: dict[str, Any]) -> dict[str, Any]:
    """`items[0][...]`, the one item a sandbox subscription has."""
    items = params.get("items")
    if not isinstance(items, list) or not items:
        raise ParamError("Missing required param: items.", param="items", code="parameter_missing")
    if len(items) > 1 or not isinstance(items[0], dict):
        raise ParamError("The sandbox's subscriptions have exactly one item: send items[0] only.", param="items")
    item: dict[str, Any] = items[0]
    _known(item, {"id", "price", "quantity"})
    return item


def _catalogue_price(price_id: str, param: str) -> catalog.Plan:
    plan = catalog.plan_of(price_id)
    if plan is None:
        raise ParamError(f"No such price: '{price_id}'", param=param, code="resource_missing")
    return plan


def _quantity(params: dict[str, Any], param: str) -> int | None:
    """The `quantity` of `params` (the request's, or its item's: `param` names it in errors); None when absent."""
    value = params.get("quantity")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.isdigit():
        raise ParamError(f"Invalid non-negative integer: {value}", param=param, code="parameter_invalid_integer")
    return int(value)


def _metadata(params: dict[str, Any]) -> dict[str, str]:
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ParamError("Invalid object: metadata must be a hash of keys and values.", param="metadata")
    return {str(key): str(value) for key, value in metadata.items()}


def routes(world: World, faults: Faults, credentials: PlatformCredentials) -> list[web.RouteDef]:
    """The `/v1` endpoints, each behind the Stripe faults."""
    api = _Api(world, credentials)
    guarded = guard(faults, PLATFORM, _error)
    lists = [web.get(f"/v1/{type_}s", guarded(api.list(type_))) for type_ in LIST_TYPES]
    return [
        *lists,
        web.post("/v1/customers", guarded(api.write("customer", api.create_customer))),
        web.get("/v1/customers/{id}", guarded(api.read("customer"))),
        web.post("/v1/customers/{id}", guarded(api.write("customer", api.update_customer))),
        web.delete("/v1/customers/{id}", guarded(api.write("customer", api.delete_customer))),
        web.post("/v1/customers/{id}/tax_ids", guarded(api.write("customer", api.create_tax_id))),
        web.post("/v1/subscriptions", guarded(api.write("subscription", api.create_subscription))),
        web.get("/v1/subscriptions/{id}", guarded(api.read("subscription"))),
        web.post("/v1/subscriptions/{id}", guarded(api.write("subscription", api.update_subscription))),
        web.delete("/v1/subscriptions/{id}", guarded(api.write("subscription", api.cancel_subscription))),
        web.get("/v1/invoices/{id}", guarded(api.read("invoice"))),
        web.post("/v1/invoices/{id}/finalize", guarded(api.write("invoice", api.invoice_action(finalize_invoice)))),
        web.post("/v1/invoices/{id}/pay", guarded(api.write("invoice", api.invoice_action(pay_invoice)))),
        web.post("/v1/invoices/{id}/void", guarded(api.write("invoice", api.invoice_action(void_invoice)))),
        web.post("/v1/invoices/{id}/mark_uncollectible",
                 guarded(api.write("invoice", api.invoice_action(mark_uncollectible)))),
        web.get("/v1/charges/{id}", guarded(api.read("charge"))),
        web.post("/v1/refunds", guarded(api.write("refund", api.create_refund))),
        web.get("/v1/refunds/{id}", guarded(api.read("refund"))),
    ]
