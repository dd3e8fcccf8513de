"""Calls that change sessions after flask_pow applied the request's writes
(inside a streamed response's generator, which runs after the
``after_request`` functions): each takes effect at once, or raises saying
why; never silently nothing.
"""

from __future__ import annotations

import typing as t

import pytest
from flask import Response
from flask import stream_with_context
from flask.testing import FlaskClient

from flask_pow import confirm_login
from flask_pow import login_user
from flask_pow import logout_other_sessions
from flask_pow import logout_user
from flask_pow import sync_user
from tests.support.env import Env
from tests.support.env import MakeEnv


def streamed(env: Env, path: str, call: t.Callable[[], object]) -> None:
    """A view at ``path`` whose streamed body makes ``call``."""

    def view() -> Response:
        def body() -> t.Iterator[str]:
            yield "first part, "
            yield str(call())

        return Response(stream_with_context(body()))

    env.app.add_url_rule(path, path, view, methods=["POST"])


def logged_in(env: Env) -> FlaskClient:
    client = env.app.test_client()
    env.login(client, env.add_user())
    return client


def test_logout_in_a_streamed_response_ends_the_session_at_once(env: Env) -> None:
    streamed(env, "/stream-logout", logout_user)
    client = logged_in(env)
    copy = env.app.test_client()
    copy.set_cookie("session", t.cast(t.Any, client.get_cookie("session")).value)
    assert client.post("/stream-logout").text == "first part, True"
    assert env.me(client) == "anonymous"
    assert env.me(copy) == "anonymous"


def test_sync_in_a_streamed_response_is_written_at_once(make_env: MakeEnv) -> None:
    # Not by the commit (written when the request ends): by sync_user.
    env = make_env(POW_SYNC_ON_COMMIT=False)

    def upgrade() -> None:
        user = t.cast(t.Any, env.db.session.get(env.User, 1))
        user.plan = "pro"
        env.db.session.commit()
        sync_user(user)

    streamed(env, "/stream-sync", upgrade)
    client = logged_in(env)
    assert client.post("/stream-sync").text == "first part, None"
    assert env.me(client) == "ada@example.com pro"


@pytest.mark.parametrize(
    "call",
    [logout_other_sessions, confirm_login],
    ids=["logout_other_sessions", "confirm_login"],
)
def test_a_call_that_needs_a_new_cookie_raises_in_a_streamed_response(
    env: Env, call: t.Callable[[], object]
) -> None:
    streamed(env, "/stream-call", call)
    client = logged_in(env)

    with pytest.raises(RuntimeError, match="streamed response"):
        client.post("/stream-call", buffered=True)

    assert env.me(client) == "ada@example.com free"


def test_login_in_a_streamed_response_raises(env: Env) -> None:
    streamed(env, "/stream-login", lambda: login_user(env.db.session.get(env.User, 1)))
    env.add_user()
    client = env.app.test_client()

    with pytest.raises(RuntimeError, match="the new session's cookie"):
        client.post("/stream-login", buffered=True)

    assert env.me(client) == "anonymous"
