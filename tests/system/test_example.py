"""The example application behind ``make demo``, through Flask's test
client (the browser test drives it in Chromium)."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time
import typing as t
import urllib.parse
import urllib.request
import uuid

import pytest
import sqlalchemy as sa
from cachelib import FileSystemCache
from cachelib import SimpleCache
from flask import Flask
from flask.testing import FlaskClient

from example.app import DEMO_EMAIL
from example.app import DEMO_PASSWORD
from example.app import create_app
from example.app import describe_store
from example.app import secret_key
from example.devices import describe_device
from example.models import Role
from example.models import User
from example.models import db
from tests.support.servers import RedisServer
from tests.support.servers import free_port

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent.parent / "example"

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
LINUX_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.0.0 Safari/537.36"
)


@pytest.fixture(autouse=True)
def instance(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """The example's instance folder, in a directory of the test's own."""
    path = tmp_path / "instance"
    monkeypatch.setenv("EXAMPLE_INSTANCE_PATH", str(path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("POW_REDIS_URL", raising=False)
    return path


@pytest.fixture
def demo() -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "POW_CACHE": SimpleCache(threshold=100_000),
        }
    )


def token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found[1]


def post(client: FlaskClient, path: str, **data: str) -> t.Any:
    return client.post(path, data={"csrf": token(client), **data})


def log_in(client: FlaskClient) -> None:
    post(client, "/login", email=DEMO_EMAIL, password=DEMO_PASSWORD)


def page(client: FlaskClient, path: str = "/") -> str:
    return client.get(path).get_data(as_text=True)


def test_anonymous_home_invites_to_log_in(demo: Flask) -> None:
    assert "Log in" in page(demo.test_client())


def test_login_shows_profile_from_cache(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    assert '<b id="plan">free</b>' in page(client)


def test_wrong_password_is_refused(demo: Flask) -> None:
    client = demo.test_client()
    response = post(client, "/login", email=DEMO_EMAIL, password="nope")
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert "Hello" not in page(client)


def test_post_without_csrf_token_is_refused(demo: Flask) -> None:
    client = demo.test_client()
    response = client.post("/login", data={"email": DEMO_EMAIL, "password": "x"})
    assert response.status_code == 400


def test_register_logs_in(demo: Flask) -> None:
    client = demo.test_client()
    post(client, "/register", email="new@example.com", name="New", password="12345678")
    assert "Hello, New" in page(client)


def test_pro_page_follows_the_database(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    assert client.get("/pro").status_code == 403

    with demo.app_context():
        db.session.execute(sa.update(User).values(plan="pro"))
        db.session.commit()

    assert client.get("/pro").status_code == 200
    assert '<b id="plan">free</b>' in page(client)  # the cache, until a sync


def test_plan_change_syncs_other_devices(demo: Flask) -> None:
    phone, laptop = demo.test_client(), demo.test_client()
    log_in(phone)
    log_in(laptop)
    post(laptop, "/plan", plan="pro")
    assert '<b id="plan">pro</b>' in page(phone)


def test_devices_lists_both_and_marks_this_one(demo: Flask) -> None:
    phone, laptop = demo.test_client(), demo.test_client()
    log_in(phone)
    log_in(laptop)
    listing = page(laptop, "/devices")
    assert listing.count('class="device') == 2
    assert listing.count("this device") == 1


def test_revoke_other_device(demo: Flask) -> None:
    phone, laptop = demo.test_client(), demo.test_client()
    log_in(phone)
    log_in(laptop)
    listing = page(laptop, "/devices")
    other = re.search(r'class="device" data-session="([^"]+)"', listing)
    assert other is not None
    post(laptop, f"/devices/{other[1]}/revoke")
    assert "Hello" in page(laptop)
    assert "Hello" not in page(phone)


def test_cannot_revoke_someone_elses_session(demo: Flask) -> None:
    victim, attacker = demo.test_client(), demo.test_client()
    log_in(victim)
    post(
        attacker, "/register", email="eve@example.com", name="Eve", password="12345678"
    )

    with demo.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == DEMO_EMAIL))
        [info] = demo.extensions["pow"].credentials.sessions(user)

    assert post(attacker, f"/devices/{info.id}/revoke").status_code == 404
    assert "Hello" in page(victim)


def test_logout_other_devices(demo: Flask) -> None:
    clients = [demo.test_client() for _ in range(3)]

    for client in clients:
        log_in(client)

    post(clients[0], "/devices/others")
    assert ["Hello" in page(c) for c in clients] == [True, False, False]


def test_admin_area_reloads_and_checks_flag(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    assert client.get("/admin/").status_code == 200

    with demo.app_context():
        db.session.execute(sa.update(User).values(role_id=None))
        db.session.commit()

    assert client.get("/admin/").status_code == 403


def test_logout(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    post(client, "/logout")
    assert "Logged out" in page(client)
    assert "Hello" not in page(client)


def register(client: FlaskClient, email: str = "eve@example.com") -> None:
    post(client, "/register", email=email, name="Eve", password="12345678")


def in_layout(html: str) -> bool:
    """Whether a page is one of the site's, not Werkzeug's bare page."""
    return '<a class="brand" href="/">flask_pow demo</a>' in html and "<footer>" in html


# The instance folder and the secret key


def copy_example(into: pathlib.Path) -> pathlib.Path:
    shutil.copytree(
        EXAMPLE,
        into / "example",
        ignore=shutil.ignore_patterns("instance", "__pycache__"),
    )
    return into / "example" / "instance"


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("EXAMPLE_INSTANCE_PATH", "SECRET_KEY", "POW_REDIS_URL", "PORT")
    }
    return {**env, **extra}


IMPORTED = "from example.app import create_app; print(create_app().instance_path)"


@pytest.mark.slow
def test_every_way_of_starting_uses_one_instance_folder(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "src"
    expected = copy_example(src)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # 'example.app:create_app()', as gunicorn and flask --app import it, from
    # the checkout and from another directory.
    for cwd, env in ((src, clean_env()), (elsewhere, clean_env(PYTHONPATH=str(src)))):
        found = subprocess.run(
            [sys.executable, "-c", IMPORTED],
            cwd=cwd,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert pathlib.Path(found) == expected

    # python -m example.app, as make demo runs it: its banner names the folder.
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    with subprocess.Popen(
        [sys.executable, "-u", "-m", "example.app"],
        cwd=src,
        env=clean_env(PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(5)]
            assert f"  Open:        {url}  (Ctrl+C to stop)\n" in lines
            [shown] = [
                line.split(":", 1)[1].strip() for line in lines if "Instance:" in line
            ]
            assert src / shown == expected
            assert "Log in" in fetch(url)
        finally:
            process.terminate()

    assert {p.name for p in expected.iterdir()} >= {"example.sqlite", "secret_key"}


def fetch(url: str) -> str:
    deadline = time.monotonic() + 20

    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return t.cast(bytes, response.read()).decode()
        except OSError:
            if time.monotonic() > deadline:
                raise

            time.sleep(0.05)


def test_instance_folder_from_environment(instance: pathlib.Path) -> None:
    app = create_app({"TESTING": True})
    assert app.instance_path == str(instance)
    assert (instance / "example.sqlite").exists()


def test_secret_key_is_made_once_and_kept(instance: pathlib.Path) -> None:
    first = create_app({"TESTING": True}).secret_key
    second = create_app({"TESTING": True}).secret_key
    path = instance / "secret_key"
    assert first == second == path.read_text()
    assert len(str(first)) == 64
    assert path.stat().st_mode & 0o777 == 0o600


def test_secret_key_race_has_one_winner(tmp_path: pathlib.Path) -> None:
    # As gunicorn workers do: many start at once, none has the file yet.
    path = tmp_path / "secret_key"
    barrier = threading.Barrier(16)
    keys: list[str] = []

    def start() -> None:
        barrier.wait()
        keys.append(secret_key(path))

    threads = [threading.Thread(target=start) for _ in range(16)]

    for thread in threads:
        thread.start()

    for thread in threads:
        thread.join()

    assert set(keys) == {path.read_text()}
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_empty_secret_key_file_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "secret_key"
    path.write_text("")

    with pytest.raises(RuntimeError) as info:
        secret_key(path)

    assert str(info.value) == (
        f"The secret key file {path} is empty. Delete it and start the app"
        " again to make a new one (this logs everybody out)."
    )


def test_configured_secret_key_makes_no_file(
    demo: Flask, instance: pathlib.Path
) -> None:
    assert demo.secret_key == "test"
    assert not (instance / "secret_key").exists()


def test_secret_key_from_environment(
    instance: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "from the environment")
    assert create_app({"TESTING": True}).secret_key == "from the environment"
    assert not (instance / "secret_key").exists()


# The start banner


def test_banner_names_the_default_file_store(instance: pathlib.Path) -> None:
    # Not TESTING, which keeps an application's sessions in memory.
    app = create_app()

    with app.app_context():
        assert isinstance(app.extensions["pow"].config.cache, FileSystemCache)

    assert describe_store(app) == f"FileSystemCache at {instance / 'flask_pow'}"


def test_banner_names_a_configured_cache(demo: Flask) -> None:
    assert describe_store(demo) == "SimpleCache"


def test_banner_hides_the_redis_password() -> None:
    app = create_app(
        {"TESTING": True, "POW_REDIS_URL": "redis://app:s3cret@127.0.0.1:6390/2"}
    )
    assert describe_store(app) == "Redis at redis://app:***@127.0.0.1:6390/2"


# Error pages


def test_unknown_page_is_a_404_in_the_layout(demo: Flask) -> None:
    response = demo.test_client().get("/no/such/page")
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert in_layout(html)
    assert "<h1>Page not found</h1>" in html
    assert 'href="/">Go to the home page</a>' in html
    assert 'href="/login">Log in</a>' in html


def test_pro_page_explains_the_plan_to_a_free_user(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    response = client.get("/pro")
    html = response.get_data(as_text=True)
    assert response.status_code == 403
    assert in_layout(html)
    assert "The pro page is for the pro plan" in html
    assert '<button id="switch-to-pro">Switch to pro</button>' in html


def test_switching_from_the_pro_page_comes_back_to_it(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    csrf = token(client, "/pro")
    response = client.post("/plan", data={"csrf": csrf, "plan": "pro", "next": "/pro"})
    assert response.headers["Location"] == "/pro"
    assert client.get("/pro").status_code == 200


def test_plan_form_never_redirects_off_site(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    response = post(client, "/plan", plan="pro", next="//evil.example/")
    assert response.headers["Location"] == "/"


#: ``next`` values a browser resolves to another site: tabs and newlines are
#: dropped anywhere, spaces and controls at the ends, backslashes read as
#: slashes.
OFF_SITE = [
    "//evil.example/",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "/\x00/evil.example",
]


def log_in_to(client: FlaskClient, target: str) -> t.Any:
    """Post the login form with ``next`` set to ``target``."""
    return client.post(
        "/login?" + urllib.parse.urlencode({"next": target}),
        data={"csrf": token(client), "email": DEMO_EMAIL, "password": DEMO_PASSWORD},
    )


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_site(demo: Flask, target: str) -> None:
    client = demo.test_client()
    response = log_in_to(client, target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", OFF_SITE)
def test_plan_form_never_redirects_off_site_as_a_browser_reads_it(
    demo: Flask, target: str
) -> None:
    client = demo.test_client()
    log_in(client)
    response = post(client, "/plan", plan="pro", next=target)
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/pro", "/sessions?page=2", "/a%09b"])
def test_login_follows_a_path_on_this_site(demo: Flask, target: str) -> None:
    client = demo.test_client()
    response = log_in_to(client, target)
    assert response.headers["Location"] == target


def test_forbidden_admin_area_is_a_403_in_the_layout(demo: Flask) -> None:
    client = demo.test_client()
    register(client)
    response = client.get("/admin/")
    html = response.get_data(as_text=True)
    assert response.status_code == 403
    assert in_layout(html)
    assert "<p>Administrators only.</p>" in html
    assert 'href="/">Go to the home page</a>' in html


def test_expired_form_is_a_400_in_the_layout(demo: Flask) -> None:
    response = demo.test_client().post("/login", data={"email": DEMO_EMAIL})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert in_layout(html)
    assert "The form expired. Go back, reload the page and try again." in html


def test_view_error_is_a_500_in_the_layout() -> None:
    # Not TESTING: the error is handled as in production, not raised here.
    app = create_app({"SECRET_KEY": "test"})

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("a bug in a view")

    response = app.test_client().get("/boom")
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert in_layout(html)
    assert "<h1>Something went wrong on our side</h1>" in html
    assert "a bug in a view" not in html


def test_store_down_is_a_503_in_the_layout(redis_server: RedisServer) -> None:
    # One site on a live Redis, and the same site with its Redis gone:
    # nothing listens on the second port.
    namespace = f"example-{uuid.uuid4().hex[:12]}"
    live_url = f"redis://127.0.0.1:{redis_server.port}/0"
    down_url = f"redis://127.0.0.1:{free_port()}/0"
    live, down = (
        create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "test",
                "POW_REDIS_URL": url,
                "POW_NAMESPACE": namespace,
            }
        )
        for url in (live_url, down_url)
    )
    client = live.test_client()
    log_in(client)
    cookie = client.get_cookie("session")
    assert cookie is not None
    browser = down.test_client()
    browser.set_cookie("session", cookie.value)

    response = browser.get("/devices?page=1")
    html = response.get_data(as_text=True)
    assert response.status_code == 503
    assert in_layout(html)
    assert "<h1>The session store is down</h1>" in html
    assert 'href="/devices?page=1">Try again</a>' in html
    # Nobody was logged out: the session works where the store is up.
    assert "Hello, Demo" in page(client)


def test_store_down_at_login_is_a_503_in_the_layout() -> None:
    down = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "POW_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        }
    )
    client = down.test_client()
    response = post(client, "/login", email=DEMO_EMAIL, password=DEMO_PASSWORD)
    assert response.status_code == 503
    assert in_layout(response.get_data(as_text=True))


# Flashed messages


def test_login_required_says_so(demo: Flask) -> None:
    response = demo.test_client().get("/devices", follow_redirects=True)
    assert response.request.path == "/login"
    assert "Please log in to access this page." in response.get_data(as_text=True)


def test_device_logged_out_elsewhere_is_told_once(demo: Flask) -> None:
    phone, laptop = demo.test_client(), demo.test_client()
    log_in(phone)
    log_in(laptop)
    post(laptop, "/devices/others")
    assert "This device was logged out." in page(phone)
    assert "This device was logged out." not in page(phone)


def test_own_logout_is_not_told_as_elsewhere(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    post(client, "/logout")
    html = page(client)
    assert "Logged out. That session" in html
    assert "This device was logged out." not in html


# The header and the devices page


def test_header_shows_who_is_logged_in(demo: Flask) -> None:
    client = demo.test_client()
    assert 'id="who"' not in page(client)
    log_in(client)
    html = page(client, "/devices")
    assert '<b id="who">Demo</b>' in html
    assert f'title="Logged in as {DEMO_EMAIL}"' in html


def test_devices_have_readable_names(demo: Flask) -> None:
    phone, laptop = demo.test_client(), demo.test_client()
    phone.environ_base["HTTP_USER_AGENT"] = IPHONE_SAFARI
    laptop.environ_base["HTTP_USER_AGENT"] = LINUX_CHROME
    log_in(phone)
    log_in(laptop)
    listing = page(laptop, "/devices")
    assert '<span class="name">Mobile Safari on iOS</span>' in listing
    assert '<span class="model">iPhone</span>' in listing
    assert '<span class="name">Chrome on Linux</span>' in listing
    # The raw string is still there, as a tooltip.
    assert f'title="{LINUX_CHROME}"' in listing


def test_unknown_user_agent_is_an_unknown_browser(demo: Flask) -> None:
    client = demo.test_client()
    client.environ_base["HTTP_USER_AGENT"] = ""
    log_in(client)
    listing = page(client, "/devices")
    assert '<span class="name">Unknown browser</span>' in listing
    assert 'title="No user agent was sent"' in listing


@pytest.mark.parametrize(
    ("user_agent", "name", "model"),
    [
        (IPHONE_SAFARI, "Mobile Safari on iOS", "iPhone"),
        (LINUX_CHROME, "Chrome on Linux", ""),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"
            " (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
            "Safari on Mac OS X",
            "",
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like"
            " Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
            "Chrome Mobile on Android",
            "",
        ),
        ("curl/8.5.0", "curl", ""),
        ("Werkzeug/3.1", "Unknown browser", ""),
        ("", "Unknown browser", ""),
        (None, "Unknown browser", ""),
    ],
)
def test_device_names(user_agent: str | None, name: str, model: str) -> None:
    device = describe_device(user_agent)
    assert (device.name, device.model) == (name, model)


# Changing the password: a fresh login, then one credential left


def test_password_change_logs_out_every_other_device(demo: Flask) -> None:
    phone, laptop = demo.test_client(), demo.test_client()
    log_in(phone)
    log_in(laptop)
    assert laptop.get("/password").status_code == 200
    response = laptop.post(
        "/password", data={"csrf": token(laptop, "/password"), "password": "n3w-secret"}
    )
    assert response.headers["Location"] == "/"
    assert "Password changed. 1 other device logged out." in page(laptop)
    assert "This device was logged out." in page(phone)
    stranger = demo.test_client()
    post(stranger, "/login", email=DEMO_EMAIL, password="n3w-secret")
    assert "Log out" in page(stranger)


def test_stale_login_is_asked_for_the_password_again(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    credentials = demo.extensions["pow"].get_state(demo).credentials
    credentials.clock = lambda: time.time() + 601
    response = client.get("/password")
    assert response.headers["Location"] == "/reauthenticate?next=%2Fpassword"
    form = {"csrf": token(client, "/reauthenticate"), "password": "wrong"}
    wrong = client.post("/reauthenticate?next=/password", data=form)
    assert wrong.status_code == 200
    assert "Wrong password." in wrong.get_data(as_text=True)
    form["password"] = DEMO_PASSWORD
    right = client.post("/reauthenticate?next=/password", data=form)
    assert right.headers["Location"] == "/password"
    assert client.get("/password").status_code == 200


def count_queries(app: Flask, client: FlaskClient, path: str) -> tuple[str, int]:
    """The page at ``path``, and how many SQL statements it cost."""
    statements: list[str] = []

    def note(*args: t.Any) -> None:
        statements.append(args[2])

    with app.app_context():
        engine = db.engine

    sa.event.listen(engine, "before_cursor_execute", note)

    try:
        return page(client, path), len(statements)
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


@pytest.mark.parametrize("path", ["/", "/devices"])
def test_a_logged_in_page_with_the_role_costs_no_query(demo: Flask, path: str) -> None:
    client = demo.test_client()
    log_in(client)

    html, queries = count_queries(demo, client, path)

    assert '<span class="role" id="role">admin</span>' in html
    assert ">Admin</a>" in html
    assert queries == 0


def test_a_role_given_a_permission_shows_on_its_members_next_page(
    demo: Flask,
) -> None:
    member = demo.test_client()
    post(member, "/register", email="ann@example.com", name="Ann", password="x" * 12)
    assert ">Admin</a>" not in page(member)
    admin = demo.test_client()
    log_in(admin)

    with demo.app_context():
        role_id = db.session.scalar(sa.select(Role.id).where(Role.name == "member"))

    post(admin, f"/admin/roles/{role_id}", SEE_USERS="on")
    html, queries = count_queries(demo, member, "/")

    assert ">Admin</a>" in html
    assert queries == 0
    assert member.get("/admin/").status_code == 200


def test_only_an_administrator_changes_roles(demo: Flask) -> None:
    moderator = demo.test_client()
    post(moderator, "/register", email="mo@example.com", name="Mo", password="x" * 12)

    with demo.app_context():
        user = db.session.execute(
            sa.select(User).where(User.email == "mo@example.com")
        ).scalar_one()
        user.role = db.session.scalar(sa.select(Role).where(Role.name == "moderator"))
        db.session.commit()

    assert moderator.get("/admin/").status_code == 200
    assert post(moderator, "/admin/roles/1", SEE_USERS="on").status_code == 403


def test_a_database_from_before_roles_is_refused_with_what_to_do(
    instance: pathlib.Path,
) -> None:
    instance.mkdir(parents=True)
    engine = sa.create_engine(f"sqlite:///{instance / 'example.sqlite'}")

    with engine.begin() as connection:
        connection.execute(sa.text('CREATE TABLE "user" (id INTEGER PRIMARY KEY)'))

    engine.dispose()

    with pytest.raises(RuntimeError, match="before roles: delete it"):
        create_app({"TESTING": True, "SECRET_KEY": "test"})
