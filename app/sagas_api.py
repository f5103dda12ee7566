"""JSON API of the quote-to-cash sagas (issue 17; drift/saga.py): the sagas, one saga, and an operator's resume.

* `GET /api/v1/sagas?state=&customer=&limit=`: the sagas, most recently changed first, with how many are in
  each state (all of them); a state that is not one of the saga's is a 400 naming the states.
* `GET /api/v1/sagas/{opportunity_id}`: one saga (`SagaView`): its state and step, why it stopped, what to fix.
* `POST /api/v1/sagas/{opportunity_id}/resume` (an operator; body `{"note": "..."}`, optional): the saga is
  looked up in the index for its customer key (404 when it is not there), refused when it does not wait for a
  person (409: only paused, failed and compensated sagas resume), and a `ResumeSaga` under the caller's name is
  sent on the canonical topic keyed by the customer key, so the state agent that owns the customer applies it
  in order with the customer's events. Answered 202 with what was sent; the console's form gets a redirect
  back to the page it was posted from.

Any worker answers: the sagas are read from the saga index in Redis (connectors/saga_index.py), which each
worker mirrors its customers' sagas into. Versioned only (`alias=False` in app/contract.py): new routes
have no unversioned past to keep. The rules every surface applies alike are in app/sagas.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import msgspec
from aiohttp import web
from faust.web import Request, Response, View

from concord.app import access
from concord.app import sagas as sg
from concord.app.api import back_to
from concord.app.contract import page
from concord.app.forms import action_body, is_form
from concord.app.schemas import ApiError, ResumeBody, SagaList, SagaResumed
from concord.connectors.executor import REDIS_ERRORS
from concord.connectors.saga_index import select, state_counts
from concord.core import messages, metrics

if TYPE_CHECKING:
    from concord.agents.context import Concord

_encode = msgspec.json.Encoder().encode

E_REDIS = "Redis is unreachable ({error}): the saga index cannot be read now; try again when it is back"
#: What a 202 to a resume says was requested (the state agent applies it).
RESUME_REQUESTED = "resume_requested"


def register(concord: Concord) -> None:
    """Add the saga routes (every worker: they read Redis and write to Kafka, whatever the roles)."""
    app = concord.app
    index = concord.saga_index
    canonical = concord.topics[concord.names.canonical]

    def json(view: View, value: Any, status: int = 200) -> Response:
        return view.bytes(_encode(value), content_type="application/json", status=status)

    def redis_down(view: View, exc: Exception) -> Response:
        return json(view, ApiError("redis_unavailable", E_REDIS.format(error=f"{type(exc).__name__}: {exc}")), 503)

    def no_saga(view: View, opportunity_id: str) -> Response:
        return json(view, ApiError("not_found", sg.E_NO_SAGA.format(opportunity_id=opportunity_id)), 404)

    @page(app, "/sagas")
    class SagaListView(View):
        """The sagas, most recently changed first: ?state=&customer=&limit= (and the counts by state)."""

        async def get(self, request: Request) -> Response:
            try:
                asked = sg.listing(request.query)
            except ValueError as exc:
                return json(self, ApiError("bad_request", str(exc)), 400)
            try:
                every = await index.all()
            except REDIS_ERRORS as exc:
                return redis_down(self, exc)
            return json(self, SagaList(sagas=select(every, asked.state, asked.customer, asked.limit),
                                       counts=state_counts(every)))

    @page(app, "/sagas/{opportunity_id}")
    class SagaItemView(View):
        """One saga, by the opportunity it provisions."""

        async def get(self, request: Request, opportunity_id: str) -> Response:
            try:
                found = await index.get(opportunity_id)
            except REDIS_ERRORS as exc:
                return redis_down(self, exc)
            return json(self, found) if found is not None else no_saga(self, opportunity_id)

    @page(app, "/sagas/{opportunity_id}/resume")
    class ResumeView(View):
        """An operator resumes a paused, failed or compensated saga: continued from the step that stopped it."""

        async def post(self, faust_request: Request, opportunity_id: str) -> Response:
            request = cast(web.Request, faust_request)  # Faust's aiohttp driver hands handlers aiohttp's request
            who = access.identity(request)
            assert who is not None and who.can_act  # the access middleware let only an operator through
            try:
                body = await action_body(request, ResumeBody)
            except (msgspec.DecodeError, ValueError) as exc:  # ValidationError is a DecodeError
                return json(self, ApiError("bad_request", f"body: {exc}"), 400)
            try:
                found = await index.get(opportunity_id)
            except REDIS_ERRORS as exc:
                return redis_down(self, exc)
            if found is None:
                return no_saga(self, opportunity_id)
            try:
                message = sg.resume_of(found, who.name, body.note)
            except sg.NotResumable as exc:
                return json(self, ApiError("not_resumable", str(exc)), 409)
            await canonical.send(key=found.customer_key.encode(), value=messages.encode(message))
            metrics.actions.labels("resume").inc()
            if is_form(request):
                return cast(Response, web.Response(status=303, headers={
                    "Location": back_to(request.headers.get("Referer", ""), request.host),
                    "Cache-Control": "no-store"}))
            return json(self, SagaResumed(status=RESUME_REQUESTED, sent=message, state=found.state, step=found.step),
                        202)
