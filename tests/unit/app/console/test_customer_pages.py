"""The search page and the customer view as rendered (app/console/customer.py and their templates), pure:
a state judged by the real rules in, HTML out."""

from __future__ import annotations

import re
from typing import cast

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from faust.web import Response

from concord.app.console import board as bd
from concord.app.console import customer as cv
from concord.app.console.render import render
from concord.app.console.views import relayed_page
from concord.app.customer_view import customer_view
from concord.connectors.search_index import SearchHit, SearchId, SearchResults
from concord.connectors.timeline import Checkpoint
from concord.drift import catalog
from tests.unit.app.console.test_board import CONFIG
from tests.unit.app.console.test_board import finding as bd_finding
from tests.unit.app.test_customer_view import T, drifting
from tests.unit.tables.state_builders import KEY

TITLES = {r.id: r.title for r in catalog.RULES}


def customer_page(**more: object) -> str:
    timeline = [Checkpoint(at=T + 2, kind="command.issued", correlation_id="corr-7", platform="netsuite",
                           summary="erp.upsert_invoice sent to netsuite (generation 1)"),
                Checkpoint(at=T + 1, kind="drift.open", correlation_id="corr-7", platform="concord",
                           summary="D04 open: finding abc")]
    view = customer_view(drifting(), timeline, f"/api/customers/{KEY}/timeline")
    context: dict[str, object] = dict(view=view, master=cv.master_table(view), invoice_lines=cv.invoice_lines,
                                      titles=TITLES, page="customer", sagas=[], sagas_detail="", act=None)
    context.update(more)
    return render("customer.html", **context)


def hit(key: str = KEY, match: str = "id", **more: object) -> SearchHit:
    fields: dict[str, object] = dict(key=key, name="Acme GmbH", match=match, matched="cus_1",
                                     records=(SearchId(id="cus_1", system="stripe", kind="customer"),),
                                     names=("Acme GmbH", "ACME Corporation"), emails=("ap@acme.example",),
                                     open_findings=3)
    fields.update(more)
    return SearchHit(**fields)  # type: ignore[arg-type]


def test_the_master_fields_have_one_column_per_record_and_the_disagreeing_cells_are_marked() -> None:
    view = customer_view(drifting(), [])
    table = cv.master_table(view)
    assert [(c.system, c.record) for c in table.columns] == [
        ("salesforce", KEY), ("stripe", "cus_1"), ("zendesk", "9"), ("netsuite", "7")]
    email = next(r for r in table.rows if r.field == "email")
    assert email.cells[0] is None  # the CRM account has no email: an empty cell, not a shifted row
    page = customer_page()
    name_row = re.search(r'<tr class="row-disagrees">\s*<th scope="row">name</th>(.*?)</tr>', page, re.S)
    assert name_row is not None
    cells = re.findall(r"<td([^>]*)>(.*?)</td>", name_row.group(1), re.S)
    assert [attrs for attrs, _ in cells] == [' class="disagrees"', "", "", ' class="disagrees"']
    # Not by colour alone: a sign, and words for a screen reader.
    assert '<span class="sr-only">disagrees: </span>ACME Corporation' in cells[3][1]


def test_the_customer_view_shows_invoices_side_by_side_findings_and_the_timeline_newest_first() -> None:
    page = customer_page()
    assert "<h1>Acme GmbH</h1>" in page and f'href="/?customer={KEY}&amp;status=all"' in page
    assert "<code>in_1</code>" in page and "NetSuite <code>701</code>" in page  # billing beside ERP
    assert '<em class="missing">missing</em>' in page  # in_2 never reached the ERP (D04)
    assert 'id="findings-open"' in page and "Finalized billing invoice missing in the ERP" in page
    assert 'id="system-netsuite"' in page and "invoice <em>missing</em>" in page
    timeline = page[page.index('id="timeline"'):]
    assert timeline.index("command issued") < timeline.index("finding open")  # newest first, in words
    assert "<code>corr-7</code>" in timeline and "<code class=\"meta\">drift.open</code>" in timeline


def test_a_customer_page_escapes_what_the_platforms_sent() -> None:
    view = customer_view(drifting(), [Checkpoint(at=T, kind="events.applied", correlation_id="<i>c</i>",
                                                 platform="stripe", summary="<script>alert(1)</script>")])
    page = render("customer.html", view=view, master=cv.master_table(view), invoice_lines=cv.invoice_lines,
                  titles=TITLES, page="customer", sagas=[], sagas_detail="", act=None)
    assert "<script>" not in page and "<i>c</i>" not in page and "&lt;script&gt;alert(1)" in page


def test_values_read_as_a_person_reads_them() -> None:
    assert cv.field_text("due_at", 1_700_000_000_000) == "2023-11-14 22:13:20 UTC"
    assert cv.field_text("total", 1000) == "1000" and cv.field_text("tax_id", None) == "–"
    assert cv.field_text("is_won", True) == "true" and cv.field_text("name", "Acme") == "Acme"
    assert [cv.checkpoint_text(k) for k in ("events.applied", "drift.open", "command.already_done",
                                            "command.issued", "resync_required")] == [
        "events applied", "finding open", "command already done", "command issued", "records to read again"]


def test_only_one_exact_id_of_one_customer_goes_straight_to_it() -> None:
    def results(*hits: SearchHit) -> SearchResults:
        return SearchResults(query="q", limit=50, hits=list(hits))

    assert cv.redirect_target(results(hit())) == KEY
    assert cv.redirect_target(results(hit(), hit("001B"))) is None  # an id two customers bear: choose
    assert cv.redirect_target(results(hit(match="name", matched="Acme GmbH", records=()))) is None
    assert cv.redirect_target(results()) is None


def test_the_search_page_says_what_matched_and_links_each_customer() -> None:
    page = render("search.html", query="cus_1", error="", page="search",
                  results=SearchResults(query="cus_1", limit=50, hits=[hit(), hit("001B", "email",
                                                                                  matched="ap@acme.example")]))
    assert f'<a href="/customers/{KEY}">Acme GmbH</a>' in page
    assert '<span class="what">Stripe customer</span> <code>cus_1</code>' in page
    assert '<span class="what">email</span> ap@acme.example' in page
    assert f'<a href="/?customer={KEY}">3</a>' in page and "ACME Corporation; ap@acme.example" in page
    assert 'value="cus_1"' in page  # the box keeps the query
    empty = render("search.html", query="nobody", error="", page="search",
                   results=SearchResults(query="nobody", limit=50, hits=[]))
    assert 'id="search-none"' in empty and "<strong>nobody</strong>" in empty


def test_the_board_can_be_filtered_to_one_customer() -> None:
    filters = bd.parse_filters({"customer": f" {KEY} ", "status": "all"}, [r.id for r in catalog.RULES])
    assert filters.customer == KEY and bd.query_string(filters) == f"status=all&customer={KEY}"
    assert bd.parse_filters({"customer": "x" * 201}, []).customer == ""
    assert bd.parse_filters({"customer": "a\nb"}, []).customer == ""
    assert not bd.matches(bd_finding(customer_key="001A"), bd.Filters(customer="001B"), CONFIG)
    assert bd.matches(bd_finding(customer_key="001A"), bd.Filters(customer="001A"), CONFIG)


def test_an_invoice_shows_the_compared_fields_beside_the_erp_s() -> None:
    view = customer_view(drifting(), [])
    pair = next(p for p in view.invoices if p.billing_invoice_id == "in_1")
    lines = {line.name: line for line in cv.invoice_lines(pair)}
    assert list(lines)[:3] == ["number", "status", "total"] and "customer_id" not in lines
    assert lines["total"].disagrees and lines["total"].billing is not None and lines["total"].erp is not None
    assert (lines["total"].billing.value, lines["total"].erp.value) == (1000, 900)


def test_a_page_the_owner_sent_is_passed_on_and_a_refusal_of_the_forwarding_becomes_a_page() -> None:
    request = make_mocked_request("GET", f"/customers/{KEY}")
    page = relayed_page(cast(Response, web.Response(body=b"<h1>Acme</h1>", content_type="text/html")),
                        request)
    assert page.status == 200 and cast(web.Response, page).text == "<h1>Acme</h1>"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    refusal = web.Response(status=503, content_type="application/json",
                           body=b'{"error": "no_owner", "detail": "no worker owns customer 001A now"}')
    page = relayed_page(cast(Response, refusal), request)
    assert page.status == 503 and page.content_type == "text/html"
    text = cast(web.Response, page).text or ""
    assert "no worker owns customer 001A now" in text and f'href="/customers/{KEY}"' in text


def test_the_customer_view_shows_the_checkpoints_asked_for_within_what_the_timeline_keeps() -> None:
    from concord.app.console.views import VIEW_TIMELINE, checkpoints_shown

    assert checkpoints_shown(None, 500) == VIEW_TIMELINE == checkpoints_shown("", 500)
    assert checkpoints_shown("200", 500) == 200
    assert checkpoints_shown("9999", 500) == 500 and checkpoints_shown("0", 500) == 1
    assert checkpoints_shown("lots", 500) == VIEW_TIMELINE
