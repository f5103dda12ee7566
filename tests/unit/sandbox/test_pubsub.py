"""The sandbox's Pub/Sub API with pubsub delivery: Salesforce changes go to the event bus (not Kafka), served
over gRPC with Salesforce's authentication and errors; the other platforms' deliveries are untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from concord.bench.common import free_port
from concord.core import pubsub_api
from concord.core.pubsub_api import pb, services
from concord.sandbox import salesforce as sf
from concord.sandbox.faults import PlatformCredentials
from concord.sandbox.pubsub import ALL_CHANGES, channel_entities
from concord.sandbox.server import SANDBOX, SandboxConfig, build_app
from concord.sandbox.traffic import TrafficConfig

TOKEN = "00DHp00000ConcoMAA!unit"


def metadata(token: str = TOKEN) -> tuple[tuple[str, str], ...]:
    return ((pubsub_api.ACCESS_TOKEN_KEY, token), (pubsub_api.INSTANCE_URL_KEY, "https://x.my.salesforce.com"),
            (pubsub_api.TENANT_ID_KEY, "00DHp00000ConcoMAA"))


async def started(lose_rate: float = 0.0) -> tuple[TestClient[web.Request, web.Application], Any]:
    port = free_port()
    config = SandboxConfig(traffic=TrafficConfig(customers=0), run_traffic=False, salesforce_delivery="pubsub",
                           pubsub_port=port, kafka_bootstrap="127.0.0.1:1", lose_rate=lose_rate,
                           credentials=PlatformCredentials(salesforce_access_token=TOKEN))
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(build_app(config)))
    await client.start_server()
    return client, services.PubSubStub(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[Any, Any]]:
    client, stub = await started()
    yield client.server.app[SANDBOX], stub
    await client.close()


async def test_salesforce_changes_go_to_the_bus_and_are_served(sandbox: tuple[Any, Any]) -> None:
    state, stub = sandbox
    account = sf.create_account(state.world, name="Acme", currency="EUR")
    assert await state.emitter.drain(5)
    assert state.bus.latest == 1 and state.emitter.stats().platforms["salesforce"].delivered == 1
    topic = await stub.GetTopic(pb.TopicRequest(topic_name="/data/AccountChangeEvent"), metadata=metadata())
    assert topic.can_subscribe and not topic.can_publish
    schema = await stub.GetSchema(pb.SchemaRequest(schema_id=topic.schema_id), metadata=metadata())
    assert '"AccountChangeEvent"' in schema.schema_json

    async def first() -> AsyncIterator[Any]:
        yield pb.FetchRequest(topic_name=ALL_CHANGES, replay_preset=pb.ReplayPreset.Value("EARLIEST"),
                              num_requested=5)

    call = stub.Subscribe(first(), metadata=metadata())
    response = await anext(call.__aiter__())
    call.cancel()
    assert len(response.events) == 1 and response.pending_num_requested == 4
    assert account["Id"].encode() in response.events[0].event.payload


async def test_a_wrong_token_is_unauthenticated_with_salesforce_s_error_code(sandbox: tuple[Any, Any]) -> None:
    _, stub = sandbox
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetTopic(pb.TopicRequest(topic_name=ALL_CHANGES), metadata=metadata("00D!someone-else"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (pubsub_api.ERROR_CODE_KEY, pubsub_api.AUTH_ERROR) in tuple(refused.value.trailing_metadata())


async def test_an_unknown_topic_is_not_found(sandbox: tuple[Any, Any]) -> None:
    _, stub = sandbox
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetTopic(pb.TopicRequest(topic_name="/data/LeadChangeEvent"), metadata=metadata())
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert channel_entities("/data/OpportunityChangeEvent") == frozenset({"Opportunity"})


async def test_lost_events_never_reach_the_bus() -> None:
    client, _ = await started(lose_rate=1.0)
    state = client.server.app[SANDBOX]
    sf.create_account(state.world, name="Lost", currency="EUR")
    assert await state.emitter.drain(5)
    assert state.bus.latest == 0 and [lost.platform for lost in state.emitter.lost()] == ["salesforce"]
    await client.close()
