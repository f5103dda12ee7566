"""The console in a real browser (Chromium, headless, through chromedriver): a person signs in, the board
connects live, and findings made by the real pipeline appear without a reload; a Stripe customer id typed
in the search box lands on that customer's view, its records side by side with the disagreeing values
marked, and its timeline.

Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`) and the dev
extra `selenium`; skipped, saying so, where they are not installed. The screenshots go to
`.cache/screenshots/` (git-ignored); with `CONCORD_UPDATE_SCREENSHOTS=1` (`make screenshots`) they are also
copied to `docs/images/`, where docs/console.md shows them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from concord.codecs.model import AccountUpserted
from concord.codecs.model import encode as encode_event
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import REPO, Infra, produce
from tests.integration.test_drift import CANCELED, customer_key, histories, rules_file, state_worker

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium and chromedriver are not installed: `apt-get install -y chromium chromium-driver` (Debian) "
           "to run the board's browser test")

SCREENSHOTS = REPO / ".cache" / "screenshots"
DOC_IMAGES = REPO / "docs" / "images"
#: Screenshot -> the image docs/console.md shows, refreshed with CONCORD_UPDATE_SCREENSHOTS=1.
RENAMED = "Bäckerei Müller GmbH"
DOC_SCREENSHOTS = {"board.png": "console-board.png", "customer.png": "console-customer.png",
                   "search.png": "console-search.png"}


def start_browser(size: str = "1400,1800") -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={size}", "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)


def sign_in_and_wait_live(browser: Any, base_url: str, token: str) -> None:
    browser.get(f"{base_url}/")  # redirected to sign in
    WebDriverWait(browser, 15).until(lambda b: "/login" in b.current_url)
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda b: b.find_elements(By.ID, "board"))
    WebDriverWait(browser, 15).until(lambda b: b.find_element(By.ID, "live-status").text.startswith("live"))


def wait_findings(browser: Any, count: int, timeout: float) -> None:
    # The board replaces its rows and counts as changes arrive: an element read may be gone the next moment.
    WebDriverWait(browser, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#findings tbody.finding")) >= count
        and b.find_element(By.ID, "open-total").text == str(count))


@pytest.fixture
def board_settings(settings: Settings, tmp_path: Path) -> Settings:
    return msgspec.structs.replace(settings, rules_file=str(rules_file(tmp_path)), deadline_scan_seconds=0.2)


async def test_new_findings_appear_on_an_open_board_without_a_reload(infra: Infra, board_settings: Settings,
                                                                      tmp_path: Path) -> None:
    worker = state_worker(board_settings, tmp_path / "worker.log").start()
    browser = await asyncio.to_thread(start_browser)
    try:
        await worker.wait_ready()
        await asyncio.to_thread(sign_in_and_wait_live, browser, worker.base_url, board_settings.read_token)
        assert browser.find_elements(By.CSS_SELECTOR, "#findings tbody.finding") == []
        browser.execute_script("window.boardMarker = 'the page that was loaded';")  # gone if the page reloads

        events, _, _ = histories()
        await produce(infra.bootstrap, topic_names(board_settings).canonical,
                      [((e.customer_key or "").encode(), encode_event(e)) for e in events])
        await asyncio.to_thread(wait_findings, browser, 3, 40)

        assert browser.execute_script("return window.boardMarker") == "the page that was loaded"
        rows = browser.find_elements(By.CSS_SELECTOR, "#findings tbody.finding")
        assert {row.get_attribute("class").split()[1] for row in rows} == {"sev-high", "sev-low"}
        text = browser.find_element(By.ID, "findings").text
        assert "Finalized billing invoice missing in the ERP" in text and "Finance" in text and "Support" in text
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOTS / "board.png"))
        logs = [entry for entry in browser.get_log("browser") if entry.get("level") == "SEVERE"]
        assert logs == [], logs  # no script error, no refused request (CSP included)
    finally:
        await asyncio.to_thread(browser.quit)
        worker.stop()


def screenshot(browser: Any, name: str, height: int = 900) -> None:
    """`name` in .cache/screenshots/, of the top of the page `height` px high (1280 wide: small PNGs for the docs)."""
    browser.set_window_size(1280, height)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / name))
    if os.environ.get("CONCORD_UPDATE_SCREENSHOTS") == "1" and name in DOC_SCREENSHOTS:
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SCREENSHOTS / name, DOC_IMAGES / DOC_SCREENSHOTS[name])


def search_for(browser: Any, text: str) -> None:
    box = browser.find_element(By.ID, "search-q")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "form.search button[type=submit]").click()


async def test_a_stripe_customer_id_in_the_search_box_lands_on_its_customer_view(
        infra: Infra, board_settings: Settings, tmp_path: Path) -> None:
    key, stripe_customer = customer_key(CANCELED), f"cus_B{CANCELED:012d}"
    worker = state_worker(board_settings, tmp_path / "worker.log").start()
    browser = await asyncio.to_thread(start_browser, "1280,900")
    try:
        await worker.wait_ready()
        await asyncio.to_thread(sign_in_and_wait_live, browser, worker.base_url, board_settings.read_token)
        # The canceled customer's CRM account is renamed as well: the other systems keep the old name (D09 each).
        events = [msgspec.structs.replace(e, name=RENAMED) if isinstance(e, AccountUpserted) and e.customer_key == key
                  else e for e in histories()[0]]
        await produce(infra.bootstrap, topic_names(board_settings).canonical,
                      [((e.customer_key or "").encode(), encode_event(e)) for e in events])
        await asyncio.to_thread(wait_findings, browser, 6, 40)
        browser.refresh()  # the board as it opens (no row flashing as just changed), for the docs
        await asyncio.to_thread(WebDriverWait(browser, 15).until,
                                lambda b: b.find_element(By.ID, "live-status").text.startswith("live"))
        await asyncio.to_thread(screenshot, browser, "board.png", 1300)

        # The search index is written in the background: search until the customer is found.
        def land_on_customer(b: Any) -> bool:
            search_for(b, stripe_customer)
            return bool(b.find_elements(By.ID, "customer"))

        await asyncio.to_thread(WebDriverWait(browser, 20, poll_frequency=0.5).until, land_on_customer)
        assert browser.current_url == f"{worker.base_url}/customers/{key}"  # one exact id: straight to it
        assert browser.find_element(By.ID, "search-q").get_attribute("value") == ""

        # The four systems side by side; the values an open finding names are marked, with words too.
        systems = [e.get_attribute("id") for e in browser.find_elements(By.CSS_SELECTOR, ".systems .system")]
        assert systems == ["system-salesforce", "system-stripe", "system-zendesk", "system-netsuite"]
        assert stripe_customer in browser.find_element(By.ID, "system-stripe").text
        marked = browser.find_elements(By.CSS_SELECTOR, "#system-stripe td.disagrees")
        assert marked and all("disagrees" in e.find_element(By.CLASS_NAME, "sr-only").get_attribute("textContent")
                              for e in marked)
        assert "canceled" in {e.text.split()[-1] for e in marked}  # the subscription's status (D01)
        assert browser.find_elements(By.CSS_SELECTOR, "#system-zendesk td.disagrees")  # the entitlement's
        assert sorted(row.find_element(By.TAG_NAME, "strong").text for row in
                      browser.find_elements(By.CSS_SELECTOR, "#findings-open tbody tr")) == [
            "D01", "D09", "D09", "D09", "D15"]
        name_row = browser.find_element(By.CSS_SELECTOR, "#master tr.row-disagrees")
        first = name_row.find_elements(By.CSS_SELECTOR, "td.disagrees")[0]  # the CRM's, then the others'
        assert first.text.endswith(RENAMED) and first.find_element(By.CLASS_NAME, "flag").get_attribute("title")

        # The timeline: newest first, each checkpoint's kind in words and its correlation id.
        def timeline_has_findings(b: Any) -> bool:
            b.refresh()
            kinds = [e.text for e in b.find_elements(By.CSS_SELECTOR, "#timeline .kind")]
            return "events applied" in kinds and "finding open" in kinds

        await asyncio.to_thread(WebDriverWait(browser, 20, poll_frequency=0.5).until, timeline_has_findings)
        times = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timeline tr.checkpoint td:first-child")]
        assert times == sorted(times, reverse=True)
        correlation = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timeline tr.checkpoint td:last-child")]
        assert correlation and all(correlation)
        await asyncio.to_thread(screenshot, browser, "customer.png", 1200)

        # A name prefix lists the customers it matches, each linked to its view.
        await asyncio.to_thread(search_for, browser, "customer")
        await asyncio.to_thread(WebDriverWait(browser, 15).until, lambda b: b.find_elements(By.ID, "results"))
        links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#results tr.hit a")]
        assert f"{worker.base_url}/customers/{key}" in links
        await asyncio.to_thread(screenshot, browser, "search.png")
        logs = [entry for entry in browser.get_log("browser") if entry.get("level") == "SEVERE"]
        assert logs == [], logs
    finally:
        await asyncio.to_thread(browser.quit)
        worker.stop()
