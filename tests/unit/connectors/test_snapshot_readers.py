"""The snapshot readers against the sandbox's list APIs (the oracle: each platform's real shapes and paging).

A world of history customers (records that were there before anyone listened), served by the sandbox's
Stripe, Salesforce, Zendesk and NetSuite routes over HTTP; each reader lists its platform to the end, in small pages,
through injected 429s and 5xx. Every record of the world is listed exactly once, and each decodes with
the platform's own codec into the events the live path would have had.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from concord.codecs.config import codec_config
from concord.codecs.model import EntitlementChanged, ResyncRequired
from concord.codecs.registry import decoder
from concord.connectors.base import ConnectorError
from concord.connectors.reconcile import Checkpoint, begin, run_pass
from concord.connectors.snapshots import (
    Cursor,
    NetSuiteReader,
    SalesforceReader,
    SnapshotRecord,
    StripeReader,
    ZendeskReader,
)
from concord.core.settings import Settings
from concord.sandbox import netsuite, salesforce, stripe, zendesk
from concord.sandbox.faults import Faults, PlatformCredentials
from concord.sandbox.traffic import Traffic, TrafficConfig
from concord.sandbox.world import World

CREDENTIALS = PlatformCredentials(stripe_api_key="sk_test_readers", salesforce_access_token="00D!readers",
                                  zendesk_api_email="ops@example.com", zendesk_api_token="zd-readers",
                                  netsuite_access_token="ns-readers")


class Sandbox:
    def __init__(self, world: World, faults: Faults, server: TestServer) -> None:
        self.world, self.faults, self.server = world, faults, server

    def settings(self, **changes: Any) -> Settings:
        url = str(self.server.make_url("")).rstrip("/")
        given: dict[str, Any] = {
            "stripe_api_url": url, "stripe_api_key": CREDENTIALS.stripe_api_key, "salesforce_instance_url": url,
            "salesforce_access_token": CREDENTIALS.salesforce_access_token, "zendesk_url": url,
            "zendesk_api_email": CREDENTIALS.zendesk_api_email, "zendesk_api_token": CREDENTIALS.zendesk_api_token,
            "netsuite_url": url, "netsuite_access_token": CREDENTIALS.netsuite_access_token}
        return msgspec.structs.replace(Settings(), **{**given, **changes})


@pytest.fixture(scope="module")
def world() -> World:
    world = World()
    Traffic(world, TrafficConfig(seed=5, customers=0, history=40), defer=lambda fn: fn()).play_history()
    return world


@pytest.fixture
async def sandbox(world: World) -> AsyncIterator[Sandbox]:
    faults = Faults(seed=2)
    app = web.Application()
    for module in (stripe, salesforce, zendesk, netsuite):
        app.add_routes(module.routes(world, faults, CREDENTIALS))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Sandbox(world, faults, server)
    finally:
        await server.close()


async def _no_wait(seconds: float) -> None:
    pass


async def listed(reader: Any) -> dict[str, list[SnapshotRecord]]:
    out: dict[str, list[SnapshotRecord]] = {}
    cursor: Cursor | None = Cursor()
    pages = 0
    try:
        while cursor is not None:
            page = await reader.page(cursor, None)
            out.setdefault(page.part, []).extend(page.records)
            cursor = page.next
            pages += 1
            assert pages < 10_000, "the listing does not end"
    finally:
        await reader.close()
    return out


def _decoded(platform: str, records: list[SnapshotRecord]) -> list[Any]:
    config = codec_config(Settings())
    return [event for record in records for event in decoder(platform)(record.value, config)]


async def test_stripe_lists_every_object_of_every_kind_once_and_the_codec_reads_each(sandbox: Sandbox) -> None:
    got = await listed(StripeReader(sandbox.settings(), sleep=_no_wait, page_size=7))
    for part, kind in (("customers", "customer"), ("subscriptions", "subscription"), ("invoices", "invoice"),
                       ("charges", "charge"), ("refunds", "refund")):
        world_ids = {r["id"] for r in sandbox.world.all("stripe", kind) if not r.get("deleted")}
        events = _decoded("stripe", got.get(part, []))
        assert len(got.get(part, [])) == len(world_ids), part
        entity_ids = {e.entity.id for e in events}
        assert world_ids <= entity_ids | {e.entity.id.split(":")[0] for e in events}, part
    assert len(got["customers"]) >= 30 and len(got["invoices"]) > 7  # more than one page each


async def test_salesforce_queries_every_account_and_opportunity_through_next_records_urls(sandbox: Sandbox) -> None:
    reader = SalesforceReader(sandbox.settings(), sleep=_no_wait, batch_size=200)
    got = await listed(reader)
    assert reader.remaining == 0  # it counted down to the end of the last part (for the ETA)
    for part in ("Account", "Opportunity"):
        world_ids = {r["Id"] for r in sandbox.world.all("salesforce", part)}
        keys = [record.key for record in got.get(part, [])]
        assert len(keys) == len(set(keys)) and {k.decode() for k in keys if k} == world_ids, part
        assert _decoded("salesforce", got.get(part, []))
    assert len(got["Account"]) >= 30


async def test_zendesk_exports_organizations_with_their_entitlement_and_every_ticket(sandbox: Sandbox) -> None:
    got = await listed(ZendeskReader(sandbox.settings(), sleep=_no_wait, page_size=5))
    orgs = {str(r["id"]) for r in sandbox.world.all("zendesk", "organization")}
    tickets = {str(r["id"]) for r in sandbox.world.all("zendesk", "ticket")}
    assert Counter(r.key.decode() for r in got["organizations"] if r.key) == Counter(orgs)
    assert {r.key.decode() for r in got.get("tickets", []) if r.key} == tickets
    events = _decoded("zendesk", got["organizations"])
    # A listed organization is read whole: its entitlement, never a request to re-read it.
    assert sum(isinstance(e, EntitlementChanged) for e in events) == len(orgs)
    assert not any(isinstance(e, ResyncRequired) for e in events)


async def test_netsuite_lists_ids_by_suiteql_and_reads_each_record_whole_in_the_scripts_envelope(
        sandbox: Sandbox) -> None:
    reader = NetSuiteReader(sandbox.settings(), sleep=_no_wait, page_size=8)
    got = await listed(reader)
    assert reader.remaining == 0
    for part, world_type in (("customer", "customer"), ("invoice", "invoice"), ("customerpayment", "customerPayment"),
                             ("creditmemo", "creditMemo"), ("salesorder", "salesOrder")):
        world_ids = {str(r["id"]) for r in sandbox.world.all("netsuite", world_type)}
        records = got.get(part, [])
        envelopes = [msgspec.json.decode(r.value) for r in records]
        assert sorted(e["id"] for e in envelopes) == sorted(world_ids), part
        assert all(e["recordType"] == part and e["record"]["id"] == e["id"] for e in envelopes)
        events = _decoded("netsuite", records)
        assert len(events) >= len(world_ids), part  # each decodes (a customer into two events)
    assert len(got["customer"]) > 8 and len(got["invoice"]) > 8  # more than one page each
    # The currency's ISO code, resolved as the script does (a record's currency name may not be one).
    assert {msgspec.json.decode(r.value).get("currencyCode") for r in got["invoice"]} <= {"USD", "GBP", "CAD", "EUR"}


async def test_a_listing_goes_through_429s_and_5xx_and_stops_on_a_refused_credential(sandbox: Sandbox) -> None:
    sandbox.faults.update(msgspec.json.encode({"stripe": {"burst_429": 3, "retry_after": 1, "error_rate": 0.2},
                                               "zendesk": {"error_rate": 0.2}}))
    try:
        stripe_got = await listed(StripeReader(sandbox.settings(), sleep=_no_wait, page_size=25))
        zendesk_got = await listed(ZendeskReader(sandbox.settings(), sleep=_no_wait, page_size=10))
    finally:
        sandbox.faults.update(msgspec.json.encode({"stripe": {"burst_429": 0, "error_rate": 0},
                                                   "zendesk": {"error_rate": 0}}))
    customers = [r for r in sandbox.world.all("stripe", "customer") if not r.get("deleted")]
    assert len(stripe_got["customers"]) == len(customers)
    assert len(zendesk_got["organizations"]) == len(list(sandbox.world.all("zendesk", "organization")))
    with pytest.raises(ConnectorError, match="401"):
        await listed(StripeReader(sandbox.settings(stripe_api_key="sk_wrong"), sleep=_no_wait))


class _Crash(Exception):
    pass


class _Sink:
    """Kafka as far as a pass knows it: keeps what it was sent; `crash_after` pages, the process dies."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.records: list[SnapshotRecord] = []
        self.pages = 0
        self.crash_after = crash_after

    async def send(self, platform: str, records: Any, pass_id: str, dry_run: bool = False) -> None:
        if self.crash_after is not None and self.pages == self.crash_after:
            raise _Crash("killed mid-listing")
        self.pages += 1
        self.records.extend(records)

    async def send_events(self, events: Any) -> None:
        pass


class _Store:
    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}

    async def load(self, platform: str) -> Any:
        found = self.saved.get(platform)
        return None if found is None else msgspec.json.decode(found, type=Checkpoint)

    async def save(self, checkpoint: Any) -> None:
        self.saved[checkpoint.platform] = msgspec.json.encode(checkpoint)


@pytest.mark.parametrize("make_reader", [
    lambda s: StripeReader(s, sleep=_no_wait, page_size=7),
    lambda s: SalesforceReader(s, sleep=_no_wait, batch_size=200),
    lambda s: ZendeskReader(s, sleep=_no_wait, page_size=5),
    lambda s: NetSuiteReader(s, sleep=_no_wait, page_size=8),
], ids=["stripe", "salesforce", "zendesk", "netsuite"])
async def test_a_pass_killed_mid_listing_resumes_from_its_checkpointed_cursor(sandbox: Sandbox,
                                                                             make_reader: Any) -> None:
    # The real cursors (Stripe's starting_after, Salesforce's nextRecordsUrl, Zendesk's end_time and cursor,
    # NetSuite's last id) checkpointed after each page written: a new process goes on from there, and together
    # the two runs wrote every record once, but the page the crash interrupted (never written: read again).
    store = _Store()

    async def listing(checkpoint: Any, sink: _Sink, into: Any) -> Any:
        reader = make_reader(sandbox.settings())
        try:
            return await run_pass(reader, checkpoint, sink, into)
        finally:
            await reader.close()

    platform = make_reader(sandbox.settings()).platform
    first, _ = begin(None, platform, None, False, False, 1_000)
    killed = _Sink(crash_after=1)
    with pytest.raises(_Crash):
        await listing(first, killed, store)
    interrupted = await store.load(platform)
    assert interrupted.finished_at == 0 and interrupted.pages == 1 and interrupted.cursor is not None
    resumed_pass, resumed = begin(interrupted, platform, None, False, False, 2_000)
    assert resumed and resumed_pass.pass_id == first.pass_id
    rest = _Sink()
    done = await listing(resumed_pass, rest, store)
    assert done.finished_at > 0 and done.cursor is None
    everything = _Sink()
    await listing(begin(None, platform, None, False, False, 3_000)[0], everything, _Store())
    ids = [(r.kind, r.record_id) for r in killed.records + rest.records]
    assert len(ids) == len(set(ids))  # nothing twice
    assert sorted(ids) == sorted((r.kind, r.record_id) for r in everything.records)  # nothing missed


async def test_each_reader_tells_a_record_still_there_from_one_gone(sandbox: Sandbox) -> None:
    # What a complete listing did not return is confirmed gone one by one before it is deleted.
    world = sandbox.world
    cases = [
        (StripeReader(sandbox.settings(), sleep=_no_wait), "customer",
         next(iter(world.all("stripe", "customer")))["id"]),
        (SalesforceReader(sandbox.settings(), sleep=_no_wait), "opportunity",
         next(iter(world.all("salesforce", "Opportunity")))["Id"]),
        (ZendeskReader(sandbox.settings(), sleep=_no_wait), "ticket",
         str(next(iter(world.all("zendesk", "ticket")))["id"])),
        (NetSuiteReader(sandbox.settings(), sleep=_no_wait), "invoice",
         str(next(iter(world.all("netsuite", "invoice")))["id"])),
    ]
    try:
        for reader, kind, record_id in cases:
            assert await reader.exists(kind, record_id), (reader.platform, kind)
            assert not await reader.exists(kind, "999999999" if reader.platform in ("zendesk", "netsuite")
                                           else ("cus_nope" if kind == "customer" else "006Hp0000099999IAA")), (
                reader.platform, kind)
    finally:
        for reader, _, _ in cases:
            await reader.close()
