"""Outgoing notifications in a state worker: the notifier's task, started with the worker, stopped with it.

The state agent offers it the transitions it publishes (agents/state.py); what is notified, how it is
sent, retried and kept from repeating is connectors/notify.py. Nothing runs unless
`CONCORD_NOTIFY_WEBHOOK_URL` is set.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from concord.connectors.notify import Notifier

if TYPE_CHECKING:
    from concord.agents.context import Concord

log = logging.getLogger("concord.notify")


def register(concord: Concord) -> Notifier | None:
    """The worker's notifier, running as a task of the app; None when no notification URL is set."""
    settings = concord.settings
    if not settings.notify_webhook_url:
        return None
    notifier = Notifier.from_settings(settings, concord.redis)

    @concord.app.task
    async def notify() -> None:
        log.info("notifying escalations and new findings of severity %s or above (signed: %s)",
                 settings.notify_min_severity, "yes" if settings.notify_webhook_secret else "no")
        await notifier.run()

    concord.on_shutdown(notifier.close)
    return notifier
