"""When the store loses keys (eviction, a flush, a failover): revocation
fails closed, a lost user record heals, and every outcome is "logged out"
or "still logged in as yourself", never someone else and never a session
that cannot be revoked. On every backend, by deleting keys, and on a real
Redis that evicts under ``maxmemory``.
"""

from __future__ import annotations

import typing as t
import uuid

import pytest
from cachelib import BaseCache
from cachelib import RedisCache
from cachelib.redis_base import BaseRedisCache
from flask.testing import FlaskClient

from flask_pow import Pow
from flask_pow.stores import user_tags
from tests.support.env import Env
from tests.support.env import QueryCounter
from tests.support.env import add_routes
from tests.support.env import make_app
from tests.support.servers import RedisServer

#: Each store loses its own keys: every test on every store.
pytestmark = pytest.mark.backends


def drop(env: Env, kind: str, user_id: int) -> None:
    """Delete one of a user's records behind flask_pow's back, as an
    eviction or an operator would.
    """
    cache: BaseCache = env.pow.get_state(env.app).config.cache
    user_key = f"User:{user_id}"

    [tag] = user_tags(user_key, ["test secret key"])
    user_key = (
        f"{{{tag}}}{user_key}"
        if isinstance(cache, BaseRedisCache)
        else f"{tag}:{user_key}"
    )

    assert cache.delete(f"credentials:{kind}:{user_key}")


def two_devices(env: Env, user_id: int) -> tuple[FlaskClient, FlaskClient]:
    devices = env.app.test_client(), env.app.test_client()

    for device in devices:
        env.login(device, user_id)

    return devices


def test_lost_index_refuses_the_users_sessions(
    env: Env, user_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The index is what revocation works through: a session it no longer
    lists could never be revoked, so it is refused.
    """
    devices = two_devices(env, user_id)
    drop(env, "sessions", user_id)

    for device in devices:
        assert env.me(device) == "anonymous"

    refused = [r for r in caplog.records if "index no longer lists" in r.message]
    assert len(refused) == 1


def test_lost_user_record_is_loaded_once_and_cached_again(
    env: Env, logged_in: FlaskClient, queries: QueryCounter
) -> None:
    drop(env, "user", 1)
    assert env.me(logged_in) == "ada@example.com free"
    assert len(queries.statements) == 1
    assert env.me(logged_in) == "ada@example.com free"
    assert len(queries.statements) == 1


def test_revoke_all_after_a_lost_user_record_ends_every_session(
    env: Env, user_id: int
) -> None:
    devices = two_devices(env, user_id)
    drop(env, "user", user_id)

    with env.app.app_context():
        assert env.pow.credentials.delete_sessions_by_key(f"User:{user_id}") == 2

    for device in devices:
        assert env.me(device) == "anonymous"


def test_lost_user_record_of_a_deleted_user_ends_the_session(
    env: Env, logged_in: FlaskClient
) -> None:
    drop(env, "user", 1)

    with env.app.app_context():
        env.db.session.delete(env.db.session.get(env.User, 1))
        env.db.session.commit()

    assert env.me(logged_in) == "anonymous"

    with env.app.app_context():
        assert env.pow.credentials.sessions_by_key("User:1") == []


# -- a real Redis that evicts -------------------------------------------------


@pytest.fixture
def evicting_server() -> t.Iterator[RedisServer]:
    server = RedisServer("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru")
    yield server
    server.close()


def test_nothing_survives_a_revoke_after_eviction(
    evicting_server: RedisServer, tmp_path: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, LRU evicted the users' tags and indexes (touched only by
    logins) while their sessions (read on every request) stayed: "log out
    everywhere" ended nothing and the sessions went on working.
    """
    cache = RedisCache(
        host=evicting_server.client(), key_prefix=f"evict-{uuid.uuid4().hex[:6]}:"
    )
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'evict.db'}")
    env = Env(app, db, User, Pow(app, db=db, user_model=User))
    add_routes(env)
    admin = evicting_server.client()
    held: list[tuple[str, str, str]] = []

    with app.app_context():
        credentials = env.pow.credentials
        users = []

        # Logins until the server has evicted a good share of the keys (at
        # most 6,000 users), with recent sessions read now and then, as live
        # traffic would.
        for n in range(1, 6001):
            user = User(id=n, email=f"u{n}@example.com", name="U", plan="free",
                        password_hash="x")  # fmt: skip
            users.append(user)

            for _ in range(2):
                info, token = credentials.put(user)
                held.append((f"User:{n}", info.id, token))

            for _, session_id, token in held[-40::7]:
                credentials.authenticate(session_id, token)

            if n % 100 == 0 and int(admin.info("stats")["evicted_keys"]) > 1000:
                break

        assert int(admin.info("stats")["evicted_keys"]) > 1000, "no eviction"

        # Nobody is ever someone else...
        for user_key, session_id, token in held:
            found = credentials.authenticate(session_id, token)
            assert found is None or found.record.user_key == user_key

        # ...and after "log out everywhere" for every user, nothing works.
        for user in users:
            credentials.delete_sessions_by_key(f"User:{user.id}")

        survivors = [
            session_id
            for _, session_id, token in held
            if credentials.authenticate(session_id, token) is not None
        ]

    assert survivors == []
    assert any("maxmemory-policy allkeys-lru" in r.message for r in caplog.records)


def test_noeviction_server_is_not_warned_about(
    redis_server: RedisServer, tmp_path: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(host=redis_server.client(), key_prefix="quiet:")
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'quiet.db'}")
    env = Env(app, db, User, Pow(app, db=db, user_model=User))
    add_routes(env)
    user_id = env.add_user()
    env.login(env.app.test_client(), user_id)
    assert not any("maxmemory-policy" in r.message for r in caplog.records)
