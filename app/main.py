"""Assembles a Concord worker: the app, its views and the agents of the chosen roles."""

from __future__ import annotations

from collections.abc import Iterable

from concord.app import web
from concord.app.factory import ROLES, Concord
from concord.app.settings import Settings


def build(settings: Settings, roles: Iterable[str] = ROLES) -> Concord:
    """A ready-to-run Concord app for `settings`, running the agents of `roles`."""
    concord = Concord(settings, roles)
    web.register(concord)
    return concord
