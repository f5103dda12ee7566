"""JSON API of every worker: findings (`/api/v1/drift`) and an operator's actions on them (accept, snooze,
retry, approve, reject: docs/console.md "Actions"), search, one customer (`/api/v1/customers/{key}`, its 360
view and its timeline), rules, and the process APIs (a customer's entitlement, invoices, subscriptions).

Every route is declared in app/contract.py (which makes `/api/openapi.json` from the same Structs the
handlers encode) and served under `/api/v1`, most also at their deprecated unversioned `/api` path.
`/api/v1/drift`, `/api/v1/search` and `/api/v1/customers/{key}/timeline` read Redis (the drift index, the
search index, the timelines), so any worker answers for all customers. `/api/v1/customers/{key}`, its `/view`
and the process APIs are answered by the worker that owns the key: another worker forwards the request there
(app/owner.py). Reads need a viewer, actions an operator (app/access.py: a bearer token, or a session with its
CSRF token). An action is sent to the state agent on the canonical topic, keyed by customer, under the name of
who acts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import msgspec
from aiohttp import web
from faust.web import Request, Response, View

from concord.agents.reconcile import every as reconcile_intervals
from concord.agents.watermarks import decode_holds
from concord.app import access, lookups
from concord.app.contract import OPENAPI_PATH, encoded_document, page
from concord.app.customer_view import customer_view
from concord.app.forms import B, action_body, is_form
from concord.app.owner import Owners
from concord.app.schemas import (
    AcceptBody,
    ActionTaken,
    ApiError,
    ListedRule,
    OwnedFinding,
    OwnedPage,
    ReconcileStatus,
    SnoozeBody,
    Timeline,
)
from concord.connectors.drift_index import IndexedFinding
from concord.connectors.executor import REDIS_ERRORS
from concord.connectors.reconcile import RedisStore, reconcile_holds_key, schedules
from concord.connectors.search_index import QueryError, query_text
from concord.core import messages, metrics
from concord.core.messages import now_ms
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
E_BY = "by={by!r}: name the system whose id the path holds, one of {systems} (or leave it out for a customer key)"
E_UNKNOWN = (
    "no customer has the {by} id {id!r} in the search index (a record seen in the last second may not be "
    "indexed yet: try again; /api/v1/search?q= finds a customer by any id, email or name)"
)
E_AMBIGUOUS = "the {by} id {id!r} names several customers ({keys}): ask by one of their keys"


def back_to(referer: str, host: str) -> str:
    """Where a console form's action sends the browser back to: the page it was posted from (the board with its
    filters, a customer's view, the sagas page), when that is a console page of this same worker; else the board."""
    parts = urlsplit(referer)
    if parts.netloc != host or not (parts.path == "/" or parts.path.startswith(("/customers/", "/search", "/sagas"))):
        return "/"
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


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


def owned(finding: IndexedFinding, config: DriftConfig) -> OwnedFinding:
    """`finding` with its owner, from the configuration now (not stored: a changed rules file applies at once)."""
    return OwnedFinding(**msgspec.structs.asdict(finding), owner=config.owner(finding.rule))




#: What a 202 to an action says was requested (the state agent applies it).
_STATUS_OF = {"accept": "accepted", "snooze": "snoozed", "retry": "retry_requested", "approve": "approved",
              "reject": "rejected"}
def rules_listing(rules: Sequence[Rule], config: DriftConfig) -> list[ListedRule]:
    """Every rule with its effective configuration (what `concord rules` prints)."""
    return [
        ListedRule(id=r.id, name=r.name, title=r.title, reads=sorted(r.reads),
                   **msgspec.structs.asdict(config.rule(r.id, r.defaults)))
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
        return json(view, ApiError("redis_unavailable", E_REDIS.format(error=f"{type(exc).__name__}: {exc}",
                                                                         what=what)), 503)

    def no_finding(view: View, fingerprint: str) -> Response:
        return json(view, ApiError("not_found", f"no finding {fingerprint}: see /api/v1/drift for the findings"),
                    404)

    document = encoded_document()
    started_at = now_ms()  # a platform never reconciled is overdue twice its interval after this

    @app.page(OPENAPI_PATH)
    class OpenApiView(View):
        """The API's OpenAPI 3.1 document (app/contract.py)."""

        async def get(self, request: Request) -> Response:
            return self.bytes(document, content_type="application/json")

    @page(app, "/search")
    class SearchView(View):
        """Customers by any id, email or name prefix: ?q=&limit= (exact ids first, then emails, then names)."""

        async def get(self, request: Request) -> Response:
            try:
                query = query_text(request.query.get("q"))
            except QueryError as exc:
                return json(self, ApiError("bad_request", str(exc)), 400)
            limit = _int(request.query.get("limit"), SEARCH_LIMIT, 1, MAX_SEARCH_LIMIT)
            try:
                return json(self, await search.search(query, limit, index.open_counts))
            except REDIS_ERRORS as exc:
                return redis_down(self, exc, "the search index")

    @page(app, "/customers/{key}/timeline")
    class TimelineView(View):
        """The customer's checkpoints (events in, findings, commands, results), newest first: ?limit="""

        async def get(self, request: Request, key: str) -> Response:
            limit = _int(request.query.get("limit"), 50, 1, timelines.entries)
            try:
                checkpoints = await timelines.read(key, limit)
            except REDIS_ERRORS as exc:
                return redis_down(self, exc, "the timeline")
            return json(self, Timeline(key=key, limit=limit, checkpoints=checkpoints))

    @page(app, "/drift")
    class DriftList(View):
        """Findings, newest first: ?status=open|resolved|all|<status>&rule=&customer_key=&severity=&owner=
        &offset=&limit= (owner: a team, as the rules file names it)"""

        async def get(self, request: Request) -> Response:
            q = request.query
            status = q.get("status", "open")
            owner = q.get("owner")
            found = await index.query(
                status=status, rule=q.get("rule") or None, customer_key=q.get("customer_key") or None,
                severity=q.get("severity") or None, offset=_int(q.get("offset"), 0, 0, 10**9),
                limit=_int(q.get("limit"), 50, 1, MAX_LIMIT),
                rules=[r.id for r in rules if config.owner(r.id) == owner] if owner else None,
            )
            return json(self, OwnedPage(total=found.total, offset=found.offset, limit=found.limit,
                                        items=[owned(f, config) for f in found.items]))

    @page(app, "/drift/{fingerprint}")
    class DriftItemView(View):
        async def get(self, request: Request, fingerprint: str) -> Response:
            found = await index.get(fingerprint)
            if found is None:
                return no_finding(self, fingerprint)
            return json(self, owned(found, config))

    def done(view: View, request: web.Request, kind: str, fingerprint: str, by: str) -> Response:
        """An action sent to the state agent: 202 to a script, a redirect back to the board for its form."""
        metrics.actions.labels(kind).inc()
        if is_form(request):
            return cast(Response, web.Response(status=303, headers={
                "Location": back_to(request.headers.get("Referer", ""), request.host), "Cache-Control": "no-store"}))
        return json(view, ActionTaken(status=_STATUS_OF[kind], fingerprint=fingerprint, by=by), 202)

    def bad(view: View, exc: Exception) -> Response:
        return json(view, ApiError("bad_request", f"body: {exc}"), 400)

    async def finding_of(view: View, fingerprint: str) -> IndexedFinding | Response:
        found = await index.get(fingerprint)
        return found if found is not None else no_finding(view, fingerprint)

    def operator(request: web.Request) -> str:
        who = access.identity(request)
        assert who is not None and who.can_act  # the access middleware let only an operator through
        return who.name

    async def act(view: View, faust_request: Request, fingerprint: str, kind: str, body_type: type[B],
                  message_of: Callable[[IndexedFinding, str, B], Any]) -> Response:
        """An operator's action on one finding: its body, the finding, the message to the state agent (or the
        refusal `message_of` answers), sent on the canonical topic keyed by the customer, then the answer."""
        request = cast(web.Request, faust_request)  # Faust's aiohttp driver hands handlers aiohttp's request
        by = operator(request)
        try:
            body = await action_body(request, body_type)
            found = await finding_of(view, fingerprint)
            if not isinstance(found, IndexedFinding):
                return found
            message = message_of(found, by, body)
        except (msgspec.DecodeError, ValueError) as exc:  # ValidationError is a DecodeError
            return bad(view, exc)
        if not isinstance(message, msgspec.Struct):  # a refusal (Faust's Response is not the driver's class)
            return cast(Response, message)
        await canonical.send(key=found.customer_key.encode(), value=messages.encode(message))
        return done(view, request, kind, fingerprint, by)

    @page(app, "/drift/{fingerprint}/accept")
    class AcceptView(View):
        """An operator accepts a finding, with a note: resolved as `accepted`, under their name (app/access.py)."""

        async def post(self, request: Request, fingerprint: str) -> Response:
            return await act(self, request, fingerprint, "accept", AcceptBody, lambda found, by, body:
                             messages.AcceptFinding(customer_key=found.customer_key, fingerprint=fingerprint, by=by,
                                                    note=body.note))

    @page(app, "/drift/{fingerprint}/snooze")
    class SnoozeView(View):
        """An operator snoozes a finding for `hours` or `until` a time: silent until then (drift/lifecycle.py)."""

        async def post(self, request: Request, fingerprint: str) -> Response:
            return await act(self, request, fingerprint, "snooze", SnoozeBody, lambda found, by, body:
                             messages.SnoozeFinding(customer_key=found.customer_key, fingerprint=fingerprint, by=by,
                                                    until=body.until_ms(messages.now_ms()), note=body.note))

    @page(app, "/drift/{fingerprint}/retry")
    class RetryView(View):
        """An operator retries a finding's correction now: its next generation is commanded (drift/lifecycle.py)."""

        async def post(self, request: Request, fingerprint: str) -> Response:
            return await act(self, request, fingerprint, "retry", AcceptBody, lambda found, by, body:  # a note
                             messages.RetryFinding(customer_key=found.customer_key, fingerprint=fingerprint, by=by,
                                                   note=body.note))

    def decision(view: View, fingerprint: str, approve: bool) -> Callable[[IndexedFinding, str, AcceptBody], Any]:
        def message_of(found: IndexedFinding, by: str, body: AcceptBody) -> Any:
            if not found.awaiting:
                return json(view, ApiError("not_awaiting", f"finding {fingerprint} has no correction waiting for "
                                           "approval (its rule is not in `mode: approve`, or it was decided "
                                           "already)"), 409)
            return messages.DecideCorrection(customer_key=found.customer_key, fingerprint=fingerprint, by=by,
                                             approve=approve, note=body.note)
        return message_of

    @page(app, "/drift/{fingerprint}/approve")
    class ApproveView(View):
        """An operator approves the correction waiting for approval: it is sent (drift/lifecycle.py `approve`)."""

        async def post(self, request: Request, fingerprint: str) -> Response:
            return await act(self, request, fingerprint, "approve", AcceptBody, decision(self, fingerprint, True))

    @page(app, "/drift/{fingerprint}/reject")
    class RejectView(View):
        """An operator rejects the correction waiting for approval: not sent, the finding is escalated."""

        async def post(self, request: Request, fingerprint: str) -> Response:
            return await act(self, request, fingerprint, "reject", AcceptBody, decision(self, fingerprint, False))

    @page(app, "/reconcile")
    class ReconcileView(View):
        """Each platform's reconciliation (agents/reconcile.py, `concord reconcile`), from Redis."""

        async def get(self, request: Request) -> Response:
            prefix = concord.settings.topic_prefix
            store = RedisStore(concord.redis, prefix)
            intervals = reconcile_intervals(concord.settings)
            now = now_ms()
            try:
                platforms = await schedules(store, intervals, now, started_at)
                holds = decode_holds(await concord.redis.hgetall(reconcile_holds_key(prefix)))  # type: ignore[misc]
            except REDIS_ERRORS as exc:
                return redis_down(self, exc, "the reconciliations")
            return json(self, ReconcileStatus(platforms=platforms,
                                              held=sorted(p for p, until in holds.items() if until > now)))

    @page(app, "/rules")
    class RulesView(View):
        async def get(self, request: Request) -> Response:
            return json(self, rules_listing(rules, config))

    if "customers" not in concord.tables:
        return
    customers = concord.tables["customers"]
    owners = Owners(app, customers, concord.settings.topic_partitions)

    async def owned_state(view: View, request: Request, key: str) -> Response | st.CustomerState:
        """The customer's state when this worker owns it; otherwise the owner's answer (or why there is none)."""
        forwarded = await owners.route(view, request, key)
        if forwarded is not None:
            return forwarded
        raw = customers.get(key)
        return st.load(raw) if raw is not None else json(view, ApiError("not_found", f"no customer {key}"), 404)

    @page(app, "/customers/{key}")
    class CustomerStateView(View):
        """One customer's state across the four systems, as stored, from the worker that owns it."""

        async def get(self, request: Request, key: str) -> Response:
            found = await owned_state(self, request, key)
            return json(self, readable(found)) if isinstance(found, st.CustomerState) else found

    @page(app, "/customers/{key}/view")
    class CustomerView(View):
        """The customer 360 (app/customer_view.py), from the worker that owns it."""

        async def get(self, request: Request, key: str) -> Response:
            found = await owned_state(self, request, key)
            if not isinstance(found, st.CustomerState):
                return found
            try:
                checkpoints, detail = await timelines.read(key, VIEW_TIMELINE), ""
            except REDIS_ERRORS as exc:  # the records and findings are here: show them without the timeline
                checkpoints, detail = [], E_REDIS.format(error=f"{type(exc).__name__}: {exc}", what="the timeline")
            return json(self, customer_view(found, checkpoints, f"/api/v1/customers/{key}/timeline", detail))

    async def resolved(view: View, request: Request, key: str) -> Response | str:
        """The customer key: `key` itself, or the customer an id of the system `?by=` names (search index)."""
        by = request.query.get("by")
        if by is None:
            return key
        if by not in lookups.SYSTEMS:
            return json(view, ApiError("bad_request", E_BY.format(by=by, systems=", ".join(lookups.SYSTEMS))), 400)
        try:
            results = await search.search(query_text(key), MAX_SEARCH_LIMIT)
        except QueryError as exc:
            return json(view, ApiError("bad_request", str(exc)), 400)
        except REDIS_ERRORS as exc:
            return redis_down(view, exc, "the search index")
        keys = lookups.keys_for(results, by)
        if not keys:
            return json(view, ApiError("not_found", E_UNKNOWN.format(by=by, id=key)), 404)
        if len(keys) > 1:
            return json(view, ApiError("ambiguous", E_AMBIGUOUS.format(by=by, id=key, keys=", ".join(keys))), 409)
        return keys[0]

    async def looked_up(view: View, request: Request, key: str) -> Response | st.CustomerState:
        found = await resolved(view, request, key)
        return await owned_state(view, request, found) if isinstance(found, str) else found

    @page(app, "/customers/{key}/entitlement")
    class EntitlementView(View):
        """What support should grant the customer (app/lookups.py), from the worker that owns it."""

        async def get(self, request: Request, key: str) -> Response:
            found = await looked_up(self, request, key)
            return json(self, lookups.entitlement(found, config)) if isinstance(found, st.CustomerState) else found

    @page(app, "/customers/{key}/invoices")
    class InvoicesView(View):
        """Each invoice in billing and the ERP side by side (app/lookups.py), from the worker that owns it."""

        async def get(self, request: Request, key: str) -> Response:
            found = await looked_up(self, request, key)
            return json(self, lookups.invoices(found)) if isinstance(found, st.CustomerState) else found

    @page(app, "/customers/{key}/subscriptions")
    class SubscriptionsView(View):
        """Subscriptions with the deals they come from (app/lookups.py), from the worker that owns it."""

        async def get(self, request: Request, key: str) -> Response:
            found = await looked_up(self, request, key)
            if not isinstance(found, st.CustomerState):
                return found
            return json(self, lookups.subscriptions(found, config))
