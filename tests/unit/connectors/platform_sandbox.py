"""The four sandbox platform APIs in one aiohttp TestServer, and the Settings pointing Concord's connectors at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer

from concord.core.messages import Command
from concord.core.settings import Settings
from concord.sandbox import netsuite, salesforce, stripe, zendesk
from concord.sandbox.faults import Faults, PlatformCredentials
from concord.sandbox.world import World

NOW = 1_743_422_400.0  # 2025-03-31T12:00:00Z
CREDENTIALS = PlatformCredentials(
    stripe_api_key="sk_test_concord_sandbox",
    salesforce_access_token="00Dsandbox!token",
    zendesk_api_email="concord@example.com",
    zendesk_api_token="zd-token-sixteen-bytes",
    netsuite_access_token="ns-token-sixteen-bytes",
)


@dataclass
class Sandbox:
    world: World
    faults: Faults
    settings: Settings
    url: str

    def effect(self, platform: str, key: str) -> tuple[int, int]:
        """(requests, applied) recorded for `key` ((0, 0) when never seen)."""
        for effect in self.world.effects.all():
            if effect.platform == platform and effect.key == key:
                return effect.requests, effect.applied
        return 0, 0


@asynccontextmanager
async def running(timeout: float = 2.0, **settings: Any) -> AsyncIterator[Sandbox]:
    """A started sandbox; `settings` override the connector settings derived from it."""
    world = World(clock=lambda: NOW)
    faults = Faults(seed=7)
    app = web.Application()
    for module in (stripe, salesforce, zendesk, netsuite):
        app.add_routes(module.routes(world, faults, CREDENTIALS))
    server = TestServer(app)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    base = Settings(
        stripe_api_url=url,
        stripe_api_key=CREDENTIALS.stripe_api_key,
        salesforce_instance_url=url,
        salesforce_access_token=CREDENTIALS.salesforce_access_token,
        zendesk_url=url,
        zendesk_api_email=CREDENTIALS.zendesk_api_email,
        zendesk_api_token=CREDENTIALS.zendesk_api_token,
        netsuite_url=url,
        netsuite_access_token=CREDENTIALS.netsuite_access_token,
        connector_timeout_seconds=timeout,
    )
    try:
        yield Sandbox(world=world, faults=faults, settings=msgspec.structs.replace(base, **settings), url=url)
    finally:
        await server.close()


def command(action: str, platform: str, target: dict[str, str], payload: dict[str, Any] | None = None,
            command_id: str = "cmd-1") -> Command:
    """A corrective command as the drift agent emits it."""
    return Command(command_id=command_id, action=action, platform=platform, target=target, payload=payload or {},
                   fingerprint="fp", rule="D09", customer_key="001Hp00000ACMEAAA", generation=0,
                   correlation_id="corr-1", created_at=0)
