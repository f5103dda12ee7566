"""The latency bench's pure parts (bench/pipeline/latency.py): percentiles, drift records to the raw records
behind them. No Kafka, no clock."""

from __future__ import annotations

import msgspec
import pytest

from concord.bench.pipeline.latency import (
    Matched,
    Opened,
    by_window,
    events_of,
    hop_split,
    latencies,
    match,
    opened_of,
    percentile,
    record_of_events,
    state_batches,
)
from concord.bench.pipeline.raw import DRIFT_RATE, raw_records
from concord.codecs import records as envelopes
from concord.codecs.config import codec_config
from concord.codecs.registry import decoder
from concord.core import messages
from concord.core.settings import Settings


def _transition(status: str, previous: str | None, correlation_id: str = "evt_1") -> bytes:
    return messages.encode(messages.Transition(
        fingerprint="fp", rule="D02", customer_key="001A", subject="sub_1", status=status, previous=previous,
        severity="high", at=1_000, since=900, first_seen=1_000, last_seen=1_000, correlation_id=correlation_id))


def _opened(correlation_id: str, created_ms: int = 5_000, seen_ms: int = 5_010) -> Opened:
    return Opened(correlation_id=correlation_id, rule="D02", customer_key="001A", created_ms=created_ms,
                  seen_ms=seen_ms)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([1.0, 2.0], 99) == 2.0  # a small sample's p99 is its max


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latencies_summary() -> None:
    summary = latencies([30.0, 10.0, 20.0])
    assert (summary.count, summary.min_ms, summary.p50_ms, summary.p99_ms, summary.max_ms) == (3, 10, 20, 30, 30)
    assert latencies([]).count == 0


def test_only_pending_to_open_is_a_finding_opened() -> None:
    opened = opened_of(_transition("open", "pending", "evt_9"), created_ms=1_234, seen_ms=1_240)
    assert opened == Opened(correlation_id="evt_9", rule="D02", customer_key="001A", created_ms=1_234,
                            seen_ms=1_240)
    assert opened_of(_transition("commanded", "open"), 1, 1) is None
    assert opened_of(_transition("resolved", "open"), 1, 1) is None
    assert opened_of(_transition("escalated", "commanded"), 1, 1) is None


def test_every_event_and_correlation_id_leads_to_its_first_raw_record() -> None:
    records = raw_records(1, 5, 40)
    config = codec_config(Settings())
    decoded = [decoder(record.platform)(record.value, config) for record in records]
    found = record_of_events([*decoded, *decoded])  # each record again: the first one stays
    for index, events in enumerate(decoded):
        for event in events:
            assert found[event.event_id] <= index
            assert found[event.correlation_id or event.event_id] <= index
    assert max(found.values()) < len(decoded)


def test_match_takes_the_produce_time_of_the_record_and_keeps_the_unmatched() -> None:
    found = {"evt_1": 0, "evt_1:sub_1": 0, "evt_2": 1, "evt_3": 5}
    produced_at = [4.0, 4.5]  # epoch seconds, one per record produced
    opened = [_opened("evt_1"), _opened("evt_2", created_ms=4_700, seen_ms=4_800), _opened("evt_x"), _opened(""),
              _opened("evt_3")]
    matched, unmatched = match(opened, found, produced_at)
    assert [(m.record, m.produced_ms, m.created_latency_ms, m.seen_latency_ms) for m in matched] == [
        (0, 4_000.0, 1_000.0, 1_010.0), (1, 4_500.0, 200.0, 300.0)]
    # No such id, no id at all, and an id of a record never produced: counted, not dropped.
    assert [o.correlation_id for o in unmatched] == ["evt_x", "", "evt_3"]


def test_events_of_a_forwarded_message() -> None:
    records = raw_records(1, 5, 10)
    config = codec_config(Settings())
    events = [event for record in records for event in decoder(record.platform)(record.value, config)]
    batch = envelopes.decode_identity(messages.encode(envelopes.IdentityBatch(events=events)))
    assert [e.event_id for e in events_of(batch)] == [e.event_id for e in events]
    state = envelopes.decode_state(messages.encode(envelopes.CanonicalBatch(events=events)))
    assert [e.event_id for e in events_of(state)] == [e.event_id for e in events]
    assert [e.event_id for e in events_of(envelopes.decode_state(messages.encode(events[0])))] == [events[0].event_id]
    assert list(events_of(messages.Tick(customer_key="001A", due=1))) == []


def test_hop_split_cuts_each_latency_at_the_forwarded_records() -> None:
    matched = [
        Matched(opened=_opened("evt_1", created_ms=1_300), record=0, produced_ms=1_000.0),  # through identity
        Matched(opened=_opened("evt_2", created_ms=2_250), record=1, produced_ms=2_000.0),  # straight to canonical
        Matched(opened=_opened("evt_3", created_ms=3_500), record=2, produced_ms=3_000.0),  # never seen there
    ]
    hops = hop_split(matched, identity_at={"evt_1": 1_050}, canonical_at={"evt_1": 1_200, "evt_2": 2_100})
    assert hops == {"ingest": [50.0], "identity": [150.0, 100.0], "state": [100.0, 150.0]}


def test_by_window_groups_by_produce_time() -> None:
    matched = [Matched(opened=_opened("a", created_ms=10_100), record=0, produced_ms=10_000.0),
               Matched(opened=_opened("b", created_ms=10_900), record=1, produced_ms=10_500.0),
               Matched(opened=_opened("c", created_ms=22_000), record=2, produced_ms=21_000.0)]
    windows = by_window(matched, start_ms=10_000.0, window_s=5.0)
    assert [(w.count, w.max_ms) for w in windows] == [(2, 400.0), (0, 0.0), (1, 1_000.0)]
    assert by_window([], start_ms=0.0, window_s=5.0) == []


def test_state_batches_from_the_histogram() -> None:
    exposition = b"""# TYPE concord_agent_batch_seconds histogram
concord_agent_batch_seconds_bucket{agent="state",le="0.025"} 80.0
concord_agent_batch_seconds_bucket{agent="state",le="0.05"} 90.0
concord_agent_batch_seconds_bucket{agent="state",le="0.1"} 97.0
concord_agent_batch_seconds_bucket{agent="state",le="+Inf"} 100.0
concord_agent_batch_seconds_count{agent="state"} 100.0
concord_agent_batch_seconds_sum{agent="state"} 2.5
concord_agent_batch_seconds_count{agent="commands"} 7.0
concord_agent_batch_seconds_sum{agent="commands"} 9.0
"""
    times = state_batches(exposition)
    assert (times.count, times.mean_ms, times.over_50ms, times.over_100ms) == (100, 25.0, 10, 3)
    assert state_batches(b"").count == 0


def test_raw_records_drift_rate_defaults_to_the_traffics() -> None:
    assert msgspec.json.encode(raw_records(1, 5, 40)) == msgspec.json.encode(
        raw_records(1, 5, 40, drift_rate=DRIFT_RATE))
