"""Request state lives and dies with the request, whatever the application
context does.

Flask reuses an application context that is already pushed, and its ``g``,
for every request it handles: a test suite's ``with app.app_context():``
around client calls, or a worker that ran ``app.app_context().push()`` at
import (served by gunicorn sync workers; ``tests/system/test_context_servers.py``
runs that for real). Each test here pushes one context for several clients
and expects what production without it gives.
"""

from __future__ import annotations

import collections.abc as c

import pytest
from flask import g
from flask.testing import FlaskClient

from tests.support.env import Env


@pytest.fixture
def shared_context(env: Env) -> c.Iterator[None]:
    """One application context around every request of the test."""
    with env.app.app_context():
        yield


def session_count(env: Env, user_key: str = "User:1") -> int:
    return len(env.pow.credentials.sessions_by_key(user_key))


@pytest.mark.usefixtures("shared_context")
def test_stranger_is_anonymous_after_a_login(env: Env, user_id: int) -> None:
    owner, stranger = env.app.test_client(), env.app.test_client()
    env.login(owner, user_id)
    assert env.me(stranger) == "anonymous"


@pytest.mark.usefixtures("shared_context")
def test_stranger_is_given_no_cookie_after_a_login(env: Env, user_id: int) -> None:
    owner, stranger = env.app.test_client(), env.app.test_client()
    env.login(owner, user_id)
    assert "Set-Cookie" not in stranger.get("/me").headers


@pytest.mark.usefixtures("shared_context")
def test_one_login_stores_one_session(env: Env, user_id: int) -> None:
    owner, stranger = env.app.test_client(), env.app.test_client()
    env.login(owner, user_id)
    env.me(owner)
    env.me(stranger)
    assert session_count(env) == 1


@pytest.mark.usefixtures("shared_context")
def test_strangers_logout_ends_no_session(env: Env, user_id: int) -> None:
    owner, stranger = env.app.test_client(), env.app.test_client()
    env.login(owner, user_id)
    assert stranger.post("/logout").get_data(as_text=True) == "was out"
    assert env.me(owner) == "ada@example.com free"


@pytest.mark.usefixtures("shared_context")
def test_logout_is_not_applied_again_by_the_next_request(
    env: Env, user_id: int
) -> None:
    first, second = env.app.test_client(), env.app.test_client()
    env.login(first, user_id)
    first.post("/logout")
    env.login(second, user_id)
    env.me(second)
    assert env.me(second) == "ada@example.com free"
    assert session_count(env) == 1


@pytest.mark.usefixtures("shared_context")
def test_failed_request_does_not_mark_the_next_one_failed(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    env.app.config["PROPAGATE_EXCEPTIONS"] = False
    assert client.get("/boom").status_code == 500
    env.login(client, user_id)
    assert session_count(env) == 1


def test_current_user_does_not_outlive_the_request(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    env.login(client, user_id)

    with env.app.app_context():
        env.me(client)
        assert "current_user" not in g


def test_user_set_in_the_app_context_is_not_a_requests_user(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """A ``g.current_user`` from outside the request is not an earlier
    hook's (Pow's T3 keeps only those): the request authenticates itself.
    """
    with env.app.app_context():
        g.current_user = env.db.session.get(env.User, user_id)
        assert env.me(client) == "anonymous"


def test_copied_request_context_and_nested_app_context_see_the_user(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """A thread with a copy of the request context, and an app context
    pushed in the view, each have a ``g`` of their own: the request's user
    is theirs too.
    """
    import threading

    from flask import copy_current_request_context
    from flask import current_app

    from flask_pow import current_user

    seen: list[str] = []

    @env.app.get("/contexts")
    def contexts() -> str:
        @copy_current_request_context
        def work() -> None:
            seen.append(str(current_user.email))

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=10)

        with current_app.app_context():
            seen.append(str(current_user.email))

        return "ok"

    env.login(client, user_id)
    client.get("/contexts")
    assert seen == ["ada@example.com", "ada@example.com"]
