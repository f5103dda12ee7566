"""JSON API of every worker: findings (`/api/drift`), one customer (`/api/customers/{key}`), rules.

`/api/drift` reads the global drift index in Redis, so any worker answers for all customers.
`/api/customers/{key}` is answered by the worker that owns the key (Faust `table_route` forwards
the request there). Admin actions need `Authorization: Bearer $CONCORD_ADMIN_TOKEN`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from faust.web import Request, Response, View

from concord.core import messages, metrics
from concord.drift.config import DriftConfig
from concord.drift.rule import Rule
from concord.tables import state as st

if TYPE_CHECKING:
    from concord.agents.context import Concord

_encode = msgspec.json.Encoder().encode
MAX_LIMIT = 500


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
    canonical = concord.topics[concord.names.canonical]

    def json(view: View, value: Any, status: int = 200) -> Response:
        return view.bytes(_encode(value), content_type="application/json", status=status)

    @app.page("/api/drift")
    class DriftList(View):
        """Findings, newest first: ?status=open|resolved|all|<status>&rule=&customer_key=&severity=&offset=&limit="""

        async def get(self, request: Request) -> Response:
            q = request.query
            status = q.get("status", "open")
            page = await index.query(
                status=status, rule=q.get("rule") or None, customer_key=q.get("customer_key") or None,
                severity=q.get("severity") or None, offset=_int(q.get("offset"), 0, 0, 10**9),
                limit=_int(q.get("limit"), 50, 1, MAX_LIMIT),
            )
            return json(self, page)

    @app.page("/api/drift/{fingerprint}")
    class DriftItemView(View):
        async def get(self, request: Request, fingerprint: str) -> Response:
            found = await index.get(fingerprint)
            if found is None:
                return json(self, {"error": f"no finding {fingerprint}"}, 404)
            return json(self, found)

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

    @app.page("/api/customers/{key}")
    class CustomerView(View):
        """One customer across the four systems, from the worker that owns it."""

        # faust types the decorated handler without path parameters; `key` comes from match_info.
        @app.table_route(table=customers, match_info="key")  # type: ignore[arg-type]
        async def get(self, request: Request, key: str) -> Response:
            raw = customers.get(key)
            if raw is None:
                return json(self, {"error": f"no customer {key}"}, 404)
            return json(self, readable(st.load(raw)))
