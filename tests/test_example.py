"""The example application behind ``make demo``, through Flask's test
client (the browser test drives it in Chromium)."""

from __future__ import annotations

import re
import typing as t

import pytest
import sqlalchemy as sa
from cachelib import SimpleCache
from flask import Flask
from flask.testing import FlaskClient

from example.app import DEMO_EMAIL
from example.app import DEMO_PASSWORD
from example.app import create_app
from example.models import User
from example.models import db


@pytest.fixture
def demo(tmp_path: t.Any) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'demo.sqlite'}",
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
        db.session.execute(sa.update(User).values(is_admin=False))
        db.session.commit()

    assert client.get("/admin/").status_code == 403


def test_logout(demo: Flask) -> None:
    client = demo.test_client()
    log_in(client)
    post(client, "/logout")
    assert "Logged out" in page(client)
    assert "Hello" not in page(client)
