"""The default store, and the setup mistakes caught when requests come.

With nothing configured, flask_pow keeps its records in a FileSystemCache in
the application's instance folder: the workers of one host share it and it
survives restarts. With ``TESTING``, in a SimpleCache of the application's
own (tests/test_config.py). An in-process store under a server that runs several
processes is refused with an error that names the fix, never served
silently. The multi-worker and restart cases run real gunicorn servers.
"""

from __future__ import annotations

import collections.abc as c
import pathlib
import typing as t

import pytest
import sqlalchemy.orm as sa_orm
from cachelib import FileSystemCache
from cachelib import SimpleCache
from flask import Blueprint
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import login_required
from flask_pow.checks import SetupError
from tests.apps.stress_app import create_users
from tests.support.http import Browser
from tests.support.processes import gunicorn


class Base(sa_orm.DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "member"
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)


def make_app(**config: t.Any) -> tuple[Flask, Pow]:
    app = Flask(__name__)
    app.config.update({"TESTING": True, "SECRET_KEY": "k", **config})
    auth = Pow(app, db=SQLAlchemy(), user_model=Member)

    @app.get("/private")
    @login_required
    def private() -> str:
        return "private"

    return app, auth


# -- the default store ---------------------------------------------------------


def test_default_store_is_a_filesystem_cache_in_the_instance_folder() -> None:
    # Not TESTING, which keeps an application's sessions in memory.
    app, auth = make_app(TESTING=False)

    with app.app_context():
        cache = auth.config.cache

    assert isinstance(cache, FileSystemCache)
    assert pathlib.Path(app.instance_path, "flask_pow").is_dir()


def test_default_store_never_evicts_live_sessions() -> None:
    app, auth = make_app(TESTING=False)

    with app.app_context():
        assert auth.config.cache._threshold == 0  # type: ignore[attr-defined]


def test_in_process_store_is_refused_under_several_processes() -> None:
    app, _ = make_app(POW_CACHE=SimpleCache(threshold=100_000))
    client = app.test_client()

    with pytest.raises(SetupError, match="POW_REDIS_URL"):
        client.get("/private", environ_overrides={"wsgi.multiprocess": True})


def test_in_process_store_serves_a_single_process() -> None:
    app, _ = make_app(POW_CACHE=SimpleCache(threshold=100_000))
    assert app.test_client().get("/private").status_code == 401


def test_default_store_serves_several_processes() -> None:
    app, _ = make_app(TESTING=False)
    client = app.test_client()
    response = client.get("/private", environ_overrides={"wsgi.multiprocess": True})
    assert response.status_code == 401


def test_testing_store_is_refused_under_several_processes_naming_testing() -> None:
    app, _ = make_app()
    client = app.test_client()

    with pytest.raises(SetupError) as info:
        client.get("/private", environ_overrides={"wsgi.multiprocess": True})

    assert str(info.value) == (
        "TESTING is set and POW_CACHE is not, so flask_pow keeps the sessions in"
        " each process's memory (a SimpleCache), and several processes serve"
        " this application (wsgi.multiprocess): each would keep its own"
        " sessions. For a test that runs several, set POW_CACHE to a"
        " cachelib.FileSystemCache in a temporary folder (threshold=0), or"
        " POW_REDIS_URL."
    )


# -- mistakes caught at the first request --------------------------------------


def test_missing_secret_key_fails_at_the_first_request() -> None:
    app, _ = make_app()
    app.config["SECRET_KEY"] = None

    with pytest.raises(SetupError, match="Set 'SECRET_KEY'"):
        app.test_client().get("/private")


def test_login_view_that_is_no_endpoint_fails_at_the_first_request() -> None:
    app, _ = make_app(POW_LOGIN_VIEW="login")

    @app.get("/sign-in")
    def auth_login() -> str:
        return "sign in"

    with pytest.raises(SetupError) as info:
        app.test_client().get("/")

    assert str(info.value) == (
        "POW_LOGIN_VIEW is 'login', which is not an endpoint of this"
        " application. It names a view function as url_for() does: 'login', or"
        " 'auth.login' for one in a blueprint; or it is a URL, starting with '/',"
        " 'http://' or 'https://'. Endpoints with 'login' in their name:"
        " ['auth_login']."
    )


def test_blueprint_login_view_that_is_no_endpoint_fails() -> None:
    app, _ = make_app(POW_BLUEPRINT_LOGIN_VIEWS={"admin": "admin.signin"})
    app.register_blueprint(Blueprint("admin", __name__))

    with pytest.raises(SetupError, match=r"POW_BLUEPRINT_LOGIN_VIEWS\['admin'\]"):
        app.test_client().get("/")


@pytest.mark.parametrize("attribute", ["login_view", "refresh_view"])
def test_view_set_on_the_extension_is_checked(attribute: str) -> None:
    app, auth = make_app()
    setattr(auth, attribute, "nowhere")

    with pytest.raises(SetupError, match=f"login_manager.{attribute} is 'nowhere'"):
        app.test_client().get("/")


def test_refresh_view_that_is_no_endpoint_fails_at_the_first_request() -> None:
    app, _ = make_app(POW_REFRESH_VIEW="reauthenticate")

    with pytest.raises(SetupError, match="POW_REFRESH_VIEW is 'reauthenticate'"):
        app.test_client().get("/")


def test_refresh_view_given_as_a_url_passes() -> None:
    app, _ = make_app(POW_REFRESH_VIEW="https://sso.example.com/again")

    assert app.test_client().get("/private").status_code == 401


def test_existing_login_view_passes() -> None:
    app, _ = make_app(POW_LOGIN_VIEW="sign_in")

    @app.get("/sign-in")
    def sign_in() -> str:
        return "sign in"

    assert app.test_client().get("/private").location == "/sign-in?next=%2Fprivate"


def test_login_view_given_as_a_url_passes() -> None:
    app, _ = make_app(POW_LOGIN_VIEW="https://sso.example.com/login")
    assert app.test_client().get("/").status_code == 404


# -- real servers ----------------------------------------------------------------


@pytest.fixture
def default_store_env(tmp_path: pathlib.Path) -> dict[str, str]:
    """tests.apps.context_app with nothing configured for the store: flask_pow's
    default, in the instance folder.
    """
    database = tmp_path / "app.db"
    create_users(str(database), 2)
    return {
        "POW_TEST_DATABASE": str(database),
        "POW_TEST_INSTANCE": str(tmp_path / "instance"),
    }


@pytest.fixture
def three_workers(
    default_store_env: dict[str, str], tmp_path: pathlib.Path
) -> c.Iterator[int]:
    with gunicorn(default_store_env, tmp_path / "gunicorn.log", workers=3) as port:
        yield port


@pytest.mark.slow
def test_default_store_keeps_a_login_across_workers(three_workers: int) -> None:
    client = Browser(three_workers)
    client.login()
    answers = [client.me() for _ in range(20)]
    assert answers == ["user1@example.com"] * 20


@pytest.mark.slow
def test_default_store_keeps_a_login_across_a_restart(
    default_store_env: dict[str, str], tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "gunicorn.log"

    with gunicorn(default_store_env, log, workers=1) as port:
        client = Browser(port)
        client.login()

    with gunicorn(default_store_env, log, workers=1) as port:
        client.port = port
        assert client.me() == "user1@example.com"


@pytest.mark.slow
def test_in_process_store_fails_clearly_under_several_workers(
    default_store_env: dict[str, str], tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "gunicorn.log"
    env = {**default_store_env, "POW_TEST_SIMPLE_CACHE": "1"}

    with gunicorn(env, log, workers=2) as port:
        answer = Browser(port).send("GET", "/me")

    assert answer.status == 500
    assert "POW_CACHE is an in-process SimpleCache" in log.read_text()
