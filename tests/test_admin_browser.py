"""The admin pages in a real browser: Debian's headless Chromium, driven by
Selenium through Debian's chromedriver, against the app served on loopback.
Each page's screenshot is kept as an artifact; the test prints the folder."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as arrived
from selenium.webdriver.support.wait import WebDriverWait
from werkzeug.serving import make_server

from app.reservations import utcnow
from tests.admin_pages import PASSWORD, new_operator
from tests.procedures import call_event, claim

# Installed by `make packages` (chromium, chromium-driver): missing, the test fails.
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def served(app):
    """The app on a free loopback port, in a thread of this process."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("admin-screenshots")
    print(f"\nadmin page screenshots: {folder}")
    return folder


def test_an_operator_logs_in_finds_a_fresh_ping_and_its_reservation_and_sees_charts(
        served, browser, screenshots, client, market, sessions):
    def wait_for(condition):
        # A click returns before the next page loads: wait for it, not for time.
        WebDriverWait(browser, 10).until(condition)

    m = market(payout="12.50")
    rtb = client.post("/rtbs.json", query_string={"key": m.key, "caller_number": "+12025550123",
                                                  "caller_zip": "10001"}).get_json()["rtb"]
    with sessions() as db:
        claimed = claim(db, rtb["uuid"], m.publisher_id, f"browser-{rtb['uuid']}")
        call_event(db, claimed, "answered", 200, utcnow().timestamp() - 90)
        call_event(db, claimed, "ended", at=utcnow().timestamp())
        db.commit()
    name = new_operator(sessions)

    browser.get(f"{served}/admin/log")
    assert "/admin/login" in browser.current_url
    browser.save_screenshot(str(screenshots / "login.png"))
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    wait_for(arrived.text_to_be_present_in_element((By.TAG_NAME, "h1"), "RTB log"))
    assert rtb["uuid"] in [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.uuid")]

    browser.find_element(By.NAME, "campaign").send_keys(str(m.campaign_id))
    browser.find_element(By.ID, "filter").click()
    wait_for(arrived.url_contains(f"campaign={m.campaign_id}"))
    [row] = browser.find_elements(By.CSS_SELECTOR, "tr.ping")
    assert "reserved" in row.text and "+12025550123" in row.text
    browser.save_screenshot(str(screenshots / "log.png"))

    row.find_element(By.CSS_SELECTOR, "a.uuid").click()
    assert browser.find_element(By.ID, "status").text == "completed"
    assert browser.find_element(By.ID, "candidates").text == str(m.target_id)
    assert "reserved" in browser.find_element(By.ID, "ping").text
    assert "yes" in browser.find_element(By.ID, "calls").text
    browser.save_screenshot(str(screenshots / "reservation.png"))

    browser.get(f"{served}/admin/")
    for chart in ("pings-chart", "calls-chart", "payout-chart"):
        bars = browser.find_elements(By.CSS_SELECTOR, f"#{chart} rect")
        assert bars and all(bar.size["height"] > 0 for bar in bars), chart
    browser.save_screenshot(str(screenshots / "dashboard.png"))

    browser.get(f"{served}/admin/targets?campaign={m.campaign_id}")
    [target] = browser.find_elements(By.CSS_SELECTOR, "tr[data-target]")
    assert target.get_attribute("data-target") == str(m.target_id) and "12.50" in target.text
    browser.save_screenshot(str(screenshots / "targets.png"))
    assert sorted(p.name for p in screenshots.iterdir()) == \
        ["dashboard.png", "log.png", "login.png", "reservation.png", "targets.png"]
