"""Membership: on the canonical side, which local ids belong to a customer; merges re-point them.

Keyed by customer key (`concord.canonical`). See `tables.identity.membership_step`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from concord.app import metrics
from concord.codecs import internal
from concord.codecs.model import decode as decode_event
from concord.codecs.model import encode as encode_event
from concord.tables.identity import Members, membership_step

if TYPE_CHECKING:
    from concord.app.factory import Concord


def register(concord: Concord) -> None:
    app = concord.app
    names = concord.names
    canonical = concord.topics[names.canonical]
    identity = concord.topics[names.identity]
    members = concord.table("members")

    @app.agent(canonical, name="concord.membership", concurrency=1)
    async def track(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            key = event.message.key.decode()
            canonical_event = decode_event(event.value)
            before = Members.load(members.get(key))
            outcome = membership_step(key, before, canonical_event)
            if outcome.members != before:
                members[key] = outcome.members.dump()
            for repoint in outcome.repoints:
                metrics.identity_repoints.inc()
                await identity.send(key=repoint.local_id.encode(), value=internal.encode(repoint))
            for moved in outcome.readdressed:
                assert moved.customer_key is not None
                await canonical.send(key=moved.customer_key.encode(), value=encode_event(moved))
