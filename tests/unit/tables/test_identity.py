from __future__ import annotations

import struct
from typing import Any

import msgspec

from concord.codecs.model import (
    UNSET,
    AccountMerged,
    CanonicalEvent,
    CustomerUpserted,
    EntityRef,
    InvoiceChanged,
    PaymentChanged,
    Platform,
    RefundChanged,
    Version,
)
from concord.codecs.records import decode_identity
from concord.core.messages import ParkSweep, Repoint
from concord.tables.identity import (
    EMPTY_QUEUE,
    ParkedQueue,
    expired_by,
    merge_routing,
    step,
)
from concord.tables.state import CustomerState, apply, empty, untied
from tests.unit.tables import state_builders as sb


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


# ---------------------------------------------------------------- parking bounds

DAY = 86_400_000


def test_the_queue_is_stored_with_parking_times_and_parking_appends_a_frame() -> None:
    queue = EMPTY_QUEUE.append(b'{"a":1}', 10).append(b'{"b":2}', 20)
    assert len(queue) == 2 and queue.oldest_at == 10
    assert queue.entries() == ((10, b'{"a":1}'), (20, b'{"b":2}'))
    assert ParkedQueue.load(queue.dump()) == queue
    # Appending adds one frame (parked at, length, event) behind the stored bytes: nothing is re-encoded.
    assert queue.dump() == EMPTY_QUEUE.append(b'{"a":1}', 10).dump()[:1] + struct.pack(">I", 2) + (
        EMPTY_QUEUE.append(b'{"a":1}', 10).dump()[5:] + struct.pack(">QI", 20, 7) + b'{"b":2}')
    assert ParkedQueue.load(None) == EMPTY_QUEUE and len(EMPTY_QUEUE) == 0 and EMPTY_QUEUE.oldest_at is None


def test_a_queue_stored_before_parking_times_loads_as_parked_now() -> None:
    import msgspec

    legacy = msgspec.msgpack.encode({"events": [b'{"a":1}', b'{"b":2}']})
    queue = ParkedQueue.load(legacy, now=500)
    assert queue.entries() == ((500, b'{"a":1}'), (500, b'{"b":2}'))


def test_parked_events_older_than_the_ttl_expire_when_the_queue_is_next_touched() -> None:
    queue = step(None, EMPTY_QUEUE, invoice(1), 10, now=0, ttl=DAY).parked
    queue = step(None, queue, invoice(2), 10, now=DAY // 2, ttl=DAY).parked
    outcome = step(None, queue, invoice(3), 10, now=DAY + 1, ttl=DAY)  # evt_1 is older than a day
    assert [at for at, _ in outcome.expired] == [0] and b'"evt_1"' in outcome.expired[0][1]
    assert [e.event_id for e in map(_decoded, outcome.parked.events)] == ["evt_2", "evt_3"]
    assert outcome.parked.entries()[1][0] == DAY + 1
    # Exactly the TTL old is not older than it.
    assert step(None, queue, invoice(3), 10, now=DAY, ttl=DAY).expired == ()


def test_a_sweep_only_expires_and_can_empty_the_queue() -> None:
    queue = step(None, EMPTY_QUEUE, invoice(1), 10, now=0, ttl=DAY).parked
    nothing = step(None, queue, ParkSweep(local_id="stripe:cus_1", at=5), 10, now=5, ttl=DAY)
    assert nothing.parked == queue and nothing.expired == () and nothing.forward == () and nothing.link is None
    swept = step(None, queue, ParkSweep(local_id="stripe:cus_1", at=DAY + 1), 10, now=DAY + 1, ttl=DAY)
    assert swept.parked == EMPTY_QUEUE and len(swept.expired) == 1 and swept.forward == ()
    assert expired_by(queue, DAY + 1, DAY) and not expired_by(queue, DAY, DAY) and not expired_by(queue, DAY + 1, 0)


def test_the_link_releases_even_events_past_the_ttl() -> None:
    queue = step(None, EMPTY_QUEUE, invoice(1), 10, now=0, ttl=DAY).parked
    outcome = step(None, queue, invoice(2, customer_key="001A"), 10, now=5 * DAY, ttl=DAY)
    assert [e.event_id for e in outcome.forward] == ["evt_1", "evt_2"] and outcome.expired == ()
    assert outcome.parked == EMPTY_QUEUE


def test_without_room_a_new_id_is_refused_but_a_parked_id_keeps_parking() -> None:
    refused = step(None, EMPTY_QUEUE, invoice(1), 10, room=False)
    assert refused.parked == EMPTY_QUEUE and len(refused.refused) == 1 and b'"evt_1"' in refused.refused[0]
    queue = step(None, EMPTY_QUEUE, invoice(1), 10).parked
    more = step(None, queue, invoice(2), 10, room=False)
    assert len(more.parked) == 2 and more.refused == ()
    # An id whose events all expired is still the same id: it parks again without new room.
    again = step(None, queue, invoice(3), 10, now=2 * DAY, ttl=DAY, room=False)
    assert len(again.expired) == 1 and len(again.parked) == 1 and again.refused == ()
    # A resolved event needs no room.
    assert step("001A", EMPTY_QUEUE, invoice(4), 10, room=False).forward[0].customer_key == "001A"


def test_identity_records_decode_sweeps_beside_events_and_repoints() -> None:
    from concord.codecs.model import encode
    from concord.core import messages

    sweep = ParkSweep(local_id="stripe:cus_1", at=7)
    assert decode_identity(messages.encode(sweep)) == sweep
    assert decode_identity(encode(invoice(1))) == invoice(1)
    repoint = Repoint(local_id="stripe:cus_1", customer_key="001A", reason="alias")
    assert decode_identity(messages.encode(repoint)) == repoint


def _decoded(raw: bytes) -> InvoiceChanged:
    from concord.codecs.model import decode

    event = decode(raw)
    assert isinstance(event, InvoiceChanged)
    return event


# ---------------------------------------------------------------- what a merge carries


_RECORDS: list[CanonicalEvent] = [
    sb.customer(10, sb.STRIPE, name="Acme"),
    sb.subscription(11, "active", occurred_at=9),
    sb.invoice(12, "in_1", "paid", billing_invoice_id="in_1", customer_id="cus_1"),
    sb.invoice(13, "ns_inv_1", "open", sb.NETSUITE, billing_invoice_id="in_1"),
    sb.payment(14, "py_1", invoice_id="in_1"),
    sb.payment(15, "ns_pay_1", "succeeded", sb.NETSUITE),
    sb.refund(16, "re_1", charge_id="ch_1"),
    sb.refund(17, "cm_1", "open", sb.NETSUITE, billing_refund_id="re_1"),
    sb.entitlement(18, "active", tier="gold"),
    sb.case(19, "t1", "open", subject="help", created_at=3),
    sb.organization_unread(20, "10"),
    sb.organization_unread(25, "10"),
    sb.flags(21, overdue_balance=500, currency="USD", credit_hold=True),
    sb.sales_order(22, "so_1", opportunity_id="006A", status="pendingFulfillment", total=900, currency="USD"),
]


def _sections(state: CustomerState) -> tuple[Any, ...]:
    return untied((state.billing, state.support, state.erp))


def test_the_loser_hands_every_record_it_holds_to_the_winner_at_its_version() -> None:
    # Whether a record's last event came before the merge was read (it is in the loser, carried) or after
    # (re-addressed to the winner) must not change what the winner holds.
    merge = sb.merged(30, "001WIN", (sb.KEY,))
    loser = sb.fold(_RECORDS)
    carried_events = merge_routing(loser, merge).readdressed
    assert {e.customer_key for e in carried_events} == {"001WIN"}
    via_merge = sb.fold(carried_events, empty("001WIN"))
    readdressed = [msgspec.structs.replace(e, customer_key="001WIN") for e in _RECORDS]
    direct = sb.fold(readdressed, empty("001WIN"))
    assert _sections(via_merge) == _sections(direct)
    assert via_merge.support.unread == {"10": (20, 25)}  # unknown stays unknown, since the first change not read
    assert via_merge.billing.subscriptions["sub_1"].since == 9
    # A redelivered merge restates the same events (same ids): the winner drops them as duplicates.
    again = merge_routing(loser, merge).readdressed
    assert [e.event_id for e in again] == [e.event_id for e in carried_events]
    assert sb.fold(again, via_merge) == via_merge


def test_a_carried_record_never_replaces_a_newer_one_the_winner_holds() -> None:
    merge = sb.merged(30, "001WIN", (sb.KEY,))
    loser = sb.fold([sb.subscription(11, "active")])
    winner = sb.fold([msgspec.structs.replace(sb.subscription(40, "canceled"), customer_key="001WIN")],
                     empty("001WIN"))
    after = sb.fold(merge_routing(loser, merge).readdressed, winner)
    assert after.billing.subscriptions["sub_1"].status == "canceled"



def test_a_snapshot_that_only_restamps_a_record_changes_nothing_a_person_would_call_a_change() -> None:
    from concord.tables.state import records_differ

    held = sb.fold([sb.subscription(100, "active"), sb.customer(100, sb.STRIPE, name="Acme")])
    restamped = sb.fold([sb.subscription(300, "active", event_id="snapshot:sub_1:300"),
                         sb.customer(300, sb.STRIPE, name="Acme", event_id="snapshot:cus_1:300")], held)
    assert restamped != held and not records_differ(held, restamped)
    changed = sb.fold([sb.subscription(400, "canceled")], restamped)
    assert records_differ(restamped, changed)
