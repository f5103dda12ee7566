"""The console on the running closed loop, in a real browser (issue 14's scenario): the sandbox plays customers
and injects drift, a worker with every role detects it and corrects it through the sandbox's APIs. Vera, a
viewer of the users file, signs in and sees findings arrive on the open board without a reload, searches a
Stripe customer id and lands on its customer view, where she is offered no action. Otto, an operator, signs in,
goes from that view to the customer's findings on the board, approves the correction waiting for approval (D01
is in `mode: approve`) and accepts a finding with a note; the customer's timeline shows both with his name, and
the approved correction reaches the sandbox and resolves its finding.

Needs Debian's `chromium` and `chromium-driver` and the dev extra `selenium` (test_board_browser.py says how);
skipped, saying so, where they are not installed. Screenshots go to `.cache/screenshots/` (git-ignored).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.expected_conditions import staleness_of

from concord.app import users
from concord.bench.common import free_port
from concord.core.settings import Settings
from tests.integration.harness import Infra, WorkerProcess
from tests.integration.test_board_browser import (
    SCREENSHOTS,
    By,
    StaleElementReferenceException,
    WebDriverWait,
    pytestmark,  # noqa: F401  (skipped where Chromium is not installed)
    screenshot,
    search_for,
    start_browser,
)
from tests.integration.test_closed_loop import _get, _wait, loop_settings

NOTE = "grandfathered until renewal"


def sign_in(browser: Any, base_url: str, token: str, path: str = "/") -> None:
    browser.get(f"{base_url}{path}")  # without a session: sent to sign in, and back here after
    WebDriverWait(browser, 15).until(lambda b: "/login" in b.current_url)
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda b: "/login" not in b.current_url)


def sign_out(browser: Any) -> None:
    browser.find_element(By.CSS_SELECTOR, "form.signout button[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda b: "/login" in b.current_url)


def board_rows(browser: Any) -> int:
    return len(browser.find_elements(By.CSS_SELECTOR, "#findings tbody.finding"))


def act(browser: Any, fingerprint: str, button: str, note: str | None = None) -> None:
    """Click `button` in the board row of `fingerprint` (after typing `note` in its accept form)."""
    page = browser.find_element(By.TAG_NAME, "html")
    row = browser.find_element(By.ID, f"f-{fingerprint}")
    if note is not None:
        row.find_element(By.ID, f"note-{fingerprint}").send_keys(note)
    row.find_element(By.XPATH, f".//button[normalize-space()='{button}']").click()
    # The form's answer sends the browser back to this same page: wait until it has been loaded anew.
    WebDriverWait(browser, 15).until(staleness_of(page))
    WebDriverWait(browser, 15).until(lambda b: b.execute_script("return document.readyState") == "complete")


def until(browser: Any, condition: Any, what: str, timeout: float = 15) -> None:
    """Wait for `condition`; on a timeout, fail saying what was awaited on which page (its text kept beside the
    screenshots)."""
    try:
        WebDriverWait(browser, timeout, poll_frequency=0.5).until(condition)
    except TimeoutException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / "loop-timeout.html").write_text(browser.page_source)
        raise AssertionError(f"{what}: not on {browser.current_url} within {timeout:g} s; the page: "
                             f"{browser.find_element(By.TAG_NAME, 'main').text[:3000]}") from None


def timeline_summaries(browser: Any) -> list[str]:
    browser.refresh()
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timeline tr.checkpoint td:nth-child(4)")]


async def test_viewer_and_operator_on_the_live_closed_loop(infra: Infra, settings: Settings, tmp_path: Path) -> None:
    sandbox_port = free_port()
    users_file = tmp_path / "users.toml"
    vera, otto = users.add(users_file, "vera", users.VIEWER), users.add(users_file, "otto", users.OPERATOR)
    cfg = msgspec.structs.replace(loop_settings(settings, tmp_path, sandbox_port, infra.redis_port),
                                  users_file=str(users_file))
    rules = json.loads(Path(cfg.rules_file).read_text())
    for rule in ("D01", "D02"):  # suspending or granting a customer's support waits for a person
        rules["rules"][rule]["mode"] = "approve"
    Path(cfg.rules_file).write_text(json.dumps(rules))
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker"], cfg, tmp_path / "worker.log")
    sandbox = WorkerProcess(
        [sys.executable, "-m", "concord.app.cli", "sandbox", "--port", str(sandbox_port), "--seed", "7",
         "--customers", "16", "--drift-rate", "0.5", "--time-scale", "864000", "--duration", "20",
         "--linger", "600", "--concord-url", worker.base_url, "--test-credentials"],
        cfg, tmp_path / "sandbox.log")
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"

    def logs() -> str:
        return f"--- worker\n{worker.log_tail(60)}\n--- sandbox\n{sandbox.log_tail(30)}"

    worker.start()
    browser = await asyncio.to_thread(start_browser, "1400,1800")
    try:
        await worker.wait_ready()
        # Vera, a viewer, signs in: the board is live and empty.
        await asyncio.to_thread(sign_in, browser, worker.base_url, vera)
        await asyncio.to_thread(WebDriverWait(browser, 15).until,
                                lambda b: b.find_element(By.ID, "live-status").text.startswith("live"))
        assert board_rows(browser) == 0
        browser.execute_script("window.boardMarker = 'the page that was loaded';")  # gone if the page reloads

        sandbox.start()
        await _wait("sandbox up", lambda: _get(f"{sandbox_url}/_sandbox/healthz"), 30, logs)
        # Findings of the loop arrive on her open board, pushed over /events.
        await asyncio.to_thread(WebDriverWait(browser, 90, poll_frequency=0.5,
                                              ignored_exceptions=(StaleElementReferenceException,)).until,
                                lambda b: board_rows(b) >= 1)
        assert browser.execute_script("return window.boardMarker") == "the page that was loaded"
        assert browser.find_elements(By.CSS_SELECTOR, "form.action") == []  # a viewer is offered no action
        await asyncio.to_thread(screenshot, browser, "loop-board-viewer.png", 1300)

        # A suspension waits for approval (D01 in approve mode): the customer it is for, and its Stripe id.
        async def awaiting_d01() -> dict[str, Any] | None:
            page = await worker.get_json("/api/v1/drift?rule=D01&status=open&limit=100")
            assert isinstance(page, dict)
            return next((item for item in page["items"] if item.get("awaiting")), None)

        d01 = await _wait("a D01 correction awaiting approval", awaiting_d01, 120, logs)
        key = d01["customer_key"]
        view = await worker.get_json(f"/api/v1/customers/{quote(key, safe='')}/view")
        assert isinstance(view, dict)
        stripe = next(s for s in view["systems"] if s["system"] == "stripe")
        cus = next(r["id"] for r in stripe["records"] if r["kind"] == "customer")
        assert cus.startswith("cus_")

        # Vera types the Stripe id in the search box and lands on the customer's view (the index is written in
        # the background: she searches again until it is found).
        def land_on_customer(b: Any) -> bool:
            search_for(b, cus)
            return bool(b.find_elements(By.ID, "customer"))

        await asyncio.to_thread(WebDriverWait(browser, 30, poll_frequency=1).until, land_on_customer)
        assert browser.current_url == f"{worker.base_url}/customers/{quote(key, safe='')}"
        assert cus in browser.find_element(By.ID, "system-stripe").text
        assert d01["fingerprint"] in browser.find_element(By.ID, "findings-open").text
        await asyncio.to_thread(sign_out, browser)

        # Otto, an operator, signs in on the same view and goes to its findings on the board.
        await asyncio.to_thread(sign_in, browser, worker.base_url, otto, f"/customers/{quote(key, safe='')}")
        assert browser.find_elements(By.ID, "customer")
        browser.find_element(By.ID, "on-board").click()  # its findings, every status
        await asyncio.to_thread(WebDriverWait(browser, 15).until,
                                lambda b: b.find_elements(By.ID, f"f-{d01['fingerprint']}"))
        row = browser.find_element(By.ID, f"f-{d01['fingerprint']}")
        assert "Awaiting approval" in row.text and d01["awaiting"] in row.text
        # Another finding to accept, one that stays until a person acts (a review rule's, or another waiting for
        # approval; the loop corrects the others meanwhile): the same customer's if it has one.
        # Once the sandbox's traffic is over, what waits for a person stays so until a person acts.
        async def traffic_over() -> bool:
            return not (await _get(f"{sandbox_url}/_sandbox/status"))["running"]

        await _wait("the sandbox's traffic over", traffic_over, 90, logs)

        async def stable_others() -> list[dict[str, Any]]:
            page = await worker.get_json("/api/v1/drift?status=open&limit=200")
            assert isinstance(page, dict)
            return [f for f in page["items"] if f["fingerprint"] != d01["fingerprint"]
                    and (f.get("awaiting") or f["action"] == "review" or f["status"] == "escalated")]

        others = await _wait("another finding that waits for a person", stable_others, 120, logs)
        other = next((f for f in others if f["customer_key"] == key), others[0])

        await asyncio.to_thread(act, browser, d01["fingerprint"], "Approve and send")
        assert browser.current_url == f"{worker.base_url}/?customer={quote(key, safe='')}&status=all"  # back to it
        if other["customer_key"] != key:
            browser.get(f"{worker.base_url}/?customer={quote(other['customer_key'], safe='')}&status=all")
        await asyncio.to_thread(until, browser, lambda b: b.find_elements(By.ID, f"f-{other['fingerprint']}"),
                                f"the row of {other}")
        await asyncio.to_thread(act, browser, other["fingerprint"], "Accept as otto", NOTE)

        # Both are on the timelines with his name; the approved suspension reached Zendesk and resolved D01.
        # Its whole recent timeline: the loop goes on, and the newest 20 checkpoints may be later than the approval.
        customer_page = f"{worker.base_url}/customers/{quote(key, safe='')}?checkpoints=200"
        browser.get(customer_page)
        # The command as it waited when he approved it (its id follows the finding's start, which later evidence
        # may have moved since the board was read).
        approved = re.compile(rf"approve by otto: command [0-9a-f]+ sent, finding {d01['fingerprint']}$")
        await asyncio.to_thread(WebDriverWait(browser, 60, poll_frequency=1).until,
                                lambda b: any(approved.match(line) for line in timeline_summaries(b)))
        if other["customer_key"] != key:
            browser.get(f"{worker.base_url}/customers/{quote(other['customer_key'], safe='')}?checkpoints=200")
        accepted = f"accept by otto ({NOTE}): accepted, finding {other['fingerprint']}"
        await asyncio.to_thread(WebDriverWait(browser, 60, poll_frequency=1).until,
                                lambda b: accepted in timeline_summaries(b))
        item = await worker.get_json(f"/api/v1/drift/{other['fingerprint']}")
        assert isinstance(item, dict) and item["resolution"] == "accepted", item
        assert item["note"] == f"accepted by otto: {NOTE}"

        async def d01_corrected() -> dict[str, Any] | None:
            found = await worker.get_json(f"/api/v1/drift/{d01['fingerprint']}")
            assert isinstance(found, dict)
            return found if found["status"] == "resolved" else None

        corrected = await _wait("the approved D01 correction applied and its finding resolved", d01_corrected, 120,
                                logs)
        assert corrected["resolution"] == "corrected", corrected
        effects = await _get(f"{sandbox_url}/_sandbox/effects")
        assert effects["duplicates"] == [], effects["duplicates"]
        browser.get(customer_page)
        await asyncio.to_thread(screenshot, browser, "loop-customer-operator.png", 1400)
        logs_seen = [entry for entry in browser.get_log("browser") if entry.get("level") == "SEVERE"]
        assert logs_seen == [], logs_seen
    finally:
        await asyncio.to_thread(browser.quit)
        sandbox.stop()
        worker.stop()
