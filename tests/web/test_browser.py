"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium) on a
store filled by real runs: click inventory -> model -> gate -> cell -> pair and check what is shown
against the store; hostile answers are shown as text and never run; sign-in and its refusals.

One browser for the module. Skips when chromium or chromedriver is missing, except where
TUNESAFE_REQUIRE_BROWSER is set (CI), where that fails. TUNESAFE_SCREENSHOTS=DIR saves screenshots of the
main pages there (docs/img)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tunesafe.engine import results as run_store
from tunesafe.evidence.store import Store
from tunesafe.web.app import create_app
from tunesafe.web.auth import Access

if not os.environ.get("TUNESAFE_REQUIRE_BROWSER"):  # where required, a missing selenium fails below
    pytest.importorskip("selenium.webdriver", reason="browser tests need selenium (the dev extra)")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "dashboard-browser-token-0123456789"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--window-size=1280,1000",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        if os.environ.get("TUNESAFE_REQUIRE_BROWSER"):
            pytest.fail(f"{', '.join(missing)} missing but TUNESAFE_REQUIRE_BROWSER is set")
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="tunesafe-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _serve(store: Store, access: Access) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(store, access), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "dashboard did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(store: Store) -> Iterator[str]:
    yield from _serve(store, Access(None))


@pytest.fixture(scope="module")
def locked_site(store: Store) -> Iterator[str]:
    yield from _serve(store, Access(TOKEN))


def _shot(driver: Any, name: str) -> None:
    folder = os.environ.get("TUNESAFE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"dashboard-{name}.png"))


def _no_script_ran(driver: Any) -> None:
    """No alert opened and no hostile script or handler set its marker."""
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    assert driver.execute_script("return typeof window.__xss") == "undefined"


def _wait_url(driver: Any, part: str) -> None:
    WebDriverWait(driver, 30).until(lambda d: part in d.current_url)


def _wait_text(driver: Any, element_id: str, text: str) -> None:
    """Until the element (on the page loaded after a submit) shows the text."""
    WebDriverWait(
        driver, 30, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    ).until(lambda d: text in d.find_element(By.ID, element_id).text)


def test_click_from_inventory_to_a_pair(browser: Any, site: str, store: Store, filled: Any) -> None:
    browser.get(site + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#models tr[data-model]")
    assert [r.get_attribute("data-model") for r in rows] == ["base-model", "support-bot-v2", "unchecked-ft"]
    flagged = browser.find_element(By.CSS_SELECTOR, "tr[data-model='unchecked-ft']")
    assert "no post-fine-tuning evaluation" in flagged.text
    _shot(browser, "inventory")

    browser.find_element(By.LINK_TEXT, "support-bot-v2").click()
    _wait_url(browser, "/models/support-bot-v2")
    assert "fail" in browser.find_element(By.ID, "gates").text
    _shot(browser, "model")
    # a box of the lineage graph opens its evidence record (dashboard.js)
    browser.find_element(
        By.CSS_SELECTOR, f"g.node[data-kind='gate'][data-record-id='{filled.gate_id}'] rect"
    ).click()
    _wait_url(browser, f"/evidence/{filled.gate_id}")
    browser.back()
    _wait_url(browser, "/models/support-bot-v2")
    browser.find_element(By.CSS_SELECTOR, "#gates a.gate-link").click()
    _wait_url(browser, f"/gates/{filled.gate_id}")
    assert browser.find_element(By.ID, "verdict").text.startswith("FAIL")
    _shot(browser, "gate")

    cell = filled.decision["comparison"]["info"]["asr_cells"][0]
    browser.find_element(
        By.CSS_SELECTOR, f"a.cell[data-family='{cell['family']}'][data-category='{cell['category']}']"
    ).click()
    _wait_url(browser, "/cells?")
    n_all = len(browser.find_elements(By.CSS_SELECTOR, "#pairs a.pair-link"))
    # the checkbox submits its form through dashboard.js (loaded under the CSP)
    browser.find_element(By.CSS_SELECTOR, "input[name='discordant']").click()
    _wait_url(browser, "discordant=true")
    pairs = browser.find_elements(By.CSS_SELECTOR, "#pairs a.pair-link")
    assert len(pairs) == round(cell["diff"] * cell["n"]) and n_all >= len(pairs) > 0
    _shot(browser, "cell")

    pairs[0].click()
    _wait_url(browser, "/pairs/")
    attempt_id = browser.current_url.rsplit("/", 1)[1]
    stored = {r.attempt.id: r for r in run_store.load_results(store, filled.candidate_run)}[attempt_id]
    answer = browser.find_element(By.ID, "answer-candidate")
    assert answer.text == stored.response.strip()  # shown exactly, as text
    assert "<script>" in answer.text and "onerror=" in answer.text and "javascript:" in answer.text
    side = browser.find_element(By.ID, "candidate")
    for hostile in ("script", "img", "iframe", "a[href^='javascript']"):
        assert side.find_elements(By.CSS_SELECTOR, f"#answer-candidate {hostile}") == []
    assert browser.find_elements(By.CSS_SELECTOR, "a[href^='javascript']") == []
    assert "refused" in browser.find_element(By.ID, "base").text
    assert "success" in side.text
    _no_script_ran(browser)
    _shot(browser, "pair")


def test_hostile_text_is_shown_not_run_on_every_page(browser: Any, site: str, filled: Any) -> None:
    for path in (
        f"/runs/{filled.candidate_run}",
        f"/gates/{filled.gate_id}/cells?family=direct&category="
        f"{filled.decision['comparison']['info']['asr_cells'][0]['category']}",
        "/models/support-bot-v2",  # the incident's title in the lineage graph's box and tooltip
        f"/gates/{filled.gate_id}",
        "/scans",
        "/incidents",
        f"/incidents/{filled.incident_id}",
        f"/evidence/{filled.incident_id}",
    ):
        browser.get(site + path)
        _no_script_ran(browser)
        assert browser.find_elements(By.CSS_SELECTOR, "main script, main img, main iframe") == []
    assert "<script>alert('t')</script>" in browser.find_element(By.TAG_NAME, "body").text
    browser.get(site + f"/runs/{filled.candidate_run}")
    assert browser.find_element(By.ID, "metrics").text  # the recorded summary is shown
    _shot(browser, "run")
    browser.get(site + "/evidence")
    browser.find_element(By.ID, "verify").click()
    _wait_text(browser, "verify-result", "INTACT")
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []  # no CSP violation and no script error anywhere


def test_sign_in_refusals_and_an_update_in_the_browser(
    browser: Any, locked_site: str, store: Store, filled: Any
) -> None:
    browser.delete_all_cookies()
    browser.get(locked_site + f"/incidents/{filled.incident_id}")
    _wait_url(browser, "/login?next=")
    browser.find_element(By.NAME, "token").send_keys("not-the-token-0123456789")
    browser.find_element(By.NAME, "name").send_keys("mallory")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    _wait_text(browser, "error", "wrong token")
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.NAME, "name").send_keys("bob")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    _wait_url(browser, f"/incidents/{filled.incident_id}")
    browser.find_element(By.NAME, "note").send_keys("checked in the browser <img src=x onerror=alert(1)>")
    browser.find_element(By.CSS_SELECTOR, "#update button").click()
    _wait_text(browser, "notes", "checked in the browser")
    _no_script_ran(browser)
    last = list(store.records(type="incident_update"))[-1]
    assert last.actor == "bob (dashboard)" and last.body["note"].startswith("checked in the browser")


def test_a_keyboard_user_picks_a_filter_option_before_it_submits(browser: Any, site: str) -> None:
    """Arrow keys move through a filter's options without reloading the page at the first one (Chromium
    fires `change` on each arrow press of a closed select); Enter applies the option reached."""
    browser.get(site + "/incidents")
    browser.execute_script(
        "window.__submits = 0; window.__hold = true;"
        "document.addEventListener('submit', (e) => { window.__submits += 1;"
        " if (window.__hold) { e.preventDefault(); } }, true);"
    )
    status = browser.find_element(By.NAME, "status")
    status.send_keys(Keys.ARROW_DOWN)
    status.send_keys(Keys.ARROW_DOWN)
    assert browser.execute_script("return window.__submits") == 0
    assert status.get_attribute("value") == "investigating"
    browser.execute_script("window.__hold = false;")
    status.send_keys(Keys.ENTER)
    _wait_url(browser, "status=investigating")
    # a pointer choice still applies at once
    Select(browser.find_element(By.NAME, "status")).select_by_value("open")
    _wait_url(browser, "status=open")
