"""What the browser tests drive: Debian's headless Chromium through its chromedriver
(Selenium), and `forkq dashboard` as a subprocess of the test."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By

from tests.processes import CollectedProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 15.0  # seconds a page has to show what a test waits for


def require_browser() -> None:
    """Skip without Chromium and its driver (scripts/ensure-services installs them); with
    CI=true their absence fails."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    message = (
        "no /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true: no skipping")
    pytest.skip(message)


def chromium(width: int = 1280, height: int = 900):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT)
    return driver


class DashboardProcess(CollectedProcess):
    """`forkq dashboard -A e2eapp` on a port of its own, ready once it says so."""

    def __init__(self, app_dir: Path, url: str, port: int, *options: str) -> None:
        env = {**os.environ, "FORKQ_BROKER_URL": url, "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "forkq", "dashboard", "-A", "e2eapp", "--port", str(port),
                *options]  # fmt: skip
        super().__init__(argv, app_dir, env)
        self.base = f"http://127.0.0.1:{port}"
        self.wait_for_log("forkq dashboard on", timeout=WAIT)

    def url(self, path: str) -> str:
        return self.base + path


def status(url: str, method: str = "GET", body: bytes | None = None,
           headers: dict[str, str] | None = None) -> tuple[int, str]:  # fmt: skip
    """The status and body of one request (urllib: no redirects followed for a POST)."""
    request = urllib.request.Request(url, body, headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace")


def text(driver: Any, css: str) -> str:
    """The element's text, found again if the live stream replaced it while it was read."""
    while True:
        try:
            return str(driver.find_element(By.CSS_SELECTOR, css).text)
        except StaleElementReferenceException:
            continue


def click(driver: Any, css: str) -> None:
    """Click the element, found again if the live stream replaced it before the click."""

    def clicked(d: Any) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    from tests.dashboard.conftest import wait_for  # the conftest imports this module

    wait_for(driver, clicked, f"a click on {css}")


def said(driver: Any) -> str:
    """The line the last action left on the page ("" when none)."""
    found = driver.find_elements(By.ID, "said")
    return text(driver, "#said") if found else ""


def no_alert(driver: Any) -> bool:
    try:
        _ = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False
