"""An application written for Flask-Login runs on flask_pow with only its
imports and the line that makes the extension changed, and behaves the
same: each test runs on both (``tests/apps/login_apps/``), and on flask_pow also
pushes one application context around all its requests, as a test suite
with pytest-flask does.
"""

from __future__ import annotations

import collections.abc as c
import importlib
import pathlib
import re
import types
import typing as t

import pytest
from cachelib import SimpleCache
from flask import Flask
from flask.testing import FlaskClient

APPS = pathlib.Path(__file__).parent.parent / "apps" / "login_apps"


def _comparable(source: str) -> str:
    """The source without its docstring and the blocks a move changes."""
    source = source.split('"""', 2)[2]
    source = re.sub(
        r"# -- login imports --\n.*?# -- end of login imports --",
        "",
        source,
        flags=re.S,
    )
    return re.sub(
        r"# -- the extension --\n.*?# -- end of the extension --",
        "",
        source,
        flags=re.S,
    )


def test_the_move_changes_only_imports_and_the_extension() -> None:
    before = (APPS / "with_flask_login.py").read_text()
    after = (APPS / "with_flask_pow.py").read_text()
    assert _comparable(before) == _comparable(after)
    assert "import flask_login" not in after and "from flask_login" not in after


@pytest.fixture(params=["with_flask_login", "with_flask_pow", "with_flask_pow+ctx"])
def site(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> c.Iterator[Site]:
    name, _, shared = t.cast(str, request.param).partition("+")
    module = importlib.import_module(f"tests.apps.login_apps.{name}")
    app = module.create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test secret key",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'app.db'}",
            "POW_CACHE": SimpleCache(threshold=100_000),
        }
    )
    site = Site(module, app)

    with app.app_context():
        db = module.db
        db.session.add_all(
            [
                module.User(
                    id=1,
                    email="ada@example.com",
                    name="Ada",
                    password_hash="pbkdf2:x",
                    avatar_hash="a1b2",
                ),
                module.User(
                    id=2,
                    email="bob@example.com",
                    name="Bob",
                    password_hash="pbkdf2:y",
                    avatar_hash="c3d4",
                    active=False,
                ),
                module.User(
                    id=3,
                    email="cy@example.com",
                    name="Cy",
                    password_hash="pbkdf2:z",
                    avatar_hash="e5f6",
                ),
                module.Post(id=1, title="Hello", author_id=1),
            ]
        )
        db.session.commit()

    if shared:
        with app.app_context():
            yield site
    else:
        yield site


class Site:
    def __init__(self, module: types.ModuleType, app: Flask) -> None:
        self.module = module
        self.app = app

    def client(self, email: str | None = None) -> FlaskClient:
        client = self.app.test_client()

        if email is not None:
            response = client.post("/login", data={"email": email})
            assert response.status_code == 302, response.get_data(as_text=True)

        return client


def text(client: FlaskClient, path: str) -> str:
    return client.get(path).get_data(as_text=True)


def test_anonymous_user_class_is_used(site: Site) -> None:
    assert text(site.client(), "/") == "Hello Guest, log in"


def test_template_sees_the_logged_in_user(site: Site) -> None:
    assert text(site.client("ada@example.com"), "/") == "Hello Ada (a1b2)"


def test_is_authenticated_in_python(site: Site) -> None:
    assert site.client().get("/whoami").json == {
        "authenticated": False,
        "anonymous": True,
        "id": None,
    }
    assert site.client("ada@example.com").get("/whoami").json == {
        "authenticated": True,
        "anonymous": False,
        "id": "1",
    }


def test_inactive_user_is_refused(site: Site) -> None:
    client = site.client()
    response = client.post("/login", data={"email": "bob@example.com"})
    assert response.status_code == 403
    assert text(client, "/") == "Hello Guest, log in"


def test_login_required_redirects_with_the_message(site: Site) -> None:
    client = site.client()
    response = client.get("/profile")
    assert response.status_code == 302
    assert response.location == "/login?next=%2Fprofile"
    assert text(client, "/login") == (
        "[('info', 'Please log in to access this page.')]"
    )


def test_redirect_comes_back_after_login(site: Site) -> None:
    client = site.client()
    location = client.get("/profile").location
    response = client.post(location, data={"email": "ada@example.com"})
    assert response.location.endswith("/profile")


def test_edit_committed_without_a_cache_call_is_seen(site: Site) -> None:
    client = site.client("ada@example.com")
    other_device = site.client("ada@example.com")
    client.post("/profile", data={"name": "Ada Lovelace"})
    assert text(client, "/profile") == "Ada Lovelace <ada@example.com>"
    assert text(other_device, "/") == "Hello Ada Lovelace (a1b2)"


def test_author_may_edit_their_post(site: Site) -> None:
    client = site.client("ada@example.com")
    response = client.post("/posts/1/edit", data={"title": "Hi"})
    assert (response.status_code, response.get_data(as_text=True)) == (200, "Hi")


def test_other_user_may_not_edit_the_post(site: Site) -> None:
    client = site.client("cy@example.com")
    assert client.post("/posts/1/edit", data={"title": "Hi"}).status_code == 403


def test_logout_makes_the_client_anonymous(site: Site) -> None:
    client = site.client("ada@example.com")
    client.post("/logout")
    assert text(client, "/") == "Hello Guest, log in"


def test_a_second_client_is_anonymous(site: Site) -> None:
    site.client("ada@example.com")
    assert text(site.client(), "/") == "Hello Guest, log in"
