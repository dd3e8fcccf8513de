"""The test client that logs a user in."""

from __future__ import annotations

from flask import g

from flask_pow import current_session
from flask_pow.testing import PowClient
from tests.support.env import Env


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
