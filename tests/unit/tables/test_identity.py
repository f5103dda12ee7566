from __future__ import annotations

from concord.codecs.model import (
    UNSET,
    AccountMerged,
    CustomerUpserted,
    EntityRef,
    InvoiceChanged,
    PaymentChanged,
    Platform,
    RefundChanged,
    Version,
)
from concord.core.messages import Repoint
from concord.tables.identity import EMPTY_QUEUE, ParkedQueue, merge_routing, step
from concord.tables.state import CustomerState, apply, empty


def invoice(n: int, customer_key: str | None = None, local: str = "stripe:cus_1") -> InvoiceChanged:
    return InvoiceChanged(
        event_id=f"evt_{n}", source=Platform.STRIPE, entity=EntityRef("invoice", f"in_{n}"), occurred_at=n,
        version=Version(n), customer_key=customer_key, local_customer=local, system=Platform.STRIPE,
        invoice_id=f"in_{n}", status="open", total=100 * n, currency="USD",
    )


def test_unlinked_events_park_in_order_then_release_before_the_linking_event() -> None:
    queue = EMPTY_QUEUE
    for n in (1, 2):
        outcome = step(None, queue, invoice(n), limit=10)
        assert outcome.forward == () and outcome.link is None
        queue = outcome.parked
    assert len(queue.events) == 2
    linking = invoice(3, customer_key="001A")
    outcome = step(None, ParkedQueue.load(queue.dump()), linking, limit=10)
    assert outcome.link == "001A"
    assert [e.event_id for e in outcome.forward] == ["evt_1", "evt_2", "evt_3"]
    assert all(e.customer_key == "001A" for e in outcome.forward)
    assert outcome.parked == EMPTY_QUEUE


def test_a_known_link_resolves_without_parking() -> None:
    outcome = step("001A", EMPTY_QUEUE, invoice(1), limit=10)
    assert [(e.event_id, e.customer_key) for e in outcome.forward] == [("evt_1", "001A")]
    assert outcome.parked == EMPTY_QUEUE


def test_park_overflow_is_returned_not_dropped() -> None:
    queue = ParkedQueue()
    for n in range(3):
        queue = step(None, queue, invoice(n), limit=3).parked
    outcome = step(None, queue, invoice(9), limit=3)
    assert len(outcome.parked.events) == 3
    assert len(outcome.overflow) == 1 and b'"evt_9"' in outcome.overflow[0]


def test_repoint_moves_the_link_and_releases() -> None:
    queue = step(None, EMPTY_QUEUE, invoice(1), limit=5).parked
    outcome = step("001OLD", queue, Repoint(local_id="stripe:cus_1", customer_key="001NEW", reason="crm_merge"), 5)
    assert outcome.link == "001NEW"
    assert [e.customer_key for e in outcome.forward] == ["001NEW"]


def test_a_resolved_charge_links_its_alias_so_refunds_resolve() -> None:
    charge = PaymentChanged(
        event_id="evt_c", source=Platform.STRIPE, entity=EntityRef("charge", "ch_1"), occurred_at=1,
        version=Version(1), local_customer="stripe:cus_1", aliases=("stripe:ch_1",), system=Platform.STRIPE,
        payment_id="ch_1", status="succeeded", amount=100, currency="USD",
    )
    outcome = step("001A", EMPTY_QUEUE, charge, limit=5)
    assert outcome.alias_links == (Repoint(local_id="stripe:ch_1", customer_key="001A", reason="alias"),)
    refund = RefundChanged(
        event_id="evt_r", source=Platform.STRIPE, entity=EntityRef("refund", "re_1"), occurred_at=2,
        version=Version(2), local_customer="stripe:ch_1", system=Platform.STRIPE, refund_id="re_1",
        document="refund", status="succeeded", amount=100, currency="USD",
    )
    parked = step(None, EMPTY_QUEUE, refund, limit=5).parked
    released = step(None, parked, outcome.alias_links[0], limit=5)
    assert [(e.event_id, e.customer_key) for e in released.forward] == [("evt_r", "001A")]


def _merge() -> AccountMerged:
    return AccountMerged(
        event_id="m1", source=Platform.SALESFORCE, entity=EntityRef("account", "001LOSER"), occurred_at=5,
        version=Version(5), customer_key="001WIN", local_customer="salesforce:001LOSER", winner_id="001WIN",
        loser_ids=("001LOSER",), correlation_id="tx1",
    )


def known(key: str, *events: InvoiceChanged) -> CustomerState:
    """A customer state that has seen `events` (apply learns their local ids)."""
    state = empty(key)
    for event in events:
        state, _ = apply(state, event)
    return state


def test_the_state_learns_local_ids_once() -> None:
    state = known("001A", invoice(1, "001A"), invoice(2, "001A"), invoice(3, "001A", local="zendesk:7"))
    assert state.local_ids == ("stripe:cus_1", "zendesk:7")


def test_merge_repoints_every_local_id_of_the_loser_and_readdresses_late_events() -> None:
    loser = known("001LOSER", invoice(1, "001LOSER"), invoice(2, "001LOSER", local="zendesk:7"))
    routing = merge_routing(loser, _merge())
    assert {(r.local_id, r.customer_key) for r in routing.repoints} == {
        ("stripe:cus_1", "001WIN"), ("zendesk:7", "001WIN")}
    loser, _ = apply(loser, _merge())
    assert loser.merged_into == "001WIN"
    late = merge_routing(loser, invoice(4, "001LOSER"))
    assert late.keep is False
    assert [(e.event_id, e.customer_key) for e in late.readdressed] == [("evt_4", "001WIN")]
    assert [(r.local_id, r.customer_key) for r in late.repoints] == [("stripe:cus_1", "001WIN")]


def test_the_winner_keeps_its_events() -> None:
    routing = merge_routing(empty("001WIN"), _merge())
    assert routing.keep is True and routing.repoints == () and routing.readdressed == ()


def test_the_loser_hands_its_customer_records_to_the_winner() -> None:
    # The loser's Stripe customer may never change again: the winner must still learn of it (D13).
    stripe_customer = CustomerUpserted(
        event_id="evt_c", source=Platform.STRIPE, entity=EntityRef("customer", "cus_9"), occurred_at=3,
        version=Version(3), customer_key="001LOSER", local_customer="stripe:cus_9", system=Platform.STRIPE,
        customer_id="cus_9", name="Acme", crm_account_id="001LOSER")
    loser, _ = apply(empty("001LOSER"), stripe_customer)
    routing = merge_routing(loser, _merge())
    [restated] = routing.readdressed
    assert isinstance(restated, CustomerUpserted)
    assert (restated.customer_key, restated.customer_id, restated.crm_account_id, restated.name) == (
        "001WIN", "cus_9", "001LOSER", "Acme")
    assert restated.email is UNSET  # never set on the loser: the restatement does not blank it
    assert restated.event_id == merge_routing(loser, _merge()).readdressed[0].event_id  # redelivery: same id
    winner, _ = apply(empty("001WIN"), restated)
    assert winner.billing.customers["cus_9"].crm_account_id == "001LOSER"
    assert routing.keep is True  # the merge itself still applies to the loser
