from __future__ import annotations

import pytest

from concord.codecs.model import Platform
from concord.drift.rules.invoice_missing_in_erp import RULE
from concord.tables.state import Limits, apply
from tests.unit.drift.builders import HOUR, KEY, invoice, only, run, state_of, systems

STRIPE, NETSUITE = Platform.STRIPE, Platform.NETSUITE


def test_fires_for_a_finalized_invoice_the_erp_lacks() -> None:
    state = state_of(invoice(STRIPE, "in_1", "open", 1200, 2 * HOUR, number="A-1", tax=200, due_at=9 * HOUR))
    finding = only(run(RULE, state))
    assert finding.subject == "in_1"
    assert finding.since == 2 * HOUR
    assert finding.action.name == "erp.upsert_invoice"
    assert finding.action.platform == "netsuite"
    assert finding.action.target == {"external_id": "in_1"}
    assert finding.action.payload == {"customer_key": KEY, "number": "A-1", "total": 1200, "tax": 200,
                                      "currency": "USD", "due_at": 9 * HOUR, "status": "open"}
    assert systems(finding) == {"stripe", "netsuite"}
    assert finding.evidence[1].record == "" and finding.evidence[1].value is None


@pytest.mark.parametrize("status", ["paid", "uncollectible"])
def test_closed_finalized_invoices_count(status: str) -> None:
    assert only(run(RULE, state_of(invoice(STRIPE, "in_1", status, 100, HOUR)))).subject == "in_1"


@pytest.mark.parametrize("status", ["draft", "void"])
def test_silent_for_drafts_and_voids(status: str) -> None:
    assert run(RULE, state_of(invoice(STRIPE, "in_1", status, 100, HOUR))) == []


def test_silent_for_deleted_invoices() -> None:
    assert run(RULE, state_of(invoice(STRIPE, "in_1", "open", 100, HOUR, deleted=True))) == []


def test_converges_when_the_erp_books_it_and_not_for_a_deleted_erp_invoice() -> None:
    state = state_of(invoice(STRIPE, "in_1", "open", 100, HOUR))
    booked = state_of(invoice(NETSUITE, "361", "open", 100, 2 * HOUR, billing_invoice_id="in_1"), base=state)
    assert run(RULE, booked) == []
    deleted = state_of(invoice(NETSUITE, "361", "void", 0, 3 * HOUR, billing_invoice_id="in_1", deleted=True),
                       base=booked)
    assert only(run(RULE, deleted)).subject == "in_1"


def test_fingerprint_stable_while_the_invoice_changes() -> None:
    state = state_of(invoice(STRIPE, "in_1", "open", 100, HOUR))
    before = only(run(RULE, state))
    after = only(run(RULE, state_of(invoice(STRIPE, "in_1", "paid", 100, 2 * HOUR), base=state)))
    assert after.fingerprint == before.fingerprint
    assert after.action.payload["status"] == "paid"


def test_closed_invoices_older_than_the_erp_eviction_horizon_are_not_judged() -> None:
    limits = Limits(closed_invoices=1)
    state = state_of(invoice(STRIPE, "in_old", "paid", 100, HOUR))
    for n, at in enumerate((2 * HOUR, 3 * HOUR)):
        state, _ = apply(state, invoice(NETSUITE, f"36{n}", "paid", 100, at, billing_invoice_id=f"in_{n}"), limits)
    assert state.erp.horizon.ts == 2 * HOUR
    assert run(RULE, state) == []
