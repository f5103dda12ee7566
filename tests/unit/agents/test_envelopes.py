"""Envelopes: what the ingest and identity agents forward, one Kafka record per destination partition, in order;
and the forwarder that waits until Kafka has every record (agents/envelopes.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from concord.agents.envelopes import Envelopes, Forwarder, Outgoing, canonical_route, identity_route
from concord.codecs import records
from concord.codecs.model import CanonicalEvent
from concord.core.partitioning import partition_for
from tests.unit.tables.state_builders import account, merged

IDENTITY, CANONICAL, PARTITIONS = "p.identity", "p.canonical", 8


def of(key: str, ts: int, local: str | None = None) -> CanonicalEvent:
    event = account(ts)
    return msgspec.structs.replace(event, customer_key=key, local_customer=local, event_id=f"{key}-{ts}")


def envelopes() -> Envelopes:
    return Envelopes((identity_route(IDENTITY, PARTITIONS), canonical_route(CANONICAL, PARTITIONS)))


def keys_on(partition: int, count: int) -> list[str]:
    """`count` customer keys that land on `partition`."""
    found = []
    n = 0
    while len(found) < count:
        key = f"001K{n:012d}"
        if partition_for(key.encode(), PARTITIONS) == partition:
            found.append(key)
        n += 1
    return found


def test_events_of_one_partition_go_as_one_envelope_in_the_order_read() -> None:
    a, b = keys_on(3, 2)
    (c,) = keys_on(5, 1)
    out = envelopes()
    sent = [out.add(CANONICAL, k, of(k, ts)) for k, ts in ((a, 1), (c, 2), (b, 3), (a, 4))]
    assert sent == [[], [], [], []] and len(out) == 4
    drained = out.drain()
    assert len(out) == 0 and out.drain() == []
    by_partition = {r.partition: r for r in drained if r.partition is not None}
    assert set(by_partition) == {3}
    envelope = by_partition[3]
    assert envelope.key is None and envelope.events == 3 and envelope.topic == CANONICAL
    batch = records.decode_state(envelope.value)
    assert isinstance(batch, records.CanonicalBatch)
    assert [(e.customer_key, e.event_id) for e in batch.events] == [(a, f"{a}-1"), (b, f"{b}-3"), (a, f"{a}-4")]
    # A partition with one event gets the plain keyed record, as without envelopes.
    (single,) = [r for r in drained if r.partition is None]
    assert single.key == c.encode() and records.decode_state(single.value) == of(c, 2)


def test_identity_envelopes_route_by_the_local_id() -> None:
    out = envelopes()
    local = "stripe:cus_1"
    for ts in (1, 2):
        assert out.add(IDENTITY, local, of("001A", ts, local)) == []
    (envelope,) = out.drain()
    assert envelope.partition == partition_for(local.encode(), PARTITIONS)
    batch = records.decode_identity(envelope.value)
    assert isinstance(batch, records.IdentityBatch) and [e.local_customer for e in batch.events] == [local, local]


def test_an_event_keyed_otherwise_goes_alone_after_its_partitions_envelope_so_far() -> None:
    winner, loser = keys_on(2, 2)
    out = envelopes()
    assert out.add(CANONICAL, winner, of(winner, 1)) == []
    assert out.add(CANONICAL, loser, of(loser, 2)) == []
    merge = msgspec.structs.replace(merged(3, winner, (loser,)), customer_key=winner)
    assert out.add(CANONICAL, winner, merge) == []
    # The merge told to the loser's state: keyed by the loser, routed by the winner; it cannot ride in an envelope.
    now = out.add(CANONICAL, loser, merge)
    assert [(r.partition, r.key, r.events) for r in now] == [(2, None, 3), (None, loser.encode(), 1)]
    assert records.decode_state(now[1].value) == merge
    assert out.drain() == []  # the partition's envelope went with it


class FakeTopic:
    """A Faust topic as the forwarder uses it: `send` hands the record over and returns its delivery future."""

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes  # per send: "ok", "refused" (delivery fails), "raise" (send itself raises)
        self.sent: list[bytes] = []

    async def send(self, *, key: bytes | None, value: bytes, partition: int | None) -> Any:
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "raise":
            raise ConnectionError("producer closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if outcome == "refused":
            future.set_exception(TimeoutError("delivery timed out"))
        else:
            self.sent.append(value)
            future.set_result(None)
        return future


def test_the_forwarder_sends_in_order_and_again_until_kafka_takes_every_record() -> None:
    topic = FakeTopic(["ok", "refused", "ok", "raise", "ok", "ok"])
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)

    records_ = [Outgoing(topic=CANONICAL, key=None, value=f"r{n}".encode(), partition=0) for n in range(3)]
    asyncio.run(Forwarder({CANONICAL: topic}, sleep=nap).send(records_))
    # r0 taken; r1 refused (r2 taken meanwhile): r1 and r2 again; that send raised: again, both taken.
    assert topic.sent == [b"r0", b"r2", b"r1", b"r2"]
    assert naps == [0.1, 0.2]


def test_a_linger_of_zero_still_forwards_what_came_instead_of_waiting_for_a_full_batch() -> None:
    from concord.agents.faust_internals.streams import batches

    class Stream:
        def take_events(self, max_: int, within: float) -> Any:
            self.asked = (max_, within)
            return iter(())

    stream = Stream()
    batches(stream, 500, 0.0)  # type: ignore[arg-type]
    assert stream.asked[0] == 500 and 0 < stream.asked[1] <= 0.001  # Faust waits for 500 when within is 0
    batches(stream, 500, 0.005)  # type: ignore[arg-type]
    assert stream.asked == (500, 0.005)
