"""The example application in a real headless Chromium (Debian's
``chromium``, driven by Playwright): log in, change the plan, a second
browser as the same user, two devices, revoke the other, and the other is
logged out on its next page. Screenshots of the key pages are saved under
``test-output/browser/``.
"""

from __future__ import annotations

import collections.abc as c
import os
import pathlib
import threading
import typing as t

import pytest
from cachelib import SimpleCache
from werkzeug.serving import make_server

from example.app import DEMO_EMAIL
from example.app import DEMO_PASSWORD
from example.app import create_app

from .servers import require

OUTPUT = pathlib.Path(__file__).resolve().parent.parent / "test-output" / "browser"

#: Chromium as root in a sandbox with no network but loopback: the flags the
#: machine's documentation gives, so it neither needs a user namespace nor
#: tries to reach Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if t.TYPE_CHECKING:  # pragma: no cover
    from playwright.sync_api import Browser
    from playwright.sync_api import Page


@pytest.fixture
def site(tmp_path: t.Any) -> c.Iterator[str]:
    app = create_app(
        {
            "SECRET_KEY": "browser test",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'demo.sqlite'}",
            "POW_CACHE": SimpleCache(threshold=100_000),
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def browser() -> c.Iterator[Browser]:
    executable = require("chromium")

    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed (pip install -e '.[tests]')")

        pytest.skip("playwright is not installed")

    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def log_in(page: Page, site: str) -> None:
    page.goto(f"{site}/login")
    page.fill("input[name=email]", DEMO_EMAIL)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form.stack button")
    page.wait_for_selector("#plan")


def shot(page: Page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


@pytest.mark.slow
def test_two_devices_and_revoking_one(site: str, browser: Browser) -> None:
    laptop = browser.new_context(user_agent="Laptop Chromium").new_page()
    log_in(laptop, site)
    assert laptop.inner_text("#plan") == "free"
    shot(laptop, "1-profile")

    laptop.select_option("#plan-select", "pro")
    laptop.click("form.inline button")
    laptop.wait_for_selector(".flash")
    assert laptop.inner_text("#plan") == "pro"
    shot(laptop, "2-plan-changed")

    phone = browser.new_context(user_agent="Phone Chromium").new_page()
    log_in(phone, site)
    assert phone.inner_text("#plan") == "pro"

    laptop.goto(f"{site}/devices")
    rows = laptop.locator("tr.device")
    assert rows.count() == 2
    assert laptop.locator("tr.device.this").inner_text().startswith("Laptop Chromium")
    shot(laptop, "3-devices")

    laptop.locator("tr.device:not(.this) button").click()
    laptop.wait_for_selector(".flash")
    assert laptop.locator("tr.device").count() == 1
    shot(laptop, "4-device-revoked")

    phone.goto(f"{site}/")
    assert phone.locator("#plan").count() == 0
    assert phone.locator("header nav a", has_text="Log in").count() == 1
    shot(phone, "5-other-device-logged-out")

    laptop.goto(f"{site}/")
    assert laptop.inner_text("#plan") == "pro"


@pytest.mark.slow
def test_protected_page_asks_to_log_in_and_comes_back(
    site: str, browser: Browser
) -> None:
    page = browser.new_context().new_page()
    page.goto(f"{site}/devices")
    assert page.inner_text(".flash") == "Please log in to access this page."
    shot(page, "6-login-required")

    page.fill("input[name=email]", DEMO_EMAIL)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form.stack button")
    page.wait_for_url(f"{site}/devices")
    assert page.locator("tr.device.this").count() == 1
    shot(page, "7-back-on-the-protected-page")
