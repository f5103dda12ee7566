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
`Idempotency-Key` replays and 429 rate limiting.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from aiohttp import web
from msgspec import Struct

from concord.sandbox.faults import Faults, Handler, PlatformCredentials, Replays, StoredResponse, WriteCounter, guard
from concord.sandbox.world import Record, World

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


Mutation = Callable[[dict[str, Any], dict[str, str]], tuple[int, dict[str, Any], str]]
"""A write endpoint's body: (JSON body, path parameters) -> (status, response body, effects key)."""


class _Api:
    """The Support API endpoints, over one world."""

    def __init__(self, world: World, credentials: PlatformCredentials) -> None:
        self.world = world
        self.credentials = credentials
        self.replays = Replays()
        self.writes = WriteCounter(world)

    def _denied(self, request: web.Request) -> web.Response | None:
        """Basic auth `{email}/token:{api_token}`; 401 "Couldn't authenticate you" otherwise."""
        header = request.headers.get("Authorization", "")
        try:
            user, _, secret = base64.b64decode(header.removeprefix("Basic "), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = secret = ""
        email, token_marker, _ = user.partition("/")
        expected_email, expected_token = self.credentials.zendesk_api_email, self.credentials.zendesk_api_token
        valid = (header.startswith("Basic ") and token_marker == "/" and user.endswith("/token") and bool(secret)
                 and (not expected_email or email == expected_email)
                 and (not expected_token or secret == expected_token))
        return None if valid else _json({"error": "Couldn't authenticate you"}, 401)

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
    api = _Api(world, credentials)
    guarded = guard(faults, PLATFORM, _error)
    org = "/api/v2/organizations"
    return [
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
