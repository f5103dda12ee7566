"""What the drift board shows, built from the drift index's findings: pure, no I/O, time passed in.

The board lists reported findings newest first (as `/api/drift` does), filtered by status, rule,
severity, platform (a system the evidence comes from) and owner (the team a rule's exceptions go to,
`RuleConfig.owner`), in pages. Above the list: open findings counted by rule and severity; beside it:
the findings resolved last, with the time each took. Filters are GET query parameters, so a filtered
board is a link; a value the board does not know is ignored (the filter shows "any"), never an error.

`matches` is the same filter applied to one finding: the live updates ask whether a changed finding
belongs on the list a person is looking at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from msgspec import Struct

from concord.connectors.drift_index import SEVERITIES, SYSTEMS, IndexedFinding
from concord.drift.config import OWNER_TITLES, DriftConfig
from concord.drift.rule import Rule

#: Status filter -> what it shows ("open": every finding not resolved, as `/api/drift` means it).
STATUSES: Final = {"open": "open (not resolved)", "commanded": "commanded", "escalated": "escalated",
                   "resolved": "resolved", "all": "all"}
#: Most severe first, as the counts' columns read.
SEVERITY_ORDER: Final = tuple(reversed(SEVERITIES))
PLATFORMS: Final = SYSTEMS
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200
RESOLUTIONS_SHOWN: Final = 10
# A value longer than this is cut in the evidence (the whole finding is at /api/drift/{fingerprint}).
VALUE_CHARS: Final = 200
#: Longest customer key the board's customer filter takes.
MAX_KEY: Final = 200


class Filters(Struct, frozen=True, kw_only=True):
    """The board's query: which findings, which page."""

    status: str = "open"
    rule: str = ""
    severity: str = ""
    platform: str = ""
    owner: str = ""
    customer: str = ""  # a customer key: that customer's findings only (the customer view links here)
    offset: int = 0
    limit: int = DEFAULT_LIMIT


_DEFAULTS: Final = Filters()
_FILTER_FIELDS: Final = ("status", "rule", "severity", "platform", "owner", "customer")


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(text))) if text else default
    except ValueError:
        return default


def _customer(text: str | None) -> str:
    """A customer key as the filter takes it: stripped; dropped when it cannot be one (too long, control)."""
    key = (text or "").strip()
    return key if len(key) <= MAX_KEY and key.isprintable() else ""


def parse_filters(query: Mapping[str, str], rule_ids: Collection[str]) -> Filters:
    """The filters of a request's query; unknown values are dropped (shown as "any")."""

    def pick(name: str, known: Collection[str], default: str = "") -> str:
        value = query.get(name, default)
        return value if value in known else default

    return Filters(
        status=pick("status", STATUSES, "open"), rule=pick("rule", rule_ids), severity=pick("severity", SEVERITIES),
        platform=pick("platform", PLATFORMS), owner=pick("owner", OWNER_TITLES),
        customer=_customer(query.get("customer")),
        offset=_int(query.get("offset"), 0, 0, 10**9), limit=_int(query.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT),
    )


def query_string(filters: Filters, **changes: Any) -> str:
    """The query (without `?`) of `filters` with `changes`; defaults left out, so links stay short."""
    chosen = msgspec.structs.replace(filters, **changes)
    pairs = [(name, getattr(chosen, name)) for name in (*_FILTER_FIELDS, "offset", "limit")
             if getattr(chosen, name) != getattr(_DEFAULTS, name)]
    return urlencode(pairs)


def owner_rules(owner: str, rules: Sequence[Rule], config: DriftConfig) -> list[str]:
    """The ids of the rules whose exceptions go to `owner`."""
    return [r.id for r in rules if config.rule(r.id, r.defaults).owner == owner]


def _status_matches(wanted: str, status: str) -> bool:
    if wanted == "open":
        return status != "resolved"
    return wanted == "all" or wanted == status


def matches(finding: IndexedFinding, filters: Filters, config: DriftConfig) -> bool:
    """Whether `finding` belongs on the list `filters` select (its page aside)."""
    return (_status_matches(filters.status, finding.status)
            and (not filters.rule or finding.rule == filters.rule)
            and (not filters.severity or finding.severity == filters.severity)
            and (not filters.platform or any(o.system == filters.platform for o in finding.evidence))
            and (not filters.owner or config.owner(finding.rule) == filters.owner)
            and (not filters.customer or finding.customer_key == filters.customer))


class Value(Struct, frozen=True, kw_only=True):
    """One observed value of one system's side."""

    record: str
    field: str
    text: str
    missing: bool  # the record is not there at all
    at: int  # source time (epoch ms; 0: unknown)


class Side(Struct, frozen=True, kw_only=True):
    """What one system holds, of the values a finding compares."""

    system: str
    values: list[Value]


class Row(Struct, frozen=True, kw_only=True):
    fingerprint: str
    customer_key: str
    rule: str
    rule_title: str
    severity: str
    status: str
    owner: str
    owner_title: str
    age_seconds: int  # since it was reported
    first_seen: int
    since: int  # when the disagreement began
    summary: str
    action: str
    dry_run: bool
    note: str
    resolution: str
    evidence: list[Side]
    command_id: str = ""  # the correction last commanded (what an operator replays if it was dead-lettered)
    awaiting: str = ""  # the correction waiting for an operator's approval


def value_text(value: Any) -> str:
    """A value as the evidence shows it: text as is, anything else as JSON, cut when long."""
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def sides(finding: IndexedFinding) -> list[Side]:
    """The evidence grouped by system, side by side, in the order the rule gave the systems."""
    grouped: dict[str, list[Value]] = {}
    for o in finding.evidence:
        missing = o.record == "" and o.value is None
        grouped.setdefault(o.system, []).append(Value(
            record=o.record, field=o.field, text="missing" if missing else value_text(o.value), missing=missing,
            at=o.at))
    return [Side(system=system, values=values) for system, values in grouped.items()]


def row(finding: IndexedFinding, titles: Mapping[str, str], config: DriftConfig, now: int) -> Row:
    owner = config.owner(finding.rule)
    return Row(
        fingerprint=finding.fingerprint, customer_key=finding.customer_key, rule=finding.rule,
        rule_title=titles.get(finding.rule, ""), severity=finding.severity, status=finding.status, owner=owner,
        owner_title=OWNER_TITLES.get(owner, owner), age_seconds=max(0, (now - finding.first_seen) // 1000),
        first_seen=finding.first_seen, since=finding.since, summary=finding.summary, action=finding.action,
        dry_run=finding.dry_run, note=finding.note, resolution=finding.resolution or "", evidence=sides(finding),
        command_id=finding.command_id, awaiting=finding.awaiting,
    )


class CountRow(Struct, frozen=True, kw_only=True):
    rule: str
    title: str
    owner_title: str
    cells: list[int]  # per SEVERITY_ORDER
    links: list[str]  # per SEVERITY_ORDER: the board's query for that rule and severity
    link: str  # the board's query for the rule
    total: int


class Counts(Struct, frozen=True, kw_only=True):
    """Open findings by rule (rows) and severity (columns, most severe first)."""

    rows: list[CountRow]
    totals: list[int]
    total: int


def counts_table(counts: Mapping[str, Mapping[str, int]], rules: Sequence[Rule], config: DriftConfig) -> Counts:
    """The rules with open findings, in catalog order (the rule filter lists them all)."""
    rows = []
    for r in rules:
        cells = [int(counts.get(r.id, {}).get(sev, 0)) for sev in SEVERITY_ORDER]
        if not any(cells):
            continue
        owner = config.owner(r.id)
        rows.append(CountRow(rule=r.id, title=r.title, owner_title=OWNER_TITLES.get(owner, owner), cells=cells,
                             links=[query_string(_DEFAULTS, rule=r.id, severity=sev) for sev in SEVERITY_ORDER],
                             link=query_string(_DEFAULTS, rule=r.id), total=sum(cells)))
    totals = [sum(row.cells[i] for row in rows) for i in range(len(SEVERITY_ORDER))]
    return Counts(rows=rows, totals=totals, total=sum(totals))


class Resolution(Struct, frozen=True, kw_only=True):
    fingerprint: str
    customer_key: str
    rule: str
    rule_title: str
    owner_title: str
    resolution: str  # converged, corrected, accepted, merged
    resolved_at: int
    to_resolve_seconds: int  # from when it was reported to when it was resolved


def resolution(finding: IndexedFinding, titles: Mapping[str, str], config: DriftConfig) -> Resolution:
    owner = config.owner(finding.rule)
    reported = finding.first_seen or finding.since
    return Resolution(
        fingerprint=finding.fingerprint, customer_key=finding.customer_key, rule=finding.rule,
        rule_title=titles.get(finding.rule, ""), owner_title=OWNER_TITLES.get(owner, owner),
        resolution=finding.resolution or "", resolved_at=finding.resolved_at,
        to_resolve_seconds=max(0, (finding.resolved_at - reported) // 1000),
    )


class Pager(Struct, frozen=True, kw_only=True):
    total: int
    first: int  # 1-based number of the first row shown (0: none)
    last: int
    previous: str | None  # the query of the previous page; None on the first
    next: str | None


def pager(filters: Filters, total: int, shown: int) -> Pager:
    previous = next_page = None
    if filters.offset > 0:
        previous = query_string(filters, offset=max(0, filters.offset - filters.limit))
    if filters.offset + filters.limit < total:
        next_page = query_string(filters, offset=filters.offset + filters.limit)
    return Pager(total=total, first=filters.offset + 1 if shown else 0, last=filters.offset + shown,
                 previous=previous, next=next_page)


class Choice(Struct, frozen=True):
    value: str
    label: str


class Choices(Struct, frozen=True, kw_only=True):
    """The options of each filter."""

    statuses: list[Choice]
    rules: list[Choice]
    severities: list[Choice]
    platforms: list[Choice]
    owners: list[Choice]


def choices(rules: Sequence[Rule]) -> Choices:
    return Choices(
        statuses=[Choice(v, label) for v, label in STATUSES.items()],
        rules=[Choice(r.id, f"{r.id} {r.name}") for r in rules],
        severities=[Choice(s, s) for s in SEVERITY_ORDER],
        platforms=[Choice(p, p) for p in PLATFORMS],
        owners=[Choice(o, label) for o, label in OWNER_TITLES.items()],
    )


class Board(Struct, frozen=True, kw_only=True):
    filters: Filters
    query: str  # the filters as a query string (without the page), for the live updates' requests
    choices: Choices
    counts: Counts
    rows: list[Row]
    pager: Pager
    resolutions: list[Resolution]
    events_after: str  # the change log's id when the findings were read: live updates start after it
    now: int


def build_board(*, filters: Filters, page: Sequence[IndexedFinding], total: int,
                counts: Mapping[str, Mapping[str, int]], resolved: Sequence[IndexedFinding], rules: Sequence[Rule],
                config: DriftConfig, events_after: str, now: int) -> Board:
    """The board for one request, from what the drift index answered."""
    titles = {r.id: r.title for r in rules}
    return Board(
        filters=filters, query=query_string(filters, offset=0, limit=filters.limit), choices=choices(rules),
        counts=counts_table(counts, rules, config), rows=[row(f, titles, config, now) for f in page],
        pager=pager(filters, total, len(page)),
        resolutions=[resolution(f, titles, config) for f in resolved[:RESOLUTIONS_SHOWN]],
        events_after=events_after, now=now,
    )


def duration(seconds: float) -> str:
    """A duration as a person reads it at a glance: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        hours, minutes = divmod(s // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(s // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def when(ms: int) -> str:
    """An epoch-ms time in UTC, to the second ("" for 0: never)."""
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
