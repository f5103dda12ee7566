"""Assembles a Concord worker: the app, its views and the agents of the chosen roles."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from concord.agents import commands, identity, ingest, lag, notify, reconcile, state, timeline, watermarks
from concord.agents.context import ROLES, Concord
from concord.agents.faust_internals.web import add_listener
from concord.app import api, commands_api, dead_letters_api, ingress, sagas_api, web
from concord.app.access import Access
from concord.app.console import views as console
from concord.app.factory import create_concord
from concord.core.settings import Settings
from concord.drift import catalog
from concord.drift.config import DriftConfig, all_dry_run
from concord.drift.config import load as load_drift_config

log = logging.getLogger("concord.app")


def drift_config(settings: Settings) -> DriftConfig:
    """Built-in rule defaults, overridden by CONCORD_RULES_FILE; every rule in dry-run with CONCORD_DRY_RUN."""
    config = load_drift_config(settings.rules_file or None, catalog.default_configs())
    return all_dry_run(config) if settings.dry_run else config


async def public_listener(concord: Concord) -> None:
    """Serve webhooks (and `/healthz`) on their own port, the one to expose to the internet."""
    settings = concord.settings
    await add_listener(concord.app, settings.webhook_host, settings.webhook_port)
    log.info("webhooks on http://%s:%d/webhooks/<platform> (public listener)", settings.webhook_host,
             settings.webhook_port)


def build(settings: Settings, roles: Iterable[str] = ROLES) -> Concord:
    """A ready-to-run Concord app for `settings`, running the agents of `roles`.

    * webhooks: the webhook ingress (HTTP -> raw); alone, it runs without Faust (`concord webhooks`);
    * ingest: decoding (raw -> identity/canonical), identity resolution;
    * state: per-customer state, drift detection and its lifecycle, deadlines, merges, notifications, the
      customers' timelines (from the audit topic);
    * commands: corrective commands, one lane per platform, exactly once in effect (ledger, breakers,
      rate limits, dead letters), and the scheduled reconciliations (agents/reconcile.py).
    """
    gate = Access(settings)  # one per worker: its middleware and the console's sign-in share it
    concord = create_concord(settings, roles, gate)
    config = drift_config(settings)
    progress = watermarks.Progress() if "ingest" in concord.roles else None
    health = watermarks.register(concord, progress)
    lag.register(concord)
    web.register(concord, health)
    if "webhooks" in concord.roles:
        ingress.register(concord)
    if "ingest" in concord.roles:
        ingest.register(concord, progress)
        identity.register(concord, progress)
    if "state" in concord.roles:
        state.register(concord, config, catalog.RULES, health.read, notify.register(concord))
        timeline.register(concord)
    executor = commands.register(concord) if "commands" in concord.roles else None
    if "commands" in concord.roles:
        reconcile.register(concord)
    if settings.webhook_port and "webhooks" in concord.roles:
        concord.on_started(functools.partial(public_listener, concord))
    api.register(concord, catalog.RULES, config)
    commands_api.register(concord, executor)
    dead_letters_api.register(concord)
    sagas_api.register(concord)
    console.register(concord, catalog.RULES, config, health, executor, gate)
    return concord
