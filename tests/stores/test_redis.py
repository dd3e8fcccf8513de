"""Redis specifics, against real servers started by the test suite: round
trips, commands, what is stored, outages, and POW_REDIS_URL. (Every
behaviour of the contract suite runs on Redis too, as the ``redis``
backend.)
"""

from __future__ import annotations

import collections.abc as c
import re
import typing as t
import uuid

import pytest
import redis
from cachelib import RedisCache
from flask.testing import FlaskClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from flask_pow import Pow
from flask_pow import serialization
from tests.support import raw
from tests.support.env import Env
from tests.support.env import add_routes
from tests.support.env import make_app
from tests.support.servers import RedisServer
from tests.support.sessions import pow_value

RENEWAL = 15 * 60


class CountingConnection(redis.Connection):
    """A real connection that counts what it sends: one send is one round
    trip (a pipeline is sent in one go).
    """

    sends = 0

    def send_packed_command(self, command: t.Any, check_health: bool = True) -> None:
        type(self).sends += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


_open_clients: list[redis.Redis] = []


@pytest.fixture(autouse=True)
def close_clients() -> c.Iterator[None]:
    yield

    while _open_clients:
        _open_clients.pop().close()


def redis_env(tmp_path: t.Any, client: redis.Redis, **config: t.Any) -> Env:
    _open_clients.append(client)
    cache = RedisCache(host=client, key_prefix=f"test-{uuid.uuid4().hex[:12]}:")
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'redis.db'}", **config)
    env = Env(app, db, User, Pow(app, db=db, user_model=User))
    add_routes(env)
    return env


@pytest.fixture
def counted(tmp_path: t.Any, redis_server: RedisServer) -> Env:
    pool = redis.ConnectionPool(
        host="127.0.0.1", port=redis_server.port, connection_class=CountingConnection
    )
    env = redis_env(tmp_path, redis.Redis(connection_pool=pool))
    warm_up(env)
    return env


def warm_up(env: Env) -> None:
    """Run every path once, so that the server has loaded each script (a
    one-time cost after a server start) before anything is counted.
    """
    client = env.app.test_client()
    user_id = env.add_user("warm@example.com")
    env.login(client, user_id)
    env.login(client, user_id)
    env.clock.advance(RENEWAL + 1)
    env.me(client)
    client.post("/logout")


def round_trips(action: c.Callable[[], object]) -> int:
    before = CountingConnection.sends
    action()
    return CountingConnection.sends - before


def commands(server: RedisServer, action: c.Callable[[], object]) -> dict[str, int]:
    """The commands the server ran during ``action``, by name."""
    admin = server.client()
    admin.config_resetstat()
    action()
    stats = admin.info("commandstats")
    admin.close()
    return {
        name.removeprefix("cmdstat_"): int(stat["calls"])
        for name, stat in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat")
    }


def test_authenticated_request_is_one_round_trip(counted: Env) -> None:
    client = counted.app.test_client()
    counted.login(client, counted.add_user())
    counted.me(client)  # the first call may load the script
    assert round_trips(lambda: [counted.me(client) for _ in range(20)]) == 20


def test_authenticated_request_is_one_command(
    counted: Env, redis_server: RedisServer
) -> None:
    client = counted.app.test_client()
    counted.login(client, counted.add_user())
    counted.me(client)
    ran = commands(redis_server, lambda: [counted.me(client) for _ in range(20)])
    # One EVALSHA from the client; inside it, on the server, the server's
    # clock, the two reads (session record and user record) and whether the
    # user's index still lists the session.
    assert ran == {"evalsha": 20, "time": 20, "get": 40, "zscore": 20}


def test_a_server_that_lost_its_scripts_is_given_them_again(
    counted: Env, redis_server: RedisServer
) -> None:
    """A restart, a failover or SCRIPT FLUSH: the read loads its script."""
    client = counted.app.test_client()
    counted.login(client, counted.add_user())
    admin = redis_server.client()
    admin.script_flush()
    assert counted.me(client) == "ada@example.com free"
    ran = commands(redis_server, lambda: counted.me(client))
    assert ran["evalsha"] == 1 and "script|load" not in ran
    admin.close()


def test_rotation_writes_in_one_round_trip(counted: Env) -> None:
    client = counted.app.test_client()
    counted.login(client, counted.add_user())
    before = pow_value(client)
    counted.clock.advance(RENEWAL + 1)
    # One for the read, one for the pipelined writes.
    assert round_trips(lambda: counted.me(client)) == 2
    assert pow_value(client) != before


def test_login_is_one_round_trip(counted: Env) -> None:
    user_id = counted.add_user()
    client = counted.app.test_client()
    # The pipelined writes: the user's tag is derived, not looked up.
    assert round_trips(lambda: counted.login(client, user_id)) == 1


def test_login_over_a_session_is_three_round_trips(counted: Env) -> None:
    user_id = counted.add_user()
    client = counted.app.test_client()
    counted.login(client, user_id)
    # The request's read, the old session's deletion, the writes.
    assert round_trips(lambda: counted.login(client, user_id)) == 3


def test_logout_is_two_round_trips(counted: Env) -> None:
    client = counted.app.test_client()
    counted.login(client, counted.add_user())
    counted.me(client)
    # The request's read, then one script deleting and unindexing.
    assert round_trips(lambda: client.post("/logout")) == 2


def test_no_scan_keys_or_flush_in_a_whole_cycle(
    tmp_path: t.Any, redis_server: RedisServer
) -> None:
    env = redis_env(tmp_path, redis_server.client())
    user_id = env.add_user()

    def cycle() -> None:
        client = env.app.test_client()
        env.login(client, user_id)
        env.clock.advance(RENEWAL + 1)
        env.me(client)

        with env.app.app_context():
            user = env.db.session.get(env.User, user_id)
            env.pow.credentials.sessions(user)
            env.pow.credentials.users()
            env.pow.credentials.update_user(user)

        client.post("/logout")

    ran = commands(redis_server, cycle)
    assert ran
    assert not {"keys", "scan", "flushdb", "flushall"} & set(ran)


def test_every_key_is_json_with_a_ttl_through_a_cycle(
    tmp_path: t.Any, redis_server: RedisServer
) -> None:
    env = redis_env(tmp_path, redis_server.client())
    cache = env.pow.get_state(env.app).config.cache
    clients = [env.app.test_client() for _ in range(3)]
    user_id = env.add_user()
    seen: dict[str, raw.RawItem] = {}

    def look() -> None:
        for item in raw.items(cache):
            seen[item.key] = item

    for client in clients:
        env.login(client, user_id)
        look()

    env.clock.advance(RENEWAL + 1)
    env.me(clients[0])
    look()
    clients[1].post("/logout")
    look()

    kinds = {key.split(":")[2].split("{")[0] for key in seen}
    assert kinds == {"session", "user", "sessions", "users"}

    for item in seen.values():
        assert item.expires > 0, f"{item.key} has no TTL"

        for value in item.values:
            if ":sessions:" in item.key:
                # The index: a sorted set of session ids, scored by expiry.
                assert re.fullmatch(rb"[A-Za-z0-9_-]{30}", value), item.key
            else:
                serialization.loads(value)


def test_redis_url_builds_the_native_store(
    tmp_path: t.Any, redis_server: RedisServer
) -> None:
    app, db, User = make_app(
        None,  # type: ignore[arg-type]
        f"sqlite:///{tmp_path / 'url.db'}",
        POW_CACHE=None,
        POW_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
    )
    env = Env(app, db, User, Pow(app, db=db, user_model=User))
    add_routes(env)
    cache = env.pow.get_state(app).config.cache
    assert isinstance(cache, RedisCache)
    _open_clients.append(cache._write_client)
    client = app.test_client()
    env.login(client, env.add_user())
    assert env.me(client) == "ada@example.com free"
    backend = env.pow.get_state(app).credentials.store
    assert type(backend).__name__ == "RedisSessionStore"


def test_redis_url_and_cache_together_raise(tmp_path: t.Any) -> None:
    with pytest.raises(ValueError, match="POW_CACHE and POW_REDIS_URL are both set"):
        make_pow(tmp_path, POW_REDIS_URL="redis://127.0.0.1:1/0")


def test_bad_redis_url_raises(tmp_path: t.Any) -> None:
    with pytest.raises(ValueError) as info:
        make_pow(tmp_path, POW_CACHE=None, POW_REDIS_URL="http://example.com")

    assert str(info.value) == (
        "POW_REDIS_URL must be a redis://, rediss:// or unix:// URL, such as"
        " 'redis://localhost:6379/0', got 'http://example.com'."
    )


def make_pow(tmp_path: t.Any, **config: t.Any) -> Pow:
    from cachelib import SimpleCache

    app, db, User = make_app(
        SimpleCache(threshold=100_000), f"sqlite:///{tmp_path / 'x.db'}", **config
    )
    return Pow(app, db=db, user_model=User)


@pytest.fixture
def persistent_server() -> c.Iterator[RedisServer]:
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always")
    yield server
    server.close()


@pytest.fixture
def outage_env(tmp_path: t.Any, persistent_server: RedisServer) -> Env:
    # Short timeouts and one immediate retry, as POW_REDIS_URL sets up.
    client = persistent_server.client(
        socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 1)
    )
    return redis_env(tmp_path, client)


def test_outage_answers_503_and_keeps_cookie(
    outage_env: Env, persistent_server: RedisServer
) -> None:
    client = outage_env.app.test_client()
    outage_env.login(client, outage_env.add_user())
    before = pow_value(client)
    persistent_server.stop()
    response = client.get("/me")
    assert response.status_code == 503
    assert response.headers.get("Set-Cookie") is None
    assert pow_value(client) == before


def test_login_during_outage_answers_503(
    outage_env: Env, persistent_server: RedisServer
) -> None:
    user_id = outage_env.add_user()
    client = outage_env.app.test_client()
    persistent_server.stop()
    assert client.post(f"/login/{user_id}").status_code == 503
    assert pow_value(client) is None


def test_same_cookie_works_after_outage(
    outage_env: Env, persistent_server: RedisServer
) -> None:
    client: FlaskClient = outage_env.app.test_client()
    outage_env.login(client, outage_env.add_user())
    persistent_server.stop()
    assert client.get("/me").status_code == 503
    persistent_server.start()
    assert outage_env.me(client) == "ada@example.com free"


def test_cluster_keeps_one_users_keys_in_one_slot(
    tmp_path: t.Any, redis_cluster: t.Any
) -> None:
    client = redis_cluster.client()
    env = redis_env(tmp_path, client)
    cache = env.pow.get_state(env.app).config.cache
    user_ids = [env.add_user(f"user{n}@example.com") for n in range(8)]

    for user_id in user_ids:
        for _ in range(2):
            env.login(env.app.test_client(), user_id)

    slots: dict[str, set[int]] = {}

    for item in raw.items(cache):
        if "{" in item.key:
            tag = item.key.split("{", 1)[1].split("}", 1)[0]
            slots.setdefault(tag, set()).add(client.keyslot(item.key))

    assert len(slots) == len(user_ids)
    assert all(len(found) == 1 for found in slots.values())
    # Users spread over the cluster rather than piling into one slot.
    assert len(set().union(*slots.values())) > 1


def test_valkey_cache_uses_the_native_store(
    tmp_path: t.Any, redis_server: RedisServer
) -> None:
    valkey = pytest.importorskip("valkey")
    from cachelib import ValkeyCache

    client = valkey.Valkey(host="127.0.0.1", port=redis_server.port)
    cache = ValkeyCache(host=client, key_prefix=f"test-{uuid.uuid4().hex[:12]}:")
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'valkey.db'}")
    env = Env(app, db, User, Pow(app, db=db, user_model=User))
    add_routes(env)
    browser = app.test_client()
    env.login(browser, env.add_user())
    env.clock.advance(RENEWAL + 1)
    assert env.me(browser) == "ada@example.com free"
    browser.post("/logout")
    assert env.me(browser) == "anonymous"
    backend = env.pow.get_state(app).credentials.store
    assert type(backend).__name__ == "RedisSessionStore"
    client.close()
