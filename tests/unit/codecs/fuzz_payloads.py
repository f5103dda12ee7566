"""Hypothesis strategies that mutate real payloads: the codecs must answer with events or DecodeError."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

# Values that reach deeper code paths than random text: ids, times, enum words, odd numbers.
_INTERESTING = st.sampled_from(
    [
        "",
        "0",
        "zen:event-type:ticket.created",
        "zen:event-type:organization.deleted",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00",
        "2024-02-30",
        "delete",
        "USA",
        "usd",
        "XXX",
        "NaN",
        "1e999999",
        "-0.001",
        "concord.netsuite.v1",
        "Paid In Full",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | _INTERESTING
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, documents: list[Any]) -> bytes:
    """One of `documents` with a few nodes replaced by random JSON or removed, as bytes."""
    doc = copy.deepcopy(draw(st.sampled_from(documents)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(JSON_VALUES)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return json.dumps(doc).encode()


@st.composite
def corrupted(draw: st.DrawFn, bodies: list[bytes]) -> bytes:
    """A real body with bytes cut, inserted or flipped (mostly invalid JSON)."""
    body = bytearray(draw(st.sampled_from(bodies)))
    at = draw(st.integers(min_value=0, max_value=len(body)))
    op = draw(st.sampled_from(["truncate", "insert", "flip"]))
    if op == "truncate":
        return bytes(body[:at])
    if op == "insert":
        return bytes(body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:])
    if at < len(body):
        body[at] ^= draw(st.integers(min_value=1, max_value=255))
    return bytes(body)
