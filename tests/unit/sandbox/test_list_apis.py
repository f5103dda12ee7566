"""The sandbox platforms' list APIs: real paging, ordering, filters, errors and auth, over the same records.

Every list is paged to the end with small pages and checked to serve each record exactly once, in the
documented order, and as the platform's single-record GET renders it.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from concord.sandbox import netsuite, salesforce, stripe, zendesk
from concord.sandbox.faults import Faults, PlatformCredentials
from concord.sandbox.world import World

NOW = 1_743_422_400  # 2025-03-31T12:00:00Z
CREDENTIALS = PlatformCredentials(stripe_api_key="sk_test_1", salesforce_access_token="sf", zendesk_api_email="a@b.c",
                                  zendesk_api_token="zd", netsuite_access_token="ns")
STRIPE = {"Authorization": "Bearer sk_test_1"}
SALESFORCE = {"Authorization": "Bearer sf"}
ZENDESK = {"Authorization": "Basic " + base64.b64encode(b"a@b.c/token:zd").decode()}
NETSUITE = {"Authorization": "Bearer ns"}
SUITEQL = {**NETSUITE, "Prefer": "transient"}

Client = TestClient[web.Request, web.Application]


class Clock:
    """A world clock a test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _client(world: World, faults: Faults | None = None) -> Client:
    app = web.Application()
    for module in (stripe, salesforce, zendesk, netsuite):
        app.add_routes(module.routes(world, faults or Faults(), CREDENTIALS))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def _local(url: str) -> str:
    """A next-page URL as a path the test client can follow."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


# --- Stripe ---------------------------------------------------------------------------------------


async def _stripe_pages(client: Client, path: str, **params: str) -> list[dict[str, Any]]:
    """Every object of a Stripe list, following `starting_after` until `has_more` is false."""
    objects: list[dict[str, Any]] = []
    while True:
        response = await client.get(path, params=params, headers=STRIPE)
        assert response.status == 200, await response.text()
        page = await response.json()
        assert (page["object"], page["url"]) == ("list", path)
        objects += page["data"]
        if not page["has_more"]:
            return objects
        params = {**params, "starting_after": page["data"][-1]["id"]}


async def test_stripe_list_pages_every_customer_once_newest_first() -> None:
    clock = Clock()
    world = World(clock=clock)
    for i in range(250):
        clock.now = NOW + i // 3  # three customers per second: ties on `created` are ordered by id
        stripe.create_customer(world, name=f"Customer {i}", email=f"c{i}@example.test")
    client = await _client(world)
    listed = await _stripe_pages(client, "/v1/customers", limit="7")
    fetched = [await (await client.get(f"/v1/customers/{c['id']}", headers=STRIPE)).json() for c in listed[:20]]
    middle = listed[100]["id"]
    before = await (await client.get("/v1/customers", params={"ending_before": middle, "limit": "5"},
                                     headers=STRIPE)).json()
    first = await (await client.get("/v1/customers", headers=STRIPE)).json()
    await client.close()

    expected = sorted(world.all("stripe", "customer"), key=lambda c: (c["created"], c["id"]), reverse=True)
    assert [c["id"] for c in listed] == [c["id"] for c in expected]
    assert len({c["id"] for c in listed}) == 250
    assert listed[:20] == fetched
    assert [c["id"] for c in before["data"]] == [c["id"] for c in listed[95:100]]
    assert before["has_more"] is True
    assert (len(first["data"]), first["has_more"]) == (stripe.DEFAULT_LIMIT, True)


async def test_stripe_list_filters_status_customer_created_email_and_expand() -> None:
    clock = Clock()
    world = World(clock=clock)
    acme = stripe.create_customer(world, name="Acme", email="billing@acme.test")
    clock.now += 10
    beta = stripe.create_customer(world, name="Beta")
    live = stripe.create_subscription(world, acme["id"], price_id="price_1", unit_amount=100, currency="usd")
    gone = stripe.create_subscription(world, beta["id"], price_id="price_1", unit_amount=100, currency="usd")
    stripe.cancel_subscription(world, gone["id"])
    clock.now += 10
    invoice = stripe.create_invoice(world, acme["id"], subscription_id=live["id"])
    _, charge = stripe.pay_invoice(world, invoice["id"])
    refund, _ = stripe.refund_charge(world, charge["id"], amount=10)
    open_invoice = stripe.create_invoice(world, beta["id"], amount=500, currency="usd")
    doomed = stripe.create_customer(world, name="Doomed")
    doomed_sub = stripe.create_subscription(world, doomed["id"], price_id="price_1", unit_amount=1, currency="usd")
    stripe.delete_customer(world, doomed["id"])
    client = await _client(world)

    async def ids(path: str, **params: str) -> list[str]:
        return [o["id"] for o in await _stripe_pages(client, path, **params)]

    default_subs = await ids("/v1/subscriptions")
    all_subs = await ids("/v1/subscriptions", status="all")
    canceled = await ids("/v1/subscriptions", status="canceled")
    acme_subs = await ids("/v1/subscriptions", customer=acme["id"], status="all")
    paid = await ids("/v1/invoices", status="paid")
    beta_invoices = await ids("/v1/invoices", customer=beta["id"])
    charges = await ids("/v1/charges", customer=acme["id"])
    refunds = await ids("/v1/refunds", charge=charge["id"])
    customers = await ids("/v1/customers")
    by_email = await ids("/v1/customers", email="billing@acme.test")
    first_second = await ids("/v1/customers", **{"created[lt]": str(NOW + 10)})
    later = await ids("/v1/customers", **{"created[gte]": str(NOW + 10), "created[lte]": str(NOW + 10)})
    exactly = await ids("/v1/customers", created=str(NOW))
    expanded = await (await client.get("/v1/subscriptions", params={"expand[]": "data.customer", "status": "all"},
                                       headers=STRIPE)).json()
    acme_fetched = await (await client.get(f"/v1/customers/{acme['id']}", headers=STRIPE)).json()
    refund_expanded = await (await client.get("/v1/refunds", params={"expand[]": "data.charge"},
                                              headers=STRIPE)).json()
    await client.close()

    assert set(default_subs) == {live["id"], doomed_sub["id"]}
    assert set(all_subs) == {live["id"], gone["id"], doomed_sub["id"]}
    assert canceled == [gone["id"]]
    assert acme_subs == [live["id"]]
    assert (paid, beta_invoices) == ([invoice["id"]], [open_invoice["id"]])
    assert (charges, refunds) == ([charge["id"]], [refund["id"]])
    assert doomed["id"] not in customers and set(customers) == {acme["id"], beta["id"]}
    assert by_email == [acme["id"]]
    assert (first_second, later, exactly) == ([acme["id"]], [beta["id"]], [acme["id"]])
    customers_of = {s["id"]: s["customer"] for s in expanded["data"]}
    assert customers_of[live["id"]] == acme_fetched
    assert customers_of[doomed_sub["id"]] == {"id": doomed["id"], "object": "customer", "deleted": True}
    stored = world.get("stripe", "subscription", live["id"])
    assert stored is not None and stored["customer"] == acme["id"]  # the world's record is not expanded
    assert refund_expanded["data"][0]["charge"]["id"] == charge["id"]


@pytest.mark.parametrize(("params", "param", "code"), [
    ({"limit": "0"}, "limit", "parameter_invalid_integer"),
    ({"limit": "101"}, "limit", "parameter_invalid_integer"),
    ({"limit": "ten"}, "limit", "parameter_invalid_integer"),
    ({"starting_after": "cus_404"}, "starting_after", "resource_missing"),
    ({"ending_before": "cus_404"}, "ending_before", "resource_missing"),
    ({"created[gte]": "yesterday"}, "created[gte]", "parameter_invalid_integer"),
    ({"created[since]": "1"}, "created[since]", "parameter_unknown"),
    ({"status": "active"}, "status", "parameter_unknown"),
    ({"expand[]": "data.customer"}, "expand", "parameter_invalid"),
])
async def test_stripe_list_refuses_bad_parameters_like_stripe(params: dict[str, str], param: str, code: str) -> None:
    world = World(clock=Clock())
    stripe.create_customer(world, name="Acme")
    client = await _client(world)
    response = await client.get("/v1/customers", params=params, headers=STRIPE)
    body = await response.json()
    await client.close()
    assert response.status == 400
    assert (body["error"]["type"], body["error"]["param"], body["error"]["code"]) == ("invalid_request_error", param,
                                                                                      code)


async def test_stripe_list_checks_the_key_and_goes_through_the_faults() -> None:
    world = World(clock=Clock())
    stripe.create_customer(world, name="Acme")
    faults = Faults()
    client = await _client(world, faults)
    anonymous = await client.get("/v1/invoices")
    anonymous_error = (await anonymous.json())["error"]
    faults.update(b'{"stripe": {"burst_429": 1, "retry_after": 2}}')
    limited = await client.get("/v1/customers", headers=STRIPE)
    served = await client.get("/v1/customers", headers=STRIPE)
    faults.update(b'{"stripe": {"error_rate": 1}}')
    failed = await client.get("/v1/charges", headers=STRIPE)
    await client.close()
    assert (anonymous.status, anonymous_error["code"]) == (401, "api_key_required")
    assert (limited.status, limited.headers["Retry-After"]) == (429, "2")
    assert served.status == 200
    assert failed.status in (500, 502, 503)


# --- Salesforce -----------------------------------------------------------------------------------


def test_soql_parser_reads_the_subset() -> None:
    query = salesforce.parse_soql("select Id, name FROM Account WHERE LastModifiedDate >= 2026-11-01T00:00:00Z "
                                  "AND Name != 'O\\'Brien' AND IsDeleted = false AND Amount > 10.5 AND "
                                  "CloseDate < 2026-12-01 AND Type = null ORDER BY Name DESC LIMIT 5")
    assert (query.fields, query.object, query.order_by, query.descending, query.limit) == (
        ("Id", "name"), "Account", "Name", True, 5)
    assert [(c.field, c.op, c.kind) for c in query.where] == [
        ("LastModifiedDate", ">=", "datetime"), ("Name", "!=", "string"), ("IsDeleted", "=", "boolean"),
        ("Amount", ">", "number"), ("CloseDate", "<", "date"), ("Type", "=", "null")]
    assert query.where[1].value == "O'Brien"
    assert salesforce.parse_soql("SELECT Id FROM Opportunity WHERE Name <> 'x'").where[0].op == "!="
    assert salesforce.parse_soql("SELECT Id FROM Account ORDER BY Name ASC").descending is False


@pytest.mark.parametrize("text", [
    "SELECT FROM Account", "SELECT Id Account", "SELECT Id FROM Account WHERE", "SELECT Id FROM Account WHERE Name",
    "SELECT Id FROM Account WHERE Name = 'a' OR Name = 'b'", "SELECT Id FROM Account LIMIT x",
    "SELECT Id FROM Account ORDER Name", "SELECT Id, Id FROM Account", "SELECT Id FROM Account WHERE Name = ?",
    "DELETE FROM Account", "SELECT Id FROM Account LIMIT 1.5",
])
def test_soql_parser_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(salesforce.SoqlError) as raised:
        salesforce.parse_soql(text)
    assert raised.value.code == "MALFORMED_QUERY"


def test_soql_runs_filters_order_and_checks_fields() -> None:
    clock = Clock()
    world = World(clock=clock)
    names = ["beta", "Alpha", "gamma"]
    for i, name in enumerate(names):
        clock.now = NOW + i * 3600
        salesforce.create_account(world, name=name)
    records = list(world.all("salesforce", "Account"))
    fields = set(records[0]) - {"attributes"}

    def run(text: str) -> list[dict[str, Any]]:
        return salesforce.run_soql(salesforce.parse_soql(text), records, fields)

    assert [r["Name"] for r in run("SELECT name FROM Account ORDER BY NAME")] == ["Alpha", "beta", "gamma"]
    assert [r["Name"] for r in run("SELECT Name FROM Account WHERE name = 'ALPHA'")] == ["Alpha"]
    recent = run("SELECT Name, systemmodstamp FROM Account WHERE SystemModstamp > 2025-03-31T12:30:00Z "
                 "ORDER BY SystemModstamp DESC LIMIT 1")
    assert recent == [{"attributes": records[2]["attributes"], "Name": "gamma",
                       "SystemModstamp": records[2]["SystemModstamp"]}]
    operator = "INVALID_QUERY_FILTER_OPERATOR"
    for text, code in (("SELECT Nope__c FROM Account", "INVALID_FIELD"),
                       ("SELECT Id FROM Account WHERE LastModifiedDate > '2025-01-01'", operator),
                       ("SELECT Id FROM Account WHERE Name > 5", operator),
                       ("SELECT Id FROM Account WHERE Name < null", operator)):
        with pytest.raises(salesforce.SoqlError) as raised:
            run(text)
        assert raised.value.code == code, text


async def _soql_pages(client: Client, url: str, headers: dict[str, str]) -> tuple[list[dict[str, Any]], int, int]:
    """(records, totalSize, batches) of a query, following nextRecordsUrl."""
    records: list[dict[str, Any]] = []
    batches = 0
    while True:
        response = await client.get(url, headers=headers)
        assert response.status == 200, await response.text()
        body = await response.json()
        records += body["records"]
        batches += 1
        if body["done"]:
            assert "nextRecordsUrl" not in body
            return records, body["totalSize"], batches
        url = body["nextRecordsUrl"]


async def test_salesforce_query_pages_every_account_once_as_get_renders_it() -> None:
    clock = Clock()
    world = World(clock=clock)
    for i in range(450):
        clock.now = NOW + i
        salesforce.create_account(world, name=f"Account {i:03d}", country="US" if i % 2 else "DE")
    client = await _client(world)
    sample = next(world.all("salesforce", "Account"))
    columns = ", ".join(name for name in sample if name != "attributes")
    url = f"/services/data/v62.0/query?q=SELECT {columns} FROM Account"
    headers = {**SALESFORCE, "Sforce-Query-Options": "batchSize=200"}
    records, total, batches = await _soql_pages(client, url, headers)
    fetched = [await (await client.get(f"/services/data/v62.0/sobjects/Account/{r['Id']}", headers=SALESFORCE)).json()
               for r in records[::50]]
    small, _, small_batches = await _soql_pages(client, url, {**SALESFORCE, "Sforce-Query-Options": "batchSize=5"})
    default, _, default_batches = await _soql_pages(client, url, SALESFORCE)
    await client.close()

    assert (total, batches, len(records)) == (450, 3, 450)
    assert [r["Id"] for r in records] == sorted(r["Id"] for r in world.all("salesforce", "Account"))
    assert records[::50] == fetched
    assert (small_batches, default_batches) == (3, 1)  # batch sizes are clamped to 200..2000
    assert small == default == records


async def test_salesforce_query_filters_orders_and_returns_api_name_case() -> None:
    clock = Clock()
    world = World(clock=clock)
    acme = salesforce.create_account(world, name="Acme")
    clock.now += 3600
    beta = salesforce.create_account(world, name="Beta")
    won = salesforce.create_opportunity(world, acme["Id"], name="Acme - Gold", amount=500_000)
    salesforce.close_won(world, won["Id"])
    salesforce.create_opportunity(world, beta["Id"], name="Beta - Silver", amount=100_000)
    client = await _client(world)

    async def query(text: str) -> dict[str, Any]:
        response = await client.get("/services/data/v59.0/query", params={"q": text}, headers=SALESFORCE)
        assert response.status == 200, await response.text()
        return dict(await response.json())

    recent = await query("SELECT id, name, lastmodifieddate FROM account WHERE LastModifiedDate >= "
                         "2025-03-31T12:30:00Z")
    ordered = await query("SELECT Name FROM Account ORDER BY Name DESC LIMIT 1")
    won_opportunities = await query(f"SELECT Id, StageName, Amount FROM Opportunity WHERE IsWon = true AND "
                                    f"AccountId = '{acme['Id']}' AND Amount >= 5000")
    await client.close()

    assert recent["totalSize"] == 1 and recent["done"] is True
    [record] = recent["records"]
    assert set(record) == {"attributes", "Id", "Name", "LastModifiedDate"}
    assert (record["Id"], record["LastModifiedDate"], record["attributes"]["type"]) == (
        beta["Id"], beta["LastModifiedDate"], "Account")
    assert [r["Name"] for r in ordered["records"]] == ["Beta"]
    assert [(r["Id"], r["StageName"], r["Amount"]) for r in won_opportunities["records"]] == [
        (won["Id"], "Closed Won", 5000.0)]


async def test_salesforce_query_all_shows_deleted_and_merged_accounts() -> None:
    clock = Clock()
    world = World(clock=clock)
    client = await _client(world)  # the recycle bin fills from the moment the routes exist
    keep = salesforce.create_account(world, name="Keep")
    dropped = salesforce.create_account(world, name="Dropped")
    loser = salesforce.create_account(world, name="Keep Inc")
    clock.now += 60
    salesforce.delete_account(world, dropped["Id"])
    salesforce.merge_accounts(world, keep["Id"], loser["Id"])
    text = "SELECT Id, IsDeleted, MasterRecordId, SystemModstamp FROM Account"
    live = await (await client.get("/services/data/v62.0/query", params={"q": text}, headers=SALESFORCE)).json()
    everything = await (await client.get("/services/data/v62.0/queryAll", params={"q": text},
                                         headers=SALESFORCE)).json()
    deleted_only = await (await client.get("/services/data/v62.0/queryAll", headers=SALESFORCE,
                                           params={"q": "SELECT Id FROM Account WHERE IsDeleted = true"})).json()
    await client.close()

    assert [r["Id"] for r in live["records"]] == [keep["Id"]]
    rows = {r["Id"]: r for r in everything["records"]}
    assert everything["totalSize"] == 3
    assert (rows[dropped["Id"]]["IsDeleted"], rows[dropped["Id"]]["MasterRecordId"]) == (True, None)
    assert (rows[loser["Id"]]["IsDeleted"], rows[loser["Id"]]["MasterRecordId"]) == (True, keep["Id"])
    assert rows[keep["Id"]]["IsDeleted"] is False
    assert rows[dropped["Id"]]["SystemModstamp"] == "2025-03-31T12:01:00.000+0000"
    assert {r["Id"] for r in deleted_only["records"]} == {dropped["Id"], loser["Id"]}


async def test_salesforce_query_errors_auth_locators_and_faults() -> None:
    world = World(clock=Clock())
    for i in range(250):
        salesforce.create_account(world, name=f"A{i}")
    faults = Faults()
    client = await _client(world, faults)
    root = "/services/data/v62.0"

    async def error(path: str, **params: str) -> tuple[int, str]:
        response = await client.get(path, params=params, headers=SALESFORCE)
        return response.status, (await response.json())[0]["errorCode"]

    malformed = await error(f"{root}/query", q="SELECT Id FROM")
    invalid_field = await error(f"{root}/query", q="SELECT Nope__c FROM Account")
    invalid_type = await error(f"{root}/query", q="SELECT Id FROM Lead")
    missing_q = await error(f"{root}/query")
    unknown_locator = await error(f"{root}/query/01gHp9999999999AAA-200")
    anonymous = await client.get(f"{root}/query", params={"q": "SELECT Id FROM Account"})
    anonymous_code = (await anonymous.json())[0]["errorCode"]
    headers = {**SALESFORCE, "Sforce-Query-Options": "batchSize=200"}
    first = await (await client.get(f"{root}/query", params={"q": "SELECT Id FROM Account"}, headers=headers)).json()
    faults.update(b'{"salesforce": {"error_rate": 1}}')
    failed = await client.get(first["nextRecordsUrl"], headers=headers)
    faults.reset()
    retried = await (await client.get(first["nextRecordsUrl"], headers=headers)).json()
    again = await (await client.get(first["nextRecordsUrl"], headers=headers)).json()
    for _ in range(salesforce.OPEN_CURSORS):  # opening more cursors closes the oldest
        await client.get(f"{root}/query", params={"q": "SELECT Id FROM Account"}, headers=headers)
    expired = await client.get(first["nextRecordsUrl"], headers=headers)
    expired_code = (await expired.json())[0]["errorCode"]
    await client.close()

    assert malformed == (400, "MALFORMED_QUERY")
    assert invalid_field == (400, "INVALID_FIELD")
    assert invalid_type == (400, "INVALID_TYPE")
    assert missing_q == (400, "MALFORMED_QUERY")
    assert unknown_locator == (400, "INVALID_QUERY_LOCATOR")
    assert (anonymous.status, anonymous_code) == (401, "INVALID_SESSION_ID")
    assert failed.status in (500, 502, 503)
    assert (len(retried["records"]), retried["done"]) == (50, True)
    assert retried == again
    assert (expired.status, expired_code) == (400, "INVALID_QUERY_LOCATOR")


# --- Zendesk --------------------------------------------------------------------------------------


async def _zendesk_export(client: Client, url: str, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records, pages) of an incremental export, followed until end_of_stream."""
    records: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    while True:
        response = await client.get(url, headers=ZENDESK)
        assert response.status == 200, await response.text()
        page = await response.json()
        pages.append(page)
        records += page[key]
        if page["end_of_stream"]:
            return records, pages
        url = _local(page["next_page"] if "next_page" in page else page["after_url"])


async def test_zendesk_organization_export_pages_every_organization_once() -> None:
    clock = Clock()
    world = World(clock=clock)
    for i in range(250):
        clock.now = NOW + i // 2  # two organizations per second: a page never splits a second
        zendesk.create_organization(world, name=f"Org {i}", external_id=f"001{i:05d}")
    clock.now = NOW + 1000
    client = await _client(world)
    records, pages = await _zendesk_export(client, f"/api/v2/incremental/organizations.json?start_time={NOW}"
                                           "&per_page=7", "organizations")
    fetched = [(await (await client.get(f"/api/v2/organizations/{o['id']}.json", headers=ZENDESK)).json())
               ["organization"] for o in records[::25]]
    later, _ = await _zendesk_export(client, f"/api/v2/incremental/organizations.json?start_time={NOW + 100}",
                                     "organizations")
    # A change after the export comes on the next poll from the last end_time, once its minute has passed.
    zendesk.update_organization(world, records[0]["id"], name="Renamed")
    poll = _local(pages[-1]["next_page"])
    too_soon = await (await client.get(poll, headers=ZENDESK)).json()
    clock.now += 61
    changed = await (await client.get(poll, headers=ZENDESK)).json()
    await client.close()

    expected = sorted(world.all("zendesk", "organization"), key=lambda o: o["id"])
    assert sorted(o["id"] for o in records) == [o["id"] for o in expected]
    assert [o["id"] for o in records] == [o["id"] for o in sorted(records, key=lambda o: (o["updated_at"], o["id"]))]
    assert all(page["count"] in (8, 2) for page in pages)  # 7 grows to 8 to hold its last second
    assert pages[0]["end_time"] == NOW + 4 and pages[-1]["end_time"] == NOW + 1000 - zendesk.RECENT_SECONDS
    assert records[::25] == fetched
    assert {o["updated_at"] for o in later} >= {"2025-03-31T12:01:40Z"} and len(later) == 250 - 200
    assert (too_soon["count"], too_soon["end_of_stream"]) == (0, True)
    assert [o["name"] for o in changed["organizations"]] == ["Renamed"]


async def test_zendesk_ticket_cursor_export_pages_every_ticket_and_shows_deleted_ones() -> None:
    clock = Clock()
    world = World(clock=clock)
    client = await _client(world)
    for i in range(250):
        clock.now = NOW + i // 4
        zendesk.create_ticket(world, organization_id=None, subject=f"Ticket {i}")
    first = min(int(t["id"]) for t in world.all("zendesk", "ticket"))
    clock.now = NOW + 200
    world.delete("zendesk", "ticket", str(first), event="zen:event-type:ticket.deleted")
    clock.now = NOW + 400
    records, pages = await _zendesk_export(client, f"/api/v2/incremental/tickets/cursor.json?start_time={NOW}"
                                           "&per_page=10", "tickets")
    live = [t for t in records if t["status"] != "deleted"]
    fetched = [(await (await client.get(f"/api/v2/tickets/{t['id']}.json", headers=ZENDESK)).json())["ticket"]
               for t in live[::30]]
    await client.close()

    assert len(records) == 250 and len({t["id"] for t in records}) == 250
    assert [(t["updated_at"], t["id"]) for t in records] == sorted((t["updated_at"], t["id"]) for t in records)
    assert (records[-1]["id"], records[-1]["status"], records[-1]["updated_at"]) == (first, "deleted",
                                                                                     "2025-03-31T12:03:20Z")
    assert live[::30] == fetched
    assert len(pages) == 25 and all(p["before_cursor"] is None and p["before_url"] is None for p in pages)
    assert pages[-1]["after_url"].endswith(f"cursor={pages[-1]['after_cursor']}&per_page=10")


@pytest.mark.parametrize(("path", "fragment"), [
    ("/api/v2/incremental/organizations.json", "start_time"),
    ("/api/v2/incremental/organizations.json?start_time=yesterday", "start_time"),
    (f"/api/v2/incremental/organizations.json?start_time={NOW - 30}", "Too recent start_time"),
    (f"/api/v2/incremental/organizations.json?start_time={NOW - 3600}&per_page=1001", "per_page"),
    ("/api/v2/incremental/tickets/cursor.json", "start_time"),
    (f"/api/v2/incremental/tickets/cursor.json?start_time={NOW}", "Too recent start_time"),
    ("/api/v2/incremental/tickets/cursor.json?cursor=not-a-cursor", "cursor is invalid"),
])
async def test_zendesk_export_refuses_bad_parameters(path: str, fragment: str) -> None:
    client = await _client(World(clock=Clock()))
    response = await client.get(path, headers=ZENDESK)
    body = await response.json()
    await client.close()
    assert (response.status, body["error"]) == (400, "InvalidValue")
    assert fragment in body["description"]


async def test_zendesk_export_rate_limit_auth_and_faults() -> None:
    clock = Clock()
    world = World(clock=clock)
    faults = Faults()
    client = await _client(world, faults)
    path = f"/api/v2/incremental/organizations.json?start_time={NOW - 3600}"
    anonymous = await client.get(path)
    anonymous_error = (await anonymous.json())["error"]
    unlimited = [(await client.get(path, headers=ZENDESK)).status for _ in range(15)]  # off by default
    faults.update(b'{"zendesk": {"export_rate_limit": 3}}')
    statuses = [(await client.get(path, headers=ZENDESK)).status for _ in range(3)]
    clock.now += 20
    limited = await client.get("/api/v2/incremental/tickets/cursor.json?start_time=0", headers=ZENDESK)
    limited_body = await limited.json()
    clock.now += 40
    after_a_minute = await client.get(path, headers=ZENDESK)
    faults.update(b'{"zendesk": {"export_rate_limit": 0, "burst_429": 1, "retry_after": 5}}')
    burst = await client.get(path, headers=ZENDESK)
    await client.close()

    assert (anonymous.status, anonymous_error) == (401, "Couldn't authenticate you")
    assert set(unlimited) == {200} and statuses == [200, 200, 200]
    assert (limited.status, limited.headers["Retry-After"], limited_body["error"]) == (429, "40",
                                                                                       "APIRateLimitExceeded")
    assert after_a_minute.status == 200
    assert (burst.status, burst.headers["Retry-After"]) == (429, "5")


# --- NetSuite -------------------------------------------------------------------------------------


def test_suiteql_parser_reads_the_subset() -> None:
    query = netsuite.parse_suiteql("select ID, companyName from Customer where email = 'o''brien@x.test' and "
                                   "balance >= 10.5 and externalid is not null and terms is null "
                                   "order by lastmodifieddate desc")
    assert (query.columns, query.table, query.order_by, query.descending) == (
        ("id", "companyname"), "customer", "lastmodifieddate", True)
    assert [(f.column, f.op, f.value) for f in query.where] == [
        ("email", "=", "o'brien@x.test"), ("balance", ">=", netsuite.Decimal("10.5")),
        ("externalid", "is not null", None), ("terms", "is null", None)]
    assert netsuite.parse_suiteql("SELECT * FROM transaction WHERE type <> 'CustInvc'").columns == ()
    assert netsuite.parse_suiteql("SELECT * FROM transaction WHERE type <> 'CustInvc'").where[0].op == "!="


@pytest.mark.parametrize("text", [
    "SELECT FROM customer", "SELECT id customer", "SELECT id FROM customer WHERE", "SELECT id FROM customer WHERE id",
    "SELECT id FROM customer WHERE id = 1 OR id = 2", "SELECT id FROM customer ORDER id", "UPDATE customer",
    "SELECT id FROM customer WHERE id = ?", "SELECT id FROM customer WHERE id = email",
])
def test_suiteql_parser_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(netsuite.SuiteqlError, match="Invalid or unsupported search"):
        netsuite.parse_suiteql(text)


def test_suiteql_rows_project_the_rest_records() -> None:
    world = World(clock=Clock(NOW + 3 * 3600 + 4 * 60 + 5))  # 15:04:05 UTC
    customer = netsuite.upsert_customer(world, "001A", company_name="Acme", email="a@acme.test", currency="EUR",
                                        terms="Net 30")
    invoice = netsuite.upsert_invoice(world, "in_1", customer_id=customer["id"], number="INV-1", total=12_345,
                                      currency="EUR", due_date="2026-11-01")
    assert netsuite.suiteql_row("customer", "customer", customer) == {
        "links": [], "id": customer["id"], "entityid": "Acme", "companyname": "Acme", "email": "a@acme.test",
        "externalid": "001A", "custentity_sf_account_id": "001A", "currency": "4", "terms": "Net 30",
        "isperson": "F", "isinactive": "F", "balance": "0", "overduebalance": "0",
        "datecreated": "3/31/2025 3:04:05 pm", "lastmodifieddate": "3/31/2025 3:04:05 pm"}
    row = netsuite.suiteql_row("transaction", "invoice", invoice, ("id", "type", "entity", "status", "foreigntotal",
                                                                   "foreignamountremaining", "duedate", "trandate"))
    assert row == {"links": [], "id": invoice["id"], "type": "CustInvc", "entity": customer["id"], "status": "A",
                   "foreigntotal": "123.45", "foreignamountremaining": "123.45", "duedate": "11/1/2026",
                   "trandate": "3/31/2025"}


async def _suiteql_pages(client: Client, query: str, limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(items, pages) of a SuiteQL query, re-posting it with the next offset until hasMore is false."""
    items: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    offset = 0
    while True:
        response = await client.post(netsuite.SUITEQL_PATH, params={"limit": limit, "offset": offset},
                                     json={"q": query}, headers=SUITEQL)
        assert response.status == 200, await response.text()
        page = await response.json()
        pages.append(page)
        items += page["items"]
        if not page["hasMore"]:
            return items, pages
        offset += limit


async def test_suiteql_pages_every_customer_once_as_the_record_get_serves_it() -> None:
    world = World(clock=Clock())
    for i in range(250):
        netsuite.upsert_customer(world, f"001{i:05d}", company_name=f"Customer {i}", email=f"c{i}@example.test")
    client = await _client(world)
    items, pages = await _suiteql_pages(client, "SELECT * FROM customer", 20)
    fetched = [await (await client.get(f"/services/rest/record/v1/customer/{item['id']}", headers=NETSUITE)).json()
               for item in items[::40]]
    await client.close()

    assert [item["id"] for item in items] == sorted((r["id"] for r in world.all("netsuite", "customer")), key=int)
    assert len(pages) == 13 and {p["totalResults"] for p in pages} == {250}
    assert [p["count"] for p in pages] == [20] * 12 + [10]
    assert [p["offset"] for p in pages] == list(range(0, 250, 20))
    assert [(link["rel"], link["href"].split("?")[1]) for link in pages[1]["links"]] == [
        ("previous", "limit=20&offset=0"), ("first", "limit=20&offset=0"), ("next", "limit=20&offset=40"),
        ("last", "limit=20&offset=240"), ("self", "limit=20&offset=20")]
    assert [link["rel"] for link in pages[-1]["links"]] == ["previous", "first", "last", "self"]
    assert items[::40] == [netsuite.suiteql_row("customer", "customer", record) for record in fetched]


async def test_suiteql_transactions_filters_and_order() -> None:
    clock = Clock()
    world = World(clock=clock)
    acme = netsuite.upsert_customer(world, "001A", company_name="Acme")
    beta = netsuite.upsert_customer(world, "001B", company_name="Beta")
    small = netsuite.upsert_invoice(world, "in_1", customer_id=acme["id"], number="INV-1", total=1_000)
    big = netsuite.upsert_invoice(world, "in_2", customer_id=acme["id"], number="INV-2", total=9_000)
    clock.now += 86_400 * 2
    other = netsuite.upsert_invoice(world, "in_3", customer_id=beta["id"], number="INV-3", total=5_000)
    payment, _ = netsuite.apply_payment(world, small["id"], external_id="py_1")
    memo = netsuite.create_credit_memo(world, "re_1", customer_id=acme["id"], amount=100, invoice_id=big["id"])
    order = netsuite.upsert_sales_order(world, "006A", customer_id=beta["id"], total=7_000)
    client = await _client(world)

    async def ids(query: str) -> list[str]:
        items, _ = await _suiteql_pages(client, query, 1000)
        return [item["id"] for item in items]

    acme_invoices = await ids(f"SELECT id FROM transaction WHERE type = 'CustInvc' AND entity = {acme['id']} "
                              "ORDER BY foreigntotal DESC")
    types = {t: await ids(f"SELECT id FROM transaction WHERE type = '{t}'")
             for t in ("CustPymt", "CustCred", "SalesOrd")}
    paid = await ids("SELECT id, status FROM transaction WHERE type = 'CustInvc' AND status = 'B'")
    recent = await ids("SELECT id FROM transaction WHERE lastmodifieddate >= '4/2/2025' AND type = 'CustInvc'")
    recent_iso = await ids("SELECT id FROM transaction WHERE lastmodifieddate >= '2025-04-02T00:00:00Z' AND "
                           "type = 'CustInvc'")
    by_external_id = await ids("SELECT id FROM customer WHERE externalid = '001B'")
    await client.close()

    assert acme_invoices == [big["id"], small["id"]]
    assert types == {"CustPymt": [payment["id"]], "CustCred": [memo["id"]], "SalesOrd": [order["id"]]}
    assert paid == [small["id"]]
    assert recent == [small["id"], other["id"]]  # the payment changed the small invoice two days later
    assert recent == recent_iso
    assert by_external_id == [beta["id"]]


async def test_suiteql_errors_auth_and_faults() -> None:
    world = World(clock=Clock())
    netsuite.upsert_customer(world, "001A", company_name="Acme")
    faults = Faults()
    client = await _client(world, faults)

    async def error(query: str, headers: dict[str, str] = SUITEQL, **params: str) -> tuple[int, str, str]:
        response = await client.post(netsuite.SUITEQL_PATH, params=params, json={"q": query}, headers=headers)
        body = await response.json(content_type=None)
        detail = body["o:errorDetails"][0]
        return response.status, detail["o:errorCode"], detail["detail"]

    no_prefer = await error("SELECT id FROM customer", NETSUITE)
    big_limit = await error("SELECT id FROM customer", limit="1001")
    odd_offset = await error("SELECT id FROM customer", limit="10", offset="15")
    unknown_column = await error("SELECT nope FROM customer")
    unknown_table = await error("SELECT id FROM employee")
    malformed = await error("SELECT id FROM customer WHERE")
    bad_date = await error("SELECT id FROM customer WHERE lastmodifieddate > 'soon'")
    anonymous = await error("SELECT id FROM customer", {"Prefer": "transient"})
    past_the_end = await (await client.post(netsuite.SUITEQL_PATH, params={"limit": "10", "offset": "10"},
                                            json={"q": "SELECT id FROM customer"}, headers=SUITEQL)).json()
    faults.update(b'{"netsuite": {"error_rate": 1}}')
    failed = await client.post(netsuite.SUITEQL_PATH, json={"q": "SELECT id FROM customer"}, headers=SUITEQL)
    await client.close()

    assert no_prefer[:2] == (400, "INVALID_PARAMETER") and "Prefer" in no_prefer[2]
    assert big_limit[:2] == odd_offset[:2] == (400, "INVALID_PARAMETER")
    assert "multiple of the limit" in odd_offset[2]
    assert unknown_column[:2] == (400, "INVALID_PARAMETER")
    assert "Field 'nope' for record 'customer'" in unknown_column[2]
    assert "Record 'employee' was not found" in unknown_table[2]
    assert malformed[2].startswith("Invalid search query.") and "Invalid or unsupported search" in malformed[2]
    assert bad_date[:2] == (400, "INVALID_PARAMETER")
    assert anonymous[:2] == (401, "INVALID_LOGIN")
    assert (past_the_end["count"], past_the_end["hasMore"], past_the_end["totalResults"]) == (0, False, 1)
    assert failed.status in (500, 502, 503)
