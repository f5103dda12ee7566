"""The sagas page and the customer view's sagas (app/console/sagas.py and their templates), pure: the saga index's
sagas in, HTML out: waiting for a person first with why and what to fix, a resume form for an operator only, on a
saga that can be resumed only, everything the platforms sent escaped."""

from __future__ import annotations

import re

from concord.app.console import customer as cv
from concord.app.console import sagas as sp
from concord.app.console.render import render
from concord.app.console.views import Actions
from concord.app.customer_view import customer_view
from concord.drift import saga as dsaga
from tests.unit.app.console.test_customer_pages import TITLES
from tests.unit.app.test_customer_view import drifting
from tests.unit.app.test_sagas import NOW, saga

SAGAS = [
    saga("006DONE", dsaga.COMPLETED, step=dsaga.ENTITLEMENT, updated_at=NOW + 50,
         done=tuple(dsaga.DEFINITIONS[2]), records={"billing_customer": "cus_1", "subscription": "sub_1"}),
    saga("006RUN", dsaga.RUNNING, step=dsaga.SUBSCRIPTION, updated_at=NOW + 40, command_id="c-sub-1", attempts=2,
         done=(dsaga.VALIDATE, dsaga.ERP_CUSTOMER, dsaga.BILLING_CUSTOMER), customer_key="001B"),
    saga("006FAIL", dsaga.FAILED, step=dsaga.SUBSCRIPTION, updated_at=NOW + 30, reason_code=dsaga.UNAVAILABLE,
         reason="billing.cancel_subscription (stripe) failed: 503", fix="undo step subscription by hand or fix "
         "stripe, then resume"),
    saga("006PAUSE", updated_at=NOW),
]
COUNTS = {"running": 1, "completed": 1, "paused": 1, "compensating": 0, "compensated": 0, "failed": 1}


def page(act: Actions | None = None, filters: sp.Filters | None = None) -> str:
    built = sp.build_page(filters or sp.Filters(), SAGAS, COUNTS)
    return render("sagas.html", sagas=built, act=act, page="sagas")


def test_filters_come_from_the_query_and_unknown_values_are_dropped() -> None:
    assert sp.parse_filters({"state": "paused", "customer": " 001A ", "limit": "20"}) == sp.Filters(
        state="paused", customer="001A", limit=20)
    assert sp.parse_filters({"state": "<script>", "customer": "x\x00", "limit": "lots"}) == sp.Filters()
    assert sp.parse_filters({"limit": "100000"}).limit == sp.MAX_LIMIT
    assert sp.link("paused", "001 A") == "/sagas?state=paused&customer=001+A" and sp.link() == "/sagas"


def test_the_sagas_waiting_for_a_person_come_first_with_the_counts_by_state() -> None:
    built = sp.build_page(sp.Filters(limit=3), SAGAS, COUNTS)
    assert [r.opportunity_id for r in built.rows] == ["006PAUSE", "006FAIL", "006DONE"]
    assert [(c.state, c.count, c.waiting) for c in built.counts if c.count] == [
        ("running", 1, False), ("completed", 1, False), ("paused", 1, True), ("failed", 1, True)]
    assert built.total == 4 and built.counts[2].link == "/sagas?state=paused"
    running = sp.row(SAGAS[1])
    assert (running.step, running.progress, running.resumable, running.waiting) == (
        "subscription", "3 of 6 steps done", False, False)
    assert running.done == "validate, erp customer, billing customer" and running.deal == "plan pro × 3 147.00 EUR"


def test_a_viewer_sees_why_each_saga_stopped_and_what_to_fix_and_no_action() -> None:
    html = page()
    rows = re.findall(r'<tr class="saga saga-(\w+)( waiting)?" id="saga-(\w+)">', html)
    assert [(state, bool(waiting), opp) for state, waiting, opp in rows] == [
        ("paused", True, "006PAUSE"), ("failed", True, "006FAIL"), ("completed", False, "006DONE"),
        ("running", False, "006RUN")]
    assert "the deal cannot be provisioned: missing tax id" in html
    assert "<strong>To fix:</strong> set account 001A&#39;s tax id (VAT number) in Salesforce" in html
    assert "waiting for command <code>c-sub-1</code> (sent 2 times)" in html
    assert '<a href="/customers/001B">001B</a>' in html
    assert "csrf_token" not in html and "/resume" not in html
    assert '<a href="/sagas" aria-current="page">Sagas</a>' in html  # the console's navigation
    assert '<a href="/sagas?state=paused">paused</a> <span class="n">1</span>' in html


def test_an_operator_gets_a_resume_form_on_each_saga_that_can_be_resumed_only() -> None:
    html = page(Actions(csrf="tok<en>", by="alice"))
    forms = re.findall(r'<form class="action" method="post" action="/api/v1/sagas/(\w+)/resume">\s*'
                       r'<input type="hidden" name="csrf_token" value="([^"]+)">', html)
    assert forms == [("006PAUSE", "tok&lt;en&gt;"), ("006FAIL", "tok&lt;en&gt;")]
    assert html.count("Resume as alice") == 2


def test_a_filter_with_nothing_to_show_says_so() -> None:
    html = render("sagas.html", sagas=sp.build_page(sp.Filters(state="compensating"), [], COUNTS), act=None,
                  page="sagas")
    assert 'id="no-sagas"' in html and '<option value="compensating" selected>' in html


def test_what_the_platforms_sent_is_shown_as_text() -> None:
    hostile = saga("006X", reason="stripe said <script>alert(1)</script>", fix="<b>fix</b>",
                   customer_key="<i>key</i>")
    html = render("sagas.html", sagas=sp.build_page(sp.Filters(), [hostile], COUNTS), act=None, page="sagas")
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert "<b>fix</b>" not in html and "<i>key</i>" not in html


def test_the_customer_view_shows_its_sagas_with_a_resume_button_for_an_operator() -> None:
    view = customer_view(drifting(), [])
    context: dict[str, object] = dict(view=view, master=cv.master_table(view), invoice_lines=cv.invoice_lines,
                                      titles=TITLES, page="customer", sagas_detail="")
    html = render("customer.html", **context, sagas=sp.customer_rows(SAGAS), act=Actions(csrf="t", by="otto"))
    section = html[html.index('id="sagas-title"'):html.index('id="timeline-title"')]
    assert section.index("006PAUSE") < section.index("006FAIL") < section.index("006DONE") < section.index("006RUN")
    assert "<strong>To fix:</strong>" in section and section.count("Resume as otto") == 2
    assert 'scope="col">Customer<' not in section  # the page is the customer's
    assert '<a href="#sagas-title">Sagas</a>' in html and 'href="/sagas?customer=' in section
    viewer = render("customer.html", **context, sagas=sp.customer_rows(SAGAS), act=None)
    assert "/resume" not in viewer
    none = render("customer.html", **context, sagas=[], act=None)
    assert 'id="no-sagas"' in none
    down = render("customer.html", **{**context, "sagas_detail": "Redis is unreachable (ConnectionError)"},
                  sagas=[], act=None)
    assert 'role="alert">Redis is unreachable (ConnectionError)' in down
