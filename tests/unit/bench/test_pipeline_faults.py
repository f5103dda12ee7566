"""The pure parts of the faults benchmark (bench/pipeline/faults.py): the snapshot of a changelog and the diff."""

from __future__ import annotations

from typing import Any

import msgspec
from faust.serializers import codecs

from concord.bench.pipeline.faults import Snapshot, blind_rules, compare, describe, latest_values, snapshot_of
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


def _seen(value: Any, version: int) -> Observation:
    return Observation(system="stripe", record="sub_1", field="status", value=value, version=version, at=version)


def test_history_is_not_the_outcome_resolved_findings_generations_and_evidence_versions() -> None:
    resolved = _item("f9", status="resolved", resolution="converged")
    a = snapshot_of(_changelog(_state("001A", drift={"f1": _item("f1", status="open", generation=0,
                                                                  evidence=(_seen("active", 5),)),
                                                     "f9": resolved})))
    b = snapshot_of(_changelog(_state("001A", drift={"f1": _item("f1", status="open", generation=2,
                                                                  evidence=(_seen("active", 9),))})))
    assert compare(a, b).equal
    c = snapshot_of(_changelog(_state("001A", drift={"f1": _item("f1", status="open",
                                                                  evidence=(_seen("past_due", 9),))})))
    (changed,) = compare(a, c).findings_different
    assert [field for field, _, _ in changed.fields] == ["evidence"]


def test_a_state_is_compared_without_its_duplicate_ring_and_stamp_tie_breaks() -> None:
    def sub(tie: int, status: str = "active") -> st.Subscription:
        return st.Subscription(id="sub_1", customer_id="cus_1", status=status, stamp=st.Stamp(7, 1, tie))

    def with_sub(s: st.Subscription, recent: tuple[tuple[int, int], ...]) -> st.CustomerState:
        return _state("001A", billing=st.Billing(subscriptions={"sub_1": s}), recent=recent)

    a = snapshot_of(_changelog(with_sub(sub(111), ((7, 1), (7, 2)))))
    b = snapshot_of(_changelog(with_sub(sub(222), ((7, 3), (7, 4)))))
    assert compare(a, b).equal
    c = snapshot_of(_changelog(with_sub(sub(111, "canceled"), ())))
    assert [(d.customer_key, d.fields) for d in compare(a, c).customers_different] == [("001A", ["billing"])]


def test_a_retired_state_is_compared_on_where_it_was_merged_only() -> None:
    def loser(merged_into: str, last: int) -> st.CustomerState:
        return _state("001L", merged_into=merged_into, last_event_at=last,
                      billing=st.Billing(subscriptions={"sub_1": st.Subscription(id="sub_1", customer_id="cus_1",
                                                                                  status="active")} if last else {}))

    assert compare(snapshot_of(_changelog(loser("001W", 5))), snapshot_of(_changelog(loser("001W", 0)))).equal
    diff = compare(snapshot_of(_changelog(loser("001W", 5))), snapshot_of(_changelog(loser("001X", 5))))
    assert [(d.customer_key, d.fields) for d in diff.customers_different] == [("001L", ["merged_into"])]


def test_findings_of_a_rule_reading_an_unread_part_are_counted_blind_not_compared() -> None:
    # D02 reads the support entitlements; an organization whose entitlement was not read leaves them unknown.
    unread = st.Support(unread={"9": (100, 200)})
    snap = snapshot_of(_changelog(_state("001A", support=unread, drift={"f1": _item("f1", rule="D02", status="open"),
                                                                        "f2": _item("f2", rule="D05")})))
    assert snap.blind == 1
    assert set(snap.findings) == {"f2"}
    assert "D02" in blind_rules(_state("001A", support=unread))
    assert blind_rules(_state("001A")) == frozenset()
