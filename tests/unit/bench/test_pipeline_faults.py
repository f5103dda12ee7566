"""The pure parts of the faults benchmark (bench/pipeline/faults.py): the snapshot of a changelog and the diff."""

from __future__ import annotations

from typing import Any

import msgspec
from faust.serializers import codecs

from concord.bench.pipeline.faults import Snapshot, compare, describe, latest_values, snapshot_of
from concord.core.messages import DriftItem, Observation
from concord.tables import state as st

_KEY = codecs.get_codec("json")


def _item(fp: str, **fields: Any) -> DriftItem:
    base: dict[str, Any] = {"rule": "D02", "subject": "sub_1", "status": "pending", "severity": "high",
                            "since": 1_000, "due": 5_000}
    return DriftItem(fingerprint=fp, **{**base, **fields})


def _state(key: str, *, drift: dict[str, DriftItem] | None = None, **fields: Any) -> st.CustomerState:
    return msgspec.structs.replace(st.empty(key), drift=drift or {}, **fields)


def _changelog(*states: st.CustomerState) -> dict[bytes, bytes]:
    return {_KEY.dumps(state.key): st.dump(state) for state in states}


def test_latest_values_keeps_the_last_value_per_key_and_a_tombstone_deletes() -> None:
    records = [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"b", None), (b"c", None)]
    assert latest_values(records) == {b"a": b"2"}


def test_processing_time_fields_are_left_out_of_the_snapshot() -> None:
    """Two runs that saw the same events, at other wall-clock times, have the same snapshot."""
    early = _item("f1", due=5_000, first_seen=6_000, last_seen=7_000, correlation_id="evt_a", since=1_000,
                  command_id="c1", last_command_at=6_500, status="commanded", generation=1)
    late = _item("f1", due=9_000, first_seen=9_500, last_seen=9_900, correlation_id="evt_b", since=2_000,
                 command_id="c2", last_command_at=9_600, status="commanded", generation=1)
    a = snapshot_of(_changelog(_state("001A", drift={"f1": early}, next_due=5_000, last_event_at=3)))
    b = snapshot_of(_changelog(_state("001A", drift={"f1": late}, next_due=9_000, last_event_at=3)))
    assert a == b
    assert compare(a, b).equal


def test_snapshot_splits_states_and_findings_with_their_customer() -> None:
    snap = snapshot_of(_changelog(_state("001A", drift={"f1": _item("f1")}), _state("001B")))
    assert set(snap.customers) == {"001A", "001B"}
    assert snap.customers["001A"].drift == {}
    assert snap.findings["f1"].customer_key == "001A"
    assert snap.findings["f1"].status == "pending"


def test_compare_names_every_kind_of_difference() -> None:
    evidence = (Observation(system="stripe", record="sub_1", field="status", value="active", version=1, at=1),)
    baseline = snapshot_of(_changelog(
        _state("001A", last_event_at=5, drift={"f1": _item("f1", evidence=evidence), "f2": _item("f2")}),
        _state("001B"),
    ))
    run = snapshot_of(_changelog(
        _state("001A", last_event_at=4, drift={"f1": _item("f1", status="open"), "f3": _item("f3")}),
        _state("001C"),
    ))
    diff = compare(baseline, run)
    assert not diff.equal
    assert diff.customers_missing == ["001B"]
    assert diff.customers_extra == ["001C"]
    assert [(d.customer_key, d.fields) for d in diff.customers_different] == [("001A", ["last_event_at"])]
    assert [f.fingerprint for f in diff.findings_missing] == ["f2"]
    assert [f.fingerprint for f in diff.findings_extra] == ["f3"]
    (changed,) = diff.findings_different
    assert (changed.fingerprint, changed.customer_key, changed.rule) == ("f1", "001A", "D02")
    assert [field for field, _, _ in changed.fields] == ["status", "evidence"]
    assert ("status", "pending", "open") in changed.fields
    text = "\n".join(describe("kill", diff))
    assert "DIFFERS" in text and "001B" in text and "f3" in text and "status 'pending' -> 'open'" in text


def test_an_equal_run_is_described_as_equal_and_encodes_to_json() -> None:
    snap = snapshot_of(_changelog(_state("001A", drift={"f1": _item("f1")})))
    diff = compare(snap, snap)
    assert diff.equal
    assert describe("two", diff) == ["two: equal to the baseline (1 customers, 1 findings)"]
    assert msgspec.json.decode(msgspec.json.encode(diff))["customers"] == 1


def test_an_empty_changelog_is_an_empty_snapshot() -> None:
    assert snapshot_of({}) == Snapshot(customers={}, findings={})
