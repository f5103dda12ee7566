"""Snapshot readers: every record of a platform through its own list API, page by page, resumable.

A reconciliation (`concord reconcile`, app/reconcile.py) lists each platform and feeds every record to
the platform's raw topic, where it takes the live path: the same codec, identity and state. A reader
turns one page of a platform's list answer into `SnapshotRecord`s, each the bytes the raw topic holds
for that record in a shape the platform's codec already reads, and says where the listing goes on
(`Cursor`, checkpointed by the caller after the page's records are in Kafka: a crash or Ctrl-C resumes
from the last page written, and re-reads at most that page; the codecs' event ids make the repeats
duplicates the state drops).

Each platform lists its objects one after another (`Reader.parts`), with its real paging:

==========  =======================================================  ===================================
platform    list API (parts in order)                                 what the raw topic gets per record
==========  =======================================================  ===================================
stripe      `GET /v1/{customers,subscriptions?status=all,invoices,    the object wrapped as a Stripe event
            charges,refunds}` `limit=100`, `starting_after`,          (`customer.updated`, ...) whose
            `created[gte]` (`--since`: Stripe filters by creation,    `created` is the platform's clock
            it has no "updated since")                                at the page (its `Date` header)
salesforce  `GET /services/data/<v>/queryAll?q=SELECT <the fields     the REST record, keyed by its Id
            the codec reads> FROM Account|Opportunity [WHERE          (queryAll: deleted and merged ones
            SystemModstamp >= <since>] ORDER BY SystemModstamp`,     too, `IsDeleted`/`MasterRecordId`)
            then `nextRecordsUrl`
zendesk     `GET /api/v2/incremental/organizations.json?start_time=`  `{"organization": {...}}` keyed by
            (time-based: `end_time`, `end_of_stream`), then           its id; `{"ticket": {...}}` keyed
            `GET /api/v2/incremental/tickets/cursor.json`             by its id
            (`start_time`, then `cursor=after_cursor`)
netsuite    `POST /services/rest/query/v1/suiteql` (`Prefer:          the envelope the User Event script
            transient`, `limit`, `id >` the last id read): the ids    posts (`concord.netsuite.v1`) around
            of customers, then invoices, payments, credit memos and   the record as `GET /services/rest/
            sales orders (`lastmodifieddate >= <since>`), each record record/v1/<type>/<id>` returns it,
            then read whole over REST, four at a time                 with its currency's ISO code (the
                                                                      SuiteQL `currency` table's symbol)
==========  =======================================================  ===================================

Versions: a Salesforce, Zendesk or NetSuite record is versioned by its own last-modified time (the
codecs read `SystemModstamp`/`LastModifiedDate`, `updated_at`, `lastModifiedDate`), so the state's
per-field watermarks decide as for any event: a snapshot never overwrites newer live data, and live data
arriving during the listing wins. A
Stripe object carries no modification time: its snapshot is versioned by the time Stripe answered the
page (the `Date` header, Stripe's own clock), "as of then", which is newer than every event Stripe had
sent before and older than every later one.

Failures: a 429 or 5xx (or no answer) is retried after the platform's `Retry-After` or a growing pause
(`RETRIES` times), then raises; a 401/403 or a malformed answer raises at once (`ConnectorError`: AUTH or
DATA), naming the platform, the request and the platform's own message. Salesforce and NetSuite take their
tokens from the process's token sources (connectors/tokens.py), shared with the connectors: a 401 renews
the token once and the page is asked for again. Requests are paced by
`HttpClient.pace` (the caller installs the platform's shared token bucket there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import msgspec
from msgspec import Raw, Struct

from concord.codecs.model import (
    AccountUpserted,
    CanonicalEvent,
    CustomerUpserted,
    EntitlementChanged,
    EntityRef,
    InvoiceChanged,
    OpportunityChanged,
    Platform,
    SalesOrderChanged,
    SupportCaseChanged,
    Version,
)
from concord.codecs.salesforce import record_fields
from concord.connectors.base import ConnectorError, ErrorKind
from concord.connectors.http import HttpClient, HttpResponse, bad_answer, segment
from concord.connectors.tokens import BearerAuth, netsuite_token_source, salesforce_token_source
from concord.core.settings import Settings
from concord.drift.lifecycle import RECONCILE_DRY_RUN, RECONCILE_PASS

#: Attempts of one page request before a transient failure (429, 5xx, no answer) is raised.
RETRIES: Final = 6
#: Pause before the n-th retry when the platform names none (seconds), the last one repeated.
BACKOFF_S: Final = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
#: Longest `Retry-After` obeyed: a platform asking for more is retried after this (it may say hours).
MAX_RETRY_AFTER_S: Final = 120.0
STRIPE_PAGE: Final = 100
SALESFORCE_BATCH: Final = 2000


class Cursor(Struct, frozen=True, kw_only=True):
    """Where a listing stands: the part (index into `Reader.parts`) and the platform's own cursor in it."""

    part: int = 0
    token: str = ""  # "" = the part's first page


class SnapshotRecord(Struct, frozen=True):
    """One record as the platform's raw topic holds it (`key` None: the topic's default partitioning), with its id
    in the platform and its kind as the search index names it (connectors/search_index.py `card_of`): what a
    complete listing compares with the records Concord holds, to find those the platform no longer has."""

    key: bytes | None
    value: bytes
    record_id: str = ""
    kind: str = ""


class Page(Struct, frozen=True, kw_only=True):
    """One page of a listing: its records, what part they are, and the cursor after it (None: complete)."""

    part: str
    records: list[SnapshotRecord]
    next: Cursor | None


class Reader(Protocol):
    """A platform's listing, one page per call."""

    platform: str
    parts: tuple[str, ...]
    #: When the platform answered the last list request (its `Date` header, its own clock; epoch ms).
    answered_ms: int
    #: Records of the current part after the last page, when the platform says (Salesforce's `totalSize`,
    #: NetSuite's `totalResults`; None for Stripe and Zendesk, whose lists do not count): for an ETA.
    remaining: int | None

    async def page(self, cursor: Cursor, since_ms: int | None) -> Page: ...

    async def exists(self, kind: str, record_id: str) -> bool: ...

    async def close(self) -> None: ...


Sleep = Callable[[float], Awaitable[None]]


async def fetch(call: Callable[[], Awaitable[HttpResponse]], sleep: Sleep = asyncio.sleep,
                retries: int = RETRIES) -> HttpResponse:
    """`call()`, retried on transient failures (see the module); other failures raise at once."""
    for attempt in range(retries):
        try:
            return await call()
        except ConnectorError as exc:
            if exc.kind is not ErrorKind.TRANSIENT or attempt == retries - 1:
                raise
            wait = exc.retry_after if exc.retry_after is not None else BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            await sleep(min(max(wait, 0.0), MAX_RETRY_AFTER_S))
    raise AssertionError("unreachable")  # pragma: no cover


def answered_at_ms(response: HttpResponse, clock: Callable[[], float] = time.time) -> int:
    """When the platform answered (its `Date` header, seconds), else this machine's clock (epoch ms)."""
    value = response.headers.get("date")
    if value:
        try:
            return int(parsedate_to_datetime(value).timestamp()) * 1000
        except (TypeError, ValueError, IndexError):
            pass
    return int(clock() * 1000)


# ---------------------------------------------------------------- Stripe


class _StripeList(Struct, frozen=True):
    data: list[Raw]
    has_more: bool


class _StripeObject(Struct, frozen=True):
    id: str
    object: str
    status: str | None = None


_STRIPE_KINDS: Final = {"customers": "customer", "subscriptions": "subscription", "invoices": "invoice",
                        "charges": "charge", "refunds": "refund"}
_STRIPE_EVENT: Final = {"customer": "customer.updated", "subscription": "customer.subscription.updated",
                        "invoice": "invoice.updated", "refund": "refund.updated"}


def stripe_event(raw: bytes, as_of_ms: int) -> tuple[str, bytes]:
    """A listed Stripe object wrapped as the event the codec reads for it (its id, the event's bytes).

    Versioned `created` = `as_of_ms` (seconds, as Stripe's events); the event id derives from the object and
    that time, so a page read twice in one second gives the same event.
    """
    obj = msgspec.json.decode(raw, type=_StripeObject)
    if obj.object == "charge":
        event_type = "charge.succeeded" if obj.status == "succeeded" else "charge.failed"
    else:
        event_type = _STRIPE_EVENT[obj.object]
    seconds = as_of_ms // 1000
    head = msgspec.json.encode({"id": f"snapshot:{obj.id}:{seconds}", "object": "event", "type": event_type,
                                "created": seconds, "livemode": False})
    return obj.id, head[:-1] + b',"data":{"object":' + raw + b"}}"


class StripeReader:
    platform: Final = "stripe"
    parts: Final = ("customers", "subscriptions", "invoices", "charges", "refunds")

    def __init__(self, settings: Settings, sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.time,
                 page_size: int = STRIPE_PAGE) -> None:
        self.http = HttpClient(self.platform, settings.stripe_api_url, url_variable="CONCORD_STRIPE_API_URL",
                               timeout=settings.connector_timeout_seconds,
                               headers={"Authorization": f"Bearer {settings.stripe_api_key}"},
                               error_reader=_stripe_error)
        self._sleep, self._clock, self._size = sleep, clock, page_size
        self.answered_ms = 0
        self.remaining: int | None = None

    async def page(self, cursor: Cursor, since_ms: int | None) -> Page:
        part = self.parts[cursor.part]
        params = {"limit": str(self._size)}
        if part == "subscriptions":
            params["status"] = "all"  # the default leaves canceled subscriptions out
        if cursor.token:
            params["starting_after"] = cursor.token
        if since_ms:
            params["created[gte]"] = str(since_ms // 1000)
        response = await fetch(lambda: self.http.request("GET", f"/v1/{part}", params=params), self._sleep)
        self.answered_ms = answered_at_ms(response, self._clock)
        try:
            listing = msgspec.json.decode(response.body, type=_StripeList)
            wrapped = [stripe_event(bytes(raw), self.answered_ms) for raw in listing.data]
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError) as exc:
            raise bad_answer(self.platform, f"GET /v1/{part}", exc) from None
        kind = _STRIPE_KINDS[part]
        records = [SnapshotRecord(None, value, object_id, kind) for object_id, value in wrapped]
        if listing.has_more and wrapped:
            return Page(part=part, records=records, next=Cursor(part=cursor.part, token=wrapped[-1][0]))
        return Page(part=part, records=records, next=_next_part(cursor, len(self.parts)))

    async def exists(self, kind: str, record_id: str) -> bool:
        """Whether the platform still has the record (a listing's "gone" confirmed one by one: `confirmed_gone`)."""
        response = await fetch(lambda: self.http.request("GET", f"/v1/customers/{segment(record_id)}",
                                                         allow=_GONE), self._sleep)
        return response.status != 404 and not response.json().get("deleted", False)

    async def close(self) -> None:
        await self.http.close()


def _stripe_error(body: bytes) -> str:
    return str(msgspec.json.decode(body).get("error", {}).get("message", ""))


def _next_part(cursor: Cursor, parts: int) -> Cursor | None:
    return Cursor(part=cursor.part + 1) if cursor.part + 1 < parts else None


# ---------------------------------------------------------------- Salesforce


class _SalesforceQuery(Struct, frozen=True):
    done: bool
    records: list[Raw]
    nextRecordsUrl: str | None = None  # noqa: N815 (the API's name)
    totalSize: int | None = None  # noqa: N815 (the API's name)


class _SalesforceId(Struct, frozen=True):
    Id: str  # noqa: N815 (the API's name)


def soql(object_type: str, fields: tuple[str, ...], since_ms: int | None) -> str:
    """The query listing `object_type` (every field the codec reads), modified since `since_ms` if given."""
    where = ""
    if since_ms:
        stamp = datetime.fromtimestamp(since_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        where = f" WHERE SystemModstamp >= {stamp}"
    columns = ", ".join(dict.fromkeys(("Id", *fields, "SystemModstamp", "IsDeleted")))
    return f"SELECT {columns} FROM {object_type}{where} ORDER BY SystemModstamp ASC"


class SalesforceReader:
    platform: Final = "salesforce"
    parts: Final = ("Account", "Opportunity")

    def __init__(self, settings: Settings, sleep: Sleep = asyncio.sleep, batch_size: int = SALESFORCE_BATCH) -> None:
        self.version = settings.salesforce_api_version
        self.plan_field = settings.salesforce_plan_field
        self.http = HttpClient(self.platform, settings.salesforce_instance_url,
                               url_variable="CONCORD_SALESFORCE_INSTANCE_URL",
                               timeout=settings.connector_timeout_seconds,
                               headers={"Sforce-Query-Options": f"batchSize={batch_size}"},
                               error_reader=_salesforce_error,
                               auth=BearerAuth(salesforce_token_source(settings)))
        self._sleep = sleep
        self._seen = 0  # records of the current query read so far (by this reader)
        self.answered_ms = 0
        self.remaining: int | None = None

    async def page(self, cursor: Cursor, since_ms: int | None) -> Page:
        part = self.parts[cursor.part]
        if cursor.token:
            path, params = cursor.token, None
        else:
            query = soql(part, record_fields(part, self.plan_field), since_ms)
            path, params = f"/services/data/{self.version}/queryAll", {"q": query}
        if not path.startswith("/services/data/"):
            raise ConnectorError(ErrorKind.DATA, f"salesforce: a query cursor that is not a query path: {path[:80]}")
        response = await fetch(lambda: self.http.request("GET", path, params=params), self._sleep)
        self.answered_ms = answered_at_ms(response)
        try:
            answer = msgspec.json.decode(response.body, type=_SalesforceQuery)
            kind = "account" if part == "Account" else "opportunity"
            ids = [msgspec.json.decode(raw, type=_SalesforceId).Id for raw in answer.records]
            records = [SnapshotRecord(rid.encode(), bytes(raw), rid, kind)
                       for rid, raw in zip(ids, answer.records, strict=True)]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise bad_answer(self.platform, f"GET {path.split('?')[0]}", exc) from None
        self._seen = (0 if not cursor.token else self._seen) + len(records)
        self.remaining = None if answer.totalSize is None else max(answer.totalSize - self._seen, 0)
        if not answer.done and answer.nextRecordsUrl:
            return Page(part=part, records=records, next=Cursor(part=cursor.part, token=answer.nextRecordsUrl))
        return Page(part=part, records=records, next=_next_part(cursor, len(self.parts)))

    async def exists(self, kind: str, record_id: str) -> bool:
        object_type = "Account" if kind == "account" else "Opportunity"
        path = f"/services/data/{self.version}/sobjects/{object_type}/{segment(record_id)}"
        response = await fetch(lambda: self.http.request("GET", path, params={"fields": "Id"}, allow=_GONE),
                               self._sleep)
        return response.status != 404

    async def close(self) -> None:
        await self.http.close()


def _salesforce_error(body: bytes) -> str:
    errors = msgspec.json.decode(body)
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return f"{errors[0].get('errorCode', '')}: {errors[0].get('message', '')}"
    return ""


# ---------------------------------------------------------------- Zendesk


class _ZendeskOrganizations(Struct, frozen=True):
    organizations: list[Raw]
    end_of_stream: bool
    end_time: int | None = None


class _ZendeskTickets(Struct, frozen=True):
    tickets: list[Raw]
    end_of_stream: bool
    after_cursor: str | None = None


class _ZendeskId(Struct, frozen=True):
    id: int | str


class ZendeskReader:
    platform: Final = "zendesk"
    parts: Final = ("organizations", "tickets")

    def __init__(self, settings: Settings, sleep: Sleep = asyncio.sleep, page_size: int | None = None) -> None:
        import base64

        credentials = base64.b64encode(f"{settings.zendesk_api_email}/token:{settings.zendesk_api_token}".encode())
        self.http = HttpClient(self.platform, settings.zendesk_url, url_variable="CONCORD_ZENDESK_URL",
                               timeout=settings.connector_timeout_seconds,
                               headers={"Authorization": f"Basic {credentials.decode()}"},
                               error_reader=_zendesk_error)
        self._sleep = sleep
        self.answered_ms = 0
        self.remaining: int | None = None
        self._per_page = {"per_page": str(page_size)} if page_size else {}  # the API's default (1000) when None

    async def page(self, cursor: Cursor, since_ms: int | None) -> Page:
        part = self.parts[cursor.part]
        start = str((since_ms or 0) // 1000)
        if part == "organizations":
            params = {"start_time": cursor.token or start, **self._per_page}
            path = "/api/v2/incremental/organizations.json"
        else:
            params = {"cursor": cursor.token} if cursor.token else {"start_time": start}
            params.update(self._per_page)
            path = "/api/v2/incremental/tickets/cursor.json"
        response = await fetch(lambda: self.http.request("GET", path, params=params), self._sleep)
        self.answered_ms = answered_at_ms(response)
        try:
            if part == "organizations":
                orgs = msgspec.json.decode(response.body, type=_ZendeskOrganizations)
                records = [_wrapped("organization", raw) for raw in orgs.organizations]
                if orgs.end_of_stream:
                    return Page(part=part, records=records, next=_next_part(cursor, len(self.parts)))
                if orgs.end_time is None or str(orgs.end_time) == params["start_time"]:
                    raise ConnectorError(ErrorKind.DATA, "zendesk GET /api/v2/incremental/organizations.json: "
                                         "the page ends where it began and is not the end of the stream")
                return Page(part=part, records=records, next=Cursor(part=cursor.part, token=str(orgs.end_time)))
            tickets = msgspec.json.decode(response.body, type=_ZendeskTickets)
            records = [_wrapped("ticket", raw) for raw in tickets.tickets]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise bad_answer(self.platform, f"GET {path}", exc) from None
        if tickets.end_of_stream or not tickets.after_cursor:
            return Page(part=part, records=records, next=_next_part(cursor, len(self.parts)))
        return Page(part=part, records=records, next=Cursor(part=cursor.part, token=tickets.after_cursor))

    async def exists(self, kind: str, record_id: str) -> bool:
        path = f"/api/v2/{'organizations' if kind == 'organization' else 'tickets'}/{segment(record_id)}.json"
        response = await fetch(lambda: self.http.request("GET", path, allow=_GONE), self._sleep)
        if response.status == 404:
            return False
        return kind == "organization" or response.json().get("ticket", {}).get("status") != "deleted"

    async def close(self) -> None:
        await self.http.close()


def _wrapped(kind: str, raw: Raw) -> SnapshotRecord:
    """`{"organization": {...}}` (the REST shape of one object, as a re-read feeds it), keyed by its id."""
    record_id = str(msgspec.json.decode(raw, type=_ZendeskId).id)
    return SnapshotRecord(record_id.encode(), b'{"' + kind.encode() + b'":' + bytes(raw) + b"}", record_id, kind)


def _zendesk_error(body: bytes) -> str:
    answer = msgspec.json.decode(body)
    if isinstance(answer, dict):
        error = answer.get("error")
        detail = answer.get("description") or answer.get("details") or ""
        if isinstance(error, dict):
            return f"{error.get('title', '')}: {error.get('message', '')}"
        return f"{error or ''}: {detail}".strip(": ")
    return ""


# ---------------------------------------------------------------- NetSuite


class _SuiteqlPage(Struct, frozen=True):
    items: list[dict[str, Any]]
    hasMore: bool  # noqa: N815 (the API's name)
    totalResults: int | None = None  # noqa: N815 (the API's name)


_SUITEQL_PATH: Final = "/services/rest/query/v1/suiteql"
_RECORD_PATH: Final = "/services/rest/record/v1"
#: The record types listed, in order, and their SuiteQL `transaction.type` (None: a table of its own).
_NETSUITE_TYPES: Final = {"customer": None, "invoice": "CustInvc", "customerpayment": "CustPymt",
                          "creditmemo": "CustCred", "salesorder": "SalesOrd"}
#: The search index's kind of each record type (connectors/search_index.py `card_of`).
_NETSUITE_KINDS: Final = {"customer": "customer", "invoice": "invoice", "customerpayment": "payment",
                          "creditmemo": "credit_memo", "salesorder": "sales_order"}
NETSUITE_PAGE: Final = 1000
#: Record GETs of one page in flight at once (NetSuite limits an account's concurrent requests).
NETSUITE_FETCHES: Final = 4


def suiteql(record_type: str, since_ms: int | None, after_id: int = 0) -> str:
    """The query listing the ids of `record_type` above `after_id` (modified since `since_ms` if given), lowest
    first. Keyset paging (`id > last id read`), not `offset`: a record deleted while the listing runs would
    shift every later one by one place, and the one it pushed back across a page boundary would be missed, and
    then taken for gone."""
    kind = _NETSUITE_TYPES[record_type]
    table, where = ("customer", []) if kind is None else ("transaction", [f"type = '{kind}'"])
    if after_id:
        where.append(f"id > {after_id}")
    if since_ms:
        stamp = datetime.fromtimestamp(since_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        where.append(f"lastmodifieddate >= '{stamp}'")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT id, lastmodifieddate FROM {table}{clause} ORDER BY id ASC"


def netsuite_account(url: str) -> str:
    """The account id a NetSuite REST URL names (`https://1234567-sb1.suitetalk.api.netsuite.com` ->
    `1234567_SB1`); for another host (a proxy, the sandbox), the host itself."""
    host = urlsplit(url).netloc
    if host.endswith(".suitetalk.api.netsuite.com"):
        return host.split(".", 1)[0].upper().replace("-", "_")
    return host or "unknown"


def netsuite_envelope(record_type: str, record_id: str, body: bytes, currency_codes: Mapping[str, str],
                      account: str) -> bytes:
    """The record, as `GET .../record/v1/<type>/<id>` returned it, in the envelope the NetSuite codec reads (the
    one the User Event script posts, docs/netsuite-suitescript.md), with the ISO code of its currency."""
    record = msgspec.json.decode(body)
    if not isinstance(record, dict):
        raise ValueError("the record is not a JSON object")
    head: dict[str, Any] = {"envelope": "concord.netsuite.v1", "recordType": record_type, "id": record_id,
                            "eventType": "edit", "lastModifiedDate": record.get("lastModifiedDate"),
                            "accountId": account}
    currency = record.get("currency")
    code = currency_codes.get(str(currency.get("id"))) if isinstance(currency, dict) else None
    if code:
        head["currencyCode"] = code
    return msgspec.json.encode(head)[:-1] + b',"record":' + body + b"}"


class NetSuiteReader:
    """SuiteQL lists the ids (and what changed since when), then each record is read whole over REST: the
    record the codec reads is the one the User Event script sends, so a snapshot decodes like a live event."""

    platform: Final = "netsuite"
    parts: Final = tuple(_NETSUITE_TYPES)

    def __init__(self, settings: Settings, sleep: Sleep = asyncio.sleep, page_size: int = NETSUITE_PAGE) -> None:
        self.http = HttpClient(self.platform, settings.netsuite_url, url_variable="CONCORD_NETSUITE_URL",
                               timeout=settings.connector_timeout_seconds,
                               headers={}, error_reader=_netsuite_error,
                               auth=BearerAuth(netsuite_token_source(settings)))
        self._sleep, self._size = sleep, page_size
        self.answered_ms = 0
        self.remaining: int | None = None
        self._currencies: dict[str, str] | None = None
        self.account = netsuite_account(settings.netsuite_url)

    async def _query(self, query: str, offset: int) -> _SuiteqlPage:
        params = {"limit": str(self._size), "offset": str(offset)}
        response = await fetch(lambda: self.http.request("POST", _SUITEQL_PATH, json={"q": query}, params=params,
                                                         headers={"Prefer": "transient"}), self._sleep)
        self.answered_ms = answered_at_ms(response)
        try:
            return msgspec.json.decode(response.body, type=_SuiteqlPage)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise bad_answer(self.platform, f"POST {_SUITEQL_PATH}", exc) from None

    async def currency_codes(self) -> dict[str, str]:
        """The account's currencies: internal id -> ISO code (the currency record's `symbol`), read once."""
        if self._currencies is None:
            codes: dict[str, str] = {}
            offset, more = 0, True
            while more:
                page = await self._query("SELECT id, symbol FROM currency", offset)
                codes.update((str(row["id"]), str(row["symbol"])) for row in page.items if row.get("symbol"))
                offset, more = offset + self._size, page.hasMore and bool(page.items)
            self._currencies = codes
        return self._currencies

    async def page(self, cursor: Cursor, since_ms: int | None) -> Page:
        part = self.parts[cursor.part]
        codes = await self.currency_codes()
        after = int(cursor.token or 0)
        listing = await self._query(suiteql(part, since_ms, after), 0)
        gate = asyncio.Semaphore(NETSUITE_FETCHES)

        async def read(record_id: str) -> SnapshotRecord | None:
            path = f"{_RECORD_PATH}/{part}/{segment(record_id)}"
            async with gate:
                response = await fetch(lambda: self.http.request("GET", path, allow=frozenset({404})), self._sleep)
            if response.status == 404:
                return None  # deleted since it was listed: its deletion is for the live path or the next pass
            try:
                return SnapshotRecord(None, netsuite_envelope(part, record_id, response.body, codes,
                                                                  self.account), record_id, _NETSUITE_KINDS[part])
            except (msgspec.DecodeError, ValueError) as exc:
                raise bad_answer(self.platform, f"GET {_RECORD_PATH}/{part}/<id>", exc) from None

        ids = [str(row["id"]) for row in listing.items if "id" in row]
        self.remaining = None if listing.totalResults is None else max(listing.totalResults - len(listing.items), 0)
        found = await asyncio.gather(*(read(record_id) for record_id in ids))
        records = [record for record in found if record is not None]
        if listing.hasMore and ids:
            return Page(part=part, records=records, next=Cursor(part=cursor.part, token=ids[-1]))
        return Page(part=part, records=records, next=_next_part(cursor, len(self.parts)))

    async def exists(self, kind: str, record_id: str) -> bool:
        path = f"{_RECORD_PATH}/{_NETSUITE_TYPE_OF[kind]}/{segment(record_id)}"
        response = await fetch(lambda: self.http.request("GET", path, allow=_GONE), self._sleep)
        return response.status != 404

    async def close(self) -> None:
        await self.http.close()


def _netsuite_error(body: bytes) -> str:
    answer = msgspec.json.decode(body)
    if isinstance(answer, dict):
        details = answer.get("o:errorDetails")
        if isinstance(details, list) and details and isinstance(details[0], dict):
            return f"{details[0].get('o:errorCode', '')}: {details[0].get('detail', '')}"
        return str(answer.get("title", ""))
    return ""


# ---------------------------------------------------------------- records gone


_GONE: Final = frozenset({404})
_NETSUITE_TYPE_OF: Final = {kind: record_type for record_type, kind in _NETSUITE_KINDS.items()}


async def confirmed_gone(reader: Reader, missing: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Of `missing` (kind, id, customer key: what a complete listing did not return), those the platform confirms
    gone, one request each. A record made after its place in the listing was read is not returned either,
    and is there: it must not be deleted (its version would protect it in the state, but not the count)."""
    return [m for m in missing if not await reader.exists(m[0], m[1])]


#: What a complete listing can tell is gone, per platform: the kinds the platform deletes (a Stripe
#: subscription is canceled, never deleted; a charge stays) that Concord's search index holds.
TOMBSTONED: Final[Mapping[str, frozenset[str]]] = {
    "stripe": frozenset({"customer"}), "salesforce": frozenset({"account", "opportunity"}),
    "zendesk": frozenset({"organization", "ticket"}), "netsuite": frozenset({"customer", "invoice", "sales_order"}),
}


def gone(platform: str, listed: Mapping[str, set[str]],
         known: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(kind, id, customer key) of each record Concord knows (`known`: (id, kind, customer key)) of a kind
    `TOMBSTONED` for the platform that a complete listing (`listed`: kind -> ids) did not return, sorted."""
    kinds = TOMBSTONED[platform]
    return sorted({(kind, record_id, key) for record_id, kind, key in known
                   if kind in kinds and record_id not in listed.get(kind, set())})


def deletions(platform: str, kind: str, record_id: str, customer_key: str, at_ms: int, pass_id: str,
              dry_run: bool = False) -> list[CanonicalEvent]:
    """The canonical deletion of a record a complete listing no longer returned, for the customer Concord holds
    it under, dated `at_ms` (a bit before the platform answered the listing's first page: a record changed
    after that, created while the listing ran say, is newer than the deletion, and the state keeps it).

    Canonical events, not a platform payload: the platform said nothing about the record (it is simply not
    there), so there is no payload to decode, and one without the record would name no customer (a NetSuite
    deletion names its customer only in the record it carries). The fields a model requires are placeholders,
    as the codecs give a deletion that comes without its record. Correlated with the pass, as its listed records
    are (a dry-run pass's: what they reveal is not corrected).
    """
    source = Platform(platform)
    common: dict[str, Any] = {"event_id": f"gone:{pass_id}:{kind}:{record_id}", "source": source,
                              "entity": EntityRef(kind, record_id), "occurred_at": at_ms, "version": Version(at_ms),
                              "customer_key": customer_key,
                              "correlation_id": f"{RECONCILE_DRY_RUN if dry_run else RECONCILE_PASS}{pass_id}"}
    if kind == "customer" or kind == "organization":
        events: list[CanonicalEvent] = [CustomerUpserted(**common, local_customer=f"{platform}:{record_id}",
                                                         system=source, customer_id=record_id, deleted=True)]
        if kind == "organization":
            events.append(EntitlementChanged(**{**common, "event_id": f"{common['event_id']}:entitlement"},
                                             organization_id=record_id, deleted=True))
        return events
    if kind == "ticket":
        return [SupportCaseChanged(**common, ticket_id=record_id, deleted=True)]
    if kind == "invoice":
        return [InvoiceChanged(**common, system=source, invoice_id=record_id, status="void", total=0,
                               currency="XXX", deleted=True)]
    if kind == "sales_order":
        return [SalesOrderChanged(**common, system=source, order_id=record_id, deleted=True)]
    if kind == "opportunity":
        return [OpportunityChanged(**common, opportunity_id=record_id, deleted=True)]
    if kind == "account":
        return [AccountUpserted(**common, deleted=True)]
    raise ValueError(f"{platform} {kind}: not a kind a listing tells gone")


READERS: Final[Mapping[str, Callable[..., Any]]] = {
    "stripe": StripeReader, "salesforce": SalesforceReader, "zendesk": ZendeskReader, "netsuite": NetSuiteReader,
}

