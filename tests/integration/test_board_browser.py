"""The drift board in a real browser (Chromium, headless, through chromedriver): a person signs in, the board
connects live, and findings made by the real pipeline appear without a reload.

Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`) and the dev
extra `selenium`; skipped, saying so, where they are not installed. The screenshot goes to
`.cache/screenshots/board.png` (git-ignored).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from concord.codecs.model import encode as encode_event
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import REPO, Infra, produce
from tests.integration.test_drift import histories, rules_file, state_worker

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium and chromedriver are not installed: `apt-get install -y chromium chromium-driver` (Debian) "
           "to run the board's browser test")

SCREENSHOTS = REPO / ".cache" / "screenshots"


def start_browser() -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1800"):
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
    WebDriverWait(browser, timeout).until(
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
