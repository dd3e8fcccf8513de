"""Stale-token rotation, the grace window, and the idle and absolute
timeouts. The clock is moved by hand (``env.clock``).
"""

from __future__ import annotations

import datetime as dt
import threading
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_pow import current_session
from flask_pow import session_rotated
from flask_pow.stores import locks
from flask_pow.stores.cachelib import CachelibSessionStore
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.sessions import pow_value
from tests.support.sessions import session_ids
from tests.support.sessions import set_value

RENEWAL = 15 * 60
GRACE = 30
TTL = 30 * 60


def test_fresh_token_is_not_rotated(env: Env, logged_in: FlaskClient) -> None:
    before = pow_value(logged_in)
    env.clock.advance(RENEWAL)
    env.me(logged_in)
    assert pow_value(logged_in) == before


def test_stale_token_is_rotated_keeping_session_id(
    env: Env, logged_in: FlaskClient
) -> None:
    """T8: a new token, the same session id, a new inserted_at."""
    before = pow_value(logged_in)
    [sid] = session_ids(env)
    env.clock.advance(RENEWAL + 1)
    assert env.me(logged_in) == "ada@example.com free"
    assert pow_value(logged_in) != before
    assert session_ids(env) == [sid]

    with env.app.app_context():
        info = env.pow.credentials.get(sid)

    assert info is not None
    assert info.inserted_at.timestamp() == env.clock.now
    assert info.created_at.timestamp() == env.clock.now - RENEWAL - 1


def test_rotation_keeps_metadata(env: Env, logged_in: FlaskClient) -> None:
    [sid] = session_ids(env)

    with env.app.app_context():
        before = env.pow.credentials.get(sid)

    env.clock.advance(RENEWAL + 1)
    env.me(logged_in)

    with env.app.app_context():
        after = env.pow.credentials.get(sid)

    assert before is not None and after is not None
    assert after.metadata == before.metadata
    assert after.created_at == before.created_at


def test_rotation_extends_idle_expiry(env: Env, logged_in: FlaskClient) -> None:
    """T28: a re-put extends the session's life."""
    env.clock.advance(RENEWAL + 1)
    env.me(logged_in)
    env.clock.advance(TTL - 1)
    assert env.me(logged_in) == "ada@example.com free"


def test_idle_session_expires(env: Env, logged_in: FlaskClient) -> None:
    """T28: an expired session is gone from get and sessions."""
    [sid] = session_ids(env)
    env.clock.advance(TTL)
    assert env.me(logged_in) == "anonymous"

    with env.app.app_context():
        assert env.pow.credentials.get(sid) is None

    assert session_ids(env) == []


def test_rotation_signal_fires_once(env: Env, logged_in: FlaskClient) -> None:
    seen: list[str] = []

    def record(sender: Flask, session_id: str, **kwargs: object) -> None:
        seen.append(session_id)

    env.clock.advance(RENEWAL + 1)

    with session_rotated.connected_to(record, env.app):
        env.me(logged_in)
        env.me(logged_in)

    assert seen == session_ids(env)


def test_rotated_token_works_inside_grace_and_moves_client(
    env: Env, logged_in: FlaskClient
) -> None:
    old = pow_value(logged_in)
    env.clock.advance(RENEWAL + 1)
    env.me(logged_in)
    new = pow_value(logged_in)
    set_value(logged_in, old)
    env.clock.advance(GRACE - 1)
    assert env.me(logged_in) == "ada@example.com free"
    assert pow_value(logged_in) == new


def test_rotated_token_is_dead_after_grace(env: Env, logged_in: FlaskClient) -> None:
    old = pow_value(logged_in)
    env.clock.advance(RENEWAL + 1)
    env.me(logged_in)
    set_value(logged_in, old)
    env.clock.advance(GRACE)
    assert env.me(logged_in) == "anonymous"


def test_rotated_token_is_dead_at_once_without_grace(make_env: MakeEnv) -> None:
    env = make_env(POW_ROTATION_GRACE=0)
    client = env.app.test_client()
    env.login(client, env.add_user())
    old = pow_value(client)
    env.clock.advance(RENEWAL + 1)
    env.me(client)
    set_value(client, old)
    assert env.me(client) == "anonymous"


def test_token_two_rotations_old_is_dead(env: Env, logged_in: FlaskClient) -> None:
    oldest = pow_value(logged_in)
    env.clock.advance(RENEWAL + 1)
    env.me(logged_in)
    env.clock.advance(RENEWAL + 1)
    env.me(logged_in)
    set_value(logged_in, oldest)
    assert env.me(logged_in) == "anonymous"


@pytest.mark.backends("simple", "filesystem", "memcached")
def test_loser_of_rotation_lock_carries_on(
    env: Env, logged_in: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T9: a request that cannot take the lock keeps the user and its
    cookie, and nothing is rotated.
    """
    monkeypatch.setattr("flask_pow.stores.cachelib.FOLLOW_WAIT", 0.1)

    before = pow_value(logged_in)
    [sid] = session_ids(env)
    env.clock.advance(RENEWAL + 1)

    with env.app.app_context():
        store = env.pow.get_state().credentials.store

    assert isinstance(store, CachelibSessionStore)
    lock = locks.lock(*store._locking, "session", sid, 0)
    assert lock is not None

    try:
        assert env.me(logged_in) == "ada@example.com free"
        assert pow_value(logged_in) == before
    finally:
        locks.unlock(store.cache, lock)

    with env.app.app_context():
        info = env.pow.credentials.get(sid)

    assert info is not None
    assert info.inserted_at == info.created_at


@pytest.mark.backends("simple", "filesystem", "memcached")
def test_permanent_session_loser_waits_for_a_slow_winner(
    env: Env,
    client: FlaskClient,
    user_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A permanent Flask session is re-sent with every response. A request
    that gave up on the lock while the winner was still writing answered
    with the old token, and a browser that applied that response last was
    logged out when the grace window ended. The loser now waits for the
    winner (here: the test holds the lock until the loser asks for it, then
    rotates) and answers with the winner's token.
    """
    asked = threading.Event()
    take = locks.lock

    def asking_lock(*args: t.Any) -> t.Any:
        if threading.current_thread() is not threading.main_thread():
            asked.set()

        return take(*args)

    monkeypatch.setattr(locks, "lock", asking_lock)
    # Long enough for any machine: the loser gives up only past this.
    monkeypatch.setattr("flask_pow.stores.cachelib.FOLLOW_WAIT", 60.0)

    @env.app.post("/permanent")
    def permanent() -> str:
        from flask import session

        session.permanent = True
        return "ok"

    logged_in = client
    env.login(logged_in, user_id)
    logged_in.post("/permanent")
    [sid] = session_ids(env)

    value = pow_value(logged_in)
    assert value is not None
    token = value.split(".")[1]
    env.clock.advance(RENEWAL + 1)
    state = env.pow.get_state(env.app)
    backend = state.credentials.store
    assert isinstance(backend, CachelibSessionStore)
    lock = take(*backend._locking, "session", sid, 0)
    assert lock is not None
    answers: list[str] = []
    loser = threading.Thread(target=lambda: answers.append(env.me(logged_in)))
    loser.start()
    assert asked.wait(timeout=60), "the loser never asked for the lock"
    # The winner, still holding the lock: the rotated record goes in, then
    # the lock is let go.
    record = backend.read_session(sid)
    assert record is not None
    now = env.clock()
    advanced, fresh = state.credentials.policy.advance(record, token, now)
    key = f"{backend.prefix}session:{sid}"
    backend._put({key: (advanced.dump(), 600)})
    locks.unlock(backend.cache, lock)
    loser.join(timeout=10)
    assert answers == ["ada@example.com free"]
    after = pow_value(logged_in)
    assert after is not None and after.split(".")[1] == fresh


@pytest.mark.backends
def test_loser_of_rotation_race_is_moved_to_winner(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """T9: another request rotates the session while this one runs; this one
    carries on as the user, rotates nothing, and moves the client to the
    winner's token.
    """
    rotations: list[str] = []

    @env.app.get("/race")
    def race() -> str:
        from flask import session

        # What a parallel request would do, between this request's read of
        # the session and its own rotation.
        sid, token = session["pow_auth"].split(".")[:2]
        winner = env.pow.credentials.rotate(sid, token, {})
        assert winner is not None
        rotations.append(winner[0])
        return env.me_text()

    env.login(client, user_id)
    env.clock.advance(RENEWAL + 1)
    seen: list[str] = []

    with session_rotated.connected_to(
        lambda *a, **k: seen.append(k["session_id"]), env.app
    ):
        assert client.get("/race").get_data(as_text=True) == "ada@example.com free"

    assert seen == []
    value = pow_value(client)
    assert value is not None and value.split(".")[1] == rotations[0]
    assert env.me(client) == "ada@example.com free"


def test_renewal_none_never_rotates(make_env: MakeEnv) -> None:
    env = make_env(POW_SESSION_TTL_RENEWAL=None)
    client = env.app.test_client()
    env.login(client, env.add_user())
    before = pow_value(client)
    env.clock.advance(TTL - 1)
    env.me(client)
    assert pow_value(client) == before


def test_renewal_zero_rotates_every_request(make_env: MakeEnv) -> None:
    env = make_env(POW_SESSION_TTL_RENEWAL=0)
    client = env.app.test_client()
    env.login(client, env.add_user())
    values = {pow_value(client)}

    for _ in range(3):
        env.clock.advance(1)
        env.me(client)
        values.add(pow_value(client))

    assert len(values) == 4


def test_absolute_ttl_ends_active_session(make_env: MakeEnv) -> None:
    env = make_env(POW_ABSOLUTE_TTL=dt.timedelta(hours=1))
    client = env.app.test_client()
    env.login(client, env.add_user())

    for _ in range(3):
        env.clock.advance(RENEWAL + 1)
        assert env.me(client) == "ada@example.com free"

    env.clock.advance(RENEWAL)
    assert env.me(client) == "anonymous"
    assert session_ids(env) == []


def test_absolute_ttl_caps_expiry(make_env: MakeEnv) -> None:
    env = make_env(POW_ABSOLUTE_TTL=600, POW_SESSION_TTL_RENEWAL=300)

    @env.app.get("/expires")
    def expires() -> str:
        assert current_session
        return str(current_session.expires_at.timestamp() - env.clock.now)

    client = env.app.test_client()
    env.login(client, env.add_user())

    assert client.get("/expires").get_data(as_text=True) == "600.0"


def test_fallback_key_token_works_and_is_resigned(
    env: Env, logged_in: FlaskClient
) -> None:
    old_value = pow_value(logged_in)
    env.app.secret_key = "new secret key"
    env.app.config["SECRET_KEY_FALLBACKS"] = ["test secret key"]
    set_value(logged_in, old_value)
    assert env.me(logged_in) == "ada@example.com free"
    new_value = pow_value(logged_in)
    assert new_value != old_value
    env.app.config["SECRET_KEY_FALLBACKS"] = []
    assert env.me(logged_in) == "ada@example.com free"


def test_rotated_out_key_token_is_anonymous(env: Env, logged_in: FlaskClient) -> None:
    # Verified (and remembered as verified) under the old key first.
    assert env.me(logged_in) == "ada@example.com free"
    old_value = pow_value(logged_in)
    env.app.secret_key = "new secret key"
    set_value(logged_in, old_value)
    assert env.me(logged_in) == "anonymous"


@pytest.mark.backends
def test_privilege_change_after_a_concurrent_rotation_rotates_again(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """A privilege change (``wait=True``) whose token another request just
    rotated does not stop at the other request's token: it rotates on from
    there, so the session ends on a token issued after the change. The same
    on every store.
    """
    env.login(client, user_id)
    value = pow_value(client)
    assert value is not None
    sid, token = value.split(".")[:2]

    with env.app.app_context():
        credentials = env.pow.credentials
        concurrent = credentials.rotate(sid, token, {})
        change = credentials.rotate(sid, token, {}, wait=True)

    assert concurrent is not None and concurrent[1] is True
    assert change is not None and change[1] is True
    assert change[0] not in {token, concurrent[0]}
