"""The credentials cache: records, the shared user record, the index, and
what is (and is never) stored.
"""

from __future__ import annotations

import re
import time
import typing as t

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import MemcachedCache
from cachelib import SimpleCache
from cachelib.redis_base import BaseRedisCache
from flask.testing import FlaskClient

from flask_pow import JSONSerializer
from flask_pow import serialization
from tests.support import raw
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.env import make_pow_app
from tests.support.sessions import session_ids


def stored_values(cache: BaseCache) -> list[bytes]:
    """Every raw value in the store."""
    return [value for item in raw.items(cache) for value in item.values]


@pytest.mark.backends
def test_stored_values_are_json_not_pickle(
    env: Env, logged_in: FlaskClient, cache: BaseCache
) -> None:
    env.clock.advance(15 * 60 + 1)
    env.me(logged_in)
    items = raw.items(cache)
    assert sum(len(item.values) for item in items) >= 4

    for item in items:
        for value in item.values:
            assert not value.startswith(b"\x80")  # the pickle protocol marker

            if ":sessions:" in item.key and isinstance(cache, BaseRedisCache):
                # Redis's index: a sorted set of session ids by expiry.
                assert re.fullmatch(rb"[A-Za-z0-9_-]{30}", value)
            else:
                serialization.loads(value)


@pytest.mark.backends
def test_stored_values_hold_no_password_hash_or_token(
    env: Env, logged_in: FlaskClient, cache: BaseCache
) -> None:
    from tests.support.sessions import pow_value

    value = pow_value(logged_in)
    assert value is not None
    token = value.split(".")[1]
    blob = b"".join(stored_values(cache))
    assert b"secret-hash" not in blob
    assert b"password" not in blob
    assert token.encode() not in blob
    assert b"ada@example.com" in blob


@pytest.mark.backends
def test_every_key_has_a_ttl(
    env: Env, logged_in: FlaskClient, cache: BaseCache
) -> None:
    expiries = [item.expires for item in raw.items(cache)]
    assert expiries
    assert 0 not in expiries
    # The idle timeout, plus the minute a Redis user tag outlives its
    # sessions by.
    assert max(expiries) <= time.time() + 30 * 60 + 62


def test_logged_in_user_is_detached_without_excluded_columns(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.get("/secret")
    def secret() -> str:
        from flask import g

        user = g.current_user
        state = sa.inspect(user)
        assert state.detached
        assert user.joined.isoformat() == "2026-01-02T03:04:05"

        with pytest.raises(sa_orm.exc.DetachedInstanceError):
            user.password_hash  # noqa: B018

        with pytest.raises(sa_orm.exc.DetachedInstanceError):
            user.api_token  # noqa: B018

        return "ok"

    env.login(client, user_id)
    assert client.get("/secret").get_data(as_text=True) == "ok"


def test_user_record_is_shared_by_sessions(make_env: MakeEnv) -> None:
    """T20: a later put for the user changes what every session returns."""
    env = make_env(POW_SYNC_ON_COMMIT=False)
    user_id = env.add_user()
    first = env.app.test_client()
    second = env.app.test_client()
    env.login(first, user_id)

    with env.app.app_context():
        user = env.db.session.get(env.User, user_id)
        assert user is not None
        user.plan = "pro"
        env.db.session.commit()

    assert env.me(first) == "ada@example.com free"
    env.login(second, user_id)
    assert env.me(first) == "ada@example.com pro"


def test_sessions_lists_each_login_of_a_user(env: Env, user_id: int) -> None:
    """T20: sessions lists the user's sessions."""
    clients = [env.app.test_client() for _ in range(3)]

    for client in clients:
        env.login(client, user_id)

    ids = session_ids(env)
    assert len(ids) == len(set(ids)) == 3


def test_delete_ends_one_session(env: Env, user_id: int) -> None:
    first = env.app.test_client()
    second = env.app.test_client()
    env.login(first, user_id)
    env.login(second, user_id)
    [a, b] = session_ids(env)

    with env.app.app_context():
        assert env.pow.credentials.delete(a)
        assert not env.pow.credentials.delete(a)

    assert session_ids(env) == [b]
    assert sorted([env.me(first), env.me(second)]) == [
        "ada@example.com free",
        "anonymous",
    ]


def test_get_returns_session_without_token(env: Env, logged_in: FlaskClient) -> None:
    [sid] = session_ids(env)

    with env.app.app_context():
        info = env.pow.credentials.get(sid)

    assert info is not None
    assert info.id == sid
    assert info.user_key == "User:1"
    assert "token" not in repr(info).lower()


def test_get_of_unknown_session_is_none(env: Env) -> None:
    with env.app.app_context():
        assert env.pow.credentials.get("nope") is None


def test_users_lists_users_with_sessions(env: Env) -> None:
    """T20: users lists the logged-in users, loaded from the cache."""
    ids = [env.add_user(f"user{n}@example.com") for n in range(70)]

    for user_id in ids:
        env.login(env.app.test_client(), user_id)

    with env.app.app_context():
        users = env.pow.credentials.users()

    assert sorted(u.email for u in users) == sorted(
        f"user{n}@example.com" for n in range(70)
    )


def test_users_leaves_out_logged_out_users(env: Env, user_id: int) -> None:
    client = env.app.test_client()
    env.login(client, user_id)
    client.post("/logout")

    with env.app.app_context():
        assert env.pow.credentials.users() == []


@pytest.mark.backends
def test_logout_of_last_session_removes_user_records(
    env: Env, logged_in: FlaskClient, cache: BaseCache
) -> None:
    logged_in.post("/logout")
    left = [item.key for item in raw.items(cache)]

    if isinstance(cache, BaseRedisCache):
        # The user's hash tag and their entry in the users set are left to
        # expire: a login before then reuses the tag.
        assert all(":tag:" in key or key.endswith(":users") for key in left)
    else:
        assert left == []


def test_small_threshold_warns(tmp_path: t.Any) -> None:
    with pytest.warns(UserWarning, match="threshold=500"):
        make_pow_app(tmp_path, SimpleCache())


def test_file_cache_with_a_threshold_logs_in_and_keeps_its_count(
    tmp_path: t.Any,
) -> None:
    """cachelib keeps a FileSystemCache's file count in a file, written with
    the serializer of whoever writes: flask_pow's copy leaves it alone, so
    logins work and the application's own cache object still reads it.
    """
    from tests.support.env import add_routes

    cache = FileSystemCache(str(tmp_path / "counted"), threshold=20_000)
    env = make_pow_app(tmp_path, cache)
    add_routes(env)
    client = env.app.test_client()
    env.login(client, env.add_user())

    assert env.me(client) == "ada@example.com free"
    assert cache.set("the app's own", {"value": 1})
    assert cache.get("the app's own") == {"value": 1}
    assert isinstance(cache._file_count, int)


def test_two_apps_share_a_filesystem_cache(tmp_path: t.Any) -> None:
    """Two application instances (as two worker processes would) on one
    FileSystemCache directory see each other's sessions.
    """
    from tests.support.env import add_routes

    path = str(tmp_path / "shared-cache")
    one = make_pow_app(tmp_path, FileSystemCache(path, threshold=0))
    two = make_pow_app(tmp_path, FileSystemCache(path, threshold=0))
    add_routes(one)
    add_routes(two)
    user_id = one.add_user()
    client = one.app.test_client()
    one.login(client, user_id)
    cookie = client.get_cookie("session")
    assert cookie is not None
    other = two.app.test_client()
    other.set_cookie("session", cookie.value)
    assert two.me(other) == "ada@example.com free"
    other.post("/logout")
    assert one.me(client) == "anonymous"


def test_adapter_reload_reads_the_database(env: Env, user_id: int) -> None:
    with env.app.app_context():
        adapter = env.pow.get_state().users
        user = env.db.session.get(env.User, user_id)
        assert user is not None
        cached = adapter.load(adapter.dump(user))
        env.db.session.execute(sa.text("UPDATE user SET plan = 'pro'"))
        env.db.session.commit()
        fresh = adapter.reload(cached)
        assert fresh is not None
        assert (cached.plan, fresh.plan) == ("free", "pro")
        env.db.session.execute(sa.text("DELETE FROM user"))
        env.db.session.commit()
        assert adapter.reload(cached) is None


def test_put_outside_a_request_issues_a_working_session(env: Env, user_id: int) -> None:
    from flask_pow.signing import TokenSigner

    with env.app.app_context():
        user = env.db.session.get(env.User, user_id)
        info, token = env.pow.credentials.put(user, {"via": "magic link"})
        value = TokenSigner().sign(info.id, token)
        assert env.pow.credentials.get(info.id) == info

    client = env.app.test_client()

    with client.session_transaction() as session:
        session["pow_auth"] = value

    assert env.me(client) == "ada@example.com free"


@pytest.mark.backends
def test_applications_own_values_keep_its_serializer(
    env: Env, cache: BaseCache, user_id: int
) -> None:
    """flask_pow does not change the cache object it is given: the
    application's own values in it keep cachelib's default (pickle)
    serializer, while flask_pow's records are JSON.
    """
    value: t.Any = {"a set": {1, 2}, "a tuple": (3, 4)}

    if isinstance(cache, MemcachedCache):
        # The memcached client the application chose serializes (here,
        # pymemcache: bytes as they are); cachelib adds nothing.
        value = b"the application's own bytes"
    cache.set("app:own", value)
    client = env.app.test_client()
    env.login(client, user_id)
    assert env.me(client) == "ada@example.com free"
    assert cache.get("app:own") == value
    assert not isinstance(getattr(cache, "serializer", None), JSONSerializer)
