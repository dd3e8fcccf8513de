"""A Redis that is up but refuses: out of memory under ``maxmemory`` with
``noeviction``, and a replica after a failover. Each refusal is a 503 with
the cookie kept (never a 500); reads go on where the server allows them;
after a failover the next request reconnects and works. Real servers, real
replication.
"""

from __future__ import annotations

import logging
import time
import typing as t
import uuid

import pytest
import redis
from cachelib import RedisCache
from flask.testing import FlaskClient

from flask_pow import Pow
from flask_pow.stores.redis import RedisSessionStore
from tests.support.env import Env
from tests.support.env import add_routes
from tests.support.env import make_app
from tests.support.servers import RedisServer
from tests.support.servers import TCPProxy
from tests.support.sessions import pow_value

RENEWAL = 15 * 60


def redis_env(tmp_path: t.Any, client: redis.Redis) -> Env:
    cache = RedisCache(host=client, key_prefix=f"refusals-{uuid.uuid4().hex[:8]}:")
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'refusals.db'}")
    env = Env(app, db, User, Pow(app, db=db, user_model=User))
    add_routes(env)
    return env


@pytest.fixture
def full_server() -> t.Iterator[RedisServer]:
    server = RedisServer("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    yield server
    server.close()


def fill(server: RedisServer) -> None:
    """Write until the server refuses: it is out of memory."""
    admin = server.client()
    value = b"x" * 4096

    for n in range(10_000):
        try:
            admin.set(f"filler:{n}", value)
        except redis.exceptions.ResponseError as e:
            assert isinstance(e, redis.exceptions.OutOfMemoryError)
            return

    raise AssertionError("the server never ran out of memory")


def empty(server: RedisServer) -> None:
    admin = server.client()

    for key in admin.scan_iter("filler:*", count=1000):
        admin.delete(key)


def test_out_of_memory_refuses_writes_with_503_and_keeps_reads(
    full_server: RedisServer, tmp_path: t.Any
) -> None:
    env = redis_env(tmp_path, full_server.client())
    user_id = env.add_user()
    client = env.app.test_client()
    env.login(client, user_id)
    before = pow_value(client)
    fill(full_server)

    # Reading needs no memory: the logged-in user stays logged in.
    assert env.me(client) == "ada@example.com free"
    # A login cannot be stored: 503, and no cookie.
    newcomer = env.app.test_client()
    response = newcomer.post(f"/login/{user_id}")
    assert response.status_code == 503
    assert pow_value(newcomer) is None
    # A routine rotation is housekeeping: the response stands, with the
    # token the client has.
    env.clock.advance(RENEWAL + 1)
    assert env.me(client) == "ada@example.com free"
    assert pow_value(client) == before
    # A logout only frees memory: Redis allows it.
    assert client.post("/logout").text == "was in"
    assert env.me(client) == "anonymous"

    empty(full_server)
    env.login(newcomer, user_id)
    assert env.me(newcomer) == "ada@example.com free"


@pytest.fixture
def failover() -> t.Iterator[tuple[RedisServer, RedisServer, TCPProxy]]:
    primary = RedisServer()
    replica = RedisServer("--replicaof", "127.0.0.1", "0")
    replica.client().replicaof("127.0.0.1", primary.port)
    proxy = TCPProxy(primary.port)
    yield primary, replica, proxy
    proxy.close()
    primary.close()
    replica.close()


def wait_for_sync(primary: RedisServer, replica: RedisServer) -> None:
    deadline = time.monotonic() + 20
    marker = uuid.uuid4().hex
    primary.client().set("sync-marker", marker)

    while replica.client().get("sync-marker") != marker.encode():
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.05)


def promote(primary: RedisServer, replica: RedisServer, proxy: TCPProxy) -> None:
    """A failover: the replica becomes the primary, the old primary a
    replica of it, and the floating address moves to the new primary.
    """
    replica.client().replicaof("NO", "ONE")
    primary.client().replicaof("127.0.0.1", replica.port)
    proxy.target_port = replica.port


def test_failover_is_a_503_then_the_next_request_works(
    failover: tuple[RedisServer, RedisServer, TCPProxy], tmp_path: t.Any
) -> None:
    primary, replica, proxy = failover
    env = redis_env(tmp_path, redis.Redis(host="127.0.0.1", port=proxy.port))
    client: FlaskClient = env.app.test_client()
    env.login(client, env.add_user())
    before = pow_value(client)
    wait_for_sync(primary, replica)
    promote(primary, replica, proxy)

    # The pooled connection still reaches the old primary, now a replica:
    # the write is refused (READONLY), a 503 with the cookie kept...
    assert client.post("/logout").status_code == 503
    assert pow_value(client) == before
    # ...and the connections are dropped: the next request connects again,
    # to the new primary, which has the session.
    assert env.me(client) == "ada@example.com free"
    assert client.post("/logout").text == "was in"
    assert env.me(client) == "anonymous"


def test_server_older_than_7_is_refused_with_what_to_do(
    redis_server: RedisServer, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logins use ``SET ... NX GET`` and writes ``PEXPIRE ... GT`` (Redis
    7.0): on 6.2 every login was a bare ``ResponseError``. No Redis 6 runs
    here, so the version the server reports is the one seam replaced.
    """
    env = redis_env(tmp_path, redis_server.client())
    backend = env.pow.get_state(env.app).credentials.store
    monkeypatch.setattr(backend, "_server_version", lambda: (6, 2, 14))
    env.app.config["PROPAGATE_EXCEPTIONS"] = True
    client = env.app.test_client()
    user_id = env.add_user()

    with pytest.raises(RuntimeError, match=r"needs Redis 7\.0 or later .* 6\.2"):
        client.post(f"/login/{user_id}")


def test_the_real_server_passes_the_version_check(
    redis_server: RedisServer, tmp_path: t.Any
) -> None:
    env = redis_env(tmp_path, redis_server.client())
    backend = env.pow.get_state(env.app).credentials.store
    assert isinstance(backend, RedisSessionStore)
    assert backend._server_version() >= (7, 0)


def test_a_refusal_inside_a_pipeline_is_a_503_naming_no_key(
    tmp_path: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py rewrites an error reply to a pipelined command as ``Command
    # 1 (EVALSHA <sha> <keys>...) of pipeline caused error: NOREPLICAS ...``:
    the code is not first, and the message quotes the keys. A login's writes
    are pipelined; a server that wants more replicas than it has refuses
    them.
    """
    server = RedisServer("--min-replicas-to-write", "1")

    try:
        env = redis_env(tmp_path, server.client())
        user_id = env.add_user()

        with caplog.at_level(logging.ERROR, "flask_pow"):
            response = env.app.test_client().post(f"/login/{user_id}")
    finally:
        server.close()

    assert response.status_code == 503
    [line] = [r.getMessage() for r in caplog.records if r.name == "flask_pow"]
    assert "NOREPLICAS" in line
    assert "User:" not in line and "session" not in line and "EVALSHA" not in line
