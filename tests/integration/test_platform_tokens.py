"""Tokens that expire, end to end over real HTTP: Concord's connectors against the sandbox's token endpoints.

The sandbox's tokens live 2 seconds. Salesforce (JWT bearer) is configured with a longer session than the
sandbox grants, so its tokens die while Concord still holds them: each one is renewed after a 401
`INVALID_SESSION_ID` and the call sent again. NetSuite (client credentials) says `expires_in`, so its
tokens are renewed ahead of expiry. Either way every command and every reconciliation page succeeds for
as long as the run lasts, with one token request at a time shared by the connectors and the readers.
No Kafka: only the platform APIs are exercised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer, unused_port

from concord.app.demo import demo_keys
from concord.connectors.netsuite import NetSuiteConnector
from concord.connectors.salesforce import SalesforceConnector
from concord.connectors.snapshots import Cursor, SalesforceReader
from concord.connectors.tokens import netsuite_token_source, salesforce_token_source
from concord.core.settings import Settings, load
from concord.sandbox import salesforce as sandbox_salesforce
from concord.sandbox.server import SANDBOX, build_app, config_from_settings
from concord.sandbox.traffic import TrafficConfig
from concord.sandbox.world import World
from tests.unit.connectors.platform_sandbox import command
from tests.unit.sandbox.test_server import FakeEmitter

TOKEN_LIFETIME_S = 2.0
RUN_S = 7.0


@pytest.fixture
async def loop_with_tokens(tmp_path: Path) -> AsyncIterator[tuple[Settings, TestServer, World]]:
    keys = demo_keys(tmp_path)
    key_file, cert_file = keys.private_key, keys.certificate
    server_world = World()
    port = unused_port()  # the settings name the sandbox's URL before it listens
    url = f"http://127.0.0.1:{port}"
    run = f"{time.time_ns()}"  # this run's own token sources (they are process-wide)
    env = {
        "CONCORD_SALESFORCE_AUTH_FLOW": "jwt_bearer", "CONCORD_SALESFORCE_CLIENT_ID": f"3MVG9integration{run}",
        "CONCORD_SALESFORCE_USERNAME": "integration@concord.invalid", "CONCORD_SALESFORCE_LOGIN_URL": url,
        "CONCORD_SALESFORCE_PRIVATE_KEY_FILE": str(key_file),
        # Concord thinks a session lasts 30 s; the sandbox's last 2 s: renewed after each 401.
        "CONCORD_SALESFORCE_SESSION_SECONDS": "30",
        "CONCORD_NETSUITE_URL": url, "CONCORD_NETSUITE_AUTH_FLOW": "client_credentials",
        "CONCORD_NETSUITE_CLIENT_ID": f"ns-integration-{run}", "CONCORD_NETSUITE_CERTIFICATE_ID": "kid-integration",
        "CONCORD_NETSUITE_PRIVATE_KEY_FILE": str(key_file), "CONCORD_CONNECTOR_TIMEOUT_SECONDS": "5",
    }
    settings = load(env)
    certificate = cert_file.read_text()
    config = config_from_settings(settings, TrafficConfig(customers=0), port=port, run_traffic=False,
                                  token_lifetime=TOKEN_LIFETIME_S, salesforce_certificate=certificate,
                                  netsuite_certificate=certificate)
    server = TestServer(build_app(config, world=server_world, emitter=FakeEmitter), port=port)
    await server.start_server()
    try:
        yield settings, server, server_world
    finally:
        await server.close()


async def test_commands_keep_succeeding_across_token_renewals(
        loop_with_tokens: tuple[Settings, TestServer, World]) -> None:
    settings, server, world = loop_with_tokens
    account = sandbox_salesforce.create_account(world, name="Acme")["Id"]
    crm, erp, reader = SalesforceConnector(settings), NetSuiteConnector(settings), SalesforceReader(settings)
    ends = time.monotonic() + RUN_S
    done = 0
    try:
        while time.monotonic() < ends:
            # Lanes at once: two CRM updates, an ERP upsert and a reconciliation page, sharing the tokens.
            results = await asyncio.gather(
                crm.execute(command("crm.update_customer", "salesforce", {"customer_id": account},
                                    {"name": f"Acme {done}"}, command_id=f"sf-{done}")),
                crm.execute(command("crm.update_customer", "salesforce", {"customer_id": account},
                                    {"country": "US"}, command_id=f"sf-b-{done}")),
                erp.execute(command("erp.upsert_customer", "netsuite", {"external_id": account},
                                    {"name": f"Acme {done}"}, command_id=f"ns-{done}")),
                reader.page(Cursor(), None))
            assert [r.status for r in results[:3]] == [204, 204, 204]
            done += 1
            await asyncio.sleep(0.25)
    finally:
        for closing in (crm, erp):
            await closing.close()
        await reader.http.close()
    tokens = server.app[SANDBOX].status().tokens
    # 7 s of 2 s tokens: at least three renewals each, and never a token request per caller.
    assert tokens["salesforce"].issued >= 3 and tokens["netsuite"].issued >= 3
    assert tokens["salesforce"].issued <= RUN_S / TOKEN_LIFETIME_S + 2
    assert tokens["salesforce"].expired_refused >= 2  # the 401 path: Salesforce sessions died under Concord
    assert tokens["salesforce"].refused_grants == tokens["netsuite"].refused_grants == 0
    assert world.get("salesforce", "Account", account)["Name"] == f"Acme {done - 1}"
    sf, ns = salesforce_token_source(settings), netsuite_token_source(settings)
    assert (await sf.current()).instance_url == str(server.make_url("")).rstrip("/")  # the API base came with it
    assert sf.renews and ns.renews
