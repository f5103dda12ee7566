"""The console's routes on every worker's internal listener (each listed in app/access.py `POLICY`):

* `GET /`: the drift board (HTML; filters and page as query parameters, app/console/board.py);
* `GET /events`: its live updates, server-sent events (app/console/live.py), the health strip among them;
* `GET /board/findings/{fingerprint}`: one finding's rows as the board renders them, or 204 when it does
  not match the filters in the query (the page's script asks after each change);
* `GET /board/summary`: the counts by rule and severity and the recent resolutions (the same);
* `GET /static/{name}`: the page's stylesheet and script;
* `GET /search?q=`: customers by any id, email or name prefix (the search index, as `/api/search`); one
  exact id of one customer goes straight to its view (303);
* `GET /customers/{key}`: the customer 360 (app/customer_view.py), rendered by the worker that owns the
  customer: another worker forwards the request there with the caller's credential (app/owner.py); with its
  quote-to-cash sagas (the saga index), each resumable one with a resume button for an operator;
* `GET /sagas`: the quote-to-cash sagas of every customer (the saga index in Redis, app/console/sagas.py), the
  ones waiting for a person first, with why and what to fix, and a resume button for an operator;
* `GET|POST /login`, `POST /logout`: a browser's session (app/sessions.py).

Pages are sent with a Content-Security-Policy that allows only this worker's own scripts, styles and
connections (no inline script: a value that slipped past escaping still could not run) and `no-store`,
since they hold customer data.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, cast
from urllib.parse import quote

import msgspec
from aiohttp import web
from faust.web import Request, Response, View
from msgspec import Struct

from concord.agents.faust_internals.web import free_index, on_server_shutdown
from concord.agents.reconcile import every as reconcile_intervals
from concord.agents.watermarks import HealthWatch
from concord.app import access
from concord.app.console import board as bd
from concord.app.console import customer as cv
from concord.app.console import live
from concord.app.console import sagas as sp
from concord.app.console.health import SAMPLE_SECONDS, HealthStrip, Rates, gauge_value, health_strip, totals_by
from concord.app.console.render import STATIC, render
from concord.app.customer_view import customer_view
from concord.app.owner import Owners
from concord.app.sagas import waiting_first
from concord.connectors.drift_changes import ChangeLog
from concord.connectors.executor import REDIS_ERRORS, Executor
from concord.connectors.reconcile import RedisStore, Schedule, schedules
from concord.connectors.saga_index import select, state_counts
from concord.connectors.search_index import MAX_QUERY, QueryError, query_text
from concord.core import metrics
from concord.core.messages import now_ms
from concord.drift.config import DriftConfig
from concord.drift.rule import Rule
from concord.tables import state as st

if TYPE_CHECKING:
    from concord.agents.context import Concord

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: Customers the search page lists at most; the checkpoints the customer view shows.
SEARCH_LIMIT: Final = 50
VIEW_TIMELINE: Final = 20
E_TIMELINE: Final = ("Redis is unreachable ({error}): the timeline cannot be read now; the records and findings "
                     "are shown.")
E_EMPTY_SEARCH: Final = "Nothing to search for: type an id, an email or the beginning of a name."
E_SEARCH: Final = ("Redis is unreachable ({error}): the search index is there. Concord goes on detecting; search "
                   "is back when Redis answers.")
E_REDIS: Final = ("Redis is unreachable ({error}): the board reads every worker's findings from the drift index "
                  "there. Concord goes on detecting; the board is back when Redis answers.")
E_SAGAS: Final = ("Redis is unreachable ({error}): the sagas are read from the saga index there. The sagas go on; "
                  "this page is back when Redis answers.")
E_CUSTOMER_SAGAS: Final = ("Redis is unreachable ({error}): this customer's sagas cannot be read now; the records and "
                           "findings are shown.")


def html(text: str, status: int = 200) -> Response:
    return cast(Response, web.Response(text=text, status=status, content_type="text/html",
                                       headers=SECURITY_HEADERS))


class Actions(Struct, frozen=True):
    """The action forms of the console's rows (findings, sagas): for an operator, with the CSRF token of their
    session."""

    csrf: str
    by: str


class Reconciles:
    """The platforms' reconciliations for the health strip, as last read from Redis (`/api/v1/reconcile`'s
    schedules): read every `SAMPLE_SECONDS` and for each board page, so the strip a `health` event carries
    costs Redis one read per worker, not one per open board."""

    def __init__(self, store: RedisStore, intervals: Mapping[str, float], since_ms: int) -> None:
        self._store, self._intervals, self._since_ms = store, dict(intervals), since_ms
        self.shown: list[Schedule] | None = None  # None: not read yet

    async def read(self, now: int) -> None:
        """Read them again; with Redis unreachable the last read stays (the strip says Redis is unreachable)."""
        with contextlib.suppress(*REDIS_ERRORS):
            self.shown = await schedules(self._store, self._intervals, now, self._since_ms)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (never `//other.site` or a URL)."""
    if not value or not value.startswith("/") or value.startswith("//") or any(c in value for c in "\\\r\n"):
        return "/"
    return value


def register(concord: Concord, rules: Sequence[Rule], config: DriftConfig, health: HealthWatch,
             executor: Executor | None, gate: access.Access) -> None:
    """Add the console's routes; `executor` is None on a worker without the commands role (no breakers); `gate`
    is the worker's access policy, the one its middleware applies."""
    app = concord.app
    free_index(app)  # `/` is the board, not Faust's placeholder
    index = concord.drift_index
    search = concord.search_index
    saga_index = concord.saga_index
    feed = live.Feed(ChangeLog(concord.redis, concord.settings.topic_prefix))
    sessions = gate.sessions
    rule_ids = [r.id for r in rules]
    titles = {r.id: r.title for r in rules}
    rates = Rates() if "ingest" in concord.roles else None
    # A platform never reconciled is overdue twice its interval after this (as on `/api/v1/reconcile`).
    reconciles = Reconciles(RedisStore(concord.redis, concord.settings.topic_prefix),
                            reconcile_intervals(concord.settings), since_ms=now_ms())

    @app.timer(interval=SAMPLE_SECONDS)
    async def read_reconciles() -> None:
        await reconciles.read(now_ms())

    if rates is not None:
        @app.timer(interval=SAMPLE_SECONDS)
        async def sample_ingest_rates() -> None:
            rates.sample(time.monotonic(), totals_by(metrics.ingest_events, "platform"))

    def strip() -> HealthStrip:
        status = executor.status() if executor is not None else None
        dead = totals_by(metrics.ingest_dead_letters, "platform")
        for platform, count in totals_by(metrics.command_dead_letters, "platform").items():
            dead[platform] = dead.get(platform, 0.0) + count
        return health_strip(platforms=health.platforms, breakers=status.breakers if status else None,
                            rates=rates.per_second() if rates is not None else None, dead_letters=dead,
                            parked_ids=gauge_value(metrics.identity_parked_ids), reconciles=reconciles.shown,
                            held=health.held, read_at=health.read_at, now=now_ms(), detail=health.error)

    def health_html() -> str:
        return render("_health.html", health=strip())

    def actions(request: Request) -> Actions | None:
        """What the rows offer whoever is asking: the action forms, with the session's CSRF token, to an operator."""
        who = access.identity(cast(web.Request, request))
        if who is None or not who.can_act:
            return None
        return Actions(csrf=sessions.csrf_of(cast(web.Request, request)), by=who.name)

    @app.page("/")
    class BoardPage(View):
        """The drift board."""

        async def get(self, request: Request) -> Response:
            filters = bd.parse_filters(request.query, rule_ids)
            try:
                # Read first: a change while the findings are read comes again live (a row update is idempotent).
                after = await feed.changes.last_id()
                page = await index.query(
                    status=filters.status, rule=filters.rule or None, severity=filters.severity or None,
                    system=filters.platform or None, customer_key=filters.customer or None,
                    offset=filters.offset, limit=filters.limit,
                    rules=bd.owner_rules(filters.owner, rules, config) if filters.owner else None)
                counts = await index.counts(rule_ids)
                resolved = await index.recently_resolved(bd.RESOLUTIONS_SHOWN)
            except REDIS_ERRORS as exc:
                return html(render("unavailable.html", detail=E_REDIS.format(error=f"{type(exc).__name__}: {exc}"),
                                   retry=cast(web.Request, request).path_qs, page="board"), 503)
            await reconciles.read(now_ms())
            board = bd.build_board(filters=filters, page=page.items, total=page.total, counts=counts,
                                   resolved=resolved, rules=rules, config=config, events_after=after, now=now_ms())
            return html(render("board.html", board=board, health=strip(), severities=bd.SEVERITY_ORDER,
                               page="board", act=actions(request)))

    @app.page("/board/findings/{fingerprint}")
    class FindingFragment(View):
        """One finding's rows, when it matches the filters of the query; 204 when not (or gone)."""

        async def get(self, request: Request, fingerprint: str) -> Response:
            filters = bd.parse_filters(request.query, rule_ids)
            try:
                found = await index.get(fingerprint)
            except REDIS_ERRORS as exc:
                return cast(Response, web.json_response(
                    {"error": "redis_unreachable", "detail": E_REDIS.format(error=type(exc).__name__)}, status=503))
            if found is None or not bd.matches(found, filters, config):
                return cast(Response, web.Response(status=204, headers=SECURITY_HEADERS))
            return html(render("_finding.html", row=bd.row(found, titles, config, now_ms()), act=actions(request)))

    @app.page("/board/summary")
    class SummaryFragment(View):
        """Open findings by rule and severity, and the recent resolutions."""

        async def get(self, request: Request) -> Response:
            try:
                counts = await index.counts(rule_ids)
                resolved = await index.recently_resolved(bd.RESOLUTIONS_SHOWN)
            except REDIS_ERRORS as exc:
                return cast(Response, web.json_response(
                    {"error": "redis_unreachable", "detail": E_REDIS.format(error=type(exc).__name__)}, status=503))
            return html(render("_summary.html", counts=bd.counts_table(counts, rules, config),
                               resolutions=[bd.resolution(f, titles, config) for f in resolved],
                               severities=bd.SEVERITY_ORDER))

    @app.page("/events")
    class Events(View):
        """Server-sent events: each finding change, resumable with Last-Event-ID; the health strip."""

        async def get(self, request: Request) -> Response:
            return cast(Response, await live.stream(cast(web.Request, request), feed, health_html))

    @app.page("/static/{name}")
    class Static(View):
        """The console's stylesheet and script."""

        async def get(self, request: Request, name: str) -> Response:
            found = STATIC.get(name)
            if found is None:
                return cast(Response, web.json_response({"error": "not_found", "detail": f"no file {name}"},
                                                        status=404))
            return cast(Response, web.Response(body=found.body, headers={
                "Content-Type": found.content_type, "Cache-Control": "private, max-age=300",
                "X-Content-Type-Options": "nosniff"}))

    @app.page("/search")
    class SearchPage(View):
        """Customers by any id, email or name prefix; one exact id of one customer: its view, at once."""

        async def get(self, request: Request) -> Response:
            raw = request.query.get("q")
            if raw is None:  # the page itself, before any search
                return html(render("search.html", query="", error="", results=None, page="search"))
            try:
                query = query_text(raw)
            except QueryError as exc:  # the API's words, but a person types in a box rather than sends ?q=
                error = E_EMPTY_SEARCH if not raw.strip() else str(exc)
                return html(render("search.html", query=raw.strip()[:MAX_QUERY], error=error, results=None,
                                   page="search"), 400)
            try:
                results = await search.search(query, SEARCH_LIMIT, index.open_counts)
            except REDIS_ERRORS as exc:
                return html(render("unavailable.html", heading="Search is unavailable", page="search",
                                   detail=E_SEARCH.format(error=f"{type(exc).__name__}: {exc}"),
                                   retry=cast(web.Request, request).path_qs, query=query), 503)
            target = cv.redirect_target(results)
            if target is not None:
                return cast(Response, web.Response(status=303, headers={
                    "Location": f"/customers/{quote(target, safe='')}", "Cache-Control": "no-store"}))
            return html(render("search.html", query=query, error="", results=results, page="search"))

    @app.page("/sagas")
    class SagasPage(View):
        """The quote-to-cash sagas, waiting for a person first, with a resume button for an operator."""

        async def get(self, request: Request) -> Response:
            filters = sp.parse_filters(request.query)
            try:
                every = await saga_index.all()
            except REDIS_ERRORS as exc:
                return html(render("unavailable.html", heading="The sagas are unavailable", page="sagas",
                                   detail=E_SAGAS.format(error=f"{type(exc).__name__}: {exc}"),
                                   retry=cast(web.Request, request).path_qs), 503)
            listed = waiting_first(every, filters.state or None, filters.customer or None, filters.limit)
            return html(render("sagas.html", sagas=sp.build_page(filters, listed, state_counts(every)),
                               act=actions(request),
                               page="sagas"))

    if "customers" in concord.tables:
        register_customer_page(concord, titles, actions)

    @app.page("/login")
    class Login(View):
        """Sign in with one's own token (users file), or the read or admin token: a session cookie (app/sessions.py)."""

        async def get(self, request: Request) -> Response:
            return html(render("login.html", next=safe_next(request.query.get("next")), error="",
                               max_age=sessions.max_age))

        async def post(self, request: Request) -> Response:
            form = await cast(web.Request, request).post()
            target = safe_next(str(form.get("next", "")))
            token = str(form.get("token", "")).strip()
            given = token.encode("utf-8", "surrogateescape")
            # A user's token is checked with scrypt (tens of milliseconds): off the event loop.
            who = await asyncio.to_thread(gate.identify_token, given) if token else None
            if who is None:
                return html(render("login.html", next=target, error="That token was refused.",
                                   max_age=sessions.max_age), 401)
            response = web.Response(status=303, headers={"Location": target, "Cache-Control": "no-store"})
            sessions.set_cookie(response, sessions.issue(who.name, who.role, time.time()))
            return cast(Response, response)

    @app.page("/logout")
    class Logout(View):
        """End this browser's session."""

        async def post(self, request: Request) -> Response:
            response = web.Response(status=303, headers={"Location": "/login", "Cache-Control": "no-store"})
            sessions.clear_cookie(response)
            return cast(Response, response)

    # The web server waits for its handlers when it stops: the open streams end first (whichever of the
    # two comes first: the web server's shutdown, or the worker's closers when Faust stops the app).
    on_server_shutdown(app, feed.close)
    concord.on_shutdown(feed.close)


def register_customer_page(concord: Concord, titles: Mapping[str, str],
                           actions: Callable[[Request], Actions | None]) -> None:
    """`/customers/{key}` on a worker holding the customers table (the state role): answered by the owner.
    `actions`: what the page offers whoever asks (the resume forms of the customer's sagas, to an operator)."""
    app = concord.app
    saga_index = concord.saga_index
    customers = concord.tables["customers"]
    owners = Owners(app, customers, concord.settings.topic_partitions)
    timelines = concord.timeline

    @app.page("/customers/{key}")
    class CustomerPage(View):
        """The customer 360: the four systems side by side, its findings, its timeline."""

        async def get(self, request: Request, key: str) -> Response:
            relayed = await owners.route(self, request, key)
            if relayed is not None:
                return relayed_page(relayed, cast(web.Request, request))
            raw = customers.get(key)
            if raw is None:
                return html(render("not_found.html", key=key, page="customer"), 404)
            shown = checkpoints_shown(request.query.get("checkpoints"), timelines.entries)
            try:
                checkpoints, detail = await timelines.read(key, shown), ""
            except REDIS_ERRORS as exc:  # the records and findings are here: show them without the timeline
                checkpoints, detail = [], E_TIMELINE.format(error=f"{type(exc).__name__}: {exc}")
            try:
                sagas, sagas_detail = sp.customer_rows(select(await saga_index.all(), None, key, sp.CUSTOMER_LIMIT)), ""
            except REDIS_ERRORS as exc:  # as the timeline: the rest of the page is here
                sagas, sagas_detail = [], E_CUSTOMER_SAGAS.format(error=f"{type(exc).__name__}: {exc}")
            view = customer_view(st.load(raw), checkpoints, f"/api/v1/customers/{quote(key, safe='')}/timeline", detail)
            return html(render("customer.html", view=view, master=cv.master_table(view),
                               invoice_lines=cv.invoice_lines, titles=titles, page="customer", sagas=sagas,
                               sagas_detail=sagas_detail, act=actions(request)))


def checkpoints_shown(asked: str | None, kept: int) -> int:
    """How many checkpoints the customer view shows: `?checkpoints=` (1 up to what the timeline keeps), else
    `VIEW_TIMELINE`."""
    try:
        return max(1, min(kept, int(asked))) if asked else VIEW_TIMELINE
    except ValueError:
        return VIEW_TIMELINE


def relayed_page(relayed: Response, request: web.Request) -> Response:
    """The owner's page as this worker sends it on (its own headers); the forwarding's refusal (JSON: no
    owner now, the owner unreachable) as a page saying so."""
    body = cast(web.Response, relayed).body
    text = bytes(body).decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else ""
    if relayed.content_type == "text/html":
        return html(text, relayed.status)
    try:
        detail = str(msgspec.json.decode(text).get("detail", text))
    except (msgspec.DecodeError, AttributeError):
        detail = text
    return html(render("unavailable.html", heading="This customer cannot be shown now", detail=detail,
                       retry=request.path_qs, page="customer"), relayed.status)
