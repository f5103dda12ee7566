"""What counts as a change of a finding for the board (connectors/drift_index.change_kind), and stream ids."""

from __future__ import annotations

import msgspec
import pytest

from concord.connectors import drift_changes as dc
from concord.connectors.drift_index import IndexedFinding, change_kind, finding_change
from concord.core.messages import Observation

BASE = IndexedFinding(fingerprint="fp1", rule="D04", customer_key="001A", status="open", severity="high",
                      first_seen=10, last_seen=10, since=5, subject="in_1", summary="missing",
                      evidence=(Observation(system="stripe", record="in_1", field="total", value=100),))


def test_new_status_resolved_removed() -> None:
    assert change_kind(None, BASE) == dc.NEW
    assert change_kind(BASE, msgspec.structs.replace(BASE, status="commanded")) == dc.STATUS
    assert change_kind(msgspec.structs.replace(BASE, status="resolved"), BASE) == dc.STATUS  # reopened
    assert change_kind(BASE, msgspec.structs.replace(BASE, status="resolved", resolved_at=20)) == dc.RESOLVED
    assert change_kind(BASE, None) == dc.REMOVED
    assert change_kind(None, None) is None


def test_seen_again_is_no_change_but_what_a_person_reads_is() -> None:
    assert change_kind(BASE, msgspec.structs.replace(BASE, last_seen=99)) is None
    assert change_kind(BASE, BASE) is None
    for changed in ({"severity": "low"}, {"summary": "other"}, {"note": "escalated: ..."}, {"generation": 2},
                    {"evidence": (Observation(system="stripe", record="in_1", field="total", value=101),)}):
        assert change_kind(BASE, msgspec.structs.replace(BASE, last_seen=99, **changed)) == dc.UPDATED, changed


def test_a_change_says_where_it_came_from() -> None:
    change = finding_change(dc.RESOLVED, BASE, msgspec.structs.replace(BASE, status="resolved"), 77)
    assert (change.kind, change.status, change.previous, change.at, change.customer_key) == (
        "resolved", "resolved", "open", 77, "001A")
    gone = finding_change(dc.REMOVED, BASE, None, 78)
    assert (gone.status, gone.previous, gone.fingerprint) == ("", "open", "fp1")
    assert msgspec.json.decode(dc.entry(change)[b"change"], type=dc.FindingChange) == change


@pytest.mark.parametrize(("text", "parsed"), [("1700000000000-0", (1700000000000, 0)), ("0-0", (0, 0)),
                                              (" 5-12 ", (5, 12)), ("5", None), ("a-1", None), ("-1-0", None),
                                              ("1-0\n", (1, 0)), ("", None)])
def test_stream_ids(text: str, parsed: tuple[int, int] | None) -> None:
    assert dc.stream_id(text) == parsed


def test_stream_ids_order_as_redis_does() -> None:
    ids = ["10-2", "9-100", "10-10", "100-0"]
    assert sorted(ids, key=lambda i: dc.stream_id(i) or (0, 0)) == ["9-100", "10-2", "10-10", "100-0"]
