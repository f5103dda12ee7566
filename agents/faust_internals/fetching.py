"""The worker consumer's fetch long-poll: Faust hard-codes 1.5 s; Concord sets it (`consumer_fetch_wait_ms`).

Written for faust-streaming 0.15.3 and aiokafka 0.12-0.14 (`check_versions` in this package refuses others).

Why: aiokafka fetches, for the partitions with nothing buffered, in requests the broker may hold until
`fetch_max_wait_ms` passes when none of them has new data. A worker reads many topics (four raw ones,
identity, canonical, the command lanes, ...), most partitions idle at any moment: the next fetch of a busy
partition then waits behind a request held for an idle one. Faust creates its consumer with
`fetch_max_wait_ms=1500` and no setting; measured on the end-to-end benchmark (docs/benchmarks.md), 100 ms
raised one worker from ~2.1k to ~2.8k raw records/s. Table recovery reads its changelog with its own
consumer (table_store.py).

`apply(wait_ms)` wraps `AIOKafkaConsumerThread._create_worker_consumer` once, to set the consumer's wait
before it starts (aiokafka keeps it as `_fetch_max_wait_ms` and hands it to its fetcher on start), only when
those internals are there.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from concord.agents.faust_internals import PATCHED

log = logging.getLogger(__name__)

_wait_ms: list[int] = [1500]  # the wait the wrapper sets (one per process: the settings' value)


def _set_wait(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if hasattr(consumer, "_fetch_max_wait_ms"):
            consumer._fetch_max_wait_ms = _wait_ms[0]
        return consumer

    setattr(create, PATCHED, True)
    return create


def apply(wait_ms: int) -> None:
    """Make the worker consumer's fetch long-poll `wait_ms` (installed once; the last value given wins)."""
    _wait_ms[0] = wait_ms
    thread = getattr(faust_aiokafka, "AIOKafkaConsumerThread", None)
    current = getattr(thread, "_create_worker_consumer", None)
    if thread is None or current is None:
        log.warning("faust consumer internals changed: the fetch long-poll stays Faust's 1.5 s (%s)", __file__)
        return
    if not getattr(current, PATCHED, False):
        thread._create_worker_consumer = _set_wait(current)
