"""Zendesk payloads -> canonical events.

Two input families arrive on `concord.raw.zendesk`:

* **Webhook events** (`{"type": "zen:event-type:<domain>.<action>", "id", "time", "detail", "event",
  "subject"}`). `detail` is the object after the change, with ids as strings.
* **REST objects** as the list and incremental export endpoints return them: one object wrapped
  (`{"organization": {...}}`, `{"ticket": {...}, "audit": {...}}`), a page (`{"organizations": [...]}`,
  `{"tickets": [...], "next_page": ...}`) giving one event per object, or a bare object.

Organizations become `CustomerUpserted` plus the support entitlement (`EntitlementChanged`, from
the `organization_fields` keys named in `CodecConfig` and the tags). Webhook `detail` carries
neither `organization_fields` nor `tags`, and `EntitlementChanged` has no "not changed" marker, so a
webhook that may have changed the entitlement yields `ResyncRequired` (re-read the organization over
REST) instead of an entitlement guessed from partial data. Tickets become `SupportCaseChanged`.
Users, articles, audits and other Zendesk objects are valid input of no interest: `[]`.

Dedup and ordering: a webhook's `event_id` is Zendesk's event `id`; a REST object has none, so it
gets `"<kind>:<id>:<updated_at ms>"`, stable across re-reads of the same version. A second event
derived from the same input appends `:entitlement` or `:resync`. `version.ts` is the object's
`updated_at` (webhook: `detail.updated_at`, else the event `time`). Zendesk's times have one-second
resolution, and a ticket opened and solved within one second would otherwise be ordered by a hash
of the event ids (half the time the wrong way, leaving a solved ticket open): a ticket's `version.seq`
ranks its status in its lifecycle, so within one second the state further along wins (as the Stripe
codec does); a step backwards within one second (a reopen) loses, and a deletion outranks every status.

`decode` raises only `DecodeError`. Reasons: `invalid_json`, `unknown_shape`, `missing_field`,
`bad_type`, `bad_time`, `too_deep`, `too_large` (and `codec_error` for a bug). Details name fields,
paths, types and lengths, never a payload value (not even an id).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Final

import msgspec
from msgspec import Raw, Struct

from concord.codecs.common import EventFields, decode_json, epoch_ms, event_fields
from concord.codecs.config import DEFAULT_CODEC_CONFIG, CodecConfig
from concord.codecs.errors import BAD_TYPE, MISSING_FIELD, UNKNOWN_SHAPE, DecodeError, as_decode_error
from concord.codecs.model import (
    CanonicalEvent,
    CustomerUpserted,
    EntitlementChanged,
    EntityRef,
    Platform,
    ResyncRequired,
    SupportCaseChanged,
    Version,
)

__all__ = ["WEBHOOK_EVENT_TYPES", "decode"]

_WEBHOOK_PREFIX: Final = "zen:event-type:"
#: The webhook event types Concord reads: what the Zendesk webhook sending to Concord must subscribe to.
#: `concord doctor` checks the webhook against it.
WEBHOOK_EVENT_TYPES: Final = tuple(f"{_WEBHOOK_PREFIX}{name}" for name in (
    "organization.created", "organization.deleted", "organization.name_changed",
    "organization.external_id_changed", "organization.tags_changed", "organization.custom_field_changed",
    "ticket.created", "ticket.status_changed", "ticket.priority_changed", "ticket.organization_changed",
    "ticket.soft_deleted", "ticket.permanently_deleted", "ticket.marked_as_spam",
))
# Organization webhooks that cannot have touched organization_fields or tags.
_ORG_TYPES_WITHOUT_ENTITLEMENT_CHANGE: Final = frozenset({"name_changed", "external_id_changed"})
# Ticket webhook actions after which the ticket no longer counts (spam is deleted by Zendesk).
_TICKET_DELETE_ACTIONS: Final = frozenset({"deleted", "soft_deleted", "permanently_deleted", "marked_as_spam"})
# Keys of REST responses that hold Zendesk resources Concord does not consume.
_IGNORED_WRAPPERS: Final = frozenset(
    {
        "user", "users", "audit", "audits", "ticket_event", "ticket_events", "group", "groups",
        "organization_field", "organization_fields", "ticket_field", "ticket_fields",
        "organization_membership", "organization_memberships",
    }
)  # fmt: skip
# `url` of a REST object: the last collection name before the id says what the object is.
_URL_RESOURCE: Final = re.compile(r"/api/v2/(?:[a-z_]+/\d+/)*([a-z_]+)/\d+\.json")
_DATE: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:T.*)?$")
_RESYNC_REASON: Final = "zendesk_entitlement_not_in_payload"
# Top-level keys named in an unknown_shape error: only those that look like field names.
_KEY_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")


class _Organization(Struct):
    """REST organization or webhook `detail` of an organization event (ids as strings there)."""

    id: int | str
    name: str | None = None
    external_id: str | None = None
    # Absent from webhook detail; present on every REST organization.
    tags: list[str] | None = None
    organization_fields: dict[str, Raw] | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None


class _Ticket(Struct):
    """REST ticket or webhook `detail` of a ticket event (ids as strings, status upper case there)."""

    id: int | str
    status: str | None = None
    priority: str | None = None
    subject: str | None = None
    requester_id: int | str | None = None
    organization_id: int | str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class _Webhook(Struct):
    type: str
    id: str
    time: datetime
    detail: Raw


class _Wrapper(Struct):
    """A REST response that wraps organizations or tickets (side-loads and paging keys ignored)."""

    organization: _Organization | None = None
    organizations: list[_Organization] | None = None
    ticket: _Ticket | None = None
    tickets: list[_Ticket] | None = None


_top_decoder: Final = msgspec.json.Decoder(dict[str, Raw])
_webhook_decoder: Final = msgspec.json.Decoder(_Webhook)
_wrapper_decoder: Final = msgspec.json.Decoder(_Wrapper)
_org_decoder: Final = msgspec.json.Decoder(_Organization)
_ticket_decoder: Final = msgspec.json.Decoder(_Ticket)
_scalar_decoder: Final = msgspec.json.Decoder(str | bool | int | float | None)
_str_decoder: Final = msgspec.json.Decoder(str)


def decode(body: bytes, config: CodecConfig = DEFAULT_CODEC_CONFIG) -> list[CanonicalEvent]:
    """Decode one Zendesk webhook body or REST response into canonical events.

    Returns `[]` for valid Zendesk input Concord does not track (users, audits, other event types).
    Raises `DecodeError` for anything that is not a Zendesk payload this codec knows.
    """
    try:
        return _decode(body, config)
    except DecodeError:
        raise
    except Exception as exc:  # too large (MemoryError), a codec bug: named, without the payload's values
        raise as_decode_error(exc, "Zendesk payload") from None


def _decode(body: bytes, config: CodecConfig) -> list[CanonicalEvent]:
    try:
        top = decode_json(_top_decoder, body, "body")
    except DecodeError as exc:
        if exc.reason not in (BAD_TYPE, MISSING_FIELD):
            raise  # not JSON, too deep, too large
        raise DecodeError(UNKNOWN_SHAPE, "body is not a JSON object: not a Zendesk payload") from None
    if _is_webhook(top):
        return _from_webhook(decode_json(_webhook_decoder, body, "webhook"), config)
    if {"organization", "organizations", "ticket", "tickets"} & top.keys():
        wrapper = decode_json(_wrapper_decoder, body, "REST response")
        orgs = [wrapper.organization] if wrapper.organization is not None else []
        orgs += wrapper.organizations or []
        tickets = [wrapper.ticket] if wrapper.ticket is not None else []
        tickets += wrapper.tickets or []
        return [e for org in orgs for e in _from_rest_organization(org, config)] + [
            _from_rest_ticket(t) for t in tickets
        ]
    kind = _bare_object_kind(top)
    if kind == "organization":
        return _from_rest_organization(decode_json(_org_decoder, body, "organization"), config)
    if kind == "ticket":
        return [_from_rest_ticket(decode_json(_ticket_decoder, body, "ticket"))]
    if kind == "ignored":
        return []
    keys = sorted(key for key in top if _KEY_NAME.fullmatch(key))
    others = len(top) - len(keys)
    named = ", ".join(keys[:12]) + (f" and {others} other key(s)" if others else "")
    raise DecodeError(
        UNKNOWN_SHAPE,
        f"not a Zendesk webhook event or REST object (top-level keys: {named or 'none'}); Concord reads "
        "webhooks subscribed to zen:event-type:* and REST organizations/tickets - check the sender",
    )


def _is_webhook(top: dict[str, Raw]) -> bool:
    # A bare REST ticket has a `type` too ("incident"); only webhooks use the zen:event-type: URN.
    value = _text(top.get("type"))
    return value is not None and value.startswith(_WEBHOOK_PREFIX)


def _bare_object_kind(top: dict[str, Raw]) -> str | None:
    """'organization', 'ticket', 'ignored' (another Zendesk resource) or None (not Zendesk)."""
    url = _text(top.get("url"))
    if url is not None and "id" in top:
        match = _URL_RESOURCE.search(url)
        if match:
            resource = match.group(1)
            return {"organizations": "organization", "tickets": "ticket"}.get(resource, "ignored")
    keys = top.keys()
    if "id" in keys and keys & {"organization_fields", "domain_names", "shared_tickets"}:
        return "organization"
    if "id" in keys and "requester_id" in keys:
        return "ticket"
    # Ticket audit (Ticket Audits API) and incremental ticket event: ticket history, not state.
    if "ticket_id" in keys and keys & {"events", "child_events"}:
        return "ignored"
    if "id" in keys and {"email", "role"} <= keys:
        return "ignored"
    if "id" not in keys and keys & _IGNORED_WRAPPERS:
        return "ignored"
    return None


def _text(raw: Raw | None) -> str | None:
    """The value if it is a JSON string, else None (any other JSON value is simply not a match)."""
    if raw is None or not bytes(raw).startswith(b'"'):
        return None
    return decode_json(_str_decoder, raw, "string")


def _from_webhook(hook: _Webhook, config: CodecConfig) -> list[CanonicalEvent]:
    domain, _, action = hook.type.removeprefix(_WEBHOOK_PREFIX).partition(".")
    if domain == "organization":
        org = decode_json(_org_decoder, hook.detail, "webhook detail")
        deleted = action == "deleted"
        version = _webhook_version(org.updated_at, hook.time, deleted)
        events = _organization_events(org, config, hook.id, version, deleted)
        if not deleted and action in _ORG_TYPES_WITHOUT_ENTITLEMENT_CHANGE:
            return events[:1]
        return events
    if domain == "ticket":
        ticket = decode_json(_ticket_decoder, hook.detail, "webhook detail")
        deleted = action in _TICKET_DELETE_ACTIONS
        version = _webhook_version(ticket.updated_at, hook.time, deleted)
        return [_ticket_event(ticket, hook.id, version, deleted)]
    return []


def _webhook_version(updated_at: datetime | None, time: datetime, deleted: bool) -> Version:
    updated = epoch_ms(updated_at, "detail.updated_at") if updated_at is not None else None
    at = epoch_ms(time, "time")
    if updated is None:
        return Version(ts=at)
    # A deletion may not bump updated_at; the event time keeps it ordered after the last edit.
    return Version(ts=max(updated, at) if deleted else updated)


def _from_rest_organization(org: _Organization, config: CodecConfig) -> list[CanonicalEvent]:
    version = Version(ts=_required_ms(org.updated_at, "organization", "updated_at"))
    event_id = f"organization:{org.id}:{version.ts}"
    return _organization_events(org, config, event_id, version, deleted=org.deleted_at is not None)


def _organization_events(
    org: _Organization, config: CodecConfig, event_id: str, version: Version, deleted: bool
) -> list[CanonicalEvent]:
    """CustomerUpserted, then the entitlement: known, deleted, or to be re-read (ResyncRequired)."""
    org_id = str(org.id)
    crm_account_id = org.external_id or None
    entity = EntityRef("organization", org_id)
    local_customer = f"zendesk:{org_id}"

    def common(suffix: str) -> EventFields:
        # The organization's events differ only in their event id.
        return event_fields(
            Platform.ZENDESK,
            event_id + suffix,
            entity,
            version,
            crm_account_id=crm_account_id,
            local_customer=local_customer,
        )

    customer = CustomerUpserted(
        **common(""),
        system=Platform.ZENDESK,
        customer_id=org_id,
        name=org.name,
        crm_account_id=crm_account_id,
        deleted=deleted,
    )
    entitlement: CanonicalEvent
    if deleted:
        entitlement = EntitlementChanged(**common(":entitlement"), organization_id=org_id, deleted=True)
    elif org.organization_fields is None or org.tags is None:
        entitlement = ResyncRequired(
            **common(":resync"),
            reason=_RESYNC_REASON,
            object_type="organization",
            record_ids=(org_id,),
        )
    else:
        fields = org.organization_fields
        where = "organization organization_fields"
        entitlement = EntitlementChanged(
            **common(":entitlement"),
            organization_id=org_id,
            status=_field_text(fields, config.zendesk_status_field, where),
            tier=_field_text(fields, config.zendesk_tier_field, where),
            end_date=_field_date(fields, config.zendesk_end_date_field, where),
            tags=tuple(org.tags),
        )
    return [customer, entitlement]


def _from_rest_ticket(ticket: _Ticket) -> CanonicalEvent:
    version = Version(ts=_required_ms(ticket.updated_at, "ticket", "updated_at"))
    return _ticket_event(ticket, f"ticket:{ticket.id}:{version.ts}", version, deleted=False)


# Ticket lifecycle ranks (Version.seq): new -> open -> pending/hold -> solved -> closed; a deletion outranks all.
# Unknown statuses rank 0, so a known state wins a same-second tie.
_TICKET_RANK: Final = {"new": 1, "open": 2, "pending": 3, "hold": 3, "solved": 4, "closed": 5, "deleted": 6}
_DELETED_RANK: Final = 6


def _ticket_event(ticket: _Ticket, event_id: str, version: Version, deleted: bool) -> SupportCaseChanged:
    ticket_id = str(ticket.id)
    org_id = _optional_id(ticket.organization_id)
    # Webhooks send status/priority upper case ("OPEN"), REST lower case: one vocabulary downstream.
    status = ticket.status.lower() if ticket.status else None
    rank = _DELETED_RANK if deleted else _TICKET_RANK.get(status or "", 0)
    version = Version(version.ts, rank)
    # A ticket names its organization, never the CRM account: identity resolves it from there.
    local_customer = f"zendesk:{org_id}" if org_id else None
    entity = EntityRef("ticket", ticket_id)
    return SupportCaseChanged(
        **event_fields(Platform.ZENDESK, event_id, entity, version, crm_account_id=None, local_customer=local_customer),
        ticket_id=ticket_id,
        organization_id=org_id,
        requester_id=_optional_id(ticket.requester_id),
        status=status,
        priority=ticket.priority.lower() if ticket.priority else None,
        subject=ticket.subject,
        created_at=epoch_ms(ticket.created_at, "created_at") if ticket.created_at is not None else None,
        # The incremental ticket export lists deleted tickets with status "deleted".
        deleted=deleted or status == "deleted",
    )


def _field_text(fields: dict[str, Raw], key: str, where: str) -> str | None:
    raw = fields.get(key)
    if raw is None:
        return None
    value = decode_json(_scalar_decoder, raw, f"{where}.{key}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or value == "":
        return None
    return str(value)


def _field_date(fields: dict[str, Raw], key: str, where: str) -> str | None:
    text = _field_text(fields, key, where)
    if text is None:
        return None
    match = _DATE.match(text)
    try:
        if match:
            return date.fromisoformat(match.group(1)).isoformat()
    except ValueError:
        pass
    raise DecodeError(
        BAD_TYPE,
        f"{where}.{key} (text of {len(text)} characters) is not a date (YYYY-MM-DD); make it a Zendesk date field",
    )


def _optional_id(value: int | str | None) -> str | None:
    # Webhooks send "0" (and REST may send null) for "no organization"/"no user".
    text = str(value) if value is not None else ""
    return None if text in ("", "0") else text


def _required_ms(value: datetime | None, what: str, field: str) -> int:
    if value is None:
        raise DecodeError(MISSING_FIELD, f"{what} has no {field}: cannot order its versions")
    return epoch_ms(value, field)
