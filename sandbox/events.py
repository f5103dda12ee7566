"""World changes -> the events each platform would send about them, ready to deliver.

`NativeEvents.build(change)` turns one `World` change into the payloads the real platform emits,
in the shapes Concord's codecs read (`codecs/*.py`), as `Delivery` values:

==========  =========================================================================================
platform    what a change becomes
==========  =========================================================================================
stripe      one Event object (`evt_...`, API version 2025-03-31.basil): `type` is the change's event
            hint ("invoice.paid") or `<object>.created|updated|deleted`; `data.object` is the record;
            `*.updated` events carry `data.previous_attributes` (old values of the changed keys only).
            Webhook POST to `/webhooks/stripe`, for the types the endpoint subscribes to
            (`EventConfig.stripe_enabled_events`, all by default).
salesforce  one Change Data Capture event in the CometD / Streaming API JSON shape, for Account and
            Opportunity (the entities the customer's CDC pipeline subscribes to): CREATE carries
            every non-null field, UPDATE only the changed ones (named in `changedFields`, cleared ones
            in `nulledFields` too), DELETE none but `MasterRecordId` when the deletion is the loser of
            a merge. Kafka record on `<prefix>.raw.salesforce`, keyed by the record id. Built as a
            gap (`build(change, gap=True)`): `GAP_<change type>` with the same header and no field,
            as Salesforce sends when it cannot build the change event.
zendesk     webhook events `zen:event-type:organization.*` and `ticket.*`: `created`, `deleted`, and
            per changed aspect one `<aspect>_changed` event (name, external id, each custom field,
            tags; ticket status, priority, subject, ...), as Zendesk sends them. Webhook POST to
            `/webhooks/zendesk`.
netsuite    the `concord.netsuite.v1` envelope the User Event script posts (docs/netsuite-suitescript.md):
            record type, id, event type (create / edit / delete), lastModifiedDate, the REST record.
            Webhook POST to `/webhooks/netsuite`.
==========  =========================================================================================

Signatures are not added here: they depend on the time of sending (emit.py signs each attempt).

Ids are deterministic: a serial number per change, prefixed by a run token (`EventConfig.run`) so
that a restarted sandbox does not reuse the event ids of the previous run (Concord drops repeats).
Two changes of one NetSuite record in the same millisecond would share an event id
(`recordType:id:lastModifiedDate`), so the envelope's lastModifiedDate is kept strictly increasing
per record.

Pure: no I/O; `NativeEvents` only keeps counters.
"""

from __future__ import annotations

import itertools
import re
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from msgspec import Struct

from concord.sandbox.world import Change, Record

STRIPE_API_VERSION: Final = "2025-03-31.basil"
ZENDESK_EVENT_VERSION: Final = "2022-06-20"
NETSUITE_ENVELOPE: Final = "concord.netsuite.v1"
WEBHOOK_PATHS: Final = {
    "stripe": "/webhooks/stripe",
    "zendesk": "/webhooks/zendesk",
    "netsuite": "/webhooks/netsuite",
}
# Entities with Change Data Capture enabled in the sandbox org (Setup > Change Data Capture).
CDC_ENTITIES: Final = frozenset({"Account", "Opportunity"})

_ZENDESK_PREFIX: Final = "zen:event-type:"
# Fixed namespace for the uuid5 ids of Zendesk events and Salesforce transactions.
_ID_NAMESPACE: Final = uuid.UUID("5f0c6d2e-3b1a-4c8e-9d7f-2a6b8e4c1d90")
_JSON_HEADERS: Final = {"Content-Type": "application/json; charset=utf-8"}


class WebhookDelivery(Struct, frozen=True, kw_only=True, tag="webhook"):
    """An HTTP POST to Concord (`path` under its base URL), to be signed when sent."""

    platform: str
    event_id: str
    path: str
    headers: dict[str, str]
    body: bytes
    event_type: str = ""  # the platform's name of the event, as in the body: "invoice.paid", "edit", ...


class KafkaDelivery(Struct, frozen=True, kw_only=True, tag="kafka"):
    """A record to produce to Concord's raw topic, as the customer's CDC pipeline would."""

    platform: str
    event_id: str
    topic: str
    key: bytes
    value: bytes
    event_type: str = ""  # the change event's changeType: CREATE, UPDATE, DELETE, UNDELETE, GAP_UPDATE, ...


Delivery = WebhookDelivery | KafkaDelivery


class EventConfig(Struct, frozen=True, kw_only=True):
    """Account-level facts the payloads carry; the defaults suit a sandbox."""

    # Raw topic Concord reads Salesforce CDC from (`<topic_prefix>.raw.salesforce`).
    salesforce_topic: str
    # Prefix of every event id, distinct per sandbox run (letters and digits).
    run: str = ""
    salesforce_api_version: str = "62.0"
    # commitUser of changes whose record names no LastModifiedById.
    salesforce_user_id: str = "005Hp00000ConcoAAA"
    zendesk_account_id: int = 24_681_357
    netsuite_account_id: str = "1234567_SB1"
    # The Stripe webhook endpoint's `enabled_events`: "*" for all, else the event types sent.
    stripe_enabled_events: frozenset[str] = frozenset({"*"})


class NativeEvents:
    """Builds the platform events of world changes, numbering them as it goes."""

    def __init__(self, config: EventConfig) -> None:
        self.config = config
        self._serial = itertools.count(1)
        self._replay_ids: dict[str, Iterator[int]] = {}
        self._commit_number = 0
        # NetSuite: (record type, id) -> last lastModifiedDate sent, epoch ms.
        self._netsuite_times: dict[tuple[str, str], int] = {}

    def build(self, change: Change, gap: bool = False) -> list[Delivery]:
        """The deliveries the platform of `change` makes about it (none for what it does not report).

        `gap`: a Salesforce change event is sent as a gap event (Salesforce could not build it).
        """
        serial = next(self._serial)
        if change.platform == "stripe":
            return self._stripe(change, serial)
        if change.platform == "salesforce":
            return self._salesforce(change, serial, gap)
        if change.platform == "zendesk":
            return self._zendesk(change, serial)
        if change.platform == "netsuite":
            return [self._netsuite(change)]
        raise ValueError(f"no native events for platform {change.platform!r} (change of {change.type} {change.id})")

    # --- Stripe ------------------------------------------------------------------------------------

    def _stripe(self, change: Change, serial: int) -> list[Delivery]:
        event_type = stripe_event_type(change)
        enabled = self.config.stripe_enabled_events
        if "*" not in enabled and event_type not in enabled:
            return []
        data: dict[str, Any] = {"object": change.record}
        # Stripe sends previous_attributes only with *.updated events.
        if event_type.endswith(".updated") and change.previous is not None:
            data["previous_attributes"] = previous_attributes(change.previous, change.record)
        event_id = f"evt_{self.config.run}{serial:012d}"
        event = {
            "id": event_id,
            "object": "event",
            "api_version": STRIPE_API_VERSION,
            "created": change.at // 1000,
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            # Changes made by Stripe's own billing engine carry no API request.
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        return [_webhook("stripe", event_id, event_type, event, {"User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})]

    # --- Salesforce --------------------------------------------------------------------------------

    def _salesforce(self, change: Change, serial: int, gap: bool = False) -> list[Delivery]:
        entity = change.type
        if entity not in CDC_ENTITIES:
            return []
        payload: dict[str, Any]
        changed: list[str] = []
        nulled: list[str] = []
        if change.op == "create":
            change_type = "UNDELETE" if change.event == "UNDELETE" else "CREATE"
            payload = _nest({path: value for path, value in cdc_fields(change.record).items() if value is not None})
        elif change.op == "update":
            change_type = "UPDATE"
            before = cdc_fields(change.previous or {})
            after = cdc_fields(change.record)
            changed = [path for path in {**before, **after} if before.get(path) != after.get(path)]
            if not changed:
                return []  # only fields CDC does not report (SystemModstamp) changed
            nulled = [path for path in changed if after.get(path) is None]
            # CometD leaves cleared fields out of the payload; nulledFields names them.
            payload = _nest({path: after[path] for path in changed if after.get(path) is not None})
        else:
            change_type = "DELETE"
            payload = {}
            master = change.record.get("MasterRecordId")
            if master:
                payload["MasterRecordId"] = master  # the record lost a merge to `master`
        if gap:
            # The change happened, but the event says only that: which record, when, what kind.
            change_type, payload, changed, nulled = f"GAP_{change_type}", {}, [], []
        self._commit_number = max(self._commit_number + 1, change.at * 1000)
        user = change.record.get("LastModifiedById") or self.config.salesforce_user_id
        payload["ChangeEventHeader"] = {
            "entityName": entity,
            "recordIds": [change.id],
            "changeType": change_type,
            "changeOrigin": f"com/salesforce/api/rest/{self.config.salesforce_api_version};client=concord-sandbox",
            "transactionKey": str(uuid.uuid5(_ID_NAMESPACE, f"salesforce:{self.config.run}:{serial}")),
            "sequenceNumber": 1,
            "commitTimestamp": change.at,
            "commitNumber": self._commit_number,
            "commitUser": user,
            "nulledFields": nulled,
            "diffFields": [],
            "changedFields": changed,
        }
        channel = f"/data/{entity}ChangeEvent"
        replay_ids = self._replay_ids.setdefault(channel, itertools.count(1))
        message = {
            "data": {"schema": _schema_id(entity), "payload": payload, "event": {"replayId": next(replay_ids)}},
            "channel": channel,
        }
        header = payload["ChangeEventHeader"]
        return [
            KafkaDelivery(
                platform="salesforce",
                event_id=f"{header['transactionKey']}:{header['sequenceNumber']}",
                topic=self.config.salesforce_topic,
                key=change.id.encode(),
                value=msgspec.json.encode(message),
                event_type=change_type,
            )
        ]

    # --- Zendesk -----------------------------------------------------------------------------------

    def _zendesk(self, change: Change, serial: int) -> list[Delivery]:
        if change.type == "organization":
            domain, detail, events = "organization", _organization_detail(change.record), _organization_events(change)
        elif change.type == "ticket":
            domain, detail, events = "ticket", _ticket_detail(change.record), _ticket_events(change)
        else:
            return []
        deliveries: list[Delivery] = []
        for index, (action, event) in enumerate(events):
            event_id = str(uuid.uuid5(_ID_NAMESPACE, f"zendesk:{self.config.run}:{serial}:{index}"))
            event_type = f"{_ZENDESK_PREFIX}{domain}.{action}"
            body = {
                "type": event_type,
                "account_id": self.config.zendesk_account_id,
                "id": event_id,
                "time": _iso_seconds(change.at),
                "zendesk_event_version": ZENDESK_EVENT_VERSION,
                "subject": f"zen:{domain}:{change.id}",
                "detail": detail,
                "event": event,
            }
            deliveries.append(_webhook("zendesk", event_id, event_type, body, {"User-Agent": "Zendesk Webhook"}))
        return deliveries

    # --- NetSuite ----------------------------------------------------------------------------------

    def _netsuite(self, change: Change) -> WebhookDelivery:
        record_type = change.type.lower()  # record type ids are lower case: customerpayment, creditmemo
        key = (record_type, change.id)
        modified = change.at if change.op == "delete" else _epoch_ms(change.record.get("lastModifiedDate"), change.at)
        modified = max(modified, self._netsuite_times.get(key, -1) + 1)
        self._netsuite_times[key] = modified
        envelope: dict[str, Any] = {
            "envelope": NETSUITE_ENVELOPE,
            "recordType": record_type,
            "id": change.id,
            "eventType": netsuite_event_type(change),
            "lastModifiedDate": _iso_millis(modified),
            "accountId": self.config.netsuite_account_id,
        }
        code = netsuite_currency_code(change.record)
        if code is not None:
            envelope["currencyCode"] = code
        # A deletion sends the record as it was (the script's context.oldRecord).
        envelope["record"] = change.record
        event_id = f"{record_type}:{change.id}:{modified}"
        return _webhook("netsuite", event_id, envelope["eventType"], envelope,
                        {"X-Concord-Account": self.config.netsuite_account_id})


def _webhook(platform: str, event_id: str, event_type: str, payload: dict[str, Any],
             headers: dict[str, str]) -> WebhookDelivery:
    return WebhookDelivery(
        platform=platform,
        event_id=event_id,
        path=WEBHOOK_PATHS[platform],
        headers={**_JSON_HEADERS, **headers},
        body=msgspec.json.encode(payload),
        event_type=event_type,
    )


# --- Stripe -----------------------------------------------------------------------------------------

# Objects whose event types are named under another object's ("customer.subscription.updated").
_STRIPE_EVENT_PREFIX: Final = {"subscription": "customer.subscription", "tax_id": "customer.tax_id"}
_STRIPE_OP_SUFFIX: Final = {"create": "created", "update": "updated", "delete": "deleted"}


def stripe_event_type(change: Change) -> str:
    """The change's Stripe event type: its hint when it names one, else `<object>.created|updated|deleted`."""
    if "." in change.event:
        return change.event
    return f"{_STRIPE_EVENT_PREFIX.get(change.type, change.type)}.{_STRIPE_OP_SUFFIX[change.op]}"


def previous_attributes(before: Record, after: Record) -> dict[str, Any]:
    """Stripe's `previous_attributes`: the old value of each changed key, nested hashes only by changed key.

    A key the update added had no value before: null, as Stripe reports it.
    """
    previous: dict[str, Any] = {}
    for key in {**before, **after}:
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        previous[key] = previous_attributes(old, new) if isinstance(old, dict) and isinstance(new, dict) else old
    return previous


# --- Salesforce -------------------------------------------------------------------------------------

# Fields a change event never carries: the record id (it is in recordIds), REST metadata, system
# fields CDC leaves out, and the compound address in its REST form (CDC nests the parts itself).
_NOT_IN_CDC: Final = frozenset({"attributes", "Id", "IsDeleted", "SystemModstamp", "LastViewedDate",
                                "LastReferencedDate", "BillingAddress", "ShippingAddress"})
# Compound address fields: the flattened REST names are `<prefix><Part>`, the REST compound's keys
# are the parts in camelCase, CDC nests `<Compound>: {<Part>: ...}`.
_ADDRESS_PARTS: Final = ("Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude",
                         "GeocodeAccuracy")
_ADDRESSES: Final = {"BillingAddress": "Billing", "ShippingAddress": "Shipping"}
_FLATTENED: Final = frozenset(prefix + part for prefix in _ADDRESSES.values() for part in _ADDRESS_PARTS)
# REST datetimes ("2025-03-31T12:00:00.000+0000"); CometD sends them as "2025-03-31T12:00:00Z".
_REST_DATETIME: Final = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(?:Z|[+-]00:?00)")


def cdc_fields(record: Record) -> dict[str, Any]:
    """A REST sObject as the flat field paths of a change event: `Name`, `BillingAddress.City`, ...

    Values stay as REST has them (`_nest` writes them in CometD form); compound address parts come
    from the flattened REST fields (`BillingCity`), or from the REST compound when the record has
    only that.
    """
    fields: dict[str, Any] = {}
    for name, value in record.items():
        if name in _NOT_IN_CDC or name in _FLATTENED:
            continue
        fields[name] = value
    for compound, prefix in _ADDRESSES.items():
        rest = record.get(compound)
        flat = any(prefix + part in record for part in _ADDRESS_PARTS)
        if not flat and not isinstance(rest, dict):
            continue
        for part in _ADDRESS_PARTS:
            if flat:
                value = record.get(prefix + part)
            else:
                value = rest.get(part[0].lower() + part[1:]) if isinstance(rest, dict) else None
            fields[f"{compound}.{part}"] = value
    return fields


def _cdc_value(value: Any) -> Any:
    # CometD writes datetimes to the second, in UTC with a Z.
    if isinstance(value, str):
        match = _REST_DATETIME.fullmatch(value)
        if match:
            return match.group(1) + "Z"
    return value


def _nest(paths: dict[str, Any]) -> dict[str, Any]:
    """Flat paths -> CometD payload fields, compound parts nested: {"BillingAddress": {"City": ...}}."""
    payload: dict[str, Any] = {}
    for path, raw in paths.items():
        value = _cdc_value(raw)
        compound, _, part = path.partition(".")
        if part:
            payload.setdefault(compound, {})[part] = value
        else:
            payload[path] = value
    return payload


def _schema_id(entity: str) -> str:
    # A stable 22-character id per entity, like Salesforce's schema ids; subscribers only cache by it.
    return uuid.uuid5(_ID_NAMESPACE, f"schema:{entity}").hex[:22]


# --- Zendesk ----------------------------------------------------------------------------------------

# Organization fields a webhook `detail` carries (ids as strings); the organization's custom fields
# and tags are not among them, which is why Concord re-reads the organization over REST.
_ORG_DETAIL_IDS: Final = ("group_id", "id")
_ORG_DETAIL_FIELDS: Final = ("created_at", "external_id", "name", "shared_comments", "shared_tickets", "updated_at")
# Ticket fields in `detail`; ids as strings, status and priority upper case.
_TICKET_DETAIL_IDS: Final = ("assignee_id", "brand_id", "group_id", "id", "organization_id", "requester_id",
                             "submitter_id")
_TICKET_DETAIL_FIELDS: Final = ("created_at", "description", "external_id", "subject", "tags", "updated_at")
_TICKET_UPPER: Final = ("priority", "status")
# Ticket field -> the `ticket.*` event Zendesk sends when it changes, in the order they are sent.
_TICKET_ASPECTS: Final = (
    ("status", "status_changed"),
    ("priority", "priority_changed"),
    ("subject", "subject_changed"),
    ("description", "description_changed"),
    ("organization_id", "organization_changed"),
    ("requester_id", "requester_changed"),
    ("assignee_id", "agent_assignment_changed"),
    ("group_id", "group_assignment_changed"),
    ("external_id", "external_id_changed"),
)
_TICKET_DELETIONS: Final = frozenset({"soft_deleted", "permanently_deleted", "marked_as_spam"})


def _id_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _organization_detail(org: Record) -> dict[str, Any]:
    detail = {name: org.get(name) for name in _ORG_DETAIL_FIELDS}
    detail.update({name: _id_text(org.get(name)) for name in _ORG_DETAIL_IDS})
    return dict(sorted(detail.items()))


def _ticket_detail(ticket: Record) -> dict[str, Any]:
    detail = {name: ticket.get(name) for name in _TICKET_DETAIL_FIELDS}
    detail.update({name: _id_text(ticket.get(name)) for name in _TICKET_DETAIL_IDS})
    detail.update({name: _upper(ticket.get(name)) for name in _TICKET_UPPER})
    return dict(sorted(detail.items()))


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _hinted_action(change: Change, domain: str) -> str | None:
    """The action of a `zen:event-type:<domain>.<action>` hint (or `<domain>.<action>`), if any."""
    hinted_domain, _, action = change.event.removeprefix(_ZENDESK_PREFIX).partition(".")
    return action if hinted_domain == domain and action else None


def _organization_events(change: Change) -> list[tuple[str, dict[str, Any]]]:
    if change.op == "create":
        return [("created", {})]
    if change.op == "delete":
        return [("deleted", {})]
    before, after = change.previous or {}, change.record
    events: list[tuple[str, dict[str, Any]]] = []
    for field, action in (("name", "name_changed"), ("external_id", "external_id_changed")):
        if before.get(field) != after.get(field):
            events.append((action, {"current": after.get(field), "previous": before.get(field)}))
    old_fields = before.get("organization_fields") or {}
    new_fields = after.get("organization_fields") or {}
    for key in {**old_fields, **new_fields}:
        if old_fields.get(key) != new_fields.get(key):
            # Zendesk names the field by its numeric id; a stable number stands in for it.
            descriptor = {"id": str(zlib.crc32(key.encode())), "title": key}
            events.append(("custom_field_changed",
                           {"current": new_fields.get(key), "field": descriptor, "previous": old_fields.get(key)}))
    old_tags, new_tags = before.get("tags") or [], after.get("tags") or []
    if old_tags != new_tags:
        events.append(("tags_changed", {"tags_added": [tag for tag in new_tags if tag not in old_tags],
                                        "tags_removed": [tag for tag in old_tags if tag not in new_tags]}))
    hinted = _hinted_action(change, "organization")
    if not events and hinted is not None and hinted not in ("created", "deleted"):
        events.append((hinted, {}))
    return events


def _ticket_events(change: Change) -> list[tuple[str, dict[str, Any]]]:
    hinted = _hinted_action(change, "ticket")
    if change.op == "create":
        return [("created", {})]
    if change.op == "delete":
        return [(hinted if hinted in _TICKET_DELETIONS else "soft_deleted", {})]
    before, after = change.previous or {}, change.record
    events: list[tuple[str, dict[str, Any]]] = []
    for field, action in _TICKET_ASPECTS:
        if before.get(field) != after.get(field):
            current, previous = after.get(field), before.get(field)
            if field in _TICKET_UPPER:
                current, previous = _upper(current), _upper(previous)
            elif field.endswith("_id") and field != "external_id":
                current, previous = _id_text(current), _id_text(previous)
            events.append((action, {"current": current, "previous": previous}))
    old_tags, new_tags = before.get("tags") or [], after.get("tags") or []
    if old_tags != new_tags:
        events.append(("tags_changed", {"tags_added": [tag for tag in new_tags if tag not in old_tags],
                                        "tags_removed": [tag for tag in old_tags if tag not in new_tags]}))
    if not events and hinted is not None and hinted != "created":
        events.append((hinted, {}))
    return events


# --- NetSuite ---------------------------------------------------------------------------------------

# User Event types (`context.type`) a hint may name; otherwise the op decides.
_NETSUITE_EVENT_TYPES: Final = frozenset({"create", "edit", "xedit", "delete", "approve", "reject", "cancel",
                                          "pack", "ship", "markcomplete", "paybills"})
_NETSUITE_OP_EVENT: Final = {"create": "create", "update": "edit", "delete": "delete"}
# Currency record names a NetSuite account ships with, and the usual internal ids of the base
# currencies; the script reads the ISO code from the currency record's `symbol`.
_NETSUITE_CURRENCY_NAMES: Final = {"USA": "USD", "US DOLLAR": "USD", "EURO": "EUR", "BRITISH POUND": "GBP",
                                   "CANADIAN DOLLAR": "CAD"}
_NETSUITE_CURRENCY_IDS: Final = {"1": "USD", "2": "GBP", "3": "CAD", "4": "EUR"}
_ISO_CODE: Final = re.compile(r"[A-Z]{3}")


def netsuite_event_type(change: Change) -> str:
    """The User Event type of the change: its hint when it is one (lower case), else by op."""
    if change.op == "delete":
        return "delete"
    hint = change.event.lower()
    return hint if hint in _NETSUITE_EVENT_TYPES and hint != "delete" else _NETSUITE_OP_EVENT[change.op]


def netsuite_currency_code(record: Record) -> str | None:
    """ISO 4217 code of the record's `currency` reference, as the script resolves it (None if unknown)."""
    currency = record.get("currency")
    if not isinstance(currency, dict):
        return None
    name = str(currency.get("refName") or "").strip()
    if name.upper() in _NETSUITE_CURRENCY_NAMES:
        return _NETSUITE_CURRENCY_NAMES[name.upper()]
    if _ISO_CODE.fullmatch(name):
        return name
    return _NETSUITE_CURRENCY_IDS.get(str(currency.get("id")))


# --- times ------------------------------------------------------------------------------------------


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def _moment(ms: int) -> datetime:
    # Whole seconds: the callers format the milliseconds themselves, exactly.
    return datetime.fromtimestamp(ms // 1000, UTC)


def _iso_seconds(ms: int) -> str:
    return _moment(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_millis(ms: int) -> str:
    return _moment(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _epoch_ms(value: Any, default: int) -> int:
    """Epoch ms of an ISO 8601 datetime with offset (NetSuite REST), else `default`."""
    if not isinstance(value, str):
        return default
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return default
    if moment.tzinfo is None:
        return default
    return (moment - _EPOCH) // _MS
