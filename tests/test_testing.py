"""The test client that logs a user in."""

from __future__ import annotations

import typing as t

from flask import g

from flask_pow import current_session
from flask_pow import fresh_login_required
from flask_pow.testing import PowClient
from tests.support.env import Env
from tests.support.env import MakeEnv


def test_client_starts_logged_in(env: Env, user_id: int) -> None:
    env.app.test_client_class = PowClient

    with env.app.app_context():
        user = env.db.session.get(env.User, user_id)

    client = env.app.test_client(user=user)
    assert env.me(client) == "ada@example.com free"


def test_client_login_returns_session_with_metadata(env: Env, user_id: int) -> None:
    @env.app.get("/via")
    def via() -> str:
        assert current_session
        return f"{current_session.metadata['via']} {g.current_user.email}"

    env.app.test_client_class = PowClient
    client = env.app.test_client()

    with env.app.app_context():
        user = env.db.session.get(env.User, user_id)

    assert isinstance(client, PowClient)
    info = client.login(user, metadata={"via": "test"})
    assert len(info.id) in (22, 30)
    assert client.get("/via").get_data(as_text=True) == "test ada@example.com"


def test_client_without_user_is_anonymous(env: Env) -> None:
    env.app.test_client_class = PowClient
    assert env.me(env.app.test_client()) == "anonymous"


def user_of(env: Env, user_id: int) -> t.Any:
    with env.app.app_context():
        return env.db.session.get(env.User, user_id)


def add_fresh_route(env: Env) -> None:
    @env.app.get("/fresh-only")
    @fresh_login_required
    def fresh_only() -> str:
        return "fresh"


def test_client_starts_fresh(env: Env, user_id: int) -> None:
    add_fresh_route(env)
    env.app.test_client_class = PowClient
    client = env.app.test_client(user=user_of(env, user_id))
    assert client.get("/fresh-only").status_code == 200


def test_client_starts_not_fresh_when_asked(env: Env, user_id: int) -> None:
    add_fresh_route(env)
    env.app.test_client_class = PowClient
    client = env.app.test_client(user=user_of(env, user_id), fresh=False)
    assert client.get("/fresh-only").status_code == 401
    assert env.me(client) == "ada@example.com free"


def test_client_takes_flask_logins_fresh_login(env: Env, user_id: int) -> None:
    add_fresh_route(env)
    env.app.test_client_class = PowClient
    client = env.app.test_client(user=user_of(env, user_id), fresh_login=False)
    assert client.get("/fresh-only").status_code == 401


def test_client_login_not_fresh_is_not_fresh(env: Env, user_id: int) -> None:
    env.app.test_client_class = PowClient
    client = env.app.test_client()
    assert isinstance(client, PowClient)
    assert not client.login(user_of(env, user_id), fresh=False).fresh


def test_client_with_remember_is_logged_in_again_after_the_session(
    env: Env, user_id: int
) -> None:
    env.app.test_client_class = PowClient
    client = env.app.test_client(user=user_of(env, user_id), remember=True)
    client.delete_cookie("session")  # the browser session ended
    assert env.me(client) == "ada@example.com free"


def test_client_login_with_remember_returns_a_remembered_session(
    env: Env, user_id: int
) -> None:
    env.app.test_client_class = PowClient
    client = env.app.test_client()
    assert isinstance(client, PowClient)
    info = client.login(user_of(env, user_id), remember=True)
    assert info.remembered_until is not None


def test_client_remember_cookie_goes_to_the_apps_server_name(
    make_env: MakeEnv,
) -> None:
    env = make_env(SERVER_NAME="example.test")
    user_id = env.add_user()
    env.app.test_client_class = PowClient
    client = env.app.test_client(user=user_of(env, user_id), remember=True)
    client.delete_cookie("session", domain="example.test")
    assert env.me(client) == "ada@example.com free"
