"""Finding the worker that owns a customer (the forwarding itself: tests/integration/test_console.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec

from concord.app.owner import FORWARDED, Owners
from concord.core.partitioning import partition_for

CHANGELOG = "concord-customers-changelog"
ME, OTHER = "http://10.0.0.1:6066", "http://10.0.0.2:6066"


def owners(assignment: dict[str, list[int]]) -> Owners:
    router = SimpleNamespace(table_metadata=lambda name: {url: {CHANGELOG: parts} for url, parts in assignment.items()})
    table = SimpleNamespace(name="customers", changelog_topic=SimpleNamespace(get_topic_name=lambda: CHANGELOG))
    app: Any = SimpleNamespace(router=router, conf=SimpleNamespace(canonical_url=ME))
    return Owners(app, table, partitions=4)


class _View:
    def bytes(self, value: bytes, content_type: str, status: int) -> tuple[int, Any]:
        return status, msgspec.json.decode(value)


def test_the_owner_is_found_by_the_partition_of_the_raw_key() -> None:
    found = owners({ME: [0, 1], OTHER: [2, 3]})
    for key in ("001A", "0015g00000ABCDEFGH", "001Bench0000000007AAA"):
        partition, url = found.owner(key)
        assert partition == partition_for(key.encode(), 4)  # where the state agent writes it
        assert url == (ME if partition in (0, 1) else OTHER)
    # Faust's table_route hashes the key as the changelog serializes it (JSON, quoted): another partition for
    # many keys, which is why it is not used.
    assert partition_for(b'"0015g00000ABCDEFGH"', 4) != partition_for(b"0015g00000ABCDEFGH", 4)
    assert found.is_me("http://10.0.0.1:6066/") and not found.is_me(OTHER)


async def test_a_key_owned_here_is_answered_here_and_no_owner_or_a_second_hop_is_a_503() -> None:
    key = "001A"
    mine = partition_for(key.encode(), 4)
    view: Any = _View()
    request: Any = SimpleNamespace(headers={})
    assert await owners({ME: [0, 1, 2, 3]}).route(view, request, key) is None
    status, body = await owners({OTHER: [p for p in range(4) if p != mine]}).route(
        view, request, key)
    assert status == 503 and body["error"] == "no_owner" and f"partition {mine}" in body["detail"]
    again: Any = SimpleNamespace(headers={FORWARDED: "1"})
    status, body = await owners({OTHER: [0, 1, 2, 3]}).route(view, again, key)
    assert status == 503 and body["error"] == "moved"  # never forwarded twice
