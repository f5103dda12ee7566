"""The sandbox's Salesforce: operations on Account and Opportunity sObjects, and the REST routes.

Records are sObjects as `GET /services/data/vXX.X/sobjects/<Object>/<Id>` returns them: an
`attributes` block, 18-character `Id`s (key prefix 001 for Account, 006 for Opportunity, with the
case-safe checksum suffix), `Amount` in major units, `CloseDate` as `YYYY-MM-DD`, timestamps as
`2025-03-31T12:00:00.000+0000`. Every write is one `World.put`/`World.delete` whose `event` is the
CDC change type it produces: "CREATE", "UPDATE" or "DELETE" (a merge deletes the loser with
`MasterRecordId` set to the winner, which is how CDC reports merges).

Operations (ids from `world.new_id`, so runs are deterministic):

* `create_account(world, *, name, country=None, street=None, city=None, state=None,
  postal_code=None, currency="USD", tax_id=None, payment_terms=None, external_id=None) -> Record`
* `update_account(world, account_id, fields) -> Record` - `fields` in sObject field names
* `delete_account(world, account_id) -> Record`
* `merge_accounts(world, winner_id, loser_id) -> Record` - the loser's opportunities move to the
  winner, the loser is deleted with `MasterRecordId`; returns the winner
* `create_opportunity(world, account_id, *, name, amount, currency="USD", stage="Prospecting",
  close_date=None, plan=None, plan_field="Plan__c", quantity=None) -> Record` - `amount` in minor
  units, `quantity` the seats sold (`TotalOpportunityQuantity`, a number as Salesforce shows it: 5.0)
* `update_opportunity(world, opportunity_id, fields) -> Record` - a new `StageName` also sets
  `IsClosed`, `IsWon` and `Probability` as Salesforce's stage picklist does (an amendment changes
  `TotalOpportunityQuantity` and `Amount` together)
* `close_won(world, opportunity_id) -> Record` / `close_lost(world, opportunity_id) -> Record`
* `reopen(world, opportunity_id) -> Record` - a closed deal back to "Negotiation/Review" (IsWon and
  IsClosed false): the sale is off again, what the quote-to-cash saga compensates
* `upsert(world, object_name, field, value, fields) -> tuple[Record, bool]` - by an external id
  field (or `Id`); the bool says whether the record was created

Money helpers shared with the NetSuite sandbox: `to_major(minor, currency)` / `to_minor(major, currency)`.

`routes(world, faults, credentials)` serves sObject GET/PATCH and upsert by external id. A GET with
`?fields=A,B` answers the `attributes` and those fields only, or 400 `INVALID_FIELD` naming one the
record does not have, as Salesforce does.

It also serves SOQL queries, which a reconciliation reader pages through:

* `GET /services/data/vXX.X/query?q=<SOQL>` and `/queryAll?q=<SOQL>` -> `{"totalSize", "done",
  "nextRecordsUrl" (only when not done), "records"}`; each record is the `attributes` and the
  selected fields, cut from the same sObject `GET ...?fields=` serves. The SOQL subset
  (`parse_soql`, pure): `SELECT f1, f2 FROM Account|Opportunity [WHERE f op literal [AND ...]]
  [ORDER BY f [ASC|DESC]] [LIMIT n]`, ops `= != <> < <= > >=`, literals 'strings', numbers,
  true/false/null, dates `2026-11-01` and datetimes `2026-11-01T00:00:00Z`. Field names match
  case-insensitively and come back in their API-name case; string comparisons ignore case, as in
  SOQL; without ORDER BY, records come in Id order (Salesforce promises no order). Batches of 2000,
  or `Sforce-Query-Options: batchSize=N` (clamped to 200..2000, as Salesforce treats it as a hint).
* `GET /services/data/vXX.X/query/<locator>-<offset>` (the `nextRecordsUrl`; `/queryAll/...` too):
  the next batch. The result is kept when the query runs, so a retried batch URL answers the same
  records; the 10 most recent cursors stay open (Salesforce's per-user limit), older ones answer
  400 `INVALID_QUERY_LOCATOR`.
* Errors: 400 `MALFORMED_QUERY`, `INVALID_TYPE` (object), `INVALID_FIELD` (field),
  `INVALID_QUERY_FILTER_OPERATOR` (a literal of the wrong type), `INVALID_QUERY_LOCATOR`.

`queryAll` also returns deleted records with `IsDeleted: true` (and a merge's loser with its
`MasterRecordId`). The world forgets deleted records, so the routes keep their own recycle bin,
filled from the world's delete changes from the moment `routes()` is built; a deletion stamps
`LastModifiedDate`/`SystemModstamp` with its time, as Salesforce does.
"""

from __future__ import annotations

import copy
import itertools
import operator
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec
from aiohttp import web

from concord.core.currency import minor_units
from concord.sandbox.faults import Faults, Handler, PlatformCredentials, WriteCounter, guard
from concord.sandbox.oauth import Sessions
from concord.sandbox.world import Change, Record, World

PLATFORM: Final = "salesforce"
API_VERSION: Final = "v62.0"
PLAN_FIELD: Final = "Plan__c"
# The external id field Concord's sandbox org defines on Account and Opportunity.
EXTERNAL_ID_FIELD: Final = "External_Id__c"
# The Account custom fields Concord's sandbox org defines for the tax id and payment terms (named
# here, not taken from Concord's codec: tests/unit/sandbox/test_contracts.py checks the codec reads them).
TAX_ID_FIELD: Final = "Tax_Id__c"
PAYMENT_TERMS_FIELD: Final = "Payment_Terms__c"
_KEY_PREFIX: Final = {"Account": "001", "Opportunity": "006"}
# The standard StageName picklist: probability, closed, won.
_STAGES: Final = {
    "Prospecting": (10, False, False),
    "Qualification": (10, False, False),
    "Needs Analysis": (20, False, False),
    "Value Proposition": (50, False, False),
    "Id. Decision Makers": (60, False, False),
    "Perception Analysis": (70, False, False),
    "Proposal/Price Quote": (75, False, False),
    "Negotiation/Review": (90, False, False),
    "Closed Won": (100, True, True),
    "Closed Lost": (0, True, False),
}
# Fields Salesforce computes; a write naming them is refused (INVALID_FIELD_FOR_INSERT_UPDATE).
READ_ONLY_FIELDS: Final = frozenset({"attributes", "Id", "IsDeleted", "MasterRecordId", "CreatedDate",
                                     "LastModifiedDate", "SystemModstamp", "BillingAddress", "IsWon",
                                     "IsClosed"})
_CHECKSUM_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


class NotFound(LookupError):
    """No such record (the API answers 404 NOT_FOUND)."""


def to_major(minor: int, currency: str) -> float:
    """Minor units -> the decimal amount REST APIs show (1999 USD -> 19.99)."""
    return float(Decimal(minor).scaleb(-minor_units(currency.upper())))


def to_minor(major: float | int | str, currency: str) -> int:
    """A decimal amount -> integer minor units, exactly (19.99 USD -> 1999)."""
    return int(Decimal(str(major)).scaleb(minor_units(currency.upper())).to_integral_value())


def _timestamp(world: World) -> str:
    return _format_ms(world.now_ms())


def _format_ms(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _new_id(world: World, object_name: str) -> str:
    """A 15-character record id plus the 3-character case-safe suffix Salesforce appends."""
    serial = world.new_id("").rjust(7, "0")
    base = f"{_KEY_PREFIX[object_name]}Hp000{serial}"
    suffix = ""
    for chunk in (base[0:5], base[5:10], base[10:15]):
        bits = sum(1 << i for i, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix += _CHECKSUM_ALPHABET[bits]
    return base + suffix


def _get(world: World, object_name: str, record_id: str) -> Record:
    record = world.get(PLATFORM, object_name, record_id)
    if record is None:
        raise NotFound(f"The requested resource does not exist: {object_name} {record_id}")
    # Copies: World.put compares the new record with the stored one, so edits go to a copy.
    return copy.deepcopy(record)


def _stamp(world: World, record: Record) -> None:
    record["LastModifiedDate"] = record["SystemModstamp"] = _timestamp(world)


def _billing_address(record: Record) -> dict[str, Any] | None:
    parts = {"street": record.get("BillingStreet"), "city": record.get("BillingCity"),
             "state": record.get("BillingState"), "postalCode": record.get("BillingPostalCode"),
             "country": record.get("BillingCountry")}
    if not any(parts.values()):
        return None
    return {**parts, "geocodeAccuracy": None, "latitude": None, "longitude": None, "stateCode": None,
            "countryCode": None}


def _base(world: World, object_name: str) -> Record:
    record_id = _new_id(world, object_name)
    now = _timestamp(world)
    return {
        "attributes": {"type": object_name, "url": f"/services/data/{API_VERSION}/sobjects/{object_name}/{record_id}"},
        "Id": record_id,
        "IsDeleted": False,
        "CreatedDate": now,
        "LastModifiedDate": now,
        "SystemModstamp": now,
        "OwnerId": "005Hp00000ConcoAAA",
    }


# --- accounts -------------------------------------------------------------------------------------


def _account(world: World, name: str, currency: str) -> Record:
    """A new Account record, not yet written."""
    record = _base(world, "Account")
    record.update({
        "MasterRecordId": None, "Name": name, "Type": "Customer", "BillingStreet": None, "BillingCity": None,
        "BillingState": None, "BillingPostalCode": None, "BillingCountry": None,
        "CurrencyIsoCode": currency.upper(), TAX_ID_FIELD: None, PAYMENT_TERMS_FIELD: None, EXTERNAL_ID_FIELD: None,
    })
    return record


def create_account(
    world: World,
    *,
    name: str,
    country: str | None = None,
    street: str | None = None,
    city: str | None = None,
    state: str | None = None,
    postal_code: str | None = None,
    currency: str = "USD",
    tax_id: str | None = None,
    payment_terms: str | None = None,
    external_id: str | None = None,
) -> Record:
    """A new Account (CDC "CREATE")."""
    record = _account(world, name, currency)
    _merge("Account", record, {
        "BillingStreet": street, "BillingCity": city, "BillingState": state, "BillingPostalCode": postal_code,
        "BillingCountry": country, TAX_ID_FIELD: tax_id, PAYMENT_TERMS_FIELD: payment_terms,
        EXTERNAL_ID_FIELD: external_id,
    })
    world.put(PLATFORM, "Account", record["Id"], record, event="CREATE")
    return record


def _merge(object_name: str, record: Record, fields: dict[str, Any]) -> None:
    """Write `fields` into `record` as Salesforce does (derived fields too); unknown names raise ValueError."""
    unknown = sorted(name for name in fields if name not in record or name in READ_ONLY_FIELDS)
    if unknown:
        raise ValueError(f"No such column '{unknown[0]}' on sobject of type {object_name}")
    record.update(fields)
    if object_name == "Account":
        record["BillingAddress"] = _billing_address(record)
    elif "StageName" in fields:
        probability, closed, won = _STAGES.get(fields["StageName"], (record.get("Probability"), False, False))
        record.update({"Probability": probability, "IsClosed": closed, "IsWon": won})
    if isinstance(fields.get("CurrencyIsoCode"), str):
        record["CurrencyIsoCode"] = fields["CurrencyIsoCode"].upper()


def _apply(world: World, object_name: str, record: Record, fields: dict[str, Any]) -> Record:
    """Write `fields` into a copy of `record` and put it ("UPDATE"); a write changing nothing is not put."""
    before = copy.deepcopy(record)
    _merge(object_name, record, fields)
    if record == before:
        return record
    _stamp(world, record)
    world.put(PLATFORM, object_name, record["Id"], record, event="UPDATE")
    return record


def update_account(world: World, account_id: str, fields: dict[str, Any]) -> Record:
    """Set Account fields (sObject names: Name, BillingCountry, Tax_Id__c, ...); unknown names raise ValueError."""
    return _apply(world, "Account", _get(world, "Account", account_id), fields)


def delete_account(world: World, account_id: str) -> Record:
    """Delete the Account (CDC "DELETE")."""
    record = _get(world, "Account", account_id)
    world.delete(PLATFORM, "Account", account_id, event="DELETE")
    return record


def merge_accounts(world: World, winner_id: str, loser_id: str) -> Record:
    """Merge `loser_id` into `winner_id`: opportunities are reparented, the loser is deleted.

    Salesforce sets the loser's MasterRecordId as part of the deletion itself (no separate UPDATE
    event), so it is written into the stored record just before `World.delete` reports it.
    """
    winner = _get(world, "Account", winner_id)
    loser = world.get(PLATFORM, "Account", loser_id)
    if loser is None:
        raise NotFound(f"The requested resource does not exist: Account {loser_id}")
    for opportunity in world.all(PLATFORM, "Opportunity"):
        if opportunity["AccountId"] == loser_id:
            _apply(world, "Opportunity", copy.deepcopy(opportunity), {"AccountId": winner_id})
    loser["MasterRecordId"] = winner_id
    world.delete(PLATFORM, "Account", loser_id, event="DELETE")
    _stamp(world, winner)
    world.put(PLATFORM, "Account", winner_id, winner, event="UPDATE")
    return winner


# --- opportunities --------------------------------------------------------------------------------


def _opportunity(world: World, account_id: str, name: str, currency: str, plan_field: str) -> Record:
    """A new Opportunity record at the first stage, not yet written."""
    record = _base(world, "Opportunity")
    record.update({
        "AccountId": account_id, "Name": name, "StageName": "Prospecting", "Amount": None,
        "TotalOpportunityQuantity": None, "Probability": 10,
        "CloseDate": datetime.fromtimestamp(world.now_ms() / 1000, UTC).date().isoformat(), "Type": "New Business",
        "IsClosed": False, "IsWon": False, "CurrencyIsoCode": currency.upper(), plan_field: None,
        EXTERNAL_ID_FIELD: None,
    })
    return record


def create_opportunity(
    world: World,
    account_id: str,
    *,
    name: str,
    amount: int,
    currency: str = "USD",
    stage: str = "Prospecting",
    close_date: str | None = None,
    plan: str | None = None,
    plan_field: str = PLAN_FIELD,
    quantity: int | None = None,
) -> Record:
    """A new Opportunity on the account; `amount` in minor units, `close_date` `YYYY-MM-DD` (default today),
    `quantity` the seats sold (TotalOpportunityQuantity)."""
    _get(world, "Account", account_id)
    record = _opportunity(world, account_id, name, currency, plan_field)
    fields: dict[str, Any] = {"StageName": stage, "Amount": to_major(amount, currency), plan_field: plan,
                              "TotalOpportunityQuantity": None if quantity is None else float(quantity)}
    if close_date:
        fields["CloseDate"] = close_date
    _merge("Opportunity", record, fields)
    world.put(PLATFORM, "Opportunity", record["Id"], record, event="CREATE")
    return record


def update_opportunity(world: World, opportunity_id: str, fields: dict[str, Any]) -> Record:
    """Set Opportunity fields (sObject names); a StageName change also sets IsClosed/IsWon/Probability."""
    return _apply(world, "Opportunity", _get(world, "Opportunity", opportunity_id), fields)


def close_won(world: World, opportunity_id: str) -> Record:
    """StageName "Closed Won" (IsWon, IsClosed true)."""
    return update_opportunity(world, opportunity_id, {"StageName": "Closed Won"})


def close_lost(world: World, opportunity_id: str) -> Record:
    """StageName "Closed Lost" (IsClosed true, IsWon false)."""
    return update_opportunity(world, opportunity_id, {"StageName": "Closed Lost"})


def reopen(world: World, opportunity_id: str) -> Record:
    """A closed deal is reopened: StageName back to "Negotiation/Review", IsWon and IsClosed false."""
    return update_opportunity(world, opportunity_id, {"StageName": "Negotiation/Review"})


def upsert(world: World, object_name: str, field: str, value: str, fields: dict[str, Any]) -> tuple[Record, bool]:
    """Upsert by an external id field (or `Id`): update the matching record, else create one.

    Returns (record, created); an unchanged update writes nothing. Unknown fields raise ValueError,
    a create by `Id` or of an object the sandbox does not hold raises NotFound.
    """
    existing = world.find(PLATFORM, object_name, field, value)
    if existing is not None:
        return _apply(world, object_name, copy.deepcopy(existing), fields), False
    if field == "Id" or object_name not in _KEY_PREFIX:
        raise NotFound(f"The requested resource does not exist: {object_name} {field}={value}")
    currency = str(fields.get("CurrencyIsoCode") or "USD")
    if object_name == "Account":
        record = _account(world, str(fields.get("Name") or value), currency)
    else:
        if not fields.get("AccountId"):
            raise ValueError("Required fields are missing: [AccountId]")
        record = _opportunity(world, str(fields["AccountId"]), str(fields.get("Name") or value), currency, PLAN_FIELD)
    _merge(object_name, record, {**fields, field: value})
    world.put(PLATFORM, object_name, record["Id"], record, event="CREATE")
    return record, True


# --- SOQL -----------------------------------------------------------------------------------------

# Field types that decide which literals a filter accepts and how values compare; others are text.
_DATETIME_FIELDS: Final = frozenset({"CreatedDate", "LastModifiedDate", "SystemModstamp"})
_FIELD_KINDS: Final = {**dict.fromkeys(_DATETIME_FIELDS, "datetime"), "CloseDate": "date", "Amount": "number",
                       "Probability": "number", "TotalOpportunityQuantity": "number", "IsDeleted": "boolean",
                       "IsWon": "boolean", "IsClosed": "boolean"}
_SOQL_TOKEN: Final = re.compile(r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<comma>,)
)""", re.VERBOSE)
_SOQL_KEYWORDS: Final = frozenset({"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "ASC", "DESC",
                                   "LIMIT", "NULLS", "GROUP", "HAVING", "OFFSET", "TRUE", "FALSE", "NULL"})
_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class SoqlError(ValueError):
    """A query Salesforce refuses with 400: the message and its errorCode (MALFORMED_QUERY, INVALID_FIELD, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Condition(msgspec.Struct, frozen=True, kw_only=True):
    """`field op literal`; `kind` is the literal's type: string, number, boolean, null, date or datetime."""

    field: str
    op: str
    kind: str
    value: Any


class SoqlQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed query of the sandbox's SOQL subset (names as written; resolved against the object later)."""

    fields: tuple[str, ...]
    object: str
    where: tuple[Condition, ...] = ()
    order_by: str | None = None
    descending: bool = False
    limit: int | None = None


class _Tokens:
    """The tokens of a query, consumed left to right; errors name the column, as Salesforce's do."""

    def __init__(self, text: str) -> None:
        self.items: list[tuple[str, str, int]] = []
        position = 0
        while text[position:].strip():
            match = _SOQL_TOKEN.match(text, position)
            if match is None or match.lastgroup is None:
                start = len(text) - len(text[position:].lstrip())
                raise SoqlError("MALFORMED_QUERY", f"ERROR at Row:1:Column:{start + 1}\nunexpected token: "
                                f"'{text[start:].split()[0]}'")
            self.items.append((match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup) + 1))
            position = match.end()
        self.index = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.items[self.index] if self.index < len(self.items) else None

    def unexpected(self) -> SoqlError:
        token = self.peek()
        if token is None:
            return SoqlError("MALFORMED_QUERY", "unexpected token: <EOF>")
        return SoqlError("MALFORMED_QUERY", f"ERROR at Row:1:Column:{token[2]}\nunexpected token: '{token[1]}'")

    def at(self, kind: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == kind

    def take(self, kind: str) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (kind == "name" and token[1].upper() in _SOQL_KEYWORDS):
            raise self.unexpected()
        self.index += 1
        return token[1]

    def keyword(self, word: str, *, required: bool = True) -> bool:
        token = self.peek()
        if token is not None and token[0] == "name" and token[1].upper() == word:
            self.index += 1
            return True
        if required:
            raise self.unexpected()
        return False


def parse_soql(text: str) -> SoqlQuery:
    """Parse the SOQL subset of the module docstring; raises SoqlError(MALFORMED_QUERY) on anything else."""
    tokens = _Tokens(text)
    tokens.keyword("SELECT")
    fields = [tokens.take("name")]
    while tokens.at("comma"):
        tokens.take("comma")
        fields.append(tokens.take("name"))
    tokens.keyword("FROM")
    object_name = tokens.take("name")
    where: list[Condition] = []
    if tokens.keyword("WHERE", required=False):
        where.append(_condition(tokens))
        while tokens.keyword("AND", required=False):
            where.append(_condition(tokens))
    order_by, descending = None, False
    if tokens.keyword("ORDER", required=False):
        tokens.keyword("BY")
        order_by = tokens.take("name")
        descending = tokens.keyword("DESC", required=False)
        if not descending:
            tokens.keyword("ASC", required=False)
    limit = None
    if tokens.keyword("LIMIT", required=False):
        number = tokens.take("number")
        if not number.isdigit():
            raise SoqlError("MALFORMED_QUERY", f"LIMIT must be a non-negative integer, got {number}")
        limit = int(number)
    if tokens.peek() is not None:
        raise tokens.unexpected()
    seen = [name.lower() for name in fields]
    duplicated = next((name for i, name in enumerate(fields) if name.lower() in seen[:i]), None)
    if duplicated:
        raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {duplicated}")
    return SoqlQuery(fields=tuple(fields), object=object_name, where=tuple(where), order_by=order_by,
                     descending=descending, limit=limit)


def _condition(tokens: _Tokens) -> Condition:
    field = tokens.take("name")
    op = tokens.take("op").replace("<>", "!=")
    token = tokens.peek()
    if token is None:
        raise tokens.unexpected()
    kind, text, _ = token
    value: Any
    if kind == "string":
        value = re.sub(r"\\(.)", r"\1", text[1:-1])
    elif kind == "number":
        value = float(text)
    elif kind == "datetime":
        value = datetime.fromisoformat(text)
    elif kind == "date":
        value = date.fromisoformat(text)
    elif kind == "name" and text.lower() in ("true", "false", "null"):
        kind, value = ("null", None) if text.lower() == "null" else ("boolean", text.lower() == "true")
    else:
        raise tokens.unexpected()
    tokens.index += 1
    return Condition(field=field, op=op, kind=kind, value=value)


def run_soql(query: SoqlQuery, records: Iterable[Record], fields: Iterable[str]) -> list[Record]:
    """The rows of `query` over `records` (all of its object), each the `attributes` and the selected fields.

    `fields` are the object's field names (API case). Raises SoqlError(INVALID_FIELD) for a name the
    object lacks, SoqlError(INVALID_QUERY_FILTER_OPERATOR) for a literal of the wrong type.
    """
    by_lower = {name.lower(): name for name in fields}

    def resolve(name: str) -> str:
        if name.lower() not in by_lower:
            raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity '{query.object}'. If you are "
                            "attempting to use a custom field, be sure to append the '__c' after the custom field "
                            "name. Please reference your WSDL or the describe call for the appropriate names.")
        return by_lower[name.lower()]

    selected = [resolve(name) for name in query.fields]
    conditions = [(resolve(c.field), c) for c in query.where]
    for field, condition in conditions:
        _check_literal(field, condition)
    rows = [r for r in records if all(_holds(r.get(field), c) for field, c in conditions)]
    rows.sort(key=lambda r: r["Id"])
    if query.order_by is not None:
        order = resolve(query.order_by)
        # Nulls first ascending, last descending: SOQL's defaults. The sort is stable, so ties stay in Id order.
        rows.sort(key=lambda r: (r.get(order) is not None, _comparable(order, r.get(order))),
                  reverse=query.descending)
    if query.limit is not None:
        rows = rows[:query.limit]
    return [{"attributes": r["attributes"], **{name: r.get(name) for name in selected}} for r in rows]


def _check_literal(field: str, condition: Condition) -> None:
    kind = _FIELD_KINDS.get(field, "string")
    if condition.kind == "null":
        if condition.op not in ("=", "!="):
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on null for field '{field}'")
        return
    if condition.kind != kind:
        quoted = "should be enclosed in quotes" if kind == "string" else "should not be enclosed in quotes"
        raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"value of filter criterion for field '{field}' must be "
                        f"of type {'dateTime' if kind == 'datetime' else kind} and {quoted}")


def _holds(value: Any, condition: Condition) -> bool:
    if condition.kind == "null":
        return (value is None) == (condition.op == "=")
    if value is None:
        return condition.op == "!="
    actual, expected = _comparable_value(value, condition.kind), condition.value
    if isinstance(expected, str):
        expected = expected.casefold()
    return _COMPARE[condition.op](actual, expected)


def _comparable(field: str, value: Any) -> Any:
    return None if value is None else _comparable_value(value, _FIELD_KINDS.get(field, "string"))


def _comparable_value(value: Any, kind: str) -> Any:
    """A record value as it compares in SOQL: datetimes and dates parsed, text without case."""
    if kind == "datetime":
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "string":
        return str(value).casefold()
    return value


# --- the HTTP API ---------------------------------------------------------------------------------

_API_ROOT: Final = "/services/data/{version:v[0-9]+\\.[0-9]}/sobjects/{object}"
_fields_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_QUERY_ROOT: Final = "/services/data/{version:v[0-9]+\\.[0-9]}"
DEFAULT_BATCH_SIZE: Final = 2000
MIN_BATCH_SIZE: Final = 200
# Salesforce keeps 10 query cursors open per user; opening an 11th closes the oldest.
OPEN_CURSORS: Final = 10
_BATCH_SIZE: Final = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)


def _standard_fields() -> dict[str, frozenset[str]]:
    """The fields every record of each object has (from a record built the way the operations build them)."""
    scratch = World(clock=lambda: 0.0)
    templates = {"Account": {**_account(scratch, "", "USD"), "BillingAddress": None},
                 "Opportunity": _opportunity(scratch, "", "", "USD", PLAN_FIELD)}
    return {name: frozenset(record) - {"attributes"} for name, record in templates.items()}


_STANDARD_FIELDS: Final = _standard_fields()


def _error(status: int, code: str, message: str, retry_after: float | None = None,
           fields: list[str] | None = None) -> web.Response:
    """A Salesforce REST error: a JSON list of `{"message", "errorCode", "fields"}`."""
    if status == 429:
        code = "REQUEST_LIMIT_EXCEEDED"
    elif status >= 500:
        code = "SERVER_UNAVAILABLE" if status == 503 else "UNKNOWN_EXCEPTION"
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    body = msgspec.json.encode([{"message": message, "errorCode": code, "fields": fields or []}])
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _batch_size(options: str) -> int:
    """The batch size of `Sforce-Query-Options: batchSize=N`, clamped to 200..2000 (a hint to Salesforce)."""
    match = _BATCH_SIZE.search(options)
    if match is None:
        return DEFAULT_BATCH_SIZE
    return min(max(int(match.group(1)), MIN_BATCH_SIZE), DEFAULT_BATCH_SIZE)


class _Api:
    """The sObject and query endpoints, over one world."""

    def __init__(self, world: World, sessions: Sessions) -> None:
        self.world = world
        self.sessions = sessions
        self.writes = WriteCounter(world)
        self.deleted: dict[tuple[str, str], Record] = {}  # the recycle bin queryAll reads: (object, Id) -> record
        self.cursors: dict[str, list[Record]] = {}  # query locator -> the query's rows
        self._locators = itertools.count(1)
        world.listen(self._recycle)

    def _recycle(self, change: Change) -> None:
        """Keep deleted records (for queryAll); a record written again (undeleted) leaves the bin."""
        if change.platform != PLATFORM:
            return
        if change.op == "delete":
            stamp = _format_ms(change.at)
            self.deleted[(change.type, change.id)] = {**change.record, "IsDeleted": True, "LastModifiedDate": stamp,
                                                      "SystemModstamp": stamp}
        else:
            self.deleted.pop((change.type, change.id), None)

    def _unauthenticated(self, request: web.Request) -> web.Response | None:
        if not self.sessions.bearer(request.headers.get("Authorization", "")):
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return None

    def _denied(self, request: web.Request) -> web.Response | None:
        if (denied := self._unauthenticated(request)) is not None:
            return denied
        object_name = request.match_info["object"]
        if object_name not in _KEY_PREFIX:
            return _error(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{object_name}' "
                          "is not supported by the sandbox")
        return None

    async def get_by_id(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        return self._found(request, "Id", request.match_info["id"])

    async def get_by_field(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        return self._found(request, request.match_info["field"], request.match_info["value"])

    def _found(self, request: web.Request, field: str, value: str) -> web.Response:
        object_name = request.match_info["object"]
        record = self.world.find(PLATFORM, object_name, field, value)
        if record is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        wanted = [name.strip() for name in request.query.get("fields", "").split(",") if name.strip()]
        unknown = [name for name in wanted if name not in record]
        if unknown:
            return _error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity '{object_name}'. If you "
                          "are attempting to use a custom field, be sure to append the '__c' after the custom field "
                          "name.", fields=unknown[:1])
        if wanted:
            record = {"attributes": record["attributes"], **{name: record[name] for name in wanted}}
        return web.Response(body=msgspec.json.encode(record), content_type="application/json")

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            return _fields_decoder.decode(await request.read())
        except msgspec.DecodeError as exc:
            return _error(400, "JSON_PARSER_ERROR", f"The request body is not a JSON object of fields: {exc}")

    async def patch(self, request: web.Request) -> web.StreamResponse:
        """PATCH by Id: 204, or 404 / 400 INVALID_FIELD."""
        if (denied := self._denied(request)) is not None:
            return denied
        fields = await self._body(request)
        if isinstance(fields, web.Response):
            return fields
        object_name, record_id = request.match_info["object"], request.match_info["id"]
        key = f"{object_name}:{record_id}"
        return self._write(key, f"PATCH {object_name}/{record_id}", lambda: self._update(object_name, record_id,
                                                                                            fields))

    def _update(self, object_name: str, record_id: str, fields: dict[str, Any]) -> web.Response:
        record = self.world.get(PLATFORM, object_name, record_id)
        if record is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        _apply(self.world, object_name, copy.deepcopy(record), fields)
        return web.Response(status=204)

    async def upsert(self, request: web.Request) -> web.StreamResponse:
        """PATCH by external id: 201 with `{"id", "success", "errors", "created": true}`, or 204 when updated."""
        if (denied := self._denied(request)) is not None:
            return denied
        fields = await self._body(request)
        if isinstance(fields, web.Response):
            return fields
        object_name, field, value = (request.match_info["object"], request.match_info["field"],
                                     request.match_info["value"])
        if field in fields:
            return _error(400, "INVALID_FIELD", f"The external id field {field} must not also be in the body",
                          fields=[field])

        def run() -> web.Response:
            record, created = upsert(self.world, object_name, field, value, fields)
            if not created:
                return web.Response(status=204)
            return web.json_response({"id": record["Id"], "success": True, "errors": [], "created": True},
                                     status=201)

        return self._write(f"{object_name}:eid:{value}", f"upsert {object_name} {field}={value}", run)

    def query(self, include_deleted: bool) -> Handler:
        """`GET .../query?q=` (or `queryAll`): run the query, keep its rows under a new locator, answer batch 1."""
        resource = "queryAll" if include_deleted else "query"

        async def handler(request: web.Request) -> web.StreamResponse:
            if (denied := self._unauthenticated(request)) is not None:
                return denied
            text = request.query.get("q", "")
            if not text.strip():
                return _error(400, "MALFORMED_QUERY", f"{resource}: the q parameter (a SOQL query) is required")
            try:
                rows = self._run(parse_soql(text), include_deleted)
            except SoqlError as exc:
                return _error(400, exc.code, str(exc))
            locator = f"01gHp{next(self._locators):010d}AAA"
            self.cursors[locator] = rows
            while len(self.cursors) > OPEN_CURSORS:
                del self.cursors[next(iter(self.cursors))]
            return self._batch(request, resource, locator, 0)

        return handler

    def _run(self, query: SoqlQuery, include_deleted: bool) -> list[Record]:
        if query.object.lower() not in {name.lower() for name in _KEY_PREFIX}:
            raise SoqlError("INVALID_TYPE", f"sObject type '{query.object}' is not supported. If you are attempting "
                            "to use a custom object, be sure to append the '__c' after the entity name. Please "
                            "reference your WSDL or the describe call for the appropriate names.")
        object_name = next(name for name in _KEY_PREFIX if name.lower() == query.object.lower())
        records = list(self.world.all(PLATFORM, object_name))
        if include_deleted:
            records += [r for (kind, _), r in self.deleted.items() if kind == object_name]
        fields = set(_STANDARD_FIELDS[object_name]).union(*(r.keys() for r in records)) - {"attributes"}
        return run_soql(query, records, fields)

    def query_more(self, resource: str) -> Handler:
        """`GET .../<resource>/<locator>-<offset>`: the batch of a kept query starting at offset."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if (denied := self._unauthenticated(request)) is not None:
                return denied
            locator, _, offset = request.match_info["locator"].rpartition("-")
            rows = self.cursors.get(locator)
            if rows is None or not offset.isdigit() or int(offset) > len(rows):
                return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return self._batch(request, resource, locator, int(offset))

        return handler

    def _batch(self, request: web.Request, resource: str, locator: str, offset: int) -> web.Response:
        rows = self.cursors[locator]
        size = _batch_size(request.headers.get("Sforce-Query-Options", ""))
        records = rows[offset:offset + size]
        end = offset + len(records)
        body: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows)}
        if end < len(rows):
            body["nextRecordsUrl"] = f"/services/data/{request.match_info['version']}/{resource}/{locator}-{end}"
        body["records"] = records
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")

    def _write(self, key: str, kind: str, run: Callable[[], web.Response]) -> web.Response:
        before = self.writes.count
        try:
            response: web.Response = run()
        except NotFound as exc:
            response = _error(404, "NOT_FOUND", str(exc))
        except ValueError as exc:
            code = "REQUIRED_FIELD_MISSING" if "Required fields" in str(exc) else "INVALID_FIELD"
            response = _error(400, code, str(exc))
        self.world.effects.request(PLATFORM, key, kind)
        if self.writes.count > before:
            self.world.effects.applied(PLATFORM, key, kind)
        return response


def routes(world: World, faults: Faults, credentials: PlatformCredentials,
           sessions: Sessions | None = None) -> list[web.RouteDef]:
    """The sObject endpoints (any `vXX.X`), each behind the Salesforce faults, open to the bearers `sessions`
    accepts (default: the static token of `credentials`; sandbox/oauth.py)."""
    api = _Api(world, sessions or Sessions(credentials.salesforce_access_token))
    guarded = guard(faults, PLATFORM, _error)
    handlers: list[tuple[str, str, Handler]] = [
        ("GET", _API_ROOT + "/{id}", api.get_by_id),
        ("PATCH", _API_ROOT + "/{id}", api.patch),
        ("GET", _API_ROOT + "/{field}/{value}", api.get_by_field),
        ("PATCH", _API_ROOT + "/{field}/{value}", api.upsert),
        ("GET", _QUERY_ROOT + "/query", api.query(include_deleted=False)),
        ("GET", _QUERY_ROOT + "/queryAll", api.query(include_deleted=True)),
        ("GET", _QUERY_ROOT + "/query/{locator}", api.query_more("query")),
        ("GET", _QUERY_ROOT + "/queryAll/{locator}", api.query_more("queryAll")),
    ]
    return [web.route(method, path, guarded(handler)) for method, path, handler in handlers]
