"""Consumer lag of a running worker: `concord_consumer_lag{topic,partition}`, every few seconds.

For each partition of a Concord topic assigned to this worker's consumer (the agents' inputs: raw,
identity, canonical, commands and their lanes), the messages its consumer group has not committed yet
(`consumer_lag`, agents/faust_internals/recovery.py). A partition is assigned to one worker of the
group at a time, so `sum by (topic)` across the workers is the topic's lag; a partition that moved away
is removed from this worker's gauge (its new owner reports it). Table changelogs are left out: Faust
reads them only to recover, and never commits them.

Read from the consumer's own bookkeeping (the high watermark of the last fetch, the offset last
committed): no request to the broker. A partition whose high watermark is not known yet is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from concord.agents.faust_internals.recovery import consumer_lag, recovery_finished
from concord.core import metrics

if TYPE_CHECKING:
    from concord.agents.context import Concord

LAG_SECONDS: Final = 5.0


def register(concord: Concord) -> None:
    """Add the timer that keeps this worker's `concord_consumer_lag` up to date."""
    app = concord.app
    reported: set[tuple[str, str]] = set()

    @app.timer(interval=LAG_SECONDS)
    async def consumer_lags() -> None:
        if not recovery_finished(app):
            return
        now: set[tuple[str, str]] = set()
        for tp in app.consumer.assignment():
            if tp.topic not in concord.topics:
                continue
            lag = consumer_lag(app, tp)
            if lag is None:
                continue
            labels = (tp.topic, str(tp.partition))
            metrics.consumer_lag.labels(*labels).set(lag)
            now.add(labels)
        for labels in reported - now:
            metrics.consumer_lag.remove(*labels)
        reported.clear()
        reported.update(now)
