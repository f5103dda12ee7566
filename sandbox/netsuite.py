"""The sandbox's NetSuite: operations on ERP records, and the SuiteTalk REST record routes.

Records are NetSuite REST records as `GET /services/rest/record/v1/<type>/<id>` returns them:
string internal ids, `externalId`, references as `{"id", "refName"}` (`entity`, `currency`,
`terms`, `status`), money as decimal numbers in major units, dates `YYYY-MM-DD`,
`lastModifiedDate` ISO 8601 UTC, `links` with the record's URL. Record types (world types):
`customer`, `invoice`, `customerPayment`, `creditMemo`, `salesOrder`. Every write is one
`World.put`/`World.delete` whose `event` is the User Event type: "create", "edit" or "delete".

Operations (ids from `world.new_id`, so runs are deterministic; money in minor units):

* `upsert_customer(world, external_id, *, company_name, email=None, currency="USD", terms=None,
  tax_id=None, country=None, address=None) -> Record` - externalId = the CRM account id, and so is
  the CRM link field `custentity_sf_account_id` (`CRM_LINK_FIELD`, below)
* `upsert_invoice(world, external_id, *, customer_id, number, total, tax=0, currency="USD",
  due_date=None, status="open", amount_remaining=None) -> Record` - externalId = the billing invoice id
* `apply_payment(world, invoice_id, *, amount=None, external_id=None) -> tuple[payment, invoice]` -
  a customerPayment applied to the invoice; paid in full sets `amountRemaining` 0, status "Paid In Full"
* `create_credit_memo(world, external_id, *, customer_id, amount, currency="USD", invoice_id=None)
  -> Record` - externalId = the billing refund id; applied to the invoice when given
* `upsert_sales_order(world, external_id, *, customer_id, total, currency="USD",
  status="Pending Fulfillment") -> Record` - externalId = the CRM opportunity id
* `refuse_sales_orders(world, opportunity_id, reason)` - from now on every write of that
  opportunity's sales order (the PUT by `eid:`, the operation above) is refused: 400 `USER_ERROR`
  with a NetSuite-like detail naming `reason`, as an approval workflow or a User Event script that
  throws does. Permanent, so a retry never gets through: the quote-to-cash saga must compensate.
* `void_invoice(world, invoice_id) -> Record`
* `delete_record(world, record_type, record_id) -> Record`
* `upsert_record(world, record_type, external_id, body) -> tuple[Record, bool, bool]` - what
  `PUT .../<type>/eid:<externalId>` does with a REST body: (record, created, changed)
* `patch_record(world, record_type, record_id, body) -> tuple[Record, bool]` - `PATCH .../<type>/<id>`
  (an `externalId` another record of the type holds is refused: NetSuite keeps them unique)

A customer's link to its CRM account is the custom entity field `custentity_sf_account_id`, not
only its externalId: externalIds are unique, so a merged-away account's customer could never take
the winner's id while the winner's own customer holds it, whereas the link field can name the
winner on both (which is then a duplicate for a person to merge). REST bodies carry it like any
field (GET shows it, PUT and PATCH write it); SuiteQL has it as the column `custentity_sf_account_id`.

Sales orders (`salesOrder/eid:<opportunity id>`) take the quote-to-cash saga's body: `entity` by
the customer's externalId, `currency` by `refName`, `orderStatus` or `status` (either one sets
both: `{"id": "B", "refName": "Pending Fulfillment"}`, a PATCH `{"id": "C", "refName":
"Cancelled"}`), `total`, and lines `item.items[]` of `{"item": {"externalId": <price id>},
"quantity", "amount"}`, the item resolved from the plan catalogue (sandbox/catalog.py; another
externalId is 400 `USER_ERROR`). A PATCH or GET of one that does not exist is 404.

`routes(world, faults, credentials)` serves GET/PATCH by id and upsert by externalId, with
NetSuite's error shape and its concurrency limit, and the SuiteQL endpoint a reconciliation reader
pages through:

* `POST /services/rest/query/v1/suiteql?limit=<1..1000, default 1000>&offset=<a multiple of limit>`
  with `Prefer: transient` (else 400, as NetSuite) and body `{"q": "<SuiteQL>"}` -> `{"links":
  [previous, first, next, last, self as they apply], "count", "hasMore", "offset", "totalResults",
  "items": [{"links": [], "<column>": "<value>", ...}]}`. An offset past the end answers an empty
  page (count 0), so a reader racing a deletion ends its loop instead of failing.
* The SuiteQL subset (`parse_suiteql`, pure): `SELECT *|col, ... FROM customer|transaction|currency [WHERE
  col op literal [AND ...]] [ORDER BY col [ASC|DESC]]`, ops `= != <> < <= > >=` and `IS [NOT]
  NULL`, literals 'strings' (`''` escapes a quote) and numbers; names are case-insensitive.
  Without ORDER BY, rows come in id order (NetSuite promises none). Errors are 400
  `INVALID_PARAMETER` "Invalid search query ..." as NetSuite words them (unknown table or column
  included).
* Rows are flat projections of the same records `GET .../record/v1/<type>/<id>` serves
  (`suiteql_row`): lowercase column names, every value a string (numbers as plain decimals,
  booleans "T"/"F", dates "M/D/YYYY" and datetimes "M/D/YYYY h:mm:ss am", the default US date format
  with the time format that has seconds, UTC), and a column whose value is null left out, as
  SuiteQL does. Dates and datetimes in WHERE compare as dates ('11/1/2026', '2026-11-01',
  '2026-11-01T00:00:00Z' or the datetime format above), numbers as numbers.
* Tables: `customer` (id, entityid, companyname, email, externalid, custentity_sf_account_id, currency,
  terms, vatregnumber, isperson, isinactive, balance, overduebalance, datecreated, lastmodifieddate) and
  `transaction` over invoices, payments, credit memos and sales orders, `type` 'CustInvc', 'CustPymt', 'CustCred',
  'SalesOrd' (id, tranid, type, entity, externalid, status (the status letter), foreigntotal,
  foreignamountremaining, currency, trandate, duedate, createddate, lastmodifieddate), and `currency`
  (id, name, symbol: the ISO code), the account's currency records, where a reader resolves a record's
  `currency.id` to its code as the User Event script does.
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from concord.sandbox import catalog
from concord.sandbox.faults import Faults, Handler, PlatformCredentials, WriteCounter, guard
from concord.sandbox.oauth import Sessions
from concord.sandbox.salesforce import to_major, to_minor
from concord.sandbox.world import Record, World

PLATFORM: Final = "netsuite"
# The sandbox's account, as it appears in record links.
ACCOUNT_URL: Final = "https://1234567.suitetalk.api.netsuite.com"
RECORD_TYPES: Final = ("customer", "invoice", "customerPayment", "creditMemo", "salesOrder")
# Currency records of a typical account: internal id and name (the name of USD is "USA", as in
# Oracle's own examples; Concord resolves the ISO code through the envelope's currencyCode).
_CURRENCIES: Final = {"USD": ("1", "USA"), "GBP": ("2", "British pound"), "CAD": ("3", "Canadian Dollar"),
                      "EUR": ("4", "Euro")}
_INVOICE_STATUS: Final = {"open": ("A", "Open"), "paid": ("B", "Paid In Full"), "void": ("V", "Voided"),
                          "draft": ("D", "Pending Approval")}
# Fields NetSuite computes or owns; a write naming them is refused.
READ_ONLY_FIELDS: Final = frozenset({"id", "links", "createdDate", "lastModifiedDate", "amountPaid"})
_ID_OFFSET: Final = 1000
# The custom entity field linking a customer to its CRM account (Concord's CONCORD_NETSUITE_CRM_LINK_FIELD
# names it; named here on its own, as the sandbox's account defines it).
CRM_LINK_FIELD: Final = "custentity_sf_account_id"
E_SALES_ORDER_REFUSED: Final = "Error while accessing a resource. {reason}"


class NotFound(LookupError):
    """No such record (the API answers 404 with o:errorCode NONEXISTENT_ID)."""


def currency_ref(code: str) -> dict[str, str]:
    """The `currency` reference of a record in `code` (ISO 4217)."""
    internal_id, name = _CURRENCIES.get(code.upper(), (code.upper(), code.upper()))
    return {"id": internal_id, "refName": name}


def currency_code(ref: dict[str, Any] | None) -> str:
    """The ISO code of a `currency` reference (the reverse of `currency_ref`)."""
    if not ref:
        return "USD"
    for code, (internal_id, name) in _CURRENCIES.items():
        if ref.get("id") == internal_id or ref.get("refName") == name:
            return code
    return str(ref.get("refName") or ref.get("id") or "USD").upper()


def _timestamp(world: World) -> str:
    moment = datetime.fromtimestamp(world.now_ms() / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _today(world: World) -> str:
    return datetime.fromtimestamp(world.now_ms() / 1000, UTC).date().isoformat()


def _get(world: World, record_type: str, record_id: str) -> Record:
    record = world.get(PLATFORM, record_type, record_id)
    if record is None:
        raise NotFound(f"The record instance does not exist. Provide a valid record instance ID ({record_type} "
                       f"{record_id}).")
    # Copies: World.put compares the new record with the stored one, so edits go to a copy.
    return copy.deepcopy(record)


def _ref(world: World, record_type: str, record_id: str) -> dict[str, str]:
    record = _get(world, record_type, record_id)
    name = record.get("companyName") or record.get("tranId") or record_id
    return {"id": record_id, "refName": str(name)}


def _new(world: World, record_type: str) -> Record:
    record_id = str(_ID_OFFSET + int(world.new_id("")))
    now = _timestamp(world)
    return {
        "links": [{"rel": "self", "href": f"{ACCOUNT_URL}/services/rest/record/v1/{record_type.lower()}/{record_id}"}],
        "id": record_id,
        "createdDate": now,
        "lastModifiedDate": now,
    }


def _write(world: World, record_type: str, record: Record, created: bool) -> Record:
    world.put(PLATFORM, record_type, record["id"], record, event="create" if created else "edit")
    return record


def _upsert(world: World, record_type: str, external_id: str, fields: Record) -> tuple[Record, bool, bool]:
    """Merge `fields` into the record with `external_id`, or create it: (record, created, changed)."""
    existing = world.find(PLATFORM, record_type, "externalId", external_id)
    record = copy.deepcopy(existing) if existing is not None else {**_new(world, record_type),
                                                                   "externalId": external_id}
    before = copy.deepcopy(record)
    record.update(fields)
    _derive(record_type, record)
    if existing is not None and record == before:
        return record, False, False
    record["lastModifiedDate"] = _timestamp(world)
    return _write(world, record_type, record, existing is None), existing is None, True


# --- operations -----------------------------------------------------------------------------------


def upsert_customer(
    world: World,
    external_id: str,
    *,
    company_name: str,
    email: str | None = None,
    currency: str = "USD",
    terms: str | None = None,
    tax_id: str | None = None,
    country: str | None = None,
    address: str | None = None,
) -> Record:
    """Create or update the customer whose externalId is the CRM account id."""
    fields: Record = {
        "entityId": company_name,
        "companyName": company_name,
        "isPerson": False,
        "currency": currency_ref(currency),
        "creditHoldOverride": {"id": "AUTO", "refName": "Auto"},
        "balance": 0.0,
        "overdueBalance": 0.0,
        CRM_LINK_FIELD: external_id,
    }
    optional = {"email": email, "terms": {"id": terms, "refName": terms} if terms else None, "vatRegNumber": tax_id,
                "defaultAddress": address, "country": {"id": country, "refName": country} if country else None}
    fields.update({key: value for key, value in optional.items() if value is not None})
    return _upsert(world, "customer", external_id, fields)[0]


def upsert_invoice(
    world: World,
    external_id: str,
    *,
    customer_id: str,
    number: str,
    total: int,
    tax: int = 0,
    currency: str = "USD",
    due_date: str | None = None,
    status: str = "open",
    amount_remaining: int | None = None,
) -> Record:
    """Create or update the invoice whose externalId is the billing invoice id (`total` includes `tax`)."""
    status_id, status_name = _INVOICE_STATUS[status]
    remaining = (0 if status in ("paid", "void") else total) if amount_remaining is None else amount_remaining
    fields: Record = {
        "tranId": number,
        "tranDate": _today(world),
        "entity": _ref(world, "customer", customer_id),
        "status": {"id": status_id, "refName": status_name},
        "currency": currency_ref(currency),
        "subtotal": to_major(total - tax, currency),
        "taxTotal": to_major(tax, currency),
        "total": to_major(total, currency),
        "amountRemaining": to_major(remaining, currency),
        "amountPaid": to_major(total - remaining, currency) if status != "void" else 0.0,
        "dueDate": due_date or (datetime.fromtimestamp(world.now_ms() / 1000, UTC).date()
                                + timedelta(days=30)).isoformat(),
    }
    return _upsert(world, "invoice", external_id, fields)[0]


def apply_payment(
    world: World, invoice_id: str, *, amount: int | None = None, external_id: str | None = None
) -> tuple[Record, Record]:
    """A customerPayment of `amount` (default: what remains) applied to the invoice; returns (payment, invoice).

    With `external_id` the payment is upserted by it: a second call with the same id pays nothing more.
    """
    invoice = _get(world, "invoice", invoice_id)
    currency = currency_code(invoice.get("currency"))
    amount = to_minor(invoice["amountRemaining"], currency) if amount is None else amount
    fields: Record = {
        "customer": invoice["entity"],
        "tranDate": _today(world),
        "currency": invoice["currency"],
        "payment": to_major(amount, currency),
        "status": {"id": "C", "refName": "Deposited"},
        "apply": {"items": [{"apply": True, "doc": {"id": invoice_id, "refName": invoice.get("tranId")},
                             "amount": to_major(amount, currency), "type": "Invoice"}]},
    }
    if external_id is None:
        payment = _write(world, "customerPayment", {**_new(world, "customerPayment"), **fields}, True)
    else:
        payment, created, _ = _upsert(world, "customerPayment", external_id, fields)
        if not created:
            return payment, invoice
    _settle(world, payment)
    return payment, _get(world, "invoice", invoice_id)


def _settle(world: World, payment: Record) -> None:
    """A new payment lowers amountRemaining of each invoice it applies to; paid in full at 0."""
    for line in (payment.get("apply") or {}).get("items", []):
        doc_id = str((line.get("doc") or {}).get("id") or "")
        if not line.get("apply") or world.get(PLATFORM, "invoice", doc_id) is None:
            continue
        invoice = _get(world, "invoice", doc_id)
        currency = currency_code(invoice.get("currency"))
        left = max(to_minor(invoice["amountRemaining"], currency) - to_minor(line.get("amount") or 0, currency), 0)
        invoice.update({
            "amountRemaining": to_major(left, currency),
            "amountPaid": to_major(to_minor(invoice["total"], currency) - left, currency),
            "lastModifiedDate": _timestamp(world),
        })
        if left == 0:
            invoice["status"] = {"id": "B", "refName": "Paid In Full"}
        _write(world, "invoice", invoice, False)


def create_credit_memo(
    world: World,
    external_id: str,
    *,
    customer_id: str,
    amount: int,
    currency: str = "USD",
    invoice_id: str | None = None,
) -> Record:
    """A credit memo booking a billing refund (externalId = refund id), applied to the invoice when given."""
    applied = invoice_id is not None
    fields: Record = {
        "tranId": f"CM{external_id[-6:]}",
        "tranDate": _today(world),
        "entity": _ref(world, "customer", customer_id),
        "currency": currency_ref(currency),
        "total": to_major(amount, currency),
        "applied": to_major(amount, currency) if applied else 0.0,
        "unapplied": 0.0 if applied else to_major(amount, currency),
        "status": {"id": "B", "refName": "Fully Applied"} if applied else {"id": "A", "refName": "Open"},
        "apply": {"items": [{"apply": True, "doc": {"id": invoice_id}, "amount": to_major(amount, currency),
                             "type": "Invoice"}] if applied else []},
    }
    return _upsert(world, "creditMemo", external_id, fields)[0]


def upsert_sales_order(
    world: World,
    external_id: str,
    *,
    customer_id: str,
    total: int,
    currency: str = "USD",
    status: str = "Pending Fulfillment",
) -> Record:
    """Create or update the sales order whose externalId is the CRM opportunity id (unless it is refused)."""
    _check_refusal(world, "salesOrder", external_id)
    fields: Record = {
        "tranId": f"SO{external_id[-6:]}",
        "tranDate": _today(world),
        "entity": _ref(world, "customer", customer_id),
        "currency": currency_ref(currency),
        "total": to_major(total, currency),
        "status": {"id": "B" if status == "Pending Fulfillment" else status, "refName": status},
    }
    return _upsert(world, "salesOrder", external_id, _order_status(fields))[0]


def refuse_sales_orders(world: World, opportunity_id: str, reason: str) -> None:
    """Every write of the opportunity's sales order is refused from now on (400 USER_ERROR naming `reason`)."""
    world.refuse(PLATFORM, "salesOrder", opportunity_id, reason)


def _check_refusal(world: World, record_type: str, external_id: str) -> None:
    reason = world.refusal(PLATFORM, record_type, external_id)
    if reason is not None:
        raise ValueError(E_SALES_ORDER_REFUSED.format(reason=reason))


def _order_status(body: Record) -> Record:
    """A sales order's `orderStatus` and `status` given as one: the one written sets the other too.

    NetSuite takes `orderStatus` on a write and shows `status`; callers write either, and SuiteQL's
    status column reads `status`.
    """
    given = body.get("orderStatus") or body.get("status")
    return {**body, "orderStatus": given, "status": given} if given else body


def void_invoice(world: World, invoice_id: str) -> Record:
    """The invoice is voided (status "Voided", nothing remaining)."""
    invoice = _get(world, "invoice", invoice_id)
    invoice.update({"status": {"id": "V", "refName": "Voided"}, "amountRemaining": 0.0,
                    "lastModifiedDate": _timestamp(world)})
    return _write(world, "invoice", invoice, False)


def delete_record(world: World, record_type: str, record_id: str) -> Record:
    """Delete a record ("delete")."""
    record = _get(world, record_type, record_id)
    world.delete(PLATFORM, record_type, record_id, event="delete")
    return record


def _check_body(record_type: str, body: Record) -> None:
    read_only = sorted(READ_ONLY_FIELDS & body.keys())
    if read_only:
        raise ValueError(f"Invalid field value for {record_type}: {read_only[0]} is read-only.")


def upsert_record(world: World, record_type: str, external_id: str, body: Record) -> tuple[Record, bool, bool]:
    """`PUT .../<type>/eid:<externalId>`: merge a REST body into the record; (record, created, changed).

    References given by id only (`{"id": "1001"}`) get their refName filled in as NetSuite shows them.
    """
    _check_body(record_type, body)
    if record_type == "salesOrder":
        _check_refusal(world, record_type, external_id)
        body = _order_status(body)
    record, created, changed = _upsert(world, record_type, external_id, _resolve_refs(world, body))
    if created and record_type == "customerPayment":
        _settle(world, record)
    return record, created, changed


def patch_record(world: World, record_type: str, record_id: str, body: Record) -> tuple[Record, bool]:
    """`PATCH .../<type>/<id>`: merge a REST body into the record; (record, changed)."""
    _check_body(record_type, body)
    record = _get(world, record_type, record_id)
    if record_type == "salesOrder":
        body = _order_status(body)
    external_id = body.get("externalId")
    if external_id is not None and external_id != record.get("externalId"):
        holder = world.find(PLATFORM, record_type, "externalId", external_id)
        if holder is not None:  # NetSuite keeps external ids unique per record type
            raise ValueError(f"Error while accessing resource: a {record_type} record with external ID "
                             f"{external_id} already exists (internal ID {holder['id']}).")
    before = copy.deepcopy(record)
    record.update(_resolve_refs(world, body))
    _derive(record_type, record)
    if record == before:
        return record, False
    record["lastModifiedDate"] = _timestamp(world)
    return _write(world, record_type, record, False), True


def _resolve_refs(world: World, body: Record) -> Record:
    """References as NetSuite stores them: `{"id", "refName"}`, from an id or an externalId.

    A customer reference by externalId that matches no customer raises ValueError (NetSuite's
    "Invalid reference key").
    """
    resolved = dict(body)
    for key in ("entity", "customer"):
        ref = body.get(key)
        if not isinstance(ref, dict):
            continue
        if ref.get("externalId"):
            customer = world.find(PLATFORM, "customer", "externalId", ref["externalId"])
            if customer is None:
                raise ValueError(f"Invalid {key} reference key {ref['externalId']} (no customer has that "
                                 "externalId).")
            resolved[key] = _ref(world, "customer", customer["id"])
        elif ref.get("id"):
            if world.get(PLATFORM, "customer", str(ref["id"])) is None:
                raise ValueError(f"Invalid {key} reference key {ref['id']}.")
            resolved[key] = _ref(world, "customer", str(ref["id"]))
    currency = body.get("currency")
    if isinstance(currency, dict):
        resolved["currency"] = currency_ref(currency_code(currency))
    lines = body.get("item")
    if isinstance(lines, dict) and isinstance(lines.get("items"), list):
        resolved["item"] = {**lines, "items": [_resolve_item(line) for line in lines["items"]]}
    return resolved


def _resolve_item(line: Any) -> Any:
    """A sales order line with its item as NetSuite shows it, from an item externalId (a plan's price id)."""
    if not isinstance(line, dict) or not isinstance(line.get("item"), dict):
        return line
    ref = line["item"]
    external_id = ref.get("externalId")
    if not external_id:
        return line
    plan = catalog.plan_of(str(external_id))
    if plan is None:
        raise ValueError(f"Invalid item reference key {external_id} (no item has that externalId).")
    return {**line, "item": {"id": plan.item_id, "refName": plan.name, "externalId": plan.price_id}}


def _derive(record_type: str, record: Record) -> None:
    """Fields NetSuite computes from the others (status, amounts), filled in after a write."""
    currency = currency_code(record.get("currency"))
    if record_type == "invoice" and record.get("total") is not None:
        total = to_minor(record["total"], currency)
        remaining = to_minor(record["amountRemaining"] if "amountRemaining" in record else record["total"], currency)
        record["amountRemaining"] = to_major(remaining, currency)
        record["amountPaid"] = to_major(total - remaining, currency)
        if "status" not in record:
            record["status"] = {"id": "A", "refName": "Open"}
    elif record_type == "creditMemo" and record.get("total") is not None:
        applied = sum(to_minor(line.get("amount") or 0, currency)
                      for line in (record.get("apply") or {}).get("items", []) if line.get("apply"))
        total = to_minor(record["total"], currency)
        record.update({"applied": to_major(applied, currency), "unapplied": to_major(total - applied, currency),
                       "status": {"id": "B", "refName": "Fully Applied"} if applied >= total > 0
                       else {"id": "A", "refName": "Open"}})
    elif record_type == "customerPayment" and "status" not in record:
        record["status"] = {"id": "C", "refName": "Deposited"}


# --- SuiteQL --------------------------------------------------------------------------------------

SUITEQL_PATH: Final = "/services/rest/query/v1/suiteql"
SUITEQL_MAX_LIMIT: Final = 1000
_E_SEARCH: Final = "Invalid search query. Detailed unprocessed description follows. Search error occurred: "
# transaction.type of each world record type the transaction table holds.
TRANSACTION_TYPES: Final = {"invoice": "CustInvc", "customerPayment": "CustPymt", "creditMemo": "CustCred",
                            "salesOrder": "SalesOrd"}


class Column(msgspec.Struct, frozen=True):
    """A SuiteQL column: how its value renders and compares, and the record paths it reads (first non-null)."""

    kind: str  # number | text | boolean | date | datetime
    paths: tuple[str, ...]


TABLES: Final[dict[str, dict[str, Column]]] = {
    "customer": {
        "id": Column("number", ("id",)), "entityid": Column("text", ("entityId",)),
        "companyname": Column("text", ("companyName",)), "email": Column("text", ("email",)),
        "externalid": Column("text", ("externalId",)),
        CRM_LINK_FIELD: Column("text", (CRM_LINK_FIELD,)), "currency": Column("text", ("currency.id",)),
        "terms": Column("text", ("terms.id",)), "vatregnumber": Column("text", ("vatRegNumber",)),
        "isperson": Column("boolean", ("isPerson",)), "isinactive": Column("boolean", ("isInactive",)),
        "balance": Column("number", ("balance",)), "overduebalance": Column("number", ("overdueBalance",)),
        "datecreated": Column("datetime", ("createdDate",)),
        "lastmodifieddate": Column("datetime", ("lastModifiedDate",)),
    },
    "transaction": {
        "id": Column("number", ("id",)), "tranid": Column("text", ("tranId",)), "type": Column("text", ("@type",)),
        "entity": Column("number", ("entity.id", "customer.id")), "externalid": Column("text", ("externalId",)),
        "status": Column("text", ("status.id",)), "foreigntotal": Column("number", ("total", "payment")),
        "foreignamountremaining": Column("number", ("amountRemaining",)),
        "currency": Column("text", ("currency.id",)), "trandate": Column("date", ("tranDate",)),
        "duedate": Column("date", ("dueDate",)), "createddate": Column("datetime", ("createdDate",)),
        "lastmodifieddate": Column("datetime", ("lastModifiedDate",)),
    },
    # The account's currency records: where a reader finds the ISO code (`symbol`) of a record's `currency.id`,
    # as the User Event script does (docs/netsuite-suitescript.md).
    "currency": {"id": Column("number", ("id",)), "name": Column("text", ("name",)),
                 "symbol": Column("text", ("symbol",))},
}
_TABLE_TYPES: Final = {"customer": ("customer",), "transaction": tuple(TRANSACTION_TYPES)}
#: The rows of the `currency` table: not world records, the account's fixed set (`_CURRENCIES`).
_CURRENCY_RECORDS: Final = tuple(("currency", {"id": int(cid), "name": name, "symbol": code})
                                 for code, (cid, name) in _CURRENCIES.items())
_SQL_TOKEN: Final = re.compile(r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<comma>,)
  | (?P<star>\*)
)""", re.VERBOSE)
_SQL_KEYWORDS: Final = frozenset({"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "ASC", "DESC", "IS",
                                  "NULL", "GROUP", "JOIN", "ON", "AS"})
_SQL_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_DATETIME_INPUTS: Final = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ",
                           "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


class SuiteqlError(ValueError):
    """A query NetSuite refuses with 400 INVALID_PARAMETER; the message is what follows "Search error occurred"."""


class Filter(msgspec.Struct, frozen=True, kw_only=True):
    """`column op literal`, or `column IS [NOT] NULL` (op "is null" / "is not null", value None)."""

    column: str
    op: str
    value: str | Decimal | None


class SuiteqlQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed query of the sandbox's SuiteQL subset (names lower-cased, not yet checked against a table)."""

    columns: tuple[str, ...]  # () for *
    table: str
    where: tuple[Filter, ...] = ()
    order_by: str | None = None
    descending: bool = False


def _sql_tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while text[position:].strip():
        match = _SQL_TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise SuiteqlError(f"Invalid or unsupported search. Unexpected text at: {text[position:].strip()[:30]!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return tokens


def parse_suiteql(text: str) -> SuiteqlQuery:
    """Parse the SuiteQL subset of the module docstring; raises SuiteqlError on anything else."""
    tokens = _sql_tokens(text)
    index = 0

    def peek() -> tuple[str, str]:
        return tokens[index] if index < len(tokens) else ("end", "<end of query>")

    def take(kind: str, word: str | None = None) -> str:
        nonlocal index
        token_kind, value = peek()
        keyword = token_kind == "name" and value.upper() in _SQL_KEYWORDS
        if token_kind != kind or (word is None and keyword) or (word is not None and value.upper() != word):
            raise SuiteqlError(f"Invalid or unsupported search. Expected {word or kind} but found {value!r}.")
        index += 1
        return value

    def accept(word: str) -> bool:
        if peek()[0] == "name" and peek()[1].upper() == word:
            take("name", word)
            return True
        return False

    take("name", "SELECT")
    columns: list[str] = []
    if peek()[0] == "star":
        take("star")
    else:
        columns.append(take("name").lower())
        while peek()[0] == "comma":
            take("comma")
            columns.append(take("name").lower())
    take("name", "FROM")
    table = take("name").lower()
    where: list[Filter] = []
    if accept("WHERE"):
        while True:
            column = take("name").lower()
            if accept("IS"):
                op = "is not null" if accept("NOT") else "is null"
                take("name", "NULL")
                where.append(Filter(column=column, op=op, value=None))
            else:
                op = take("op").replace("<>", "!=")
                kind, literal = peek()
                if kind not in ("string", "number"):
                    raise SuiteqlError(f"Invalid or unsupported search. Expected a literal but found {literal!r}.")
                index += 1
                value = literal[1:-1].replace("''", "'") if kind == "string" else Decimal(literal)
                where.append(Filter(column=column, op=op, value=value))
            if not accept("AND"):
                break
    order_by, descending = None, False
    if accept("ORDER"):
        take("name", "BY")
        order_by = take("name").lower()
        descending = accept("DESC")
        if not descending:
            accept("ASC")
    if peek()[0] != "end":
        raise SuiteqlError(f"Invalid or unsupported search. Unexpected {peek()[1]!r}.")
    return SuiteqlQuery(columns=tuple(columns), table=table, where=tuple(where), order_by=order_by,
                        descending=descending)


def _path_value(record_type: str, record: Record, paths: tuple[str, ...]) -> Any:
    for path in paths:
        value: Any = TRANSACTION_TYPES.get(record_type) if path == "@type" else record
        if path != "@type":
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def _typed(kind: str, value: Any) -> Any:
    """A record value as it compares in SuiteQL (None stays None; booleans, unset meaning false, as "T"/"F")."""
    if kind == "boolean":
        return "T" if value else "F"
    if value is None:
        return None
    if kind == "number":
        return Decimal(str(value))
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "datetime":
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return str(value)


def _rendered(kind: str, value: Any) -> str:
    """A typed value as SuiteQL's JSON shows it: a string."""
    if kind == "number":
        return format(value.normalize(), "f") if value != value.to_integral_value() else str(int(value))
    if kind == "date":
        return f"{value.month}/{value.day}/{value.year}"
    if kind == "datetime":
        hour = value.hour % 12 or 12
        return (f"{value.month}/{value.day}/{value.year} {hour}:{value.minute:02d}:{value.second:02d} "
                f"{'am' if value.hour < 12 else 'pm'}")
    return str(value)


def suiteql_row(table: str, record_type: str, record: Record, columns: tuple[str, ...] = ()) -> dict[str, Any]:
    """The SuiteQL row of one world record: `columns` (all of the table's for ()), nulls left out."""
    row: dict[str, Any] = {"links": []}
    for name in columns or tuple(TABLES[table]):
        column = TABLES[table][name]
        value = _typed(column.kind, _path_value(record_type, record, column.paths))
        if value is not None:
            row[name] = _rendered(column.kind, value)
    return row


def _literal(kind: str, column: str, value: str | Decimal) -> Any:
    """A WHERE literal converted to the column's type; raises SuiteqlError when it cannot be."""
    try:
        if kind == "number":
            return value if isinstance(value, Decimal) else Decimal(value)
        if kind in ("date", "datetime"):
            text = str(value).strip().upper()
            for pattern in _DATETIME_INPUTS:
                try:
                    moment = datetime.strptime(text, pattern).replace(tzinfo=UTC)
                except ValueError:
                    continue
                return moment.date() if kind == "date" else moment
            raise ValueError(text)
    except (ValueError, InvalidOperation):
        raise SuiteqlError(f"Invalid {kind} value {str(value)!r} for field '{column}'.") from None
    return str(value)


def run_suiteql(query: SuiteqlQuery, records: Iterator[tuple[str, Record]]) -> list[dict[str, Any]]:
    """The rows of `query` over (world record type, record) pairs of its table, in order; raises SuiteqlError."""
    if query.table not in TABLES:
        raise SuiteqlError(f"Record '{query.table}' was not found.")
    table = TABLES[query.table]
    for name in (*query.columns, *(f.column for f in query.where), *filter(None, [query.order_by])):
        if name not in table:
            raise SuiteqlError(f"Field '{name}' for record '{query.table}' was not found. Reason: NOT_EXPOSED - Not "
                               "available for channel SUITEQL")
    filters = [(f, table[f.column], None if f.value is None else _literal(table[f.column].kind, f.column, f.value))
               for f in query.where]

    def value(record_type: str, record: Record, name: str) -> Any:
        return _typed(table[name].kind, _path_value(record_type, record, table[name].paths))

    def keep(record_type: str, record: Record) -> bool:
        for f, _, literal in filters:
            actual = value(record_type, record, f.column)
            if f.op in ("is null", "is not null"):
                if (actual is None) != (f.op == "is null"):
                    return False
            elif actual is None or not _SQL_COMPARE[f.op](actual, literal):
                return False
        return True

    matching = sorted(((t, r) for t, r in records if keep(t, r)), key=lambda pair: int(pair[1]["id"]))
    if query.order_by is not None:
        order = query.order_by

        def position(pair: tuple[str, Record]) -> tuple[bool, Any]:
            typed = value(pair[0], pair[1], order)
            return typed is None, typed

        # Oracle's defaults: nulls last ascending, first descending; the stable sort keeps ties in id order.
        matching.sort(key=position, reverse=query.descending)
    return [suiteql_row(query.table, t, r, query.columns) for t, r in matching]


def suiteql_page(world: World, text: str, *, limit: int, offset: int, base_url: str) -> dict[str, Any]:
    """One page of `POST .../suiteql` (limit/offset already checked); raises SuiteqlError for the query."""
    query = parse_suiteql(text)
    records = (iter(_CURRENCY_RECORDS) if query.table == "currency"
               else ((t, r) for t in _TABLE_TYPES.get(query.table, ()) for r in world.all(PLATFORM, t)))
    rows = run_suiteql(query, records)
    items = rows[offset:offset + limit]
    has_more = offset + len(items) < len(rows)

    def link(rel: str, at: int) -> dict[str, str]:
        return {"rel": rel, "href": f"{base_url}{SUITEQL_PATH}?{urlencode({'limit': limit, 'offset': at})}"}

    links = [link("previous", max(offset - limit, 0))] if offset > 0 else []
    links.append(link("first", 0))
    if has_more:
        links.append(link("next", offset + limit))
    links += [link("last", (len(rows) - 1) // limit * limit if rows else 0), link("self", offset)]
    return {"links": links, "count": len(items), "hasMore": has_more, "offset": offset, "totalResults": len(rows),
            "items": items}


def suiteql_paging(limit: str | None, offset: str | None) -> tuple[int, int]:
    """(limit, offset) from the query string; raises ValueError with NetSuite's reason when invalid."""
    if limit is not None and (not limit.isdigit() or not 1 <= int(limit) <= SUITEQL_MAX_LIMIT):
        raise ValueError(f"Invalid value for parameter limit: {limit!r}. Provide a number from 1 to "
                         f"{SUITEQL_MAX_LIMIT}.")
    if offset is not None and not offset.isdigit():
        raise ValueError(f"Invalid value for parameter offset: {offset!r}. Provide a non-negative number.")
    size, start = int(limit or SUITEQL_MAX_LIMIT), int(offset or 0)
    if start % size:
        raise ValueError(f"Invalid value for parameter offset: {start}. The offset must be a multiple of the limit "
                         f"({size}).")
    return size, start


# --- the HTTP API ---------------------------------------------------------------------------------

_RECORD_ROOT: Final = "/services/rest/record/v1"
# URL record type (case-insensitive in NetSuite) -> the world's type name.
_URL_TYPES: Final = {name.lower(): name for name in RECORD_TYPES}
_TITLES: Final = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
                  500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
_RFC_SECTIONS: Final = {400: "15.5.1", 401: "15.5.2", 404: "15.5.5", 429: "6.1", 500: "15.6.1", 502: "15.6.3",
                        503: "15.6.4"}
_body_decoder: Final = msgspec.json.Decoder(dict[str, Any])


def _error(status: int, code: str, message: str, retry_after: float | None = None) -> web.Response:
    """NetSuite's REST error: `{"type", "title", "status", "o:errorDetails": [{"detail", "o:errorCode"}]}`."""
    if status == 429 and code != "CONCURRENCY_LIMIT_EXCEEDED":
        code = "REQUEST_LIMIT_EXCEEDED"
    elif status >= 500:
        code = "UNEXPECTED_ERROR"
    rfc = "rfc6585#section-4" if status == 429 else f"rfc9110.html#section-{_RFC_SECTIONS.get(status, '15.5.1')}"
    body = {"type": f"https://www.rfc-editor.org/rfc/{rfc}", "title": _TITLES.get(status, "Error"),
            "status": status, "o:errorDetails": [{"detail": message, "o:errorCode": code}]}
    headers = {"Content-Type": "application/vnd.oracle.resource+json; type=error"}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return web.Response(body=msgspec.json.encode(body), status=status, headers=headers)


class _Api:
    """The record endpoints, over one world, with NetSuite's account concurrency limit."""

    def __init__(self, world: World, faults: Faults, credentials: PlatformCredentials, sessions: Sessions) -> None:
        self.world = world
        self.faults = faults
        self.credentials = credentials
        self.sessions = sessions
        self.writes = WriteCounter(world)
        self.in_flight = 0

    def limited(self, handler: Handler) -> Handler:
        """Count the request as in flight for its whole life (latency included); beyond the limit, 429."""

        async def counted(request: web.Request) -> web.StreamResponse:
            limit = self.faults.of(PLATFORM).netsuite_concurrency or self.credentials.netsuite_concurrency
            if self.in_flight >= limit:
                return _error(429, "CONCURRENCY_LIMIT_EXCEEDED", f"Concurrent request limit exceeded ({limit} "
                              "requests in flight). Request blocked.")
            self.in_flight += 1
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1

        return counted

    def _unauthenticated(self, request: web.Request) -> web.Response | None:
        if not self.sessions.bearer(request.headers.get("Authorization", "")):
            return _error(401, "INVALID_LOGIN", "Invalid login attempt. For more details, see the Login Audit Trail "
                          "in the NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail.")
        return None

    def _resolve(self, request: web.Request) -> tuple[str, Record | None] | web.Response:
        """(record type, record or None) for `{type}/{id}`, where id may be `eid:<externalId>`."""
        if (denied := self._unauthenticated(request)) is not None:
            return denied
        record_type = _URL_TYPES.get(request.match_info["type"].lower())
        if record_type is None:
            return _error(404, "INVALID_RECORD_TYPE", f"Record type '{request.match_info['type']}' does not exist "
                          "(the sandbox serves " + ", ".join(RECORD_TYPES) + ").")
        ref = request.match_info.get("id", "")
        if ref.startswith("eid:"):
            return record_type, self.world.find(PLATFORM, record_type, "externalId", ref.removeprefix("eid:"))
        return record_type, self.world.get(PLATFORM, record_type, ref) if ref else None

    async def get(self, request: web.Request) -> web.StreamResponse:
        resolved = self._resolve(request)
        if isinstance(resolved, web.Response):
            return resolved
        record_type, record = resolved
        if record is None:
            return _error(404, "NONEXISTENT_ID", "The record instance does not exist. Provide a valid record "
                          f"instance ID ({record_type} {request.match_info['id']}).")
        return web.Response(body=msgspec.json.encode(record), content_type="application/json")

    async def _body(self, request: web.Request) -> Record | web.Response:
        try:
            return _body_decoder.decode(await request.read())
        except msgspec.DecodeError as exc:
            return _error(400, "INVALID_CONTENT", f"The request body is not a JSON object of record fields: {exc}")

    async def patch(self, request: web.Request) -> web.StreamResponse:
        """PATCH `{type}/{id}` (or `eid:`): 204."""
        resolved = self._resolve(request)
        if isinstance(resolved, web.Response):
            return resolved
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        record_type, record = resolved
        ref = request.match_info["id"]
        if record is None:
            return _error(404, "NONEXISTENT_ID", "The record instance does not exist. Provide a valid record "
                          f"instance ID ({record_type} {ref}).")
        record_id = record["id"]

        def run() -> tuple[web.Response, str]:
            patch_record(self.world, record_type, record_id, body)
            return self._located(record_type, record_id), f"{record_type}:{record_id}"

        return self._write(f"{record_type}:{record_id}", f"PATCH {record_type}/{ref}", run)

    async def put(self, request: web.Request) -> web.StreamResponse:
        """PUT `{type}/eid:{externalId}`: upsert, 204 with the record's URL in `Location`."""
        resolved = self._resolve(request)
        if isinstance(resolved, web.Response):
            return resolved
        ref = request.match_info["id"]
        if not ref.startswith("eid:"):
            return _error(400, "INVALID_REQUEST", "Upsert (PUT) needs an external id reference: "
                          f"{_RECORD_ROOT}/<type>/eid:<externalId>.")
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        record_type, _ = resolved
        external_id = ref.removeprefix("eid:")

        key = f"{record_type}:eid:{external_id}"

        def run() -> tuple[web.Response, str]:
            record, _, _ = upsert_record(self.world, record_type, external_id, body)
            return self._located(record_type, record["id"]), key

        return self._write(key, f"upsert {record_type} eid:{external_id}", run)

    async def post(self, request: web.Request) -> web.StreamResponse:
        """POST `{type}`: create, 204 with `Location`."""
        resolved = self._resolve(request)
        if isinstance(resolved, web.Response):
            return resolved
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        record_type, _ = resolved

        def run() -> tuple[web.Response, str]:
            _check_body(record_type, body)
            record = {**_new(self.world, record_type), **_resolve_refs(self.world, body)}
            _derive(record_type, record)
            _write(self.world, record_type, record, True)
            return self._located(record_type, record["id"]), f"{record_type}:{record['id']}"

        return self._write(f"{record_type}:new", f"POST {record_type}", run)

    async def suiteql(self, request: web.Request) -> web.StreamResponse:
        """POST `suiteql?limit=&offset=` with `Prefer: transient` and `{"q": ...}`: a page of `suiteql_page`."""
        if (denied := self._unauthenticated(request)) is not None:
            return denied
        if "transient" not in request.headers.get("Prefer", "").lower():
            return _error(400, "INVALID_PARAMETER", "Missing or invalid Prefer header: SuiteQL queries need "
                          "'Prefer: transient'.")
        try:
            limit, offset = suiteql_paging(request.query.get("limit"), request.query.get("offset"))
        except ValueError as exc:
            return _error(400, "INVALID_PARAMETER", str(exc))
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        text = body.get("q")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "INVALID_PARAMETER", 'The request body must be {"q": "<SuiteQL query>"}.')
        try:
            page = suiteql_page(self.world, text, limit=limit, offset=offset, base_url=str(request.url.origin()))
        except SuiteqlError as exc:
            return _error(400, "INVALID_PARAMETER", _E_SEARCH + str(exc))
        return web.Response(body=msgspec.json.encode(page), content_type="application/json")

    def _located(self, record_type: str, record_id: str) -> web.Response:
        location = f"{ACCOUNT_URL}{_RECORD_ROOT}/{record_type.lower()}/{record_id}"
        return web.Response(status=204, headers={"Location": location})

    def _write(self, key: str, kind: str, run: Callable[[], tuple[web.Response, str]]) -> web.Response:
        """Run a write; count the request (and the application, if the world changed) under its key."""
        before = self.writes.count
        try:
            response, key = run()
        except NotFound as exc:
            response = _error(404, "NONEXISTENT_ID", str(exc))
        except ValueError as exc:
            response = _error(400, "USER_ERROR", str(exc))
        self.world.effects.request(PLATFORM, key, kind)
        if self.writes.count > before:
            self.world.effects.applied(PLATFORM, key, kind)
        return response


def routes(world: World, faults: Faults, credentials: PlatformCredentials,
           sessions: Sessions | None = None) -> list[web.RouteDef]:
    """The REST record endpoints, each behind the concurrency limit and the NetSuite faults, open to the bearers
    `sessions` accepts (default: the static token of `credentials`; sandbox/oauth.py)."""
    api = _Api(world, faults, credentials, sessions or Sessions(credentials.netsuite_access_token))
    guarded = guard(faults, PLATFORM, _error)
    record = _RECORD_ROOT + "/{type}/{id}"
    return [
        web.get(record, api.limited(guarded(api.get))),
        web.patch(record, api.limited(guarded(api.patch))),
        web.put(record, api.limited(guarded(api.put))),
        web.post(_RECORD_ROOT + "/{type}", api.limited(guarded(api.post))),
        web.post(SUITEQL_PATH, api.limited(guarded(api.suiteql))),
    ]
