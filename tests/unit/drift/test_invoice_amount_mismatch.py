from __future__ import annotations

from typing import Any

import pytest

from concord.codecs.model import InvoiceChanged, Platform
from concord.drift.finding import REVIEW
from concord.drift.rules.invoice_amount_mismatch import RULE
from tests.unit.drift.builders import HOUR, invoice, only, run, state_of, systems

STRIPE, NETSUITE = Platform.STRIPE, Platform.NETSUITE


def pair(billing: dict[str, Any], erp: dict[str, Any]) -> tuple[InvoiceChanged, InvoiceChanged]:
    return (invoice(STRIPE, "in_1", "open", at=HOUR, **billing),
            invoice(NETSUITE, "361", "open", at=2 * HOUR, billing_invoice_id="in_1", **erp))


def test_fires_on_a_total_difference_with_both_sides() -> None:
    state = state_of(*pair({"total": 1000, "tax": 100}, {"total": 990, "tax": 100}))
    finding = only(run(RULE, state))
    assert finding.subject == "in_1|361"
    assert finding.since == 2 * HOUR
    assert finding.action == REVIEW
    assert systems(finding) == {"stripe", "netsuite"}
    assert [(o.system, o.field, o.value) for o in finding.evidence] == [
        ("stripe", "total", 1000), ("netsuite", "total", 990)]


@pytest.mark.parametrize(("billing", "erp", "field"), [
    ({"total": 100, "currency": "USD"}, {"total": 100, "currency": "EUR"}, "currency"),
    ({"total": 100, "tax": 10}, {"total": 100, "tax": 0}, "tax"),
])
def test_fires_on_currency_or_tax(billing: dict[str, Any], erp: dict[str, Any], field: str) -> None:
    assert {o.field for o in only(run(RULE, state_of(*pair(billing, erp)))).evidence} == {field}


def test_respects_the_amount_tolerance() -> None:
    state = state_of(*pair({"total": 1000, "tax": 100}, {"total": 999, "tax": 101}))
    assert run(RULE, state, amount_tolerance=1) == []
    assert run(RULE, state)


def test_silent_when_equal_or_a_tax_is_unknown() -> None:
    assert run(RULE, state_of(*pair({"total": 500, "tax": None}, {"total": 500, "tax": 30}))) == []


def test_silent_for_unmatched_or_draft_billing_invoices() -> None:
    assert run(RULE, state_of(invoice(NETSUITE, "361", "open", 1, HOUR, billing_invoice_id="in_9"))) == []
    state = state_of(invoice(STRIPE, "in_1", "draft", 100, HOUR),
                     invoice(NETSUITE, "361", "open", 90, HOUR, billing_invoice_id="in_1"))
    assert run(RULE, state) == []


def test_converges_and_keeps_its_fingerprint_while_values_move() -> None:
    state = state_of(*pair({"total": 1000, "tax": 100}, {"total": 900, "tax": 90}))
    before = only(run(RULE, state))
    state = state_of(invoice(NETSUITE, "361", "open", 1000, 3 * HOUR, billing_invoice_id="in_1", tax=90), base=state)
    after = only(run(RULE, state))
    assert after.fingerprint == before.fingerprint
    assert {o.field for o in after.evidence} == {"tax"}
    state = state_of(invoice(NETSUITE, "361", "open", 1000, 4 * HOUR, billing_invoice_id="in_1", tax=100), base=state)
    assert run(RULE, state) == []
