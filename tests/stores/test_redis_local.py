"""``POW_REDIS_LOCAL_CACHE``: a worker serves repeat requests from its own
copy, which Redis keeps true with invalidation messages (``CLIENT
TRACKING``). Every test runs against real servers: the suite's
``redis-server``, servers of their own where they stop or restart one, and,
for revocation, two real processes.
"""

from __future__ import annotations

import collections.abc as c
import json
import os
import signal
import subprocess
import sys
import time
import typing as t
import uuid

import pytest
import redis
from cachelib import RedisCache
from cachelib import SimpleCache
from flask.testing import FlaskClient

from flask_pow import Pow
from flask_pow.stores.redis_local import HEARTBEAT_LIMIT
from flask_pow.stores.redis_local import LocalCache
from tests.apps.redis_local_server import redis_cache
from tests.support.env import Env
from tests.support.env import add_routes
from tests.support.env import make_app
from tests.support.http import pow_token
from tests.support.http import request
from tests.support.servers import RedisServer
from tests.support.silent_proxy import SilentProxy

#: Revoke-then-request cycles across two processes.
CYCLES = 1000


def local_env(cache: t.Any, tmp_path: t.Any, name: str = "app", **config: t.Any) -> Env:
    app, db, User = make_app(
        cache,
        f"sqlite:///{tmp_path / 'app.db'}",
        POW_REDIS_LOCAL_CACHE=True,
        **config,
    )
    app.name = name
    env = Env(app, db, User, Pow(app, db=db, user_model=User))
    add_routes(env)
    return env


def local_of(env: Env) -> LocalCache:
    with env.app.app_context():
        local = env.pow.credentials.store.local  # type: ignore[attr-defined]

    assert isinstance(local, LocalCache)
    return local


def session_id_of(env: Env, client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return str(pow_token(env.app, f"session={cookie.value}")).split(".", 1)[0]


def warm(env: Env, client: FlaskClient) -> None:
    """Log user 1 in and read the session until the copy answers."""
    env.login(client, 1)
    local = local_of(env)
    deadline = time.monotonic() + 30

    while True:
        hits = local.stats.hits
        assert env.me(client) == "ada@example.com free"

        if local.stats.hits > hits:
            return

        assert time.monotonic() < deadline, "the local copy never answered"
        time.sleep(0.01)


def arrived(local: LocalCache, invalidations: int) -> None:
    """Wait until an invalidation past ``invalidations`` has been applied.
    Redis writes a change's invalidation in the same pass of its event loop
    as the changing command's reply, yet may write the reply first: a
    lookup within those microseconds still finds the copy. These tests
    check what the message does; the cross-process test below measures the
    race as requests meet it.
    """
    deadline = time.monotonic() + 30

    while local.stats.invalidations <= invalidations:
        assert time.monotonic() < deadline, "no invalidation arrived"
        local.get("nothing")  # applies what arrived
        time.sleep(0.001)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=["redis", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return t.cast(str, request.param)


@pytest.fixture
def port(kind: str, request: pytest.FixtureRequest) -> int:
    """The port of the suite's server, or of a node of its cluster."""
    if kind == "cluster":
        return t.cast(int, request.getfixturevalue("redis_cluster").nodes[0].port)

    return t.cast(int, request.getfixturevalue("redis_server").port)


@pytest.fixture
def env(kind: str, port: int, prefix: str, tmp_path: t.Any) -> Env:
    env = local_env(redis_cache(kind, port, prefix), tmp_path)
    env.add_user()
    return env


@pytest.fixture
def other(kind: str, port: int, prefix: str, tmp_path: t.Any, env: Env) -> Env:
    """A second worker on the same store and database, with its own
    connections and its own copy.
    """
    return local_env(redis_cache(kind, port, prefix), tmp_path, "other")


def command_counter(kind: str, request: pytest.FixtureRequest) -> c.Callable[[], int]:
    """A count of the commands the server (every node of the cluster) has
    run, but for the local caches' heartbeats (``PING``, as many as the time
    taken allows) and the count's own ``INFO``, on connections opened now.
    """
    servers = (
        request.getfixturevalue("redis_cluster").nodes
        if kind == "cluster"
        else [request.getfixturevalue("redis_server")]
    )
    admins = [server.client() for server in servers]

    for admin in admins:
        request.addfinalizer(admin.close)

    def count() -> int:
        return sum(
            int(value["calls"])
            for admin in admins
            for name, value in admin.info("commandstats").items()
            if name not in ("cmdstat_ping", "cmdstat_info")
        )

    return count


# -- serving from the copy ------------------------------------------------------


def test_repeat_request_sends_no_command_to_redis(
    env: Env, kind: str, request: pytest.FixtureRequest
) -> None:
    client = env.app.test_client()
    warm(env, client)
    count = command_counter(kind, request)
    before = count()

    for _ in range(20):
        assert env.me(client) == "ada@example.com free"

    assert count() == before


def test_logout_in_another_worker_is_seen_by_the_next_request(
    env: Env, other: Env
) -> None:
    client = env.app.test_client()
    warm(env, client)
    other_client = other.app.test_client()
    other_client.set_cookie("session", client.get_cookie("session").value)  # type: ignore[union-attr]
    before = local_of(env).stats.invalidations

    assert other_client.post("/logout").get_data(as_text=True) == "was in"
    arrived(local_of(env), before)
    assert env.me(client) == "anonymous"


def test_user_change_in_another_worker_is_seen_by_the_next_request(
    env: Env, other: Env
) -> None:
    client = env.app.test_client()
    warm(env, client)
    before = local_of(env).stats.invalidations

    with other.app.app_context():
        user = other.db.session.get(other.User, 1)
        assert user is not None
        user.plan = "pro"
        other.db.session.commit()  # POW_SYNC_ON_COMMIT rewrites the record

    arrived(local_of(env), before)
    assert env.me(client) == "ada@example.com pro"


def test_rotation_elsewhere_is_followed_when_the_copy_is_older(
    env: Env, other: Env
) -> None:
    """A token newer than the copy (its invalidation still on its way) is
    checked against the store, not refused.
    """
    client = env.app.test_client()
    warm(env, client)
    local = local_of(env)
    session_id = session_id_of(env, client)
    held = local.get(session_id)
    assert held is not None
    keys = list(local._entries[session_id].keys)

    with other.app.test_request_context():
        signed = pow_token(env.app, f"session={client.get_cookie('session').value}")  # type: ignore[union-attr]
        _, token = signed.split(".")[:2]
        rotated = other.pow.credentials.rotate(session_id, token, {})
        assert rotated is not None

    # The message has arrived by now; put the old copy back, as if not.
    local.get(session_id)
    local.put(session_id, held, keys, local.epoch)
    assert local.get(session_id) == held

    with env.app.test_request_context():
        found = env.pow.credentials.authenticate(session_id, rotated[0])

    assert found is not None


def test_keys_deleted_by_hand_empty_the_copy(env: Env) -> None:
    client = env.app.test_client()
    warm(env, client)

    # Only this test's keys: FLUSHALL would reach the other tests' too, so
    # the server's flush message is checked on a server of its own below.
    with env.app.app_context():
        admin = env.pow.credentials.store.client  # type: ignore[attr-defined]

    pattern = f"{local_of(env).prefix}*"
    on_every_node = {"target_nodes": "all"} if hasattr(admin, "get_nodes") else {}

    before = local_of(env).stats.invalidations

    for key in list(admin.scan_iter(pattern, **on_every_node)):
        admin.delete(key)

    arrived(local_of(env), before)
    assert env.me(client) == "anonymous"


@pytest.fixture
def own_server() -> c.Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture
def own_env(own_server: RedisServer, prefix: str, tmp_path: t.Any) -> Env:
    client = own_server.client(socket_timeout=0.5, socket_connect_timeout=0.5)
    env = local_env(RedisCache(host=client, key_prefix=prefix), tmp_path)
    env.add_user()
    return env


def test_flush_message_empties_the_copy(own_env: Env, own_server: RedisServer) -> None:
    client = own_env.app.test_client()
    warm(own_env, client)
    before = local_of(own_env).stats.invalidations
    own_server.client().flushall()

    arrived(local_of(own_env), before)
    assert own_env.me(client) == "anonymous"


def test_server_restart_empties_the_copy(own_env: Env, own_server: RedisServer) -> None:
    client = own_env.app.test_client()
    warm(own_env, client)
    own_server.stop()
    own_server.start()  # empty: the suite's servers do not persist

    assert own_env.me(client) == "anonymous"
    assert local_of(own_env).stats.flushes >= 1


def test_unanswered_heartbeat_stops_serving_from_the_copy(
    own_env: Env, own_server: RedisServer
) -> None:
    """A server that stops answering (a network cut without a reset) is
    not trusted past ``POW_REDIS_LOCAL_CACHE_STALENESS`` after the last
    answered heartbeat: the request goes to Redis, and fails as an outage
    (503) instead of answering from an unchecked copy; the channel closes
    at the heartbeat limit.
    """
    client = own_env.app.test_client()
    warm(own_env, client)
    local = local_of(own_env)
    assert own_server.process is not None
    own_server.process.send_signal(signal.SIGSTOP)

    try:
        # Every answered heartbeat was sent before now.
        started = local.clock()
        local.clock = lambda: started + local.staleness
        assert client.get("/me").status_code == 503
        local.clock = lambda: started + local.staleness + HEARTBEAT_LIMIT + 0.1
        response = client.get("/me")
    finally:
        own_server.process.send_signal(signal.SIGCONT)

    assert response.status_code == 503
    assert local.stats.flushes >= 1


def test_a_silent_cut_serves_a_revoked_session_no_longer_than_the_bound(
    own_server: RedisServer, prefix: str, tmp_path: t.Any
) -> None:
    """One worker's path to Redis goes silent (packets dropped, nothing
    closed), and the session is revoked over another path: the worker
    answers as the revoked user only to requests that began within
    ``POW_REDIS_LOCAL_CACHE_STALENESS`` of the cut (with 2 s of trust it
    answered some 90 requests, the last 1.8 s after the logout).
    """
    proxy = SilentProxy(own_server.port)

    try:
        cache = RedisCache(
            host=redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=0.5),
            key_prefix=prefix,
        )
        env = local_env(cache, tmp_path)
        env.add_user()
        client = env.app.test_client()
        warm(env, client)
        local = local_of(env)
        session_id = session_id_of(env, client)
        cut_at = local.clock()
        proxy.cut()
        # The logout, by another worker with a path of its own.
        other = local_env(
            RedisCache(host=own_server.client(), key_prefix=prefix),
            tmp_path,
            name="other",
        )

        with other.app.app_context():
            assert other.pow.credentials.delete(session_id)

        stale_starts = []

        for _ in range(1_000_000):
            began = local.clock()
            response = client.get("/me")

            if response.text != "ada@example.com free":
                break

            stale_starts.append(began)
        else:
            pytest.fail("the worker kept answering from its copy")
    finally:
        proxy.close()

    assert response.status_code == 503
    assert all(began < cut_at + local.staleness for began in stale_starts)


def test_staleness_must_be_above_zero_and_within_the_ttl(
    redis_server: RedisServer, prefix: str, tmp_path: t.Any
) -> None:
    cache = RedisCache(host=redis_server.client(), key_prefix=prefix)

    for value in (0, -1, 11):
        with pytest.raises(ValueError, match="POW_REDIS_LOCAL_CACHE_STALENESS"):
            local_env(cache, tmp_path, POW_REDIS_LOCAL_CACHE_STALENESS=value)


# -- the copy itself -------------------------------------------------------------


@pytest.fixture
def local(redis_server: RedisServer, prefix: str) -> c.Iterator[LocalCache]:
    client = redis_server.client()
    local = LocalCache(client, prefix, ttl=1, max_entries=10, max_bytes=10_000)
    yield local
    local.close()
    client.close()


def trusted(local: LocalCache) -> None:
    """Poll until the tracking connection has answered its heartbeat."""
    deadline = time.monotonic() + 30

    while True:
        bypassed = local.stats.bypassed
        local.get("nothing")

        if local.stats.bypassed == bypassed:
            return

        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_entry_expires_after_its_ttl(local: LocalCache) -> None:
    trusted(local)
    local.put("s", (b"1", b"2"), ["k"], local.epoch)
    assert local.get("s") == (b"1", b"2")
    deadline = time.monotonic() + 1.5

    while time.monotonic() < deadline:
        local.get("nothing")  # keeps the heartbeat going
        time.sleep(0.05)

    assert local.get("s") is None


def test_entries_are_bounded_in_number(local: LocalCache) -> None:
    trusted(local)

    for n in range(50):
        local.put(f"s{n}", (b"x",), [f"k{n}"], local.epoch)

    assert len(local) == 10
    assert local.get("s49") == (b"x",)
    assert local.get("s0") is None


def test_entries_are_bounded_in_bytes(local: LocalCache) -> None:
    trusted(local)

    for n in range(10):
        local.put(f"s{n}", (b"x" * 3000,), [f"k{n}"], local.epoch)

    assert local.size <= 10_000
    assert 0 < len(local) < 10


def test_read_racing_an_invalidation_is_not_kept(local: LocalCache) -> None:
    trusted(local)
    epoch = local.epoch
    local.forget(["k"])  # a change applied while the read was in flight
    local.put("s", (b"old",), ["k"], epoch)

    assert local.get("s") is None


def test_invalidation_from_the_server_drops_dependent_entries(
    local: LocalCache, redis_server: RedisServer, prefix: str
) -> None:
    trusted(local)
    local.put("s1", (b"1",), [f"{prefix}user"], local.epoch)
    local.put("s2", (b"2",), [f"{prefix}other"], local.epoch)
    redis_server.client().set(f"{prefix}user", "changed")
    deadline = time.monotonic() + 30

    while local.get("s1") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)

    assert local.get("s2") == (b"2",)


# -- configuration -----------------------------------------------------------------


def test_local_cache_needs_a_redis_store(tmp_path: t.Any) -> None:
    with pytest.raises(ValueError, match="needs a Redis store"):
        local_env(SimpleCache(), tmp_path)


def test_local_cache_setting_must_be_a_bool(
    redis_server: RedisServer, tmp_path: t.Any
) -> None:
    app, db, User = make_app(
        RedisCache(host=redis_server.client()),
        f"sqlite:///{tmp_path / 'app.db'}",
        POW_REDIS_LOCAL_CACHE="yes",
    )

    with pytest.raises(TypeError, match="POW_REDIS_LOCAL_CACHE"):
        Pow(app, db=db, user_model=User)


# -- two real processes ---------------------------------------------------------------


@pytest.fixture(params=["redis", "valkey", "cluster"])
def served(
    request: pytest.FixtureRequest,
    prefix: str,
    tmp_path: t.Any,
) -> c.Iterator[tuple[tuple[str, int], Env]]:
    """A worker with the local cache in a process of its own, and an app in
    this process on the same store and database (the revoker).
    """
    kind = request.param
    port = (
        request.getfixturevalue("redis_cluster").nodes[0].port
        if kind == "cluster"
        else request.getfixturevalue("redis_server").port
    )
    database = tmp_path / "app.db"
    revoker_app, db, User = make_app(
        redis_cache(kind, port, prefix), f"sqlite:///{database}"
    )
    revoker = Env(revoker_app, db, User, Pow(revoker_app, db=db, user_model=User))
    revoker.add_user()

    with revoker_app.app_context():
        revoker.pow.credentials.clock = revoker.pow.credentials.store.clock  # type: ignore[attr-defined]

    port_file = str(tmp_path / "port")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.redis_local_server", kind,
         str(port), prefix, str(database), port_file],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )  # fmt: skip

    try:
        deadline = time.monotonic() + 30

        while not os.path.exists(port_file):
            assert time.monotonic() < deadline, "the server did not start"
            assert process.poll() is None, "the server exited"
            time.sleep(0.05)

        with open(port_file) as f:
            yield ("127.0.0.1", int(f.read())), revoker
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_revocation_in_one_process_is_refused_by_the_next_request_in_another(
    served: tuple[tuple[str, int], Env],
) -> None:
    """1,000 times: log in on the worker, read twice (the second from its
    copy), revoke from this process, and ask the worker again as soon as
    the revocation returned. No answer may be the revoked user.
    """
    address, revoker = served
    stale = []

    for cycle in range(CYCLES):
        _, cookie = request(address, "POST", "/login/1", None)
        assert cookie is not None
        assert request(address, "GET", "/me", cookie)[0] == "ada@example.com free"
        assert request(address, "GET", "/me", cookie)[0] == "ada@example.com free"
        session_id = str(pow_token(revoker.app, cookie)).split(".", 1)[0]

        with revoker.app.app_context():
            assert revoker.pow.credentials.delete(session_id)

        body, _ = request(address, "GET", "/me", cookie)

        if body != "anonymous":
            stale.append((cycle, body))

    stats = json.loads(request(address, "GET", "/local-stats", None)[0])

    assert stale == []
    # The copy was in play: most second reads came from it.
    assert stats["hits"] >= CYCLES * 0.9


def test_forked_child_opens_its_own_channel(local: LocalCache) -> None:
    """A pre-forking server forks after the parent may have connected: the
    child never reads the parent's socket, and tracks on a connection of
    its own.
    """
    trusted(local)
    parent_conn = local._channels[0].conn
    read_end, write_end = os.pipe()
    pid = os.fork()

    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1

        try:
            deadline = time.monotonic() + 30

            while time.monotonic() < deadline:
                bypassed = local.stats.bypassed
                local.get("nothing")

                if local.stats.bypassed == bypassed:
                    break

                time.sleep(0.01)

            own = bool(local._channels) and local._channels[0].conn is not parent_conn
            os.write(write_end, b"own" if own and local._pid == os.getpid() else b"no")
            code = 0
        finally:
            os._exit(code)

    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read_end, 16)
    os.close(read_end)

    assert status == 0
    assert answer == b"own"
    # The parent's channel is untouched, and trusted again once a heartbeat
    # is answered (it idled past the staleness bound while the child ran).
    assert local._channels[0].conn is parent_conn
    trusted(local)
    assert local._channels[0].conn is parent_conn
    local.put("s", (b"1",), ["k"], local.epoch)
    assert local.get("s") == (b"1",)


def test_a_server_that_never_answers_holds_up_one_thread_not_all() -> None:
    """The channel is opened outside the lock, with short timeouts: while
    one request waits on a server that accepted and went silent, the
    others bypass the copy at once.
    """
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = time.monotonic() + 10

    def accept() -> None:
        listener.settimeout(0.2)

        while time.monotonic() < stop:
            try:
                held.append(listener.accept()[0])  # and never answer
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    client = redis.Redis(host="127.0.0.1", port=listener.getsockname()[1])
    local = LocalCache(client, "silent:", ttl=1, max_entries=10, max_bytes=10_000)
    took: list[float] = []

    def lookup() -> None:
        started = time.monotonic()
        assert local.get("s") is None
        took.append(time.monotonic() - started)

    try:
        threads = [threading.Thread(target=lookup) for _ in range(5)]

        for thread in threads:
            thread.start()

        for thread in threads:
            thread.join(timeout=30)
    finally:
        stop = 0.0
        local.close()
        listener.close()

        for conn in held:
            conn.close()

    assert len(took) == 5
    assert max(took) <= HEARTBEAT_LIMIT + 1.0
    assert sorted(took)[-2] < 0.5
