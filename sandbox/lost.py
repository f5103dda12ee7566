"""Events the sandbox loses on purpose (`--lose-rate`, the `lose_rate` fault): their ground truth.

A real platform drops a webhook now and then (retries exhausted, an endpoint disabled for a while, a
CDC pipeline that skipped a batch), and the record it was about has changed all the same. The
sandbox plays that: the emitter (`sandbox/emit.py`) drops the share of each platform's events given
by its `lose_rate` fault (`sandbox/faults.py`), leaves the world as it is, never retries them, and
records each one here as a `LostEvent`, served at `GET /_sandbox/lost`. A scorer can then tell
whether a later reconciliation found the difference the lost event left.

The customer is named the way Concord would name it, the CRM account id, looked up by the sandbox
on its own in the world (`customer_key`): never through Concord's identity logic, which it judges.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from concord.sandbox.world import Change, Record, World


class LostEvent(Struct, frozen=True, kw_only=True):
    """One platform event the emitter dropped instead of delivering (ground truth, `GET /_sandbox/lost`)."""

    platform: str
    event_id: str  # the id the event would have carried (Stripe `evt_...`, Zendesk uuid, NetSuite, CDC)
    event_type: str  # "invoice.paid", "zen:event-type:organization.created", "edit", "UPDATE", ...
    record_type: str  # the platform's object name: invoice, Account, organization, customer, ...
    record_id: str
    op: str  # create | update | delete: what happened to the record
    customer_key: str | None  # the CRM account id of the customer, None when the records name none
    at: int  # epoch ms of the change the event was about


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _reference_id(value: Any) -> str | None:
    """The id of a NetSuite reference (`{"id": "1003", "refName": ...}`) or of a plain id."""
    return _text(value.get("id")) if isinstance(value, dict) else _text(value)


def _stripe_key(world: World, change: Change) -> str | None:
    record: Record | None = change.record
    if change.type != "customer":
        customer_id = _text(change.record.get("customer"))
        # A refund names its charge, an invoice payment its invoice: they name the customer.
        for parent in ("charge", "invoice"):
            if customer_id is None and _text(change.record.get(parent)):
                named = world.get("stripe", parent, str(change.record[parent]))
                customer_id = _text(named.get("customer")) if named else None
        record = world.get("stripe", "customer", customer_id) if customer_id else None
    return _text(((record or {}).get("metadata") or {}).get("salesforce_account_id"))


def _zendesk_key(world: World, change: Change) -> str | None:
    record: Record | None = change.record
    if change.type == "ticket":
        organization_id = _text(change.record.get("organization_id"))
        record = world.get("zendesk", "organization", organization_id) if organization_id else None
    return _text((record or {}).get("external_id"))


def _netsuite_key(world: World, change: Change) -> str | None:
    record: Record | None = change.record
    if change.type != "customer":
        customer_id = _reference_id(change.record.get("entity") or change.record.get("customer"))
        record = world.get("netsuite", "customer", customer_id) if customer_id else None
    return _text((record or {}).get("externalId"))


def customer_key(world: World, change: Change) -> str | None:
    """The CRM account id the changed record belongs to, as the records themselves say; None if they do not.

    Salesforce: the Account's id, an Opportunity's AccountId. Stripe: the customer's
    `metadata.salesforce_account_id` (through the customer, a refund's charge, an invoice payment's
    invoice). Zendesk: the organization's `external_id` (a ticket's organization). NetSuite: the
    customer's `externalId` (a transaction's entity or customer).
    """
    if change.platform == "salesforce":
        return change.id if change.type == "Account" else _text(change.record.get("AccountId"))
    if change.platform == "stripe":
        return _stripe_key(world, change)
    if change.platform == "zendesk":
        return _zendesk_key(world, change)
    if change.platform == "netsuite":
        return _netsuite_key(world, change)
    return None


def lost_event(world: World, change: Change, event_id: str, event_type: str) -> LostEvent:
    """The ground truth of one event about `change` that is lost."""
    return LostEvent(platform=change.platform, event_id=event_id, event_type=event_type, record_type=change.type,
                     record_id=change.id, op=change.op, customer_key=customer_key(world, change), at=change.at)
