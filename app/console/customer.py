"""What the search page and the customer view show, arranged for their templates: pure, no I/O.

The customer view renders `CustomerView` (app/customer_view.py) as it is; this module only lays out what
a table needs and the view does not hold as such: the customer-master fields with one column per record
holding them (a record lacking a field has an empty cell, never a shifted one), each billing invoice's
fields beside its ERP invoice's, and plain words for the kinds of ids and of checkpoints.
"""

from __future__ import annotations

from typing import Any, Final

from msgspec import Struct

from concord.app.console.board import value_text, when
from concord.app.customer_view import Cell, CustomerView, Field, InvoicePair
from concord.connectors.search_index import SearchResults

SYSTEM_TITLES: Final = {"salesforce": "Salesforce", "stripe": "Stripe", "zendesk": "Zendesk", "netsuite": "NetSuite",
                        "concord": "Concord"}
#: Checkpoint kinds (connectors/timeline.py) as a person reads them; `drift.<status>` and `command.<status>`
#: are composed from their status.
CHECKPOINT_KINDS: Final = {
    "events.applied": "events applied",
    "command.issued": "command issued",
    "resync_required": "records to read again",
}
#: An invoice's fields shown beside the ERP's (the rest, ids of related records, are in each system's records).
INVOICE_FIELDS: Final = ("number", "status", "total", "tax", "amount_remaining", "currency", "due_at", "paid_at")
# Fields holding an epoch-ms time, shown as a UTC time.
_TIMES: Final = frozenset({"due_at", "paid_at", "current_period_end", "canceled_at", "created_at"})


def system_title(system: str) -> str:
    return SYSTEM_TITLES.get(system, system)


def kind_text(kind: str) -> str:
    """A kind of id or record as words: `customer_external_id` -> "customer external id"."""
    return kind.replace("_", " ")


def checkpoint_text(kind: str) -> str:
    """A checkpoint's kind in plain words: `drift.open` -> "finding open", `command.done` -> "command done"."""
    if kind in CHECKPOINT_KINDS:
        return CHECKPOINT_KINDS[kind]
    family, _, status = kind.partition(".")
    if family == "drift" and status:
        return f"finding {kind_text(status)}"
    if family == "command" and status:
        return f"command {kind_text(status)}"
    return kind_text(kind)


def field_text(name: str, value: Any) -> str:
    """A record's value as the view shows it: times in UTC, nothing as "–", anything else as the evidence."""
    if value is None or value == "":
        return "–"
    if name in _TIMES and isinstance(value, int) and not isinstance(value, bool):
        return when(value)
    return value_text(value)


def redirect_target(results: SearchResults) -> str | None:
    """The customer to go straight to: only when the query is one exact id of one customer."""
    if len(results.hits) == 1 and results.hits[0].match == "id":
        return results.hits[0].key
    return None


class Column(Struct, frozen=True):
    system: str
    record: str


class MasterRow(Struct, frozen=True, kw_only=True):
    field: str
    disagrees: bool
    cells: list[Cell | None]  # one per column; None: that record has no such field


class MasterTable(Struct, frozen=True, kw_only=True):
    columns: list[Column]
    rows: list[MasterRow]


def master_table(view: CustomerView) -> MasterTable:
    """The customer-master fields, one row each, one column per record that holds any (systems in order)."""
    columns: list[Column] = []
    for row in view.master:
        for cell in row.cells:
            if Column(cell.system, cell.record) not in columns:
                columns.append(Column(cell.system, cell.record))
    order = {system.system: i for i, system in enumerate(view.systems)}
    columns.sort(key=lambda c: order.get(c.system, len(order)))
    rows = []
    for row in view.master:
        by_column = {Column(c.system, c.record): c for c in row.cells}
        rows.append(MasterRow(field=row.field, disagrees=row.disagrees, cells=[by_column.get(c) for c in columns]))
    return MasterTable(columns=columns, rows=[r for r in rows if any(c is not None for c in r.cells)])


class InvoiceLine(Struct, frozen=True, kw_only=True):
    name: str
    billing: Field | None
    erp: Field | None
    disagrees: bool


def invoice_lines(pair: InvoicePair) -> list[InvoiceLine]:
    """One line per compared field (`INVOICE_FIELDS`, and any other a finding names), billing's value beside the
    ERP's."""
    billing = {f.name: f for f in pair.billing.fields} if pair.billing is not None else {}
    erp = {f.name: f for f in pair.erp.fields} if pair.erp is not None else {}
    marked = [f.name for f in (*billing.values(), *erp.values()) if f.disagrees or f.pending]
    names = list(dict.fromkeys(name for name in (*INVOICE_FIELDS, *marked) if name in billing or name in erp))
    return [InvoiceLine(name=name, billing=billing.get(name), erp=erp.get(name),
                        disagrees=any(f is not None and f.disagrees for f in (billing.get(name), erp.get(name))))
            for name in names]
