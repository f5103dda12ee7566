"""The API contract (app/contract.py): every `/api` route the worker serves is in the OpenAPI document,
under `/api/v1`, with its deprecated alias; the document names the Structs the handlers encode."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import schemathesis
from aiohttp.test_utils import TestClient, TestServer
from faust.web import Request, Response, View

from concord.app import access, contract
from concord.app.api import rules_listing
from concord.app.main import build, drift_config
from concord.app.schemas import ApiError, ListedRule
from concord.core.settings import Settings
from concord.drift import catalog
from tests.unit.app.test_access import ADMIN, READ, routes, web_app


def api_routes(app: Any) -> set[str]:
    return {r for r in routes(app) if r.startswith("/api/")}


def test_every_api_route_is_in_the_document_and_every_path_of_it_is_served() -> None:
    served = api_routes(web_app(Settings()))
    documented = set(contract.document()["paths"])
    versioned = {r for r in served if r.startswith(contract.PREFIX + "/")}
    assert versioned == documented
    # Each unversioned route is the alias of a documented one, and each documented one has its alias.
    aliases = served - versioned - {contract.OPENAPI_PATH}
    assert {contract.PREFIX + r[len(contract.ALIAS_PREFIX):] for r in aliases} == {
        contract.versioned(r.path) for r in contract.ROUTES if r.alias}
    assert {r.path for r in contract.ROUTES if not r.alias} == {
        "/customers/{key}/entitlement", "/customers/{key}/invoices", "/customers/{key}/subscriptions", "/reconcile",
        "/sagas", "/sagas/{opportunity_id}", "/sagas/{opportunity_id}/resume"}


def test_a_route_served_under_api_without_a_contract_entry_is_caught() -> None:
    concord = build(Settings())

    @concord.app.page("/api/undocumented")
    class Undocumented(View):
        async def get(self, request: Request) -> Response:
            return self.json({})

    concord.app.web.blueprints.apply(concord.app.web)
    served = api_routes(concord.app.web.web_app)
    assert "/api/undocumented" in served and "/api/v1/undocumented" not in contract.document()["paths"]
    with pytest.raises(KeyError, match="not in app/contract.py ROUTES"):
        contract.page(concord.app, "/undocumented")


def test_every_versioned_route_needs_what_its_alias_needs() -> None:
    for route in contract.ROUTES:
        assert access.need_of(contract.versioned(route.path)) == route.need, route.path
        if route.alias:
            assert access.need_of(contract.alias(route.path)) == route.need, route.path
    assert access.need_of(contract.OPENAPI_PATH) == access.INTERNAL


def test_the_document_is_openapi_3_1_with_components_and_security() -> None:
    doc = contract.document()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()  # against the OpenAPI 3.1 meta-schema
    schemas = doc["components"]["schemas"]
    assert {"ApiError", "OwnedPage", "CustomerView", "SearchResults", "LedgerEntry", "ListedRule"} <= set(schemas)
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "session"}
    text = msgspec.json.encode(doc).decode()
    for ref in {part.split('"')[0] for part in text.split('"$ref":"')[1:]}:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    accept = doc["paths"]["/api/v1/drift/{fingerprint}/accept"]["post"]
    assert accept["security"] == [{"bearer": []}]  # a session never acts
    assert {"202", "400", "401", "403", "404", "503"} <= set(accept["responses"])
    assert accept["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AcceptBody"}
    drift = doc["paths"]["/api/v1/drift"]["get"]
    assert drift["security"] == [{"bearer": []}, {"session": []}]
    assert {p["name"] for p in drift["parameters"]} == {"status", "rule", "customer_key", "severity", "owner",
                                                        "offset", "limit"}
    view = doc["paths"]["/api/v1/customers/{key}/view"]["get"]
    assert {"200", "404", "502", "503"} <= set(view["responses"])  # answered by the owner (app/owner.py)


def test_answers_validate_against_their_documented_schema() -> None:
    listing = rules_listing(catalog.RULES, drift_config(Settings()))
    decoded = msgspec.json.decode(msgspec.json.encode(listing), type=list[ListedRule])
    assert decoded == listing and listing[0].id == "D01"
    assert msgspec.json.decode(b'{"error":"not_found","detail":"no finding x"}', type=ApiError).error == "not_found"


async def test_the_document_is_served_without_a_token_and_aliases_say_they_are_deprecated() -> None:
    async with TestClient(TestServer(web_app(Settings(read_token=READ, admin_token=ADMIN)))) as client:
        response = await client.get(contract.OPENAPI_PATH)
        assert response.status == 200 and await response.read() == contract.encoded_document()
        assert "Deprecation" not in response.headers
        headers = {"Authorization": f"Bearer {READ}"}
        alias = await client.get("/api/rules", headers=headers)
        assert alias.status == 200 and alias.headers["Deprecation"] == "true"
        assert alias.headers["Link"] == '</api/v1/rules>; rel="successor-version"'
        current = await client.get("/api/v1/rules", headers=headers)
        assert current.status == 200 and "Deprecation" not in current.headers
        assert await current.json() == await alias.json()
        assert (await client.get("/api/v1/rules")).status == 401  # the versioned path needs its token too
        refused = await client.post("/api/v1/drift/fp1/accept", headers=headers)
        assert refused.status == 403 and msgspec.json.decode(await refused.read(), type=ApiError).error == "forbidden"
