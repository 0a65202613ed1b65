"""The settings page in a real browser (headless Chromium through Selenium), embedded the way GHL
embeds it: a parent page on another origin iframes /settings and answers the page's
REQUEST_USER_DATA postMessage with a CryptoJS-encrypted user context."""

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from app.devkit.harness import CIPHER, LOCATION, Harness, webhook
from app.devkit.server_thread import ServerThread
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.store import Store
from tests.e2e.test_message_log import received, sent
from tests.support.cryptojs import SSO_KEY, sso_payload, user_context

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
OWN_KEY = "cast_" + "b10c" * 16
FRAME_WIDTH = 360  # GHL's narrowest custom-page iframe (a phone)
WAIT = 20

try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None  # type: ignore[assignment]


def _browser_missing() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser_available() -> None:
    missing = _browser_missing()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run in CI: {missing}")
    pytest.skip(missing)


@pytest.fixture
def driver(browser_available: None, tmp_path: Path) -> Iterator["WebDriver"]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1024,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "driver.log"))
    browser = webdriver.Chrome(options=options, service=service)
    try:
        yield browser
    finally:
        browser.quit()


def ghl_parent(bridge_url: str, answer: dict[str, Any]) -> FastAPI:
    """A stand-in for GHL's app shell: iframes the custom page, answers REQUEST_USER_DATA with
    `answer["payload"]`. With `answer["sibling"]` the parent stays silent and a sibling frame on
    another origin answers instead (an impostor the page must ignore)."""
    app = FastAPI()

    def message() -> str:
        return json.dumps({"message": "REQUEST_USER_DATA_RESPONSE", "payload": answer["payload"]})

    @app.get("/")
    async def shell() -> HTMLResponse:
        reply = "" if answer.get("sibling") else f"event.source.postMessage({message()}, '*');"
        sibling = (
            f'<iframe id="sibling" src="{answer["sibling"]}/sibling"></iframe>'
            if answer.get("sibling")
            else ""
        )
        return HTMLResponse(
            f"""<!doctype html><html><head><title>GHL</title></head><body>
<iframe id="custom-page" title="Cast SMS" src="{bridge_url}/settings"
        style="width:{FRAME_WIDTH}px;height:1400px;border:0"></iframe>{sibling}
<script>
window.requests = 0;
window.addEventListener("message", function (event) {{
  if (!event.data || event.data.message !== "REQUEST_USER_DATA") return;
  window.requests += 1;
  {reply}
}});
</script></body></html>"""
        )

    @app.get("/sibling")
    async def impostor() -> HTMLResponse:
        return HTMLResponse(
            f"""<!doctype html><html><body><script>
window.setInterval(function () {{
  window.parent.frames[0].postMessage({message()}, "*");
}}, 100);
</script></body></html>"""
        )

    return app


@pytest.fixture
def parent(harness: Harness) -> Iterator[tuple[ServerThread, dict[str, Any]]]:
    """GHL's stand-in, on the one extra origin the bridge lets frame the page."""
    answer: dict[str, Any] = {"payload": None}
    server = ServerThread(ghl_parent(harness.url, answer))
    harness.env["SETTINGS_FRAME_ORIGINS"] = server.url
    server.start()
    yield server, answer
    server.stop()


@pytest.fixture
async def started(harness: Harness, parent: tuple[ServerThread, dict[str, Any]]) -> Harness:
    harness.env["GHL_APP_SSO_KEY"] = SSO_KEY
    harness.cast.api_keys.add(OWN_KEY)
    await harness.seed_installation()
    harness.start()
    return harness


def other_origin(url: str) -> str:
    """The same server under another origin (localhost instead of 127.0.0.1)."""
    return url.replace("127.0.0.1", "localhost")


@pytest.fixture
def open_in_ghl(
    started: Harness, parent: tuple[ServerThread, dict[str, Any]], driver: "WebDriver"
) -> Any:
    server, answer = parent

    def _open(payload: str | None, *, origin: str | None = None) -> "WebDriver":
        answer["payload"] = payload
        driver.get((origin or server.url) + "/")
        frame = WebDriverWait(driver, WAIT).until(
            ec.presence_of_element_located((By.ID, "custom-page"))
        )
        driver.switch_to.frame(frame)
        return driver

    return _open


def _wait_for(driver: "WebDriver", element_id: str) -> Any:
    try:
        return WebDriverWait(driver, WAIT).until(
            ec.presence_of_element_located((By.ID, element_id))
        )
    except WebDriverException as exc:
        raise AssertionError(f"no #{element_id} in:\n{driver.page_source[:3000]}") from exc


async def test_saving_in_the_embedded_page_applies_to_the_next_outbound_message(
    started: Harness, open_in_ghl: Any
):
    browser = open_in_ghl(sso_payload(user_context()))

    form = _wait_for(browser, "settings-form")
    assert browser.find_element(By.CSS_SELECTOR, "#connection").get_attribute("data-state") == (
        "connected"
    )
    sender = browser.find_element(By.ID, "sender_id")
    sender.clear()
    sender.send_keys("BROWSERSMS")
    browser.find_element(By.ID, "api_key").send_keys(OWN_KEY)
    enabled = browser.find_element(By.ID, "enabled")
    if not enabled.is_selected():
        enabled.click()
    save = form.find_element(By.ID, "save")
    save.click()
    WebDriverWait(browser, WAIT).until(ec.staleness_of(save))
    notice = _wait_for(browser, "notice")
    assert "BROWSERSMS" in notice.text
    assert browser.find_element(By.ID, "current-key").text.endswith("cast_…b10c")
    assert OWN_KEY not in browser.page_source
    # Usable at a phone-sized iframe: nothing wider than the frame.
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )

    await started.post(webhook("m-browser"))
    await started.wait_for(lambda: started.cast.sent, what="send at Cast")

    (sms,) = started.cast.sent
    assert (sms["key"], sms["sender_id"]) == (OWN_KEY, "BROWSERSMS")


async def test_a_test_sms_from_the_embedded_page_shows_under_recent_messages(
    started: Harness, open_in_ghl: Any
):
    browser = open_in_ghl(sso_payload(user_context()))
    _wait_for(browser, "test-form")

    browser.find_element(By.ID, "phone").send_keys("09175550199")
    send = browser.find_element(By.ID, "send-test")
    send.click()
    WebDriverWait(browser, WAIT).until(ec.staleness_of(send))
    _wait_for(browser, "notice")
    await started.wait_for(lambda: started.cast.sent_to("09175550199"), what="test SMS at Cast")
    refresh = browser.find_element(By.ID, "refresh")
    refresh.click()
    WebDriverWait(browser, WAIT).until(ec.staleness_of(refresh))  # the new page replaced it
    # Read the row afresh on every try: the page may be replaced while we look at it.
    row_text = WebDriverWait(
        browser, WAIT, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    ).until(lambda d: _recent_row_with(d, "0199"))

    assert "*******0199" in row_text and "test" in row_text


def _recent_row_with(driver: "WebDriver", digits: str) -> str | bool:
    for row in driver.find_elements(By.CSS_SELECTOR, "#recent tbody tr"):
        if digits in row.text:
            return row.text
    return False


async def test_an_invalid_sso_payload_is_refused_in_the_browser(started: Harness, open_in_ghl: Any):
    browser = open_in_ghl(sso_payload(user_context(), key="a-different-secret"))

    alert = _wait_for(browser, "main").find_element(By.CSS_SELECTOR, "[role=alert]")
    assert alert.get_attribute("data-error-code") == "invalid_sso"
    assert browser.find_elements(By.ID, "settings-form") == []


async def test_a_page_on_another_origin_cannot_frame_the_settings_page(
    started: Harness, parent: tuple[ServerThread, dict[str, Any]], open_in_ghl: Any
):
    server, _ = parent
    browser = open_in_ghl(sso_payload(user_context()), origin=other_origin(server.url))
    await asyncio.sleep(2)

    assert browser.find_elements(By.ID, "sso-status") == []  # the frame was refused
    browser.switch_to.default_content()
    assert browser.execute_script("return window.requests") == 0
    assert "settings page signed in" not in started.logs()


async def test_the_page_ignores_a_user_context_that_is_not_from_its_parent(
    started: Harness, parent: tuple[ServerThread, dict[str, Any]], open_in_ghl: Any
):
    server, answer = parent
    answer["sibling"] = other_origin(server.url)
    browser = open_in_ghl(sso_payload(user_context()))
    _wait_for(browser, "sso-status")
    await asyncio.sleep(2)  # the impostor posts its answer every 100 ms meanwhile

    assert browser.find_elements(By.ID, "settings-form") == []
    assert "settings page signed in" not in started.logs()


async def test_the_page_opened_outside_ghl_has_no_user_and_shows_no_settings(
    started: Harness, driver: "WebDriver"
):
    driver.get(started.url + "/settings")

    WebDriverWait(driver, WAIT).until(
        ec.text_to_be_present_in_element((By.ID, "sso-status"), "Open Cast SMS")
    )
    assert driver.find_elements(By.ID, "settings-form") == []


async def test_the_cast_account_panel_shows_balance_warning_sender_choice_and_chart(
    started: Harness, open_in_ghl: Any
):
    cast = started.cast
    cast.credits = 120  # below the default warning level of 500
    cast.approve(OWN_KEY, "MYBRAND", "sms")
    cast.approve(OWN_KEY, "+639170000001", "sim")
    own_key = LocationSettings(location_id=LOCATION, cast_api_key=OWN_KEY, updated_at=1.0)
    await started.with_store(lambda store: LocationSettingsRepository(store, CIPHER).put(own_key))
    today = datetime.now(UTC).date()
    cast.usage_days = [
        {
            "date": (today - timedelta(days=n)).isoformat(),
            "total": t,
            "sent": t - f,
            "failed": f,
            "parts": t + 2,
        }
        for n, t, f in [(0, 14, 1), (1, 22, 0), (3, 9, 2), (6, 30, 3), (12, 17, 0), (20, 8, 1)]
    ]
    browser = open_in_ghl(sso_payload(user_context()))

    _wait_for(browser, "settings-form")
    credits = browser.find_element(By.ID, "credits")
    warning = browser.find_element(By.ID, "low-credit")
    chart = browser.find_element(By.ID, "usage-chart")
    bars = browser.find_elements(By.CSS_SELECTOR, "#usage-chart rect.sent")
    choices = [
        option.get_attribute("value")
        for option in browser.find_elements(By.CSS_SELECTOR, "#sender-choices option")
    ]
    assert "120" in credits.text and warning.is_displayed() and "120 credits" in warning.text
    assert choices == ["MYBRAND", "+639170000001"]
    assert len(bars) == 30 and 0 < chart.size["width"] <= FRAME_WIDTH
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )

    sender = browser.find_element(By.ID, "sender_id")
    sender.clear()
    sender.send_keys("+639170000001")
    save = browser.find_element(By.ID, "save")
    save.click()
    WebDriverWait(browser, WAIT).until(ec.staleness_of(save))
    notice = _wait_for(browser, "notice")
    assert "Cast approved it for the sim channel" in notice.text
    kind = browser.find_element(By.ID, "sender-kind")
    assert kind.get_attribute("data-channel") == "sim" and "Two-way" in kind.text


# Each table against its own box: the table's width, and every body cell inside the box's left
# and right edges with some width (a cell pushed out, or squeezed to nothing, is a hidden column).
MEASURE_TABLES = """
return Array.from(document.querySelectorAll("table")).map(function (table) {
  var box = table.parentElement.getBoundingClientRect();
  var cells = Array.from(table.querySelectorAll("tbody th, tbody td"));
  var hidden = cells.filter(function (cell) {
    var r = cell.getBoundingClientRect();
    return r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.width < 1;
  });
  return {
    id: table.id,
    table: Math.round(table.getBoundingClientRect().width),
    box: Math.round(box.width),
    cells: cells.length,
    hidden: hidden.map(function (cell) { return cell.textContent.trim().slice(0, 30); })
  };
});
"""


def _frame_width(browser: "WebDriver", width: int) -> None:
    """Resize GHL's iframe to `width` px and work inside it again."""
    browser.switch_to.default_content()
    browser.set_window_size(width + 40, 1400)
    browser.execute_script(f"document.getElementById('custom-page').style.width = '{width}px';")
    browser.switch_to.frame(browser.find_element(By.ID, "custom-page"))


async def seed_every_table(harness: Harness) -> None:
    """An own key with 30 days of usage (the chart and #usage), and messages both ways with a
    failure reason and a long body (#recent), so every table of the page has rows."""
    harness.cast.credits = 120
    today = datetime.now(UTC).date()
    harness.cast.usage_days = [
        {"date": (today - timedelta(days=n)).isoformat(), "total": t, "sent": t - f, "failed": f}
        | {"parts": t + 2}
        for n, t, f in [(0, 14, 1), (1, 22, 0), (3, 9, 2), (6, 30, 3), (12, 17, 0), (20, 8, 1)]
    ]
    own_key = LocationSettings(location_id=LOCATION, cast_api_key=OWN_KEY, updated_at=1.0)
    now = datetime.now(UTC).timestamp()

    async def seed(store: Store) -> None:
        await LocationSettingsRepository(store, CIPHER).put(own_key)
        await sent(store, "m-ok", now - 300, text="Your appointment is tomorrow at 10:00")
        await sent(
            store,
            "m-failed",
            now - 200,
            text="A long promotional message " * 6,
            phone="09181112222",
            status="failed",
        )
        await received(store, "r-1", now - 100, text="Yes, see you tomorrow")

    await harness.with_store(seed)


async def test_every_table_fits_its_own_box_at_360_and_1024_px(started: Harness, open_in_ghl: Any):
    await seed_every_table(started)
    browser = open_in_ghl(sso_payload(user_context()))
    _wait_for(browser, "settings-form")

    for width in (FRAME_WIDTH, 1024):
        _frame_width(browser, width)
        _wait_for(browser, "recent")
        tables = browser.execute_script(MEASURE_TABLES)

        assert sorted(t["id"] for t in tables) == ["recent", "totals", "usage"], width
        for table in tables:
            assert table["cells"] > 0 and table["hidden"] == [], (width, table)
            assert table["table"] <= table["box"], (width, table)
        failed = browser.find_element(By.CSS_SELECTOR, '#recent tr[data-status="failed"]')
        assert "Failed" in failed.text and "A long promotional message" in failed.text
    _screenshots(browser)


def _screenshots(browser: "WebDriver") -> None:
    """With SCREENSHOT_DIR set, the page at GHL's narrowest iframe (360 px) and at 1024 px
    (docs/architecture.md shows them: docs/img/)."""
    target = os.environ.get("SCREENSHOT_DIR")
    if not target:
        return
    browser.switch_to.default_content()
    for width in (FRAME_WIDTH, 1024):
        browser.set_window_size(width + 40, 6000)
        browser.execute_script(
            "const f = document.getElementById('custom-page');"
            f"f.style.width = '{width}px'; f.style.height = '100px';"
        )
        frame = browser.find_element(By.ID, "custom-page")
        browser.switch_to.frame(frame)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.switch_to.default_content()
        browser.execute_script(
            f"document.getElementById('custom-page').style.height = '{height}px';"
        )
        frame.screenshot(str(Path(target) / f"settings-{width}.png"))
    browser.execute_script(
        f"document.getElementById('custom-page').style.width = '{FRAME_WIDTH}px';"
    )
    browser.switch_to.frame(browser.find_element(By.ID, "custom-page"))
