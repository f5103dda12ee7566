"""What the saga surfaces decide alike (app/sagas.py), pure: a listing's filters and their refusals, which sagas a
person may resume and the message that resumes one, and the order in which a person sees them."""

from __future__ import annotations

import pytest

from concord.app import sagas as sg
from concord.connectors.saga_index import LIMIT_MAX
from concord.core.messages import ResumeSaga
from concord.drift import saga as dsaga
from concord.drift.saga import SagaView

NOW = 1_700_000_000_000


def saga(opportunity_id: str = "006A", state: str = dsaga.PAUSED, **more: object) -> SagaView:
    """A saga as the index holds it: by default paused at validation, waiting for a tax id."""
    fields: dict[str, object] = dict(
        opportunity_id=opportunity_id, customer_key="001A", state=state, step=dsaga.VALIDATE, version=2,
        started_at=NOW - 60_000, updated_at=NOW, plan="pro", quantity=3, amount=14_700, currency="EUR")
    if state == dsaga.PAUSED:
        fields.update(reason_code=dsaga.MISSING_TAX_ID, reason="the deal cannot be provisioned: missing tax id",
                      fix="set account 001A's tax id (VAT number) in Salesforce: its billing country DE needs one, "
                      "then resume the saga")
    fields.update(more)
    return SagaView(**fields)  # type: ignore[arg-type]


def test_a_listing_takes_a_state_a_customer_and_a_limit() -> None:
    assert sg.listing({}) == sg.Listing(limit=sg.DEFAULT_LIMIT)
    assert sg.listing({"state": "paused", "customer": " 001A ", "limit": "20"}) == sg.Listing(
        state="paused", customer="001A", limit=20)
    assert sg.listing({"state": "", "customer": "", "limit": ""}) == sg.Listing()  # empty: not given
    assert sg.listing({"limit": "0"}).limit == 1 and sg.listing({"limit": "100000"}).limit == LIMIT_MAX


@pytest.mark.parametrize(("query", "words"), [
    ({"state": "stuck"}, "state='stuck' is not a saga state: choose one of running, completed, paused, compensating, "
                         "compensated, failed"),
    ({"state": "PAUSED"}, "state='PAUSED' is not a saga state"),
    ({"limit": "ten"}, "limit='ten' is not a whole number: ask for 1 to 1000 sagas"),
    ({"customer": "001A\x00"}, "cannot be a customer key"),
    ({"customer": "x" * 201}, "longer than 200 characters"),
])
def test_a_listing_says_what_is_wrong_with_which_value(query: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError) as refused:
        sg.listing(query)
    assert words in str(refused.value)


@pytest.mark.parametrize("state", sorted(sg.RESUMABLE))
def test_a_paused_failed_or_compensated_saga_resumes_under_the_name_of_who_asks(state: str) -> None:
    message = sg.resume_of(saga(state=state), "alice", "tax id set")
    assert message == ResumeSaga(customer_key="001A", opportunity_id="006A", by="alice", note="tax id set")


@pytest.mark.parametrize(("state", "why"), [
    (dsaga.RUNNING, "wait for the step's result"),
    (dsaga.COMPENSATING, "it is undoing its steps"),
    (dsaga.COMPLETED, "the deal is provisioned"),
])
def test_a_saga_that_waits_for_no_person_is_not_resumed_and_the_refusal_says_why(state: str, why: str) -> None:
    with pytest.raises(sg.NotResumable) as refused:
        sg.resume_of(saga(state=state, step=dsaga.SUBSCRIPTION), "alice")
    text = str(refused.value)
    assert f"the saga of opportunity 006A is {state} (step subscription)" in text
    assert "only a paused, failed or compensated saga can be resumed" in text and why in text
    assert set(dsaga.STATES) == sg.RESUMABLE | {dsaga.RUNNING, dsaga.COMPENSATING, dsaga.COMPLETED}


def test_the_sagas_waiting_for_a_person_come_first() -> None:
    listed = sg.ordered([
        saga("006R", dsaga.RUNNING, updated_at=NOW + 5), saga("006F", dsaga.FAILED, updated_at=NOW + 4),
        saga("006P1", updated_at=NOW + 1), saga("006P2", updated_at=NOW + 2),
        saga("006C", dsaga.COMPLETED, updated_at=NOW + 9), saga("006P1", updated_at=NOW + 1)])  # read twice: once
    assert [s.opportunity_id for s in listed] == ["006P2", "006P1", "006F", "006C", "006R"]


def test_newer_sagas_do_not_crowd_the_waiting_ones_out_of_a_listing() -> None:
    old_pause = saga("006OLD", updated_at=NOW - 10**9)
    every = [old_pause, *(saga(f"006N{n}", dsaga.COMPLETED, updated_at=NOW + n) for n in range(5))]
    shown = sg.waiting_first(every, None, None, 3)
    assert [s.opportunity_id for s in shown] == ["006OLD", "006N4", "006N3"]
    only = sg.waiting_first(every, dsaga.COMPLETED, "001A", 2)
    assert [s.opportunity_id for s in only] == ["006N4", "006N3"]
    assert sg.waiting_first(every, None, "001Z", 3) == []
