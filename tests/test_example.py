"""The example application behind ``make demo``."""

from __future__ import annotations

import typing as t

from cachelib import SimpleCache

from example.app import DEMO_EMAIL
from example.app import DEMO_PASSWORD
from example.app import create_app


def demo_client(tmp_path: t.Any) -> t.Any:
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'demo.sqlite'}",
            "POW_CACHE": SimpleCache(threshold=100_000),
        }
    )
    return app.test_client()


def test_demo_shows_login_form_when_anonymous(tmp_path: t.Any) -> None:
    page = demo_client(tmp_path).get("/").get_data(as_text=True)
    assert 'type="password"' in page


def test_demo_login_shows_user_from_cache(tmp_path: t.Any) -> None:
    client = demo_client(tmp_path)
    client.post("/login", data={"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
    page = client.get("/").get_data(as_text=True)
    assert f"Logged in as <b>{DEMO_EMAIL}</b>" in page
    assert "Session id" in page


def test_demo_wrong_password_is_refused(tmp_path: t.Any) -> None:
    client = demo_client(tmp_path)
    client.post("/login", data={"email": DEMO_EMAIL, "password": "nope"})
    page = client.get("/").get_data(as_text=True)
    assert "Wrong email or password." in page
    assert "Logged in as" not in page


def test_demo_logout_ends_session(tmp_path: t.Any) -> None:
    client = demo_client(tmp_path)
    client.post("/login", data={"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
    client.post("/logout")
    page = client.get("/").get_data(as_text=True)
    assert "Logged out" in page
    assert "Logged in as" not in page
