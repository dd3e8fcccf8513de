"""A privilege change (``sync_user`` of the current user, a password change
through ``logout_other_sessions``) leaves exactly one valid credential: the
caller's new token. Routine rotations keep their grace window, with Flask's
cookie session and with Flask-Session on a server-side store.
"""

from __future__ import annotations

import typing as t

import pytest
from cachelib import SimpleCache
from flask import session
from flask.testing import FlaskClient
from flask_session import Session

from flask_pow import current_user
from flask_pow import logout_other_sessions
from flask_pow import sync_user
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.servers import RedisServer

RENEWAL = 15 * 60


def add_privilege_routes(env: Env) -> None:
    @env.app.post("/promote")
    def promote() -> str:
        user = current_user._get_current_object()
        user.plan = "pro"
        sync_user(current_user)
        return "ok"

    @env.app.post("/touch")
    def touch() -> str:
        # Something in the Flask session before a login: a cart.
        session["cart"] = "1 book"
        return "ok"

    @env.app.post("/password")
    def password() -> str:
        # The documented recipe: the row changes, then one call.
        return str(logout_other_sessions())


def copy_of(env: Env, client: FlaskClient) -> FlaskClient:
    """Another client holding the same cookies: a stolen copy, a proxy log,
    a browser backup.
    """
    other = env.app.test_client()

    for name in ("session",):
        cookie = client.get_cookie(name)
        assert cookie is not None
        other.set_cookie(name, cookie.value)

    return other


@pytest.fixture
def privileged(env: Env) -> Env:
    add_privilege_routes(env)
    return env


def test_privilege_change_ends_the_old_token_at_once(
    privileged: Env, logged_in: FlaskClient
) -> None:
    """Before, the old token still followed to the new one for
    ``POW_ROTATION_GRACE``: a stolen copy was handed the new token.
    """
    stolen = copy_of(privileged, logged_in)
    assert logged_in.post("/promote").status_code == 200
    assert privileged.me(logged_in) == "ada@example.com pro"
    assert privileged.me(stolen) == "anonymous"


def test_privilege_change_after_a_routine_rotation_ends_both_old_tokens(
    privileged: Env, logged_in: FlaskClient
) -> None:
    first = copy_of(privileged, logged_in)
    privileged.clock.advance(RENEWAL + 1)
    assert privileged.me(logged_in) == "ada@example.com free"
    second = copy_of(privileged, logged_in)
    assert logged_in.post("/promote").status_code == 200
    assert privileged.me(logged_in) == "ada@example.com pro"
    assert privileged.me(first) == "anonymous"
    assert privileged.me(second) == "anonymous"


def test_routine_rotation_keeps_the_old_token_for_the_grace_window(
    privileged: Env, logged_in: FlaskClient
) -> None:
    copy = copy_of(privileged, logged_in)
    privileged.clock.advance(RENEWAL + 1)
    assert privileged.me(logged_in) == "ada@example.com free"
    assert privileged.me(copy) == "ada@example.com free"


def test_password_change_recipe_leaves_one_credential(
    privileged: Env, user_id: int
) -> None:
    """Before, ``logout_other_sessions()`` kept this session's token: a copy
    of this cookie survived the password change indefinitely.
    """
    here, other_device = privileged.app.test_client(), privileged.app.test_client()
    privileged.login(here, user_id)
    privileged.login(other_device, user_id)
    copy = copy_of(privileged, here)
    assert here.post("/password").text == "1"
    assert privileged.me(here) == "ada@example.com free"
    assert privileged.me(other_device) == "anonymous"
    assert privileged.me(copy) == "anonymous"

    with privileged.app.app_context():
        assert len(privileged.pow.credentials.sessions_by_key(f"User:{user_id}")) == 1


# -- with Flask-Session -------------------------------------------------------


@pytest.fixture(params=["cachelib", "redis"])
def server_side(request: pytest.FixtureRequest, make_env: MakeEnv) -> t.Iterator[Env]:
    """An app whose Flask session is server-side, with Flask-Session, on an
    in-process cache or a real Redis.
    """
    if request.param == "cachelib":
        env = make_env(
            SESSION_TYPE="cachelib",
            SESSION_CACHELIB=SimpleCache(threshold=100_000),
            SESSION_SERIALIZATION_FORMAT="json",
        )
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = server.client()
        env = make_env(
            SESSION_TYPE="redis",
            SESSION_REDIS=client,
            SESSION_KEY_PREFIX=f"fs-{id(request)}:",
            SESSION_SERIALIZATION_FORMAT="json",
        )

    Session(env.app)
    add_privilege_routes(env)
    yield env


def test_routine_rotation_keeps_the_server_side_session_for_parallel_requests(
    server_side: Env,
) -> None:
    """Before, every rotation regenerated the Flask-Session id, deleting the
    server-side session that holds the token: a parallel request still
    carrying the old id was anonymous at once.
    """
    env = server_side
    client = env.app.test_client()
    env.login(client, env.add_user())
    parallel = copy_of(env, client)
    env.clock.advance(RENEWAL + 1)
    assert env.me(client) == "ada@example.com free"
    assert env.me(parallel) == "ada@example.com free"


def test_privilege_change_regenerates_the_server_side_session(
    server_side: Env,
) -> None:
    env = server_side
    client = env.app.test_client()
    env.login(client, env.add_user())
    before = client.get_cookie("session")
    stolen = copy_of(env, client)
    assert client.post("/promote").status_code == 200
    after = client.get_cookie("session")
    assert before is not None and after is not None
    assert before.value != after.value
    assert env.me(client) == "ada@example.com pro"
    assert env.me(stolen) == "anonymous"


def test_login_regenerates_the_server_side_session(server_side: Env) -> None:
    """T14: login renews the Flask-Session session id (fixation)."""
    env = server_side
    client = env.app.test_client()
    user_id = env.add_user()
    client.post("/touch")
    before = client.get_cookie("session")
    env.login(client, user_id)
    after = client.get_cookie("session")
    assert before is not None and after is not None
    assert before.value != after.value
    assert env.me(client) == "ada@example.com free"
