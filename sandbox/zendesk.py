"""The sandbox's Zendesk: operations on organizations and tickets, and the `/api/v2` routes.

Records are Zendesk Support API objects as `GET /api/v2/organizations/{id}.json` and
`GET /api/v2/tickets/{id}.json` return them (without the wrapper): integer `id`s, `external_id`
(the CRM account id), `organization_fields` (custom field key -> value), `tags`, ISO timestamps
(`2025-03-31T12:00:00Z`). Every write is one `World.put`/`World.delete` whose `event` is the
webhook event type Zendesk sends for it (`zen:event-type:organization.created`,
`...organization.custom_field_changed`, `...ticket.status_changed`, ...). A change touching several
aspects (name and custom fields, say) is written as one put per aspect, since Zendesk sends one
event per aspect.

Operations (ids from `world.new_id`, so runs are deterministic):

* `create_organization(world, *, name, external_id=None, fields=None, tags=()) -> Record`
* `update_organization(world, organization_id, *, name=None, external_id=None, fields=None,
  tags=None) -> Record` - `fields` merge into `organization_fields` (a None value clears a field)
* `set_entitlement(world, organization_id, *, status=None, tier=None, end_date=None,
  keys=EntitlementKeys()) -> Record` - the support entitlement custom fields
* `delete_organization(world, organization_id) -> Record`
* `create_ticket(world, *, organization_id, subject, requester_id=None, status="new",
  priority="normal") -> Record`
* `update_ticket(world, ticket_id, *, status=None, priority=None, subject=None) -> Record`
* `create_or_update_organization(world, body) -> tuple[Record, bool]` - by `external_id` (else by
  `name`), as `POST /api/v2/organizations/create_or_update.json`; the bool says "created"

Record keys in the world are the decimal id as a string (`world.get("zendesk", "organization", "17")`).

`routes(world, faults, credentials)` serves organizations and tickets with Basic token auth,
`Idempotency-Key` replays and 429 rate limiting, and the incremental exports a reconciliation
reader pages through:

* `GET /api/v2/incremental/organizations.json?start_time=<unix>[&per_page=n]` (time-based) ->
  `{"organizations", "next_page", "count", "end_time", "end_of_stream"}`: organizations (as
  `GET /api/v2/organizations/{id}.json` shows them) with `updated_at >= start_time`, in `updated_at`
  then id order, up to `per_page` (1..1000, default 1000). A page never splits the records of one
  second: it grows to hold all records of its last second, and `end_time` (the next page's
  `start_time`) is that second + 1, so every version is served exactly once. Real Zendesk sets
  `end_time` to the last record's second instead and repeats that second's records on the next page
  (clients drop duplicates); both are correct for a reader keyed by id and updated_at.
* `GET /api/v2/incremental/tickets/cursor.json?start_time=<unix>` or `?cursor=<after_cursor>`
  (cursor-based) -> `{"tickets", "after_cursor", "after_url", "before_cursor": null, "before_url":
  null, "end_of_stream"}`, the same order and `per_page`; a deleted ticket appears with `status:
  "deleted"` (the routes keep deleted tickets from the world's delete changes, from the moment
  `routes()` is built). The cursor is the position (updated_at, id) of the last ticket served.

Both, as Zendesk does, leave out the most recent minute (records updated less than 60 s before the
world's clock come on a later page, when the writes of that second are complete) and refuse a
`start_time` within it (400 `InvalidValue`); a missing or non-integer `start_time` or `cursor` is a
400 too. `end_of_stream` says the page served everything there is now; `next_page` / `after_url`
(on the sandbox's own host, so a client can follow them) are where to poll later. Zendesk limits
incremental exports to 10 requests a minute: the sandbox does so per credential (429 with
`Retry-After`) when the `export_rate_limit` fault setting is on (off by default; sandbox/faults.py).
`organizations_export(...)` and `tickets_export(...)` are the pure parts.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import copy
import math
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from aiohttp import web
from msgspec import Struct

from concord.sandbox.faults import Faults, Handler, PlatformCredentials, Replays, StoredResponse, WriteCounter, guard
from concord.sandbox.world import Change, Record, World

PLATFORM: Final = "zendesk"
# The sandbox's Zendesk account, as it appears in the `url` of every object.
SUBDOMAIN_URL: Final = "https://concord-sandbox.zendesk.com"
_EVENT: Final = "zen:event-type:"
# Zendesk ids are large integers; the offset makes sandbox ids look like real ones.
_ID_OFFSET: Final = 360_000_000_000


class EntitlementKeys(Struct, frozen=True, kw_only=True):
    """The organization_fields keys holding the support entitlement (Concord's zendesk_*_field settings)."""

    status: str = "support_status"
    tier: str = "support_tier"
    end_date: str = "support_end_date"


class NotFound(LookupError):
    """No such record (the API answers 404 RecordNotFound)."""


def _timestamp(world: World) -> str:
    return datetime.fromtimestamp(world.now_ms() / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id(world: World) -> int:
    return _ID_OFFSET + int(world.new_id(""))


def _get(world: World, type_: str, record_id: int | str) -> Record:
    record = world.get(PLATFORM, type_, str(record_id))
    if record is None:
        raise NotFound(f"{type_} {record_id} not found")
    # Copies: World.put compares the new record with the stored one, so edits go to a copy.
    return copy.deepcopy(record)


def _put(world: World, type_: str, record: Record, event: str) -> Record:
    world.put(PLATFORM, type_, str(record["id"]), record, event=_EVENT + event)
    return record


# --- organizations --------------------------------------------------------------------------------


def create_organization(
    world: World,
    *,
    name: str,
    external_id: str | None = None,
    fields: dict[str, Any] | None = None,
    tags: Iterable[str] = (),
) -> Record:
    """A new organization; `fields` are its organization_fields (custom field key -> value)."""
    org_id = _new_id(world)
    now = _timestamp(world)
    record: Record = {
        "url": f"{SUBDOMAIN_URL}/api/v2/organizations/{org_id}.json",
        "id": org_id,
        "name": name,
        "shared_tickets": False,
        "shared_comments": False,
        "external_id": external_id,
        "created_at": now,
        "updated_at": now,
        "domain_names": [],
        "details": "",
        "notes": "",
        "group_id": None,
        "tags": sorted(set(tags)),
        "organization_fields": dict(fields or {}),
    }
    return _put(world, "organization", record, "organization.created")


def update_organization(
    world: World,
    organization_id: int | str,
    *,
    name: str | None = None,
    external_id: str | None = None,
    fields: dict[str, Any] | None = None,
    tags: Iterable[str] | None = None,
) -> Record:
    """Change what is given; one put (and webhook event) per aspect that really changed."""
    org = _get(world, "organization", organization_id)
    aspects: list[tuple[str, str, Any]] = []
    if name is not None:
        aspects.append(("name", "organization.name_changed", name))
    if external_id is not None:
        aspects.append(("external_id", "organization.external_id_changed", external_id or None))
    if fields:
        aspects.append(("organization_fields", "organization.custom_field_changed",
                        {**org["organization_fields"], **fields}))
    if tags is not None:
        aspects.append(("tags", "organization.tags_changed", sorted(set(tags))))
    for key, event, value in aspects:
        if org[key] != value:
            org[key] = value
            org["updated_at"] = _timestamp(world)
            _put(world, "organization", copy.deepcopy(org), event)
    return org


def set_entitlement(
    world: World,
    organization_id: int | str,
    *,
    status: str | None = None,
    tier: str | None = None,
    end_date: str | None = None,
    keys: EntitlementKeys = EntitlementKeys(),  # noqa: B008 - frozen Struct, safe as a default
) -> Record:
    """Set the support entitlement fields given (status "active"/"suspended"/..., tier, end date YYYY-MM-DD)."""
    fields = {key: value for key, value in ((keys.status, status), (keys.tier, tier), (keys.end_date, end_date))
              if value is not None}
    return update_organization(world, organization_id, fields=fields)


def delete_organization(world: World, organization_id: int | str) -> Record:
    """Delete the organization ("organization.deleted")."""
    org = _get(world, "organization", organization_id)
    world.delete(PLATFORM, "organization", str(organization_id), event=_EVENT + "organization.deleted")
    return org


def create_or_update_organization(world: World, body: dict[str, Any]) -> tuple[Record, bool]:
    """Find the organization by `external_id` (else by `name`) and update it, or create it.

    `body` is the inner object of `{"organization": {...}}`. Returns (organization, created).
    """
    external_id = body.get("external_id")
    existing = (world.find(PLATFORM, "organization", "external_id", external_id) if external_id
                else world.find(PLATFORM, "organization", "name", body.get("name")))
    if existing is None:
        if not body.get("name"):
            raise ValueError("Name: cannot be blank")
        return create_organization(world, name=body["name"], external_id=external_id,
                                   fields=body.get("organization_fields"), tags=body.get("tags") or ()), True
    return update_organization(world, existing["id"], name=body.get("name"), external_id=external_id,
                               fields=body.get("organization_fields"), tags=body.get("tags")), False


# --- tickets --------------------------------------------------------------------------------------


def create_ticket(
    world: World,
    *,
    organization_id: int | str | None,
    subject: str,
    requester_id: int | None = None,
    status: str = "new",
    priority: str = "normal",
) -> Record:
    """A new ticket for the organization ("ticket.created")."""
    ticket_id = _new_id(world)
    now = _timestamp(world)
    record: Record = {
        "url": f"{SUBDOMAIN_URL}/api/v2/tickets/{ticket_id}.json",
        "id": ticket_id,
        "external_id": None,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
        "created_at": now,
        "updated_at": now,
        "type": None,
        "subject": subject,
        "raw_subject": subject,
        "description": subject,
        "priority": priority,
        "status": status,
        "requester_id": requester_id,
        "submitter_id": requester_id,
        "assignee_id": None,
        "organization_id": int(organization_id) if organization_id is not None else None,
        "group_id": None,
        "tags": [],
        "custom_fields": [],
        "is_public": True,
    }
    return _put(world, "ticket", record, "ticket.created")


def update_ticket(
    world: World,
    ticket_id: int | str,
    *,
    status: str | None = None,
    priority: str | None = None,
    subject: str | None = None,
) -> Record:
    """Change what is given; one put (and webhook event) per aspect that really changed."""
    ticket = _get(world, "ticket", ticket_id)
    for key, value in (("status", status), ("priority", priority), ("subject", subject)):
        if value is not None and ticket[key] != value:
            ticket[key] = value
            if key == "subject":
                ticket["raw_subject"] = value
            ticket["updated_at"] = _timestamp(world)
            _put(world, "ticket", copy.deepcopy(ticket), f"ticket.{key}_changed")
    return ticket


# --- incremental exports -------------------------------------------------------------------------

EXPORT_PAGE_SIZE: Final = 1000
# Exports leave out the last minute and refuse a start_time within it (Zendesk's guard against races).
RECENT_SECONDS: Final = 60
RATE_WINDOW_SECONDS: Final = 60
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
_ORG_EXPORT: Final = "/api/v2/incremental/organizations.json"
_TICKET_EXPORT: Final = "/api/v2/incremental/tickets/cursor.json"


class ExportError(ValueError):
    """An export request Zendesk refuses with 400 InvalidValue; the message says which parameter and why."""


def _unix(timestamp: str) -> int:
    return calendar.timegm(datetime.strptime(timestamp, _TIME_FORMAT).timetuple())


def start_time(value: str | None, now: int) -> int:
    """A valid `start_time` parameter as epoch seconds; raises ExportError when missing, malformed or too recent."""
    if value is None or not value.strip().isdigit():
        raise ExportError(f"start_time must be a unix timestamp in seconds, got {value!r}")
    start = int(value)
    if start > now - RECENT_SECONDS:
        raise ExportError(f"Too recent start_time ({start}). Use a start_time older than {RECENT_SECONDS} seconds "
                          f"(before {now - RECENT_SECONDS}).")
    return start


def per_page(value: str | None) -> int | None:
    """The `per_page` parameter (1..1000), None when not given; raises ExportError otherwise."""
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= EXPORT_PAGE_SIZE:
        raise ExportError(f"per_page must be an integer from 1 to {EXPORT_PAGE_SIZE}, got {value!r}")
    return int(value)


def encode_cursor(position: tuple[int, int]) -> str:
    """The opaque cursor of a position (updated_at seconds, id) in the ticket export."""
    return base64.urlsafe_b64encode(f"{position[0]}.{position[1]}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The position of a cursor made by `encode_cursor`; raises ExportError for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        updated, _, record_id = base64.urlsafe_b64decode(padded.encode()).decode().partition(".")
        return int(updated), int(record_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ExportError(f"cursor is invalid: {cursor!r}") from None


def _export_order(records: Iterable[Record], now: int) -> list[tuple[int, int, Record]]:
    """(updated_at seconds, id, record) of records older than the recent minute, in export order."""
    cutoff = now - RECENT_SECONDS
    return sorted((entry for entry in ((_unix(r["updated_at"]), int(r["id"]), r) for r in records)
                   if entry[0] < cutoff), key=lambda entry: entry[:2])


def _url(base_url: str, path: str, params: dict[str, Any]) -> str:
    return f"{base_url}{path}?{urlencode({k: v for k, v in params.items() if v is not None})}"


def organizations_export(records: Iterable[Record], *, start: int, now: int, size: int | None,
                         base_url: str) -> dict[str, Any]:
    """One page of the time-based organization export from `start` (see the module docstring)."""
    eligible = [entry for entry in _export_order(records, now) if entry[0] >= start]
    page = eligible[:size or EXPORT_PAGE_SIZE]
    if len(page) < len(eligible):
        last_second = page[-1][0]
        page = [entry for entry in eligible if entry[0] <= last_second]
    end_of_stream = len(page) == len(eligible)
    end_time = max(start, now - RECENT_SECONDS) if end_of_stream else page[-1][0] + 1
    return {"organizations": [record for _, _, record in page],
            "next_page": _url(base_url, _ORG_EXPORT, {"start_time": end_time, "per_page": size}),
            "count": len(page), "end_time": end_time, "end_of_stream": end_of_stream}


def tickets_export(records: Iterable[Record], *, after: tuple[int, int], now: int, size: int | None,
                   base_url: str) -> dict[str, Any]:
    """One page of the cursor-based ticket export after position `after` (updated_at seconds, id)."""
    eligible = [entry for entry in _export_order(records, now) if entry[:2] > after]
    page = eligible[:size or EXPORT_PAGE_SIZE]
    cursor = encode_cursor(page[-1][:2] if page else after)
    return {"tickets": [record for _, _, record in page], "after_cursor": cursor,
            "after_url": _url(base_url, _TICKET_EXPORT, {"cursor": cursor, "per_page": size}),
            "before_cursor": None, "before_url": None, "end_of_stream": len(page) == len(eligible)}


class _ExportLimiter:
    """Zendesk's incremental export limit: at most `limit` requests per minute per credential."""

    def __init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}

    def retry_after(self, credential: str, limit: int, now: float) -> int | None:
        """Seconds to wait when over the limit (the request is not counted), else None (counted)."""
        if limit <= 0:
            return None
        seen = self._seen.setdefault(credential, deque())
        while seen and seen[0] <= now - RATE_WINDOW_SECONDS:
            seen.popleft()
        if len(seen) >= limit:
            return max(1, math.ceil(seen[0] + RATE_WINDOW_SECONDS - now))
        seen.append(now)
        return None


# --- the HTTP API ---------------------------------------------------------------------------------

# Organization keys a PUT or create_or_update may set (others are ignored, as Zendesk does).
_WRITABLE_ORG_KEYS: Final = frozenset({"name", "external_id", "organization_fields", "tags", "details", "notes",
                                       "domain_names", "group_id", "shared_tickets", "shared_comments"})
_body_decoder: Final = msgspec.json.Decoder(dict[str, Any])


def _error(status: int, code: str, message: str, retry_after: float | None = None) -> web.Response:
    """A Zendesk error body: `{"error": <title>, "description": <text>}`."""
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    if status == 429:
        code, message = "APIRateLimitExceeded", "Number of allowed API requests per minute exceeded"
    elif status >= 500:
        code = "InternalServerError" if status == 500 else "ServiceUnavailable"
    return _json({"error": code, "description": message}, status, headers)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json",
                        headers=headers or {})


def denied(request: web.Request, credentials: PlatformCredentials) -> web.Response | None:
    """Basic auth `{email}/token:{api_token}`; 401 "Couldn't authenticate you" otherwise."""
    header = request.headers.get("Authorization", "")
    try:
        user, _, secret = base64.b64decode(header.removeprefix("Basic "), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user = secret = ""
    email, token_marker, _ = user.partition("/")
    expected_email, expected_token = credentials.zendesk_api_email, credentials.zendesk_api_token
    valid = (header.startswith("Basic ") and token_marker == "/" and user.endswith("/token") and bool(secret)
             and (not expected_email or email == expected_email)
             and (not expected_token or secret == expected_token))
    return None if valid else _json({"error": "Couldn't authenticate you"}, 401)


Mutation = Callable[[dict[str, Any], dict[str, str]], tuple[int, dict[str, Any], str]]
"""A write endpoint's body: (JSON body, path parameters) -> (status, response body, effects key)."""


class _Api:
    """The Support API endpoints, over one world."""

    def __init__(self, world: World, faults: Faults, credentials: PlatformCredentials) -> None:
        self.world = world
        self.faults = faults
        self.credentials = credentials
        self.replays = Replays()
        self.writes = WriteCounter(world)
        self.deleted_tickets: dict[str, Record] = {}  # the ticket export shows deleted tickets
        self.limiter = _ExportLimiter()
        world.listen(self._remember_deleted)

    def _remember_deleted(self, change: Change) -> None:
        if change.platform != PLATFORM or change.type != "ticket":
            return
        if change.op == "delete":
            updated = datetime.fromtimestamp(change.at / 1000, UTC).strftime(_TIME_FORMAT)
            self.deleted_tickets[change.id] = {**change.record, "status": "deleted", "updated_at": updated}
        else:
            self.deleted_tickets.pop(change.id, None)

    def _denied(self, request: web.Request) -> web.Response | None:
        return denied(request, self.credentials)

    def read(self, type_: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if (denied := self._denied(request)) is not None:
                return denied
            record = self.world.get(PLATFORM, type_, request.match_info["id"])
            if record is None:
                return _error(404, "RecordNotFound", "Not found")
            return _json({type_: record})

        return handler

    async def search_organizations(self, request: web.Request) -> web.StreamResponse:
        """`GET /api/v2/organizations/search.json?external_id=` (or `?name=`)."""
        if (denied := self._denied(request)) is not None:
            return denied
        field = "external_id" if "external_id" in request.query else "name"
        if field not in request.query:
            return _error(400, "InvalidEndpoint", "Search needs the external_id or name parameter")
        found = [org for org in self.world.all(PLATFORM, "organization") if org.get(field) == request.query[field]]
        return _json({"organizations": found, "next_page": None, "previous_page": None, "count": len(found)})

    def _export_refused(self, request: web.Request) -> web.Response | None:
        """401, or 429 when the credential is over the export limit (`export_rate_limit`), else None."""
        if (denied := self._denied(request)) is not None:
            return denied
        limit = self.faults.of(PLATFORM).export_rate_limit
        wait = self.limiter.retry_after(request.headers.get("Authorization", ""), limit, self.world.clock())
        if wait is None:
            return None
        return _json({"error": "APIRateLimitExceeded", "description": "Number of allowed incremental export API "
                      f"requests per minute exceeded ({limit}). Retry after {wait} seconds."}, 429,
                     {"Retry-After": str(wait)})

    async def export_organizations(self, request: web.Request) -> web.StreamResponse:
        """`GET /api/v2/incremental/organizations.json?start_time=`: a page of `organizations_export`."""
        if (refused := self._export_refused(request)) is not None:
            return refused
        now = int(self.world.clock())
        try:
            start, size = start_time(request.query.get("start_time"), now), per_page(request.query.get("per_page"))
        except ExportError as exc:
            return _error(400, "InvalidValue", str(exc))
        return _json(organizations_export(self.world.all(PLATFORM, "organization"), start=start, now=now, size=size,
                                          base_url=str(request.url.origin())))

    async def export_tickets(self, request: web.Request) -> web.StreamResponse:
        """`GET /api/v2/incremental/tickets/cursor.json?start_time=` or `?cursor=`: a page of `tickets_export`."""
        if (refused := self._export_refused(request)) is not None:
            return refused
        now = int(self.world.clock())
        try:
            cursor = request.query.get("cursor")
            after = decode_cursor(cursor) if cursor else (start_time(request.query.get("start_time"), now), -1)
            size = per_page(request.query.get("per_page"))
        except ExportError as exc:
            return _error(400, "InvalidValue", str(exc))
        tickets = [*self.world.all(PLATFORM, "ticket"), *self.deleted_tickets.values()]
        return _json(tickets_export(tickets, after=after, now=now, size=size, base_url=str(request.url.origin())))

    def write(self, kind: str, mutation: Mutation) -> Handler:
        """A POST/PUT endpoint honouring `Idempotency-Key` (replayed with `x-idempotency-lookup: hit`)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if (denied := self._denied(request)) is not None:
                return denied
            try:
                body = _body_decoder.decode(await request.read())
            except msgspec.DecodeError as exc:
                return _error(400, "InvalidJSON", f"The request body is not a JSON object: {exc}")
            key = request.headers.get("Idempotency-Key")
            fingerprint = msgspec.json.encode([request.method, request.path, body], order="sorted")
            if key and (stored := self.replays.get(key)) is not None:
                if stored.fingerprint != fingerprint:
                    return _error(400, "IdempotentRequestError", "The request parameters do not match the original "
                                  f"request sent with Idempotency-Key {key}")
                self.world.effects.request(PLATFORM, key, f"{request.method} {request.path}")
                return web.Response(body=stored.body, status=stored.status, content_type="application/json",
                                    headers={"x-idempotency-lookup": "hit"})
            before = self.writes.count
            try:
                status, payload, record_key = mutation(body, dict(request.match_info))
                response = _json(payload, status)
            except NotFound as exc:
                record_key, response = f"{kind}:{request.match_info.get('id', '')}", _error(404, "RecordNotFound",
                                                                                            str(exc))
            except (ValueError, TypeError, KeyError) as exc:
                record_key, response = f"{kind}:{request.match_info.get('id', '')}", _error(
                    422, "RecordInvalid", f"Record validation errors: {exc}")
            effects_key = key or record_key
            self.world.effects.request(PLATFORM, effects_key, f"{request.method} {request.path}")
            if self.writes.count > before:
                self.world.effects.applied(PLATFORM, effects_key, f"{request.method} {request.path}")
            if key and isinstance(response.body, bytes):
                self.replays.store(key, StoredResponse(fingerprint=fingerprint, status=response.status,
                                                       body=response.body))
                response.headers["x-idempotency-lookup"] = "miss"
            return response

        return handler

    # --- mutations ---

    @staticmethod
    def _org_body(body: dict[str, Any]) -> dict[str, Any]:
        inner = body.get("organization")
        if not isinstance(inner, dict):
            raise ValueError('the body must be {"organization": {...}}')
        return {k: v for k, v in inner.items() if k in _WRITABLE_ORG_KEYS}

    def update_organization(self, body: dict[str, Any], path: dict[str, str]) -> tuple[int, dict[str, Any], str]:
        org = self._org_body(body)
        record = update_organization(self.world, path["id"], name=org.get("name"),
                                     external_id=(org["external_id"] or "") if "external_id" in org else None,
                                     fields=org.get("organization_fields"), tags=org.get("tags"))
        return 200, {"organization": record}, f"organization:{path['id']}"

    def create_or_update(self, body: dict[str, Any], path: dict[str, str]) -> tuple[int, dict[str, Any], str]:
        record, created = create_or_update_organization(self.world, self._org_body(body))
        external_id = record.get("external_id")
        key = f"organization:eid:{external_id}" if external_id else f"organization:{record['id']}"
        return 201 if created else 200, {"organization": record}, key

    def create_organization(self, body: dict[str, Any], path: dict[str, str]) -> tuple[int, dict[str, Any], str]:
        org = self._org_body(body)
        if not org.get("name"):
            raise ValueError("Name: cannot be blank")
        if org.get("external_id") and self.world.find(PLATFORM, "organization", "external_id", org["external_id"]):
            raise ValueError(f"External: {org['external_id']} has already been taken")
        record = create_organization(self.world, name=org["name"], external_id=org.get("external_id"),
                                     fields=org.get("organization_fields"), tags=org.get("tags") or ())
        return 201, {"organization": record}, f"organization:{record['id']}"

    def create_ticket(self, body: dict[str, Any], path: dict[str, str]) -> tuple[int, dict[str, Any], str]:
        ticket = body.get("ticket") or {}
        subject = ticket.get("subject") or (ticket.get("comment") or {}).get("body")
        if not subject:
            raise ValueError("Description: cannot be blank")
        record = create_ticket(self.world, organization_id=ticket.get("organization_id"), subject=subject,
                               requester_id=ticket.get("requester_id"), status=ticket.get("status") or "new",
                               priority=ticket.get("priority") or "normal")
        return 201, {"ticket": record}, f"ticket:{record['id']}"

    def update_ticket(self, body: dict[str, Any], path: dict[str, str]) -> tuple[int, dict[str, Any], str]:
        ticket = body.get("ticket") or {}
        record = update_ticket(self.world, path["id"], status=ticket.get("status"), priority=ticket.get("priority"),
                               subject=ticket.get("subject"))
        return 200, {"ticket": record}, f"ticket:{path['id']}"


def routes(world: World, faults: Faults, credentials: PlatformCredentials) -> list[web.RouteDef]:
    """The `/api/v2` organization and ticket endpoints, each behind the Zendesk faults."""
    api = _Api(world, faults, credentials)
    guarded = guard(faults, PLATFORM, _error)
    org = "/api/v2/organizations"
    return [
        web.get(_ORG_EXPORT, guarded(api.export_organizations)),
        web.get(_TICKET_EXPORT, guarded(api.export_tickets)),
        web.get(f"{org}/search.json", guarded(api.search_organizations)),
        web.get(f"{org}/search", guarded(api.search_organizations)),
        web.post(f"{org}/create_or_update.json", guarded(api.write("organization", api.create_or_update))),
        web.post(f"{org}.json", guarded(api.write("organization", api.create_organization))),
        web.get(org + "/{id:[0-9]+}.json", guarded(api.read("organization"))),
        web.put(org + "/{id:[0-9]+}.json", guarded(api.write("organization", api.update_organization))),
        web.post("/api/v2/tickets.json", guarded(api.write("ticket", api.create_ticket))),
        web.get("/api/v2/tickets/{id:[0-9]+}.json", guarded(api.read("ticket"))),
        web.put("/api/v2/tickets/{id:[0-9]+}.json", guarded(api.write("ticket", api.update_ticket))),
    ]
