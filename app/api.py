"""JSON API of every worker: findings (`/api/drift`), search, one customer (`/api/customers/{key}`, its
360 view and its timeline), rules.

`/api/drift`, `/api/search` and `/api/customers/{key}/timeline` read Redis (the drift index, the search
index, the timelines), so any worker answers for all customers. `/api/customers/{key}` and its `/view`
are answered by the worker that owns the key: another worker forwards the request there (app/owner.py).
Reads need the read token, admin actions `Authorization: Bearer $CONCORD_ADMIN_TOKEN` (app/access.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from faust.web import Request, Response, View

from concord.app.customer_view import customer_view
from concord.app.owner import Owners
from concord.connectors.drift_index import IndexedFinding
from concord.connectors.executor import REDIS_ERRORS
from concord.connectors.search_index import QueryError, query_text
from concord.connectors.timeline import Checkpoint
from concord.core import messages, metrics
from concord.drift.config import DriftConfig
from concord.drift.rule import Rule
from concord.tables import state as st

if TYPE_CHECKING:
    from concord.agents.context import Concord

_encode = msgspec.json.Encoder().encode
MAX_LIMIT = 500
#: Customers one search returns at most (`?limit=`), and by default.
MAX_SEARCH_LIMIT = 100
SEARCH_LIMIT = 20
#: Checkpoints of the timeline a customer view shows (the rest: `/api/customers/{key}/timeline`).
VIEW_TIMELINE = 20

E_REDIS = "Redis is unreachable ({error}): {what} cannot be read now; try again when it is back"


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    """`/api/customers/{key}/timeline`: the customer's newest checkpoints, newest first."""

    key: str
    limit: int
    checkpoints: list[Checkpoint]


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value))) if value is not None else default
    except ValueError:
        return default


# Derived record attributes shown in the API (the stored form keeps them implicit to stay small).
_DERIVED = ("stamp", "since", "billing_invoice_id")


def readable(value: Any) -> Any:
    """A state as JSON-ready maps: records are stored positionally (array_like) to stay small,
    which is no way to show them to a person."""
    if isinstance(value, msgspec.Struct):
        out = {name: readable(getattr(value, name)) for name in value.__struct_fields__}
        for name in _DERIVED:
            if name not in out and hasattr(value, name):
                out[name] = readable(getattr(value, name))
        for name in ("stamps", "stamp_masks", "since_lag", "billing_ref", "amount_digits"):
            out.pop(name, None)
        if isinstance(value, st.Opportunity):
            out["amount"] = value.amount_in(value.currency)  # minor units of its currency, as every amount
        return out
    if isinstance(value, dict):
        return {k: readable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [readable(v) for v in value]
    return value


class OwnedFinding(IndexedFinding, frozen=True, kw_only=True):
    """A finding as `/api/drift` shows it: the index's record and the team that owns its rule's exceptions."""

    owner: str


class OwnedPage(msgspec.Struct, frozen=True):
    total: int
    offset: int
    limit: int
    items: list[OwnedFinding]


def with_owner(finding: IndexedFinding, config: DriftConfig) -> OwnedFinding:
    """`finding` with its owner, from the configuration now (not stored: a changed rules file applies at once)."""
    return OwnedFinding(**msgspec.structs.asdict(finding), owner=config.owner(finding.rule))


class AcceptBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The optional JSON body of an accept: who accepts it and why."""

    by: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "admin"
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""


_accept_decoder = msgspec.json.Decoder(AcceptBody)


def _accept_body(raw: bytes) -> AcceptBody:
    """An empty body accepts as `admin`; anything else must be a JSON object of `AcceptBody`."""
    return _accept_decoder.decode(raw) if raw.strip() else AcceptBody()


def rules_listing(rules: Sequence[Rule], config: DriftConfig) -> list[dict[str, Any]]:
    """Every rule with its effective configuration (what `concord rules` prints)."""
    return [
        {"id": r.id, "name": r.name, "title": r.title, "reads": sorted(r.reads),
         **msgspec.structs.asdict(config.rule(r.id, r.defaults))}
        for r in rules
    ]


def register(concord: Concord, rules: Sequence[Rule], config: DriftConfig) -> None:
    app = concord.app
    index = concord.drift_index
    search = concord.search_index
    timelines = concord.timeline
    canonical = concord.topics[concord.names.canonical]

    def json(view: View, value: Any, status: int = 200) -> Response:
        return view.bytes(_encode(value), content_type="application/json", status=status)

    def redis_down(view: View, exc: Exception, what: str) -> Response:
        return json(view, {"error": "redis_unavailable",
                           "detail": E_REDIS.format(error=f"{type(exc).__name__}: {exc}", what=what)}, 503)

    @app.page("/api/search")
    class SearchView(View):
        """Customers by any id, email or name prefix: ?q=&limit= (exact ids first, then emails, then names)."""

        async def get(self, request: Request) -> Response:
            try:
                query = query_text(request.query.get("q"))
            except QueryError as exc:
                return json(self, {"error": "bad_request", "detail": str(exc)}, 400)
            limit = _int(request.query.get("limit"), SEARCH_LIMIT, 1, MAX_SEARCH_LIMIT)
            try:
                return json(self, await search.search(query, limit, index.open_counts))
            except REDIS_ERRORS as exc:
                return redis_down(self, exc, "the search index")

    @app.page("/api/customers/{key}/timeline")
    class TimelineView(View):
        """The customer's checkpoints (events in, findings, commands, results), newest first: ?limit="""

        async def get(self, request: Request, key: str) -> Response:
            limit = _int(request.query.get("limit"), 50, 1, timelines.entries)
            try:
                checkpoints = await timelines.read(key, limit)
            except REDIS_ERRORS as exc:
                return redis_down(self, exc, "the timeline")
            return json(self, Timeline(key=key, limit=limit, checkpoints=checkpoints))

    @app.page("/api/drift")
    class DriftList(View):
        """Findings, newest first: ?status=open|resolved|all|<status>&rule=&customer_key=&severity=&owner=
        &offset=&limit= (owner: a team, as the rules file names it)"""

        async def get(self, request: Request) -> Response:
            q = request.query
            status = q.get("status", "open")
            owner = q.get("owner")
            page = await index.query(
                status=status, rule=q.get("rule") or None, customer_key=q.get("customer_key") or None,
                severity=q.get("severity") or None, offset=_int(q.get("offset"), 0, 0, 10**9),
                limit=_int(q.get("limit"), 50, 1, MAX_LIMIT),
                rules=[r.id for r in rules if config.owner(r.id) == owner] if owner else None,
            )
            return json(self, OwnedPage(total=page.total, offset=page.offset, limit=page.limit,
                                        items=[with_owner(f, config) for f in page.items]))

    @app.page("/api/drift/{fingerprint}")
    class DriftItemView(View):
        async def get(self, request: Request, fingerprint: str) -> Response:
            found = await index.get(fingerprint)
            if found is None:
                return json(self, {"error": f"no finding {fingerprint}"}, 404)
            return json(self, with_owner(found, config))

    @app.page("/api/drift/{fingerprint}/accept")
    class AcceptView(View):
        """A person accepts a finding: resolved as `accepted` (the admin token: see app/access.py)."""

        async def post(self, request: Request, fingerprint: str) -> Response:
            try:
                body = _accept_body(await request.read())
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                return json(self, {"error": "bad_request", "detail": f"body: {exc}"}, 400)
            found = await index.get(fingerprint)
            if found is None:
                return json(self, {"error": f"no finding {fingerprint}"}, 404)
            message = messages.AcceptFinding(customer_key=found.customer_key, fingerprint=fingerprint,
                                              by=body.by, note=body.note)
            await canonical.send(key=found.customer_key.encode(), value=messages.encode(message))
            metrics.actions.labels("accept").inc()
            return json(self, {"status": "accepted", "fingerprint": fingerprint}, 202)

    @app.page("/api/rules")
    class RulesView(View):
        async def get(self, request: Request) -> Response:
            return json(self, rules_listing(rules, config))

    if "customers" not in concord.tables:
        return
    customers = concord.tables["customers"]
    owners = Owners(app, customers, concord.settings.topic_partitions)

    async def owned(view: View, request: Request, key: str) -> Response | st.CustomerState:
        """The customer's state when this worker owns it; otherwise the owner's answer (or why there is none)."""
        forwarded = await owners.route(view, request, key)
        if forwarded is not None:
            return forwarded
        raw = customers.get(key)
        return st.load(raw) if raw is not None else json(view, {"error": f"no customer {key}"}, 404)

    @app.page("/api/customers/{key}")
    class CustomerStateView(View):
        """One customer's state across the four systems, as stored, from the worker that owns it."""

        async def get(self, request: Request, key: str) -> Response:
            found = await owned(self, request, key)
            return json(self, readable(found)) if isinstance(found, st.CustomerState) else found

    @app.page("/api/customers/{key}/view")
    class CustomerView(View):
        """The customer 360 (app/customer_view.py), from the worker that owns it."""

        async def get(self, request: Request, key: str) -> Response:
            found = await owned(self, request, key)
            if not isinstance(found, st.CustomerState):
                return found
            try:
                checkpoints, detail = await timelines.read(key, VIEW_TIMELINE), ""
            except REDIS_ERRORS as exc:  # the records and findings are here: show them without the timeline
                checkpoints, detail = [], E_REDIS.format(error=f"{type(exc).__name__}: {exc}", what="the timeline")
            return json(self, customer_view(found, checkpoints, f"/api/customers/{key}/timeline", detail))
