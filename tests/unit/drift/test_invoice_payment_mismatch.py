from __future__ import annotations

from concord.codecs.model import InvoiceChanged, Platform
from concord.drift.finding import REVIEW
from concord.drift.rules.invoice_payment_mismatch import RULE
from tests.unit.drift.builders import HOUR, invoice, only, run, state_of, systems

STRIPE, NETSUITE = Platform.STRIPE, Platform.NETSUITE


def erp(status: str, remaining: int | None, at: int = 2 * HOUR) -> InvoiceChanged:
    return invoice(NETSUITE, "361", status, 1000, at, billing_invoice_id="in_1", amount_remaining=remaining)


def test_paid_in_billing_open_in_erp_applies_the_remaining_amount() -> None:
    state = state_of(invoice(STRIPE, "in_1", "paid", 1000, 3 * HOUR, amount_remaining=0, paid_at=3 * HOUR),
                     erp("open", 1000))
    finding = only(run(RULE, state))
    assert finding.subject == "in_1|361|paid_in_billing"
    assert finding.since == 3 * HOUR
    assert finding.action.name == "erp.apply_payment"
    assert finding.action.target == {"external_id": "in_1"}
    assert finding.action.payload == {"amount": 1000, "currency": "USD", "paid_at": 3 * HOUR}
    assert systems(finding) == {"stripe", "netsuite"}


def test_an_unstated_erp_remainder_counts_the_whole_total() -> None:
    state = state_of(invoice(STRIPE, "in_1", "paid", 1000, HOUR), erp("open", None))
    assert only(run(RULE, state)).action.payload["amount"] == 1000


def test_paid_in_erp_open_in_billing_is_reviewed_under_another_subject() -> None:
    for erp_side in (erp("paid", None), erp("open", 0)):
        state = state_of(invoice(STRIPE, "in_1", "open", 1000, HOUR, amount_remaining=1000), erp_side)
        finding = only(run(RULE, state))
        assert finding.subject == "in_1|361|paid_in_erp"
        assert finding.action == REVIEW


def test_respects_the_amount_tolerance() -> None:
    state = state_of(invoice(STRIPE, "in_1", "paid", 1000, HOUR), erp("open", 2))
    assert run(RULE, state, amount_tolerance=2) == []
    assert run(RULE, state)
    reverse = state_of(invoice(STRIPE, "in_1", "open", 1000, HOUR), erp("open", 2))
    assert run(RULE, reverse, amount_tolerance=2)
    assert run(RULE, reverse) == []


def test_silent_when_both_agree_or_erp_is_void() -> None:
    assert run(RULE, state_of(invoice(STRIPE, "in_1", "paid", 1000, HOUR), erp("paid", 0))) == []
    assert run(RULE, state_of(invoice(STRIPE, "in_1", "open", 1000, HOUR), erp("open", 1000))) == []
    assert run(RULE, state_of(invoice(STRIPE, "in_1", "paid", 1000, HOUR), erp("void", 1000))) == []


def test_converges_with_a_stable_fingerprint() -> None:
    state = state_of(invoice(STRIPE, "in_1", "paid", 1000, HOUR), erp("open", 1000))
    before = only(run(RULE, state))
    partly = state_of(erp("open", 400, at=3 * HOUR), base=state)
    after = only(run(RULE, partly))
    assert after.fingerprint == before.fingerprint
    assert after.action.payload["amount"] == 400
    assert run(RULE, state_of(erp("paid", 0, at=4 * HOUR), base=partly)) == []
