"""Assembles a Concord worker: the app, its views and the agents of the chosen roles."""

from __future__ import annotations

from collections.abc import Iterable

from concord.agents import identity, ingest, membership
from concord.app import ingress, web
from concord.app.factory import ROLES, Concord
from concord.app.settings import Settings


def build(settings: Settings, roles: Iterable[str] = ROLES) -> Concord:
    """A ready-to-run Concord app for `settings`, running the agents of `roles`.

    * ingest: webhook ingress, decoding (raw -> identity/canonical), identity resolution;
    * state: per-customer state keyed by customer (membership now; drift in the state issue);
    * commands: corrective command execution (the commands issue).
    """
    concord = Concord(settings, roles)
    web.register(concord)
    if "ingest" in concord.roles:
        ingress.register(concord)
        ingest.register(concord)
        identity.register(concord)
    if "state" in concord.roles:
        membership.register(concord)
    return concord
