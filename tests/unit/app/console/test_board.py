"""The board's view model (app/console/board.py), pure: drift index items in, rows, counts, filters, pages out."""

from __future__ import annotations

import pytest

from concord.app.console import board as bd
from concord.app.console.health import health_strip
from concord.app.console.render import render
from concord.connectors.drift_index import IndexedFinding
from concord.core.messages import Observation
from concord.drift import catalog
from concord.drift.config import DriftConfig, RuleConfig, load

CONFIG = load(None, catalog.default_configs())
RULE_IDS = [r.id for r in catalog.RULES]
TITLES = {r.id: r.title for r in catalog.RULES}
NOW = 1_700_000_000_000


def finding(fp: str = "fp1", rule: str = "D04", status: str = "commanded", severity: str = "high",
            first_seen: int = NOW - 3_723_000, **more: object) -> IndexedFinding:
    fields: dict[str, object] = dict(
        fingerprint=fp, rule=rule, customer_key="001A", status=status, severity=severity, first_seen=first_seen,
        last_seen=first_seen, since=first_seen - 60_000, subject="in_1", summary="invoice in_1 missing in the ERP",
        action="erp.upsert_invoice",
        evidence=(Observation(system="stripe", record="in_1", field="total", value=1200, version=3, at=5),
                  Observation(system="stripe", record="in_1", field="currency", value="usd"),
                  Observation(system="netsuite", record="", field="total", value=None)))
    fields.update(more)
    return IndexedFinding(**fields)  # type: ignore[arg-type]


def test_filters_come_from_the_query_and_unknown_values_are_dropped() -> None:
    filters = bd.parse_filters({"status": "resolved", "rule": "D04", "severity": "high", "platform": "netsuite",
                                "owner": "finance", "offset": "50", "limit": "25"}, RULE_IDS)
    assert filters == bd.Filters(status="resolved", rule="D04", severity="high", platform="netsuite",
                                 owner="finance", offset=50, limit=25)
    wild = bd.parse_filters({"status": "<script>", "rule": "D99", "severity": "urgent", "platform": "sap",
                             "owner": "legal", "offset": "-3", "limit": "100000"}, RULE_IDS)
    assert wild == bd.Filters(offset=0, limit=bd.MAX_LIMIT)
    assert bd.parse_filters({"offset": "x", "limit": ""}, RULE_IDS) == bd.Filters()


def test_links_keep_the_filters_and_leave_defaults_out() -> None:
    filters = bd.Filters(rule="D04", owner="finance", offset=50)
    assert bd.query_string(filters) == "rule=D04&owner=finance&offset=50"
    assert bd.query_string(filters, offset=0) == "rule=D04&owner=finance"
    assert bd.query_string(bd.Filters()) == ""


def test_pages() -> None:
    first = bd.pager(bd.Filters(limit=10), total=25, shown=10)
    assert (first.first, first.last, first.previous, first.next) == (1, 10, None, "offset=10&limit=10")
    last = bd.pager(bd.Filters(limit=10, offset=20), total=25, shown=5)
    assert (last.first, last.last, last.previous, last.next) == (21, 25, "offset=10&limit=10", None)
    empty = bd.pager(bd.Filters(), total=0, shown=0)
    assert (empty.first, empty.last, empty.previous, empty.next) == (0, 0, None, None)


def test_a_row_shows_the_owner_the_age_and_the_evidence_side_by_side() -> None:
    row = bd.row(finding(), TITLES, CONFIG, NOW)
    assert (row.rule, row.rule_title, row.owner, row.owner_title) == (
        "D04", "Finalized billing invoice missing in the ERP", "finance", "Finance")
    assert row.age_seconds == 3723 and bd.duration(row.age_seconds) == "1 h 2 min"
    assert [side.system for side in row.evidence] == ["stripe", "netsuite"]
    stripe, netsuite = row.evidence
    assert [(v.field, v.text, v.missing) for v in stripe.values] == [("total", "1200", False),
                                                                     ("currency", "usd", False)]
    assert [(v.field, v.text, v.missing) for v in netsuite.values] == [("total", "missing", True)]


def test_a_long_or_structured_value_is_shown_as_json_and_cut() -> None:
    assert bd.value_text({"a": [1, None]}) == '{"a":[1,null]}'
    assert bd.value_text(None) == "null"  # a value that is null on a record that exists
    long = bd.value_text("x" * 1000)
    assert len(long) == bd.VALUE_CHARS and long.endswith("…")


def test_the_owner_is_configurable_per_rule() -> None:
    assert {r.id: CONFIG.owner(r.id) for r in catalog.RULES} == {
        "D01": "support", "D02": "support", "D03": "support", "D04": "finance", "D05": "finance",
        "D06": "finance", "D07": "finance", "D08": "finance", "D09": "sales_ops", "D10": "sales_ops",
        "D11": "sales_ops", "D12": "sales_ops", "D13": "sales_ops", "D14": "integration", "D15": "support"}
    moved = DriftConfig(rules={**CONFIG.rules, "D04": RuleConfig(owner="support")})
    assert bd.row(finding(), TITLES, moved, NOW).owner_title == "Support"
    assert bd.owner_rules("finance", catalog.RULES, moved) == ["D05", "D06", "D07", "D08"]
    assert CONFIG.owner("D99") == "integration"  # a rule the configuration does not know


@pytest.mark.parametrize(("filters", "shown"), [
    (bd.Filters(), True),
    (bd.Filters(status="commanded"), True),
    (bd.Filters(status="escalated"), False),
    (bd.Filters(status="resolved"), False),
    (bd.Filters(status="all"), True),
    (bd.Filters(rule="D04"), True),
    (bd.Filters(rule="D05"), False),
    (bd.Filters(severity="high"), True),
    (bd.Filters(severity="low"), False),
    (bd.Filters(platform="netsuite"), True),
    (bd.Filters(platform="zendesk"), False),
    (bd.Filters(owner="finance"), True),
    (bd.Filters(owner="support"), False),
])
def test_a_changed_finding_is_matched_against_the_filters_as_the_index_would(filters: bd.Filters,
                                                                              shown: bool) -> None:
    assert bd.matches(finding(), filters, CONFIG) is shown


def test_a_resolved_finding_leaves_the_open_list() -> None:
    resolved = finding(status="resolved", resolution="corrected", resolved_at=NOW)
    assert not bd.matches(resolved, bd.Filters(), CONFIG)
    assert bd.matches(resolved, bd.Filters(status="resolved"), CONFIG)


def test_counts_by_rule_and_severity_most_severe_first() -> None:
    table = bd.counts_table({"D04": {"high": 3, "low": 1}, "D01": {"critical": 2}, "D14": {"high": 1}},
                            catalog.RULES, CONFIG)
    assert bd.SEVERITY_ORDER == ("critical", "high", "medium", "low")
    assert [r.rule for r in table.rows] == ["D01", "D04", "D14"]  # catalog order; rules with nothing open left out
    by_rule = {r.rule: r for r in table.rows}
    assert by_rule["D04"].cells == [0, 3, 0, 1] and by_rule["D04"].total == 4
    assert by_rule["D04"].links[1] == "rule=D04&severity=high" and by_rule["D04"].link == "rule=D04"
    assert by_rule["D01"].cells == [2, 0, 0, 0] and by_rule["D14"].owner_title == "Integration (platform team)"
    assert table.totals == [2, 4, 0, 1] and table.total == 7
    assert bd.counts_table({}, catalog.RULES, CONFIG) == bd.Counts(rows=[], totals=[0, 0, 0, 0], total=0)


def test_resolutions_say_how_long_a_finding_took() -> None:
    done = finding(status="resolved", resolution="corrected", first_seen=NOW - 90_000, resolved_at=NOW)
    resolution = bd.resolution(done, TITLES, CONFIG)
    assert (resolution.resolution, resolution.to_resolve_seconds, resolution.owner_title) == ("corrected", 90,
                                                                                            "Finance")
    assert bd.duration(resolution.to_resolve_seconds) == "1 min"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (59, "59 s"), (60, "1 min"), (3599, "59 min"),
                                                (3600, "1 h"), (7260, "2 h 1 min"), (86400, "1 d"),
                                                (90000, "1 d 1 h"), (-5, "0 s")])
def test_durations_read_at_a_glance(seconds: int, text: str) -> None:
    assert bd.duration(seconds) == text


def test_times_are_utc() -> None:
    assert bd.when(0) == ""
    assert bd.when(1_700_000_000_000) == "2023-11-14 22:13:20 UTC"


def build(**more: object) -> bd.Board:
    args: dict[str, object] = dict(
        filters=bd.Filters(), page=[finding()], total=1, counts={"D04": {"high": 1}},
        resolved=[finding("fp2", status="resolved", resolution="converged", resolved_at=NOW)],
        rules=catalog.RULES, config=CONFIG, events_after="1700000000000-3", now=NOW)
    args.update(more)
    return bd.build_board(**args)  # type: ignore[arg-type]


def page_of(board: bd.Board) -> str:
    strip = health_strip(platforms={}, breakers=None, rates=None, dead_letters={}, parked_ids=0, reconciles=None,
                         held=(), read_at=0, now=NOW)
    return render("board.html", board=board, health=strip, severities=bd.SEVERITY_ORDER, page="board")


def test_the_board_page_renders_every_part() -> None:
    page = page_of(build())
    assert 'data-after="1700000000000-3"' in page and '<script src="/static/board.js" defer></script>' in page
    assert 'id="f-fp1"' in page and "Finalized billing invoice missing in the ERP" in page and "Finance" in page
    assert '<caption>stripe</caption>' in page and '<caption>netsuite</caption>' in page
    assert 'id="r-fp2"' in page  # recently resolved
    assert '<label for="f-owner">Owner</label>' in page and '<option value="finance">Finance</option>' in page
    assert '<th scope="col">critical</th>' in page
    assert '<form class="search" role="search" action="/search" method="get">' in page


def test_everything_a_platform_sent_is_escaped() -> None:
    evil = finding(customer_key="<script>alert(1)</script>", summary="<img src=x onerror=alert(2)>",
                   evidence=(Observation(system="stripe", record="<b>", field="name", value="</td><script>"),))
    page = render("_finding.html", row=bd.row(evil, TITLES, CONFIG, NOW))
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "/customers/%3Cscript%3Ealert%281%29%3C/script%3E" in page


def test_filters_show_what_is_chosen() -> None:
    board = build(filters=bd.Filters(status="resolved", owner="support", platform="zendesk"))
    page = page_of(board)
    assert '<option value="resolved" selected>' in page and '<option value="support" selected>' in page
    assert '<option value="zendesk" selected>' in page
    assert board.query == "status=resolved&platform=zendesk&owner=support"


def test_an_operator_sees_the_accept_form_with_the_csrf_token_and_a_viewer_none() -> None:
    from concord.app.console.views import Actions

    row = bd.row(finding(), TITLES, CONFIG, NOW)
    page = render("_finding.html", row=row, act=Actions(csrf="tok<en>", by="alice"))
    assert '<form class="action" method="post" action="/api/v1/drift/fp1/accept">' in page
    assert '<input type="hidden" name="csrf_token" value="tok&lt;en&gt;">' in page and "Accept as alice" in page
    assert 'action="/api/v1/drift/fp1/snooze"' in page and 'action="/api/v1/drift/fp1/retry"' in page
    assert page.count('name="csrf_token"') == 3
    review = render("_finding.html", row=bd.row(finding(action="review"), TITLES, CONFIG, NOW), act=Actions(
        csrf="t", by="alice"))
    assert "/retry" not in review and "/snooze" in review  # nothing to retry without a correction
    assert "csrf_token" not in render("_finding.html", row=row, act=None)  # a viewer
    resolved = bd.row(finding(status="resolved", resolution="converged"), TITLES, CONFIG, NOW)
    assert "csrf_token" not in render("_finding.html", row=resolved, act=Actions(csrf="t", by="alice"))


def test_a_correction_awaiting_approval_is_shown_to_all_and_decided_by_an_operator() -> None:
    from concord.app.console.views import Actions

    row = bd.row(finding(status="open", awaiting="cmd-1"), TITLES, CONFIG, NOW)
    viewer = render("_finding.html", row=row, act=None)
    assert "Awaiting approval:" in viewer and "<code>cmd-1</code>" in viewer and "/approve" not in viewer
    operator = render("_finding.html", row=row, act=Actions(csrf="t", by="alice"))
    assert 'action="/api/v1/drift/fp1/approve"' in operator and 'action="/api/v1/drift/fp1/reject"' in operator
    assert "/retry" not in operator  # the waiting command is decided, not retried
