"""The API contract: one table of every `/api` route, which both serves the handlers and makes
`/api/openapi.json` (OpenAPI 3.1), so the document cannot drift from what is served.

Each `Route` names its path (after the version prefix), method, credential (app/access.py), parameters,
request body and the Struct answered per status. `page(app, path)` registers a handler only for a path
the table declares, under `/api/v1<path>` and under the unversioned alias `/api<path>` (deprecated: its
answers carry `Deprecation: true` and a `Link` to the versioned path). `document()` builds the OpenAPI
document from the same Structs the handlers encode (`msgspec.json.schema_components`), with the access
policy's refusals (`ApiError`) on every route that needs a token.

A route served under `/api` and missing here fails `tests/unit/app/test_contract.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import faust
import msgspec
from aiohttp import web
from faust.web import View
from msgspec import Struct

from concord.app import access
from concord.app.access import Handler
from concord.app.customer_view import CustomerView
from concord.app.dead_letters_api import ReplayAnswer, ReplayRequest
from concord.app.lookups import EntitlementAnswer, InvoicesAnswer, SubscriptionsAnswer, System
from concord.app.sagas import DEFAULT_LIMIT as SAGA_LIMIT
from concord.app.sagas import LIMIT_MAX as SAGA_LIMIT_MAX
from concord.app.schemas import (
    AcceptBody,
    ActionTaken,
    ApiError,
    CommandsStatus,
    Health,
    ListedRule,
    OwnedFinding,
    OwnedPage,
    ReconcileStatus,
    ResumeBody,
    SagaList,
    SagaResumed,
    SnoozeBody,
    Timeline,
)
from concord.app.sessions import COOKIE
from concord.connectors.ledger import LedgerEntry
from concord.connectors.search_index import SearchResults
from concord.drift.saga import STATES, SagaView

VERSION: Final = "v1"
PREFIX: Final = f"/api/{VERSION}"
ALIAS_PREFIX: Final = "/api"
OPENAPI_PATH: Final = "/api/openapi.json"
TITLE: Final = "Concord API"
API_VERSION: Final = "1.0.0"
SCHEMA_REF: Final = "#/components/schemas/{name}"


class Param(Struct, frozen=True, kw_only=True):
    """A path or query parameter: its name, type (a Python type msgspec describes) and meaning."""

    name: str
    where: str = "query"  # path or query
    type: Any = str
    description: str = ""
    required: bool = False


class Route(Struct, frozen=True, kw_only=True):
    """One operation of the API."""

    path: str  # after the version prefix: `/drift/{fingerprint}`
    method: str  # get, post
    need: str  # the credential (app/access.py)
    summary: str
    responses: Mapping[int, Any]  # status -> the Struct (or type) answered
    params: tuple[Param, ...] = ()
    body: Any = None  # the request body's type, None: none
    owned: bool = False  # answered by the worker that owns the customer (app/owner.py): 502, 503 possible
    tag: str = ""
    alias: bool = True  # also served at its unversioned path (deprecated); new routes are versioned only

    @property
    def operation_id(self) -> str:
        words = [w.strip("{}") for w in self.path.strip("/").replace(".", "_").split("/")]
        return "_".join([self.method, *words])


def _path(name: str, description: str) -> Param:
    return Param(name=name, where="path", description=description, required=True)


_KEY: Final = _path("key", "the customer key: its CRM account id")
_LOOKUP_PARAMS: Final = (_KEY, Param(
    name="by", type=System, description="the system whose id `key` is instead (a Zendesk organization, a Stripe "
    "cus_/sub_/in_, a NetSuite id), resolved through the search index"))
_LOOKUP: Final = {400: ApiError, 404: ApiError, 409: ApiError, 503: ApiError}
_FINGERPRINT: Final = _path("fingerprint", "the finding's fingerprint")
#: What an action answers: 202 to a script (the board's form gets a 303 back to the board).
_ACTION: Final = {202: ActionTaken, 400: ApiError, 404: ApiError}
_OPPORTUNITY: Final = _path("opportunity_id", "the won opportunity the saga provisions: its Salesforce id")
#: A saga's state as the listing filters on it (drift/saga.py `STATES`).
SagaState: Final = Literal[STATES]
_LIMIT_OFFSET: Final = (
    Param(name="offset", type=int, description="findings to skip (default 0)"),
    Param(name="limit", type=int, description="findings to answer (default 50, at most 500)"),
)

#: Every route of the API. The access policy keeps the credential of each (app/access.py).
ROUTES: Final[tuple[Route, ...]] = (
    Route(path="/health", method="get", need=access.READ, tag="operations", responses={200: Health},
          summary="Per platform: how far Concord has read, how far behind, since when"),
    Route(path="/drift", method="get", need=access.READ, tag="findings", responses={200: OwnedPage},
          summary="Reported findings, newest first, filtered",
          params=(Param(name="status", description="open (default: not resolved), resolved, all, or a status"),
                  Param(name="rule", description="a rule id: D04"),
                  Param(name="customer_key", description="one customer's findings"),
                  Param(name="severity", description="low, medium, high or critical"),
                  Param(name="owner", description="the team owning the rule's exceptions: finance, support, "
                        "sales_ops, integration"),
                  *_LIMIT_OFFSET)),
    Route(path="/drift/{fingerprint}", method="get", need=access.READ, tag="findings", params=(_FINGERPRINT,),
          responses={200: OwnedFinding, 404: ApiError}, summary="One finding"),
    Route(path="/drift/{fingerprint}/accept", method="post", need=access.ADMIN, tag="actions",
          params=(_FINGERPRINT,), body=AcceptBody, responses=_ACTION,
          summary="An operator accepts a finding, with a note: resolved as `accepted`, under their name"),
    Route(path="/drift/{fingerprint}/snooze", method="post", need=access.ADMIN, tag="actions",
          params=(_FINGERPRINT,), body=SnoozeBody, responses=_ACTION,
          summary="An operator snoozes a finding for `hours` or `until` a time: silent until then"),
    Route(path="/drift/{fingerprint}/retry", method="post", need=access.ADMIN, tag="actions",
          params=(_FINGERPRINT,), body=AcceptBody, responses=_ACTION,
          summary="An operator retries a finding's correction now: its next generation is commanded"),
    Route(path="/drift/{fingerprint}/approve", method="post", need=access.ADMIN, tag="actions",
          params=(_FINGERPRINT,), body=AcceptBody, responses={**_ACTION, 409: ApiError},
          summary="An operator approves the correction waiting for approval (`mode: approve`): it is sent"),
    Route(path="/drift/{fingerprint}/reject", method="post", need=access.ADMIN, tag="actions",
          params=(_FINGERPRINT,), body=AcceptBody, responses={**_ACTION, 409: ApiError},
          summary="An operator rejects the correction waiting for approval: not sent, the finding escalated"),
    Route(path="/dead-letters/replay", method="post", need=access.ADMIN, tag="actions",
          body=ReplayRequest, responses={200: ReplayAnswer, 400: ApiError, 503: ApiError},
          summary="An operator replays one or a filtered set of dead letters (commands or ingest)"),
    Route(path="/rules", method="get", need=access.READ, tag="findings", responses={200: list[ListedRule]},
          summary="Every rule with its effective configuration"),
    Route(path="/search", method="get", need=access.READ, tag="customers",
          params=(Param(name="q", description="an id of any system, an email, or the beginning of a name"),
                  Param(name="limit", type=int, description="customers to answer (default 20, at most 100)")),
          responses={200: SearchResults, 400: ApiError, 503: ApiError},
          summary="Customers by any id, email or name prefix"),
    Route(path="/customers/{key}", method="get", need=access.READ, tag="customers", params=(_KEY,), owned=True,
          responses={200: dict[str, Any], 404: ApiError},
          summary="One customer's state as stored (for engineers)"),
    Route(path="/customers/{key}/view", method="get", need=access.READ, tag="customers", params=(_KEY,),
          owned=True, responses={200: CustomerView, 404: ApiError},
          summary="The customer 360: the four systems side by side, disagreements marked"),
    Route(path="/customers/{key}/timeline", method="get", need=access.READ, tag="customers",
          params=(_KEY, Param(name="limit", type=int, description="checkpoints to answer (default 50)")),
          responses={200: Timeline, 503: ApiError}, summary="The customer's checkpoints, newest first"),
    Route(path="/customers/{key}/entitlement", method="get", need=access.READ, tag="process",
          params=_LOOKUP_PARAMS, owned=True, alias=False, responses={200: EntitlementAnswer, **_LOOKUP},
          summary="What support should grant the customer, from billing, beside what Zendesk holds"),
    Route(path="/customers/{key}/invoices", method="get", need=access.READ, tag="process",
          params=_LOOKUP_PARAMS, owned=True, alias=False, responses={200: InvoicesAnswer, **_LOOKUP},
          summary="Each invoice's status in billing and in the ERP, side by side"),
    Route(path="/customers/{key}/subscriptions", method="get", need=access.READ, tag="process",
          params=_LOOKUP_PARAMS, owned=True, alias=False, responses={200: SubscriptionsAnswer, **_LOOKUP},
          summary="Each subscription with the won deal it comes from, and won deals not provisioned"),
    Route(path="/reconcile", method="get", need=access.READ, tag="operations", alias=False,
          responses={200: ReconcileStatus, 503: ApiError},
          summary="Each platform's reconciliation: schedule, last pass (records, parts, error), overdue, held"),
    Route(path="/sagas", method="get", need=access.READ, tag="sagas", alias=False,
          params=(Param(name="state", type=SagaState, description="only the sagas in this state"),
                  Param(name="customer", description="only this customer's sagas: its key"),
                  Param(name="limit", type=int, description=f"sagas to answer (default {SAGA_LIMIT}, at most "
                        f"{SAGA_LIMIT_MAX})")),
          responses={200: SagaList, 400: ApiError, 503: ApiError},
          summary="Quote-to-cash sagas, most recently changed first, and how many are in each state"),
    Route(path="/sagas/{opportunity_id}", method="get", need=access.READ, tag="sagas", alias=False,
          params=(_OPPORTUNITY,), responses={200: SagaView, 404: ApiError, 503: ApiError},
          summary="One saga: its state and step, why it stopped and what to fix, the steps done and their records"),
    Route(path="/sagas/{opportunity_id}/resume", method="post", need=access.ADMIN, tag="actions", alias=False,
          params=(_OPPORTUNITY,), body=ResumeBody,
          responses={202: SagaResumed, 400: ApiError, 404: ApiError, 409: ApiError, 503: ApiError},
          summary="An operator resumes a paused, failed or compensated saga from the step that stopped it"),
    Route(path="/commands/status", method="get", need=access.READ, tag="operations",
          responses={200: CommandsStatus}, summary="This worker's command execution: breakers, halts, limits"),
    Route(path="/commands/{command_id}", method="get", need=access.READ, tag="operations",
          params=(_path("command_id", "the command's id"),),
          responses={200: LedgerEntry, 404: ApiError, 503: ApiError}, summary="A command's ledger entry"),
)

_BY_PATH: Final = {route.path: route for route in ROUTES}


def versioned(path: str) -> str:
    return PREFIX + path


def alias(path: str) -> str:
    return ALIAS_PREFIX + path


def page(app: faust.App, path: str) -> Callable[[type[View]], type[View]]:
    """Register a view for a path the table declares, under `/api/v1<path>` and its deprecated alias."""
    if path not in _BY_PATH:
        raise KeyError(f"{path} is not in app/contract.py ROUTES: declare it (method, credential, answers) first")

    def register(view: type[View]) -> type[View]:
        if _BY_PATH[path].alias:
            app.page(alias(path), name=f"{view.__name__}.alias")(view)
        return app.page(versioned(path), name=view.__name__)(view)

    return register


@web.middleware
async def mark_deprecated(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An answer to an unversioned `/api` path says it is deprecated, and where to go instead."""
    response = await handler(request)
    path = request.path
    if (path.startswith(ALIAS_PREFIX + "/") and not path.startswith(PREFIX + "/") and path != OPENAPI_PATH
            and not response.prepared):
        response.headers["Deprecation"] = "true"
        response.headers["Link"] = f'<{PREFIX}{path[len(ALIAS_PREFIX):]}>; rel="successor-version"'
    return response


# ---------------------------------------------------------------- the OpenAPI document

_REFUSALS: Final[Mapping[str, Mapping[int, str]]] = {
    access.READ: {401: "no token, or a token refused", 503: "no read token configured (CONCORD_READ_TOKEN)"},
    access.ADMIN: {401: "no token, or a token refused", 403: "a read token cannot act: use the admin token",
                   503: "no admin token configured (CONCORD_ADMIN_TOKEN)"},
}
_MEANING: Final[Mapping[int, str]] = {
    200: "OK", 202: "taken", 400: "the request is not valid (`detail` says why)", 404: "not found",
    409: "not possible in the state it is in now (`detail` says why)",
    502: "the worker owning the customer did not answer",
    503: "unavailable now (Redis unreachable, or no worker owns the customer during a rebalance)",
}
_SECURITY: Final[Mapping[str, list[dict[str, list[str]]]]] = {
    access.READ: [{"bearer": []}, {"session": []}],
    access.ADMIN: [{"bearer": []}],
}


def _operation(route: Route, schema: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    statuses: dict[int, Any] = dict(route.responses)
    descriptions = dict(_MEANING)
    for status, meaning in _REFUSALS.get(route.need, {}).items():
        statuses.setdefault(status, ApiError)
        descriptions[status] = meaning if status not in route.responses else f"{descriptions[status]}; {meaning}"
    if route.owned:
        statuses.setdefault(502, ApiError)
        statuses.setdefault(503, ApiError)
    if any(p.where == "path" for p in route.params):
        statuses.setdefault(404, ApiError)  # also the access policy's answer to a path no route matches
    operation: dict[str, Any] = {
        "operationId": route.operation_id, "summary": route.summary, "tags": [route.tag] if route.tag else [],
        "security": _SECURITY.get(route.need, []),
        "responses": {str(status): {"description": descriptions.get(status, ""),
                                    "content": {"application/json": {"schema": schema(answer)}}}
                      for status, answer in sorted(statuses.items())},
    }
    if route.params:
        operation["parameters"] = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                                    "description": p.description, "schema": schema(p.type)} for p in route.params]
    if route.body is not None:
        operation["requestBody"] = {"required": False,
                                    "content": {"application/json": {"schema": schema(route.body)}}}
    return operation


def document(routes: tuple[Route, ...] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`, under their versioned paths."""
    types: list[Any] = [ApiError]
    for route in routes:
        types.extend(route.responses.values())
        types.extend(p.type for p in route.params)
        if route.body is not None:
            types.append(route.body)
    unique = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(unique, ref_template=SCHEMA_REF)
    by_type = dict(zip(unique, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(versioned(route.path), {})[route.method] = _operation(route, by_type.__getitem__)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": TITLE, "version": API_VERSION,
                 "description": "Concord's JSON API (docs/console.md). The unversioned `/api/...` paths are "
                 "deprecated aliases of these `/api/v1/...` paths."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "CONCORD_READ_TOKEN to read, CONCORD_ADMIN_TOKEN to read and act"},
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE,
                            "description": "the console's signed session (sign in at /login); reads only"},
            },
        },
    }


def encoded_document() -> bytes:
    return msgspec.json.encode(document())
