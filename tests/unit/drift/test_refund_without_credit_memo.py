from __future__ import annotations

import pytest

from concord.codecs.model import Platform
from concord.drift.rules.refund_without_credit_memo import RULE
from tests.unit.drift.builders import HOUR, KEY, only, refund, run, state_of, systems

STRIPE, NETSUITE = Platform.STRIPE, Platform.NETSUITE


def test_fires_for_a_succeeded_refund_without_credit_memo() -> None:
    state = state_of(refund(STRIPE, "re_1", "refund", "succeeded", 500, 2 * HOUR, invoice_id="in_1", charge_id="ch_1"))
    finding = only(run(RULE, state))
    assert finding.subject == "re_1"
    assert finding.since == 2 * HOUR
    assert finding.action.name == "erp.create_credit_memo"
    assert finding.action.target == {"external_id": "re_1"}
    assert finding.action.payload == {"customer_key": KEY, "document": "refund", "invoice_id": "in_1",
                                      "charge_id": "ch_1", "amount": 500, "currency": "USD"}
    assert systems(finding) == {"stripe", "netsuite"}
    assert finding.evidence[1].value is None


def test_fires_for_an_issued_credit_note() -> None:
    assert only(run(RULE, state_of(refund(STRIPE, "cn_1", "credit_note", "issued", 500, HOUR)))).subject == "cn_1"


@pytest.mark.parametrize(("document", "status"), [("refund", "pending"), ("refund", "failed"),
                                                  ("credit_note", "void"), ("refund", "canceled")])
def test_silent_until_money_moved(document: str, status: str) -> None:
    assert run(RULE, state_of(refund(STRIPE, "re_1", document, status, 500, HOUR))) == []


def test_converges_when_the_erp_books_a_credit_memo_but_not_a_void_one() -> None:
    state = state_of(refund(STRIPE, "re_1", "refund", "succeeded", 500, HOUR))
    void = state_of(refund(NETSUITE, "77", "credit_memo", "void", 500, 2 * HOUR, billing_refund_id="re_1"),
                    base=state)
    assert only(run(RULE, void)).subject == "re_1"
    booked = state_of(refund(NETSUITE, "77", "credit_memo", "open", 500, 3 * HOUR, billing_refund_id="re_1"),
                      base=void)
    assert run(RULE, booked) == []


def test_a_deleted_credit_memo_books_nothing() -> None:
    state = state_of(refund(STRIPE, "re_1", "refund", "succeeded", 500, HOUR),
                     refund(NETSUITE, "77", "credit_memo", "open", 500, 2 * HOUR, billing_refund_id="re_1"))
    assert run(RULE, state) == []
    deleted = state_of(refund(NETSUITE, "77", "credit_memo", "open", 500, 3 * HOUR, billing_refund_id="re_1",
                              deleted=True), base=state)
    assert only(run(RULE, deleted)).subject == "re_1"


def test_fingerprint_stable_while_the_refund_changes() -> None:
    state = state_of(refund(STRIPE, "re_1", "refund", "succeeded", 500, HOUR))
    before = only(run(RULE, state))
    after = only(run(RULE, state_of(refund(STRIPE, "re_1", "refund", "succeeded", 450, 2 * HOUR), base=state)))
    assert after.fingerprint == before.fingerprint
    assert after.action.payload["amount"] == 450


def test_a_charge_level_total_is_not_judged_once_the_charge_refunds_are_known() -> None:
    # charge.refunded without its refund list (basil) plus refund.created for the same money.
    total = state_of(refund(STRIPE, "ch_1", "refund", "succeeded", 500, HOUR, charge_id="ch_1"))
    assert only(run(RULE, total)).subject == "ch_1"  # alone, the total is all Concord knows
    both = state_of(refund(STRIPE, "re_1", "refund", "succeeded", 500, HOUR, charge_id="ch_1"), base=total)
    assert only(run(RULE, both)).subject == "re_1"
    booked = state_of(refund(NETSUITE, "77", "credit_memo", "open", 500, 2 * HOUR, billing_refund_id="re_1"),
                      base=both)
    assert run(RULE, booked) == []
