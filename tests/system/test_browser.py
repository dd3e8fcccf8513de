"""The example application in a real headless Chromium (Debian's
``chromium``, driven by Playwright): log in, change the plan, a second
browser as the same user, two devices, revoke the other, and the other is
logged out on its next page; the devices page and the error pages on a
phone-sized screen. Screenshots of the key pages are saved under
``test-output/browser/``.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import os
import pathlib
import threading
import time
import typing as t
import uuid

import pytest
from cachelib import SimpleCache
from flask import Flask
from werkzeug.serving import make_server

from example.app import DEMO_EMAIL
from example.app import DEMO_PASSWORD
from example.app import create_app
from tests.support.env import Clock
from tests.support.servers import RedisServer
from tests.support.servers import free_port
from tests.support.servers import require

OUTPUT = (
    pathlib.Path(__file__).resolve().parent.parent.parent / "test-output" / "browser"
)

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
    from playwright.sync_api import ViewportSize


#: Real browsers' user agents, as ua-parser names them on the devices page.
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
LINUX_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.0.0 Safari/537.36"
)
ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like"
    " Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36"
)
#: An iPhone 12 to 15's screen, in CSS pixels.
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def instance(tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("POW_REDIS_URL", raising=False)


@contextlib.contextmanager
def serve(app: Flask) -> c.Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def demo_app(**config: t.Any) -> Flask:
    app = create_app({"SECRET_KEY": "browser test", **config})

    @app.get("/test/broken")
    def broken() -> str:
        raise RuntimeError("a bug in a view")

    return app


@pytest.fixture
def site() -> c.Iterator[str]:
    with serve(demo_app(POW_CACHE=SimpleCache(threshold=100_000))) as url:
        yield url


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
    # A page whose stylesheet failed to load still passes every check on its
    # text: make sure what the screenshot shows is the styled page.
    assert page.evaluate(
        "[...document.querySelectorAll('link[rel=stylesheet]')]"
        ".every(link => link.sheet && link.sheet.cssRules.length > 0)"
    ), f"{name}: a stylesheet did not load"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def fits_the_screen(page: Page) -> bool:
    """Whether the page needs no sideways scrolling."""
    return bool(
        page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    )


def in_layout(page: Page) -> bool:
    return (
        page.locator("header .brand").count() == 1
        and page.locator("footer").count() == 1
    )


@pytest.mark.slow
def test_two_devices_and_revoking_one(site: str, browser: Browser) -> None:
    laptop = browser.new_context(user_agent=LINUX_CHROME).new_page()
    log_in(laptop, site)
    assert laptop.inner_text("#plan") == "free"
    shot(laptop, "1-profile")

    laptop.select_option("#plan-select", "pro")
    laptop.click("form.inline button")
    laptop.wait_for_selector(".flash")
    assert laptop.inner_text("#plan") == "pro"
    shot(laptop, "2-plan-changed")

    phone = browser.new_context(user_agent=ANDROID_CHROME).new_page()
    log_in(phone, site)
    assert phone.inner_text("#plan") == "pro"

    laptop.goto(f"{site}/devices")
    rows = laptop.locator("tr.device")
    assert rows.count() == 2
    assert laptop.inner_text("tr.device.this .name") == "Chrome on Linux"
    assert laptop.inner_text("tr.device:not(.this) .name") == "Chrome Mobile on Android"
    shot(laptop, "3-devices")

    laptop.locator("tr.device:not(.this) button").click()
    laptop.wait_for_selector(".flash")
    assert laptop.locator("tr.device").count() == 1
    shot(laptop, "4-device-revoked")

    phone.goto(f"{site}/")
    assert phone.locator("#plan").count() == 0
    assert phone.locator("header nav a", has_text="Log in").count() == 1
    assert phone.inner_text(".flash") == "This device was logged out."
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


@pytest.mark.slow
def test_devices_page_on_a_phone(site: str, browser: Browser) -> None:
    laptop = browser.new_context(user_agent=LINUX_CHROME).new_page()
    log_in(laptop, site)
    phone = browser.new_context(viewport=PHONE, user_agent=IPHONE_SAFARI).new_page()
    log_in(phone, site)
    assert phone.inner_text("#who") == "Demo"
    assert fits_the_screen(phone)
    shot(phone, "8-phone-profile")

    phone.goto(f"{site}/devices")
    this = phone.locator("tr.device.this")
    assert this.locator(".name").inner_text() == "Mobile Safari on iOS"
    assert this.locator(".model").inner_text() == "iPhone"
    assert this.locator("td.title").get_attribute("title") == IPHONE_SAFARI
    assert phone.inner_text("tr.device:not(.this) .name") == "Chrome on Linux"
    assert fits_the_screen(phone)
    # Cards, not a table: every button is on the screen, none cut off.
    for button in phone.locator("tr.device button").all():
        box = button.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    shot(phone, "9-phone-devices")


@pytest.mark.slow
def test_error_pages_on_a_phone(site: str, browser: Browser) -> None:
    phone = browser.new_context(viewport=PHONE, user_agent=IPHONE_SAFARI).new_page()

    response = phone.goto(f"{site}/no/such/page")
    assert response is not None and response.status == 404
    assert in_layout(phone) and phone.inner_text("h1") == "Page not found"
    assert fits_the_screen(phone)
    shot(phone, "10-phone-404")

    phone.click("text=Log in >> nth=-1")
    phone.wait_for_url(f"{site}/login")
    log_in(phone, site)
    phone.click("header >> text=Pro")
    phone.wait_for_url(f"{site}/pro")
    assert in_layout(phone)
    assert phone.inner_text("h1") == "The pro page is for the pro plan"
    assert fits_the_screen(phone)
    shot(phone, "11-phone-pro-for-a-free-user")

    phone.click("#switch-to-pro")
    phone.wait_for_selector(".flash")
    assert phone.url == f"{site}/pro"
    assert phone.inner_text("h1") == "The pro page"
    shot(phone, "12-phone-pro-after-switching")

    response = phone.goto(f"{site}/test/broken")
    assert response is not None and response.status == 500
    assert in_layout(phone)
    assert phone.inner_text("h1") == "Something went wrong on our side"
    assert fits_the_screen(phone)
    shot(phone, "13-phone-500")


@pytest.mark.slow
def test_store_down_page_on_a_phone(
    browser: Browser, redis_server: RedisServer
) -> None:
    # The same site twice, one on a live Redis and one whose Redis is gone.
    # Cookies do not depend on the port: the browser's session on the first
    # goes to the second.
    namespace = f"example-{uuid.uuid4().hex[:12]}"
    live = demo_app(
        POW_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
        POW_NAMESPACE=namespace,
    )
    down = demo_app(
        POW_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", POW_NAMESPACE=namespace
    )
    phone = browser.new_context(viewport=PHONE, user_agent=IPHONE_SAFARI).new_page()

    with serve(live) as live_url, serve(down) as down_url:
        log_in(phone, live_url)
        response = phone.goto(f"{down_url}/devices")
        assert response is not None and response.status == 503
        assert in_layout(phone)
        assert phone.inner_text("h1") == "The session store is down"
        assert phone.locator("a", has_text="Try again").get_attribute("href") == (
            "/devices"
        )
        assert fits_the_screen(phone)
        shot(phone, "14-phone-503")

        # Nobody was logged out.
        phone.goto(f"{live_url}/")
        assert phone.inner_text("#who") == "Demo"


@pytest.mark.slow
def test_password_change_asks_for_the_password_then_logs_out_others(
    browser: Browser,
) -> None:
    # A login is fresh for 30 s of a clock that moves only by hand, and
    # the token's renewal (60 s) never comes: however slow the browser,
    # the reauthentication is still fresh when the new password is sent.
    app = demo_app(POW_CACHE=SimpleCache(threshold=100_000), POW_FRESHNESS=30)
    clock = Clock()
    clock.now = time.time()

    with app.app_context():
        app.extensions["pow"].credentials.clock = clock

    with serve(app) as site:
        laptop = browser.new_context(user_agent=LINUX_CHROME).new_page()
        log_in(laptop, site)
        phone = browser.new_context(viewport=PHONE, user_agent=IPHONE_SAFARI).new_page()
        log_in(phone, site)
        clock.advance(31)  # the logins are no longer fresh
        phone.goto(f"{site}/devices")
        phone.click("#change-password")
        phone.wait_for_url(f"{site}/reauthenticate?next=%2Fpassword")
        assert phone.inner_text(".flash") == (
            "Please reauthenticate to access this page."
        )
        assert fits_the_screen(phone)
        shot(phone, "10-phone-confirm-password")

        phone.fill("input[name=password]", DEMO_PASSWORD)
        phone.click("form.stack button")
        phone.wait_for_url(f"{site}/password")
        shot(phone, "11-phone-change-password")

        phone.fill("input[name=password]", "n3w-secret-pw")
        phone.click("form.stack button")
        phone.wait_for_url(f"{site}/")
        assert phone.inner_text(".flash") == (
            "Password changed. 1 other device logged out."
        )
        assert phone.inner_text("#who") == "Demo"
        shot(phone, "12-phone-password-changed")

        laptop.goto(f"{site}/")
        assert laptop.inner_text(".flash") == "This device was logged out."


@pytest.mark.slow
def test_remember_me_logs_back_in_after_the_session_cookie_is_gone(
    site: str, browser: Browser
) -> None:
    context = browser.new_context(viewport=PHONE, user_agent=IPHONE_SAFARI)
    page = context.new_page()
    page.goto(f"{site}/login")
    page.fill("input[name=email]", DEMO_EMAIL)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.check("input[name=remember]")
    assert fits_the_screen(page)
    shot(page, "13-phone-login-remember-me")
    page.click("form.stack button")
    page.wait_for_selector("#plan")

    # The browser was closed: the session cookie is gone, the remember
    # cookie (persistent) is not.
    cookies = context.cookies()
    assert {cookie["name"] for cookie in cookies} >= {"session", "remember_token"}
    context.clear_cookies()
    context.add_cookies([c for c in cookies if c["name"] == "remember_token"])  # type: ignore[misc]

    page.goto(f"{site}/devices")
    assert page.inner_text("#who") == "Demo"
    assert page.locator("tr.device.this .badge.remembered").count() == 1
    assert page.locator("tr.device").count() == 1
    assert fits_the_screen(page)
    shot(page, "14-phone-remembered-device")

    # Logged in by the remember cookie, not by a password: not fresh.
    page.click("#change-password")
    page.wait_for_url(f"{site}/reauthenticate?next=%2Fpassword")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form.stack button")
    page.wait_for_url(f"{site}/password")


@pytest.mark.slow
def test_a_role_given_a_permission_shows_on_its_members_next_page(
    site: str, browser: Browser
) -> None:
    member = browser.new_context(user_agent=LINUX_CHROME).new_page()
    member.goto(f"{site}/register")
    member.fill("input[name=email]", "ann@example.com")
    member.fill("input[name=name]", "Ann")
    member.fill("input[name=password]", "a long password")
    member.click("form.stack button")
    member.wait_for_selector("#role")
    assert member.inner_text("#role") == "member"
    assert member.locator("header nav a", has_text="Admin").count() == 0

    admin = browser.new_context(user_agent=LINUX_CHROME).new_page()
    log_in(admin, site)
    assert admin.inner_text("#role") == "admin"
    admin.goto(f"{site}/admin/")
    admin.check("#member-SEE_USERS")
    admin.click("#save-member")
    admin.wait_for_selector(".flash")
    assert admin.inner_text(".flash") == "The member role now has: see users."
    assert admin.locator("#member-SEE_USERS").is_checked()
    shot(admin, "20-admin-role-changed")

    member.goto(f"{site}/")
    member.locator("header nav a", has_text="Admin").click()
    member.wait_for_selector("h1")
    assert member.inner_text("h1") == "Users with active sessions"
    assert member.locator("#save-member").count() == 0
    shot(member, "21-member-sees-users")
