"""Every function that takes a user accepts the ``current_user`` proxy, the
natural thing to pass in a view. Storing the proxy itself made
``g.current_user`` resolve to itself (a ``RecursionError``).
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from flask_pow import current_user
from flask_pow import login_user
from flask_pow import sync_user
from tests.support.env import Env
from tests.support.env import counting_queries


def test_sync_user_takes_the_proxy(env: Env, client: FlaskClient, user_id: int) -> None:
    @env.app.post("/upgrade")
    def upgrade() -> str:
        current_user.plan = "pro"
        sync_user(current_user)
        return env.me_text()

    env.login(client, user_id)
    assert client.post("/upgrade").get_data(as_text=True) == "ada@example.com pro"
    assert env.me(client) == "ada@example.com pro"


def test_sync_user_of_the_proxy_keeps_the_user_loadable(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.post("/touch")
    def touch() -> str:
        sync_user(current_user)
        return str(current_user.email)

    env.login(client, user_id)

    with counting_queries(env) as queries:
        assert client.post("/touch").get_data(as_text=True) == "ada@example.com"
        assert env.me(client) == "ada@example.com free"

    assert queries.statements == []


def test_login_user_takes_the_proxy(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.post("/again")
    def again() -> str:
        return str(login_user(current_user))

    env.login(client, user_id)
    assert client.post("/again").get_data(as_text=True) == "True"
    assert env.me(client) == "ada@example.com free"


def test_credentials_take_the_proxy(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.get("/mine")
    def mine() -> str:
        credentials = env.pow.credentials
        sessions = len(credentials.sessions(current_user))
        updated = credentials.update_user(current_user)
        ended = credentials.delete_user_sessions(current_user)
        return f"{sessions} {updated} {ended}"

    env.login(client, user_id)
    assert client.get("/mine").get_data(as_text=True) == "1 True 1"
    assert env.me(client) == "anonymous"


def test_anonymous_proxy_is_refused_clearly(env: Env, client: FlaskClient) -> None:
    @env.app.post("/sync")
    def sync() -> str:
        with pytest.raises(ValueError, match="got the anonymous user"):
            sync_user(current_user)

        return "refused"

    assert client.post("/sync").get_data(as_text=True) == "refused"
