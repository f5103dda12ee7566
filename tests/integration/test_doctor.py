"""`concord doctor` against the sandbox's platforms and the real broker: healthy, then with problems planted.

The sandbox (the demo's service, `build_app`) holds history customers on the four platforms, a Stripe
webhook endpoint and a Zendesk webhook posting to Concord. Salesforce and NetSuite authenticate with their
token flows (JWT bearer, client credentials) as in the demo, and Concord's topics exist with the configured
partitions. The doctor gets and renews a token of each, and passes (exit 0). Then problems are planted the
way they happen in a real account, through the platforms' own APIs and the settings: the Stripe endpoint
loses event types, the Zendesk webhook's secret is reset, NetSuite's integration names a certificate the
account does not have, the topics have another partition count than the settings say, the bridge is told
to carry a channel not enabled for Change Data Capture, a webhook secret is short, and some Stripe customers
lose their Salesforce Account Id; then a Stripe key of another account and an unset webhook secret. The
doctor exits 1 and names each.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import msgspec
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer, unused_port

from concord.app.demo import demo_keys
from concord.core.kafka_security import kafka_security
from concord.core.settings import Settings
from concord.core.topics import TopicSpec, ensure_topics, topic_names
from concord.sandbox.faults import PlatformCredentials
from concord.sandbox.server import build_app, config_from_settings
from concord.sandbox.traffic import TrafficConfig
from concord.sandbox.webhook_setup import STRIPE_ENDPOINT_ID, ZENDESK_WEBHOOK_ID
from tests.integration.harness import Infra, concord_cli
from tests.unit.sandbox.test_server import FakeEmitter

CREDENTIALS = PlatformCredentials(stripe_api_key="sk_test_doctor_key_00000001",
                                  salesforce_access_token="00D!doctor-token-000000001",
                                  zendesk_api_email="ops@example.com", zendesk_api_token="zd-doctor-token-0000001",
                                  netsuite_access_token="ns-doctor-token-000000001")
STRIPE_SECRET = "whsec_doctor_0123456789abcdefghijklmnop"
ZENDESK_SECRET = "zendesk-doctor-secret-0123456789abcdef"
NETSUITE_SECRET = "netsuite-doctor-secret-0123456789abcd"


async def doctor(settings: Settings, *args: str) -> tuple[int, str]:
    """`concord doctor ARGS` as a process (this loop keeps serving the sandbox meanwhile)."""
    return await concord_cli(settings, "doctor", *args)


def failures(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if "[FAIL]" in line]


async def test_the_doctor_passes_a_healthy_setup_and_names_each_planted_problem(
        infra: Infra, settings: Settings, tmp_path: Path) -> None:
    port, pubsub_port = unused_port(), unused_port()  # the settings name the sandbox's URLs before it listens
    url = f"http://127.0.0.1:{port}"
    keys = demo_keys(tmp_path)
    run = f"{time.time_ns()}"  # token sources are process-wide: this run's own client ids
    healthy = msgspec.structs.replace(
        settings, stripe_api_url=url, stripe_api_key=CREDENTIALS.stripe_api_key,
        salesforce_auth_flow="jwt_bearer", salesforce_client_id=f"3MVG9doctor{run}",
        salesforce_username="doctor@concord.invalid", salesforce_login_url=url,
        salesforce_private_key=keys.private_key.read_text(),
        zendesk_url=url, zendesk_api_email=CREDENTIALS.zendesk_api_email,
        zendesk_api_token=CREDENTIALS.zendesk_api_token,
        netsuite_url=url, netsuite_auth_flow="client_credentials", netsuite_client_id=f"ns-doctor-{run}",
        netsuite_certificate_id="kid-doctor", netsuite_private_key=keys.private_key.read_text(),
        stripe_webhook_secret=STRIPE_SECRET, zendesk_webhook_secret=ZENDESK_SECRET,
        netsuite_webhook_secret=NETSUITE_SECRET, salesforce_pubsub_url=f"grpc://127.0.0.1:{pubsub_port}")
    certificate = keys.certificate.read_text()
    config = msgspec.structs.replace(
        config_from_settings(healthy, TrafficConfig(seed=11, customers=0, history=40), port=port, run_traffic=False,
                             concord_url="http://127.0.0.1:6071", token_lifetime=60.0,
                             salesforce_certificate=certificate, netsuite_certificate=certificate,
                             salesforce_delivery="pubsub", pubsub_port=pubsub_port),
        credentials=CREDENTIALS)
    server = TestServer(build_app(config, emitter=FakeEmitter), host="127.0.0.1", port=port)
    await server.start_server()
    specs = [TopicSpec(name, healthy.topic_partitions, 1) for name in topic_names(healthy).all()]
    try:
        await ensure_topics(infra.bootstrap, specs, security=kafka_security(healthy))

        code, out = await doctor(healthy, "--min-coverage", "0.9")
        assert code == 0, out
        assert failures(out) == [], out
        assert "Nothing blocks a first run" in out
        refreshed = [line for line in out.splitlines() if "token refresh" in line]
        assert len(refreshed) == 2 and all("[ ok ]" in line and "renewed it" in line for line in refreshed), out
        for line in ("topics present with", "webhook endpoint " + STRIPE_ENDPOINT_ID + ": enabled",
                     "webhook " + ZENDESK_WEBHOOK_ID + ": active", "signed with Concord's secret",
                     "CDC channel /data/AccountChangeEvent: the bridge's user may subscribe",
                     "CDC channel /data/OpportunityChangeEvent: the bridge's user may subscribe"):
            assert line in out, out
        coverage = [line for line in out.splitlines() if "identity coverage" in line]
        assert len(coverage) == 3 and all("[ ok ]" in line for line in coverage), out

        async with ClientSession(url) as http:
            stripe_auth = {"Authorization": f"Bearer {CREDENTIALS.stripe_api_key}"}
            # The endpoint keeps only the customer events: billing changes no longer reach Concord.
            answer = await http.post(f"/v1/webhook_endpoints/{STRIPE_ENDPOINT_ID}", headers=stripe_auth,
                                     data=[("enabled_events[]", "customer.created"),
                                           ("enabled_events[]", "customer.updated"),
                                           ("enabled_events[]", "customer.deleted")])
            assert answer.status == 200, await answer.text()
            # Someone resets the Zendesk webhook's signing secret and forgets Concord.
            zendesk_auth = {"Authorization": "Basic " + base64.b64encode(
                f"{CREDENTIALS.zendesk_api_email}/token:{CREDENTIALS.zendesk_api_token}".encode()).decode()}
            answer = await http.post(f"/api/v2/webhooks/{ZENDESK_WEBHOOK_ID}/signing_secret", headers=zendesk_auth)
            assert answer.status == 201, await answer.text()
            # A third of the Stripe customers lose their Salesforce Account Id.
            listed = await (await http.get("/v1/customers?limit=100", headers=stripe_auth)).json()
            customers = [c["id"] for c in listed["data"]]
            assert len(customers) >= 20, "the history gives too few Stripe customers for this test"
            for customer_id in customers[::3]:
                answer = await http.post(f"/v1/customers/{customer_id}", headers=stripe_auth,
                                         data={"metadata[salesforce_account_id]": ""})
                assert answer.status == 200, await answer.text()

        # NetSuite's integration names another certificate than the one uploaded.
        broken = msgspec.structs.replace(healthy, netsuite_certificate_id="kid-rotated-away",
                                         topic_partitions=healthy.topic_partitions + 2,
                                         netsuite_webhook_secret="short-but-legal-16",
                                         # A channel of an entity not selected for Change Data Capture.
                                         salesforce_cdc_channels="/data/AccountChangeEvent,/data/CaseChangeEvent")
        code, out = await doctor(broken, "--min-coverage", "0.9")
        assert code == 1, out
        problems = "\n".join(failures(out))
        assert "not subscribed to" in problems and "invoice.paid" in problems, out
        assert "signs with another secret" in problems, out
        assert any("token refresh" in line and "client_credentials" in line for line in failures(out)), out
        assert f"do not have {broken.topic_partitions} partitions" in problems, out
        assert "webhook secret: CONCORD_NETSUITE_WEBHOOK_SECRET is 18 bytes" in out, out
        stripe_coverage = next(line for line in out.splitlines()
                               if "identity coverage" in line and "Stripe customers" in line)
        assert "[warn]" in stripe_coverage and "metadata.salesforce_account_id" in stripe_coverage, out
        assert "CDC channel /data/CaseChangeEvent: the Pub/Sub API" in problems and "NOT_FOUND" in problems, out
        assert "5 problem(s) block a first run" in out, out

        code, out = await doctor(broken, "--json", "--platform", "stripe")
        assert code == 1, out
        result = msgspec.json.decode(out.encode())
        stripe_coverage_json = next(c for c in result["coverage"] if c["platform"] == "stripe")
        assert stripe_coverage_json["listed"] == len(customers) or not stripe_coverage_json["complete"]
        assert stripe_coverage_json["listed"] - stripe_coverage_json["linked"] >= len(customers[::3])

        # A Stripe key of another account (or a revoked one), and a Zendesk webhook secret left unset.
        code, out = await doctor(msgspec.structs.replace(healthy, stripe_api_key="sk_test_another_account_000001",
                                                         zendesk_webhook_secret=""),
                                 "--platform", "stripe", "--platform", "zendesk")
        assert code == 1, out
        assert any("credentials" in line and "Invalid API Key" in line for line in failures(out)), out
        assert any("zendesk webhook secret" in line and "is not set" in line for line in failures(out)), out
    finally:
        await server.close()
