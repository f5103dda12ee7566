"""The customer 360 built from a state: records side by side, and the values its findings name marked."""

from __future__ import annotations

import msgspec

from concord.app.customer_view import CustomerView, Field, Record, customer_view
from concord.connectors.timeline import Checkpoint
from concord.drift import catalog, lifecycle
from concord.drift.config import DriftConfig
from concord.tables.state import CustomerState
from tests.unit.tables.state_builders import (
    KEY,
    NETSUITE,
    STRIPE,
    ZENDESK,
    account,
    customer,
    entitlement,
    fold,
    invoice,
    opportunity,
    subscription,
)

HOUR = 3_600_000
T = 1_700_000_000_000


def judged(state: CustomerState) -> CustomerState:
    """The state once the real rules have judged it and every grace window has passed."""
    config = DriftConfig(plan_tiers={"pro": "premium"})
    first = lifecycle.evaluate(state, T, catalog.RULES, config).state
    return lifecycle.evaluate(first, T + 1000 * HOUR, catalog.RULES, config).state


def drifting() -> CustomerState:
    return judged(fold([
        account(T, name="Acme GmbH", country="DE"),
        opportunity(T, "006A", stage="Prospecting"),
        customer(T, STRIPE, "cus_1", name="Acme GmbH", email="ap@acme.example"),
        customer(T, NETSUITE, "7", name="ACME Corporation", crm_account_id=KEY),  # D09: the CRM owns the name
        subscription(T, "active", "sub_1", plan="pro"),
        customer(T, ZENDESK, "9", name="Acme GmbH"),
        entitlement(T, "active", "9", tier="standard"),  # D03: plan pro maps to premium
        invoice(T, "in_1", "open", total=1000, number="A-1"),
        invoice(T, "701", "open", system=NETSUITE, total=900, billing_invoice_id="in_1"),  # D05: totals differ
        invoice(T, "in_2", "paid", total=500),  # D04: not in the ERP
    ]))


def record(view: CustomerView, system: str, kind: str, rid: str) -> Record:
    found = [r for s in view.systems if s.system == system for r in s.records if r.kind == kind and r.id == rid]
    assert len(found) == 1, (system, kind, rid)
    return found[0]


def field(rec: Record, name: str) -> Field:
    return next(f for f in rec.fields if f.name == name)


def test_the_values_a_finding_names_are_marked_on_both_sides() -> None:
    state = drifting()
    view = customer_view(state, [])
    rules = {f.rule: f for f in view.open_findings}
    assert {"D03", "D04", "D05", "D09"} <= set(rules)

    # D09: the ERP customer's name differs from the CRM's; both values are shown marked, nothing else is.
    name_row = next(r for r in view.master if r.field == "name")
    assert [(c.system, c.record, c.value, c.disagrees) for c in name_row.cells] == [
        ("salesforce", KEY, "Acme GmbH", True), ("stripe", "cus_1", "Acme GmbH", False),
        ("zendesk", "9", "Acme GmbH", False), ("netsuite", "7", "ACME Corporation", True)]
    assert rules["D09"].fingerprint in name_row.cells[3].findings and name_row.disagrees
    assert not next(r for r in view.master if r.field == "country").disagrees
    assert field(record(view, "netsuite", "customer", "7"), "name").disagrees

    # D05: the invoice's totals side by side, both marked; the amounts that agree are not.
    pair = next(p for p in view.invoices if p.billing_invoice_id == "in_1")
    assert pair.billing is not None and pair.erp is not None and pair.disagrees
    assert (field(pair.billing, "total").value, field(pair.erp, "total").value) == (1000, 900)
    assert field(pair.billing, "total").disagrees and field(pair.erp, "total").disagrees
    assert not field(pair.billing, "currency").disagrees

    # D04: the missing ERP invoice is a note of NetSuite; its billing side is marked.
    missing = next(p for p in view.invoices if p.billing_invoice_id == "in_2")
    assert missing.erp is None and missing.billing is not None and field(missing.billing, "status").disagrees
    netsuite = next(s for s in view.systems if s.system == "netsuite")
    assert [(n.record, n.field, n.missing) for n in netsuite.notes] == [("", "invoice", True)]
    assert netsuite.disagrees

    # D03: the tier the plan maps to is evidence on the subscription, which holds no tier: shown as its field.
    tier = field(record(view, "stripe", "subscription", "sub_1"), "tier")
    assert (tier.value, tier.disagrees) == ("premium", True)
    assert field(record(view, "zendesk", "entitlement", "9"), "tier").disagrees
    assert not field(record(view, "zendesk", "organization", "9"), "name").disagrees  # same id, other record


def test_findings_open_pending_and_past_and_the_timeline() -> None:
    state = drifting()
    d09 = next(i for i in state.drift.values() if i.rule == "D09")
    resolved = msgspec.structs.replace(d09, status="resolved", resolution="accepted", resolved_at=T + 5)
    pending = msgspec.structs.replace(d09, fingerprint="f" * 20, status="pending")
    drift = {**state.drift, d09.fingerprint: resolved, pending.fingerprint: pending}
    state = msgspec.structs.replace(state, drift=drift)
    point = Checkpoint(at=T, kind="drift.open", correlation_id="evt_1", platform="concord", summary="D09 open")
    view = customer_view(state, [point], f"/api/customers/{KEY}/timeline")
    assert d09.fingerprint not in {f.fingerprint for f in view.open_findings}
    assert [f.fingerprint for f in view.past_findings] == [d09.fingerprint]
    assert [f.fingerprint for f in view.pending_findings] == ["f" * 20]
    name = field(record(view, "netsuite", "customer", "7"), "name")
    assert (name.disagrees, name.findings, name.pending) == (False, (), ("f" * 20,))  # pending: seen, not reported
    assert view.timeline == [point] and view.timeline_url.endswith("/timeline")
    assert view.name == "Acme GmbH" and view.key == KEY


def test_a_customer_that_agrees_has_nothing_marked_and_renders_as_json() -> None:
    state = judged(fold([account(T, name="Acme GmbH"), customer(T, ZENDESK, "9", name="ACME  gmbh"),
                         opportunity(T, "006A", amount=12300, currency="EUR", amount_digits=2)]))
    view = customer_view(state, [])
    assert not view.open_findings
    assert not any(s.disagrees or s.notes for s in view.systems)
    assert [s.system for s in view.systems] == ["salesforce", "stripe", "zendesk", "netsuite"]
    assert field(record(view, "salesforce", "opportunity", "006A"), "amount").value == 12300
    document = msgspec.json.decode(msgspec.json.encode(view))
    assert document["systems"][0]["records"][0]["fields"][0] == {
        "name": "name", "value": "Acme GmbH", "disagrees": False, "findings": [], "pending": []}
