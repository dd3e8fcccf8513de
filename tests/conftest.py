from __future__ import annotations

import collections.abc as c
import logging
import typing as t
import uuid

import pytest
from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import MemcachedCache
from cachelib import RedisCache
from cachelib import SimpleCache
from flask import Flask
from flask.testing import FlaskClient

from flask_pow import Pow
from flask_pow import policy as policy_module
from flask_pow import records
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.env import QueryCounter
from tests.support.env import add_routes
from tests.support.env import counting_queries
from tests.support.env import make_app
from tests.support.servers import MemcachedServer
from tests.support.servers import RedisClusterServers
from tests.support.servers import RedisServer

#: The contract suite: every test that takes the ``cache`` fixture (through
#: ``env``, ``app`` or ``client``) runs once per backend (Pow's T19).
#: ``redis-local`` and ``redis-local-cluster`` are Redis and Redis Cluster
#: with ``POW_REDIS_LOCAL_CACHE`` on (for the apps ``make_env`` builds).
BACKENDS = [
    "simple",
    "filesystem",
    "memcached",
    "redis",
    "redis-local",
    "redis-cluster",
    "redis-local-cluster",
    "valkey",
]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()

        if record.exc_info:
            line += logging.Formatter().formatException(record.exc_info)

        self.lines.append(line)


@pytest.fixture(autouse=True)
def no_token_in_any_log_line(monkeypatch: pytest.MonkeyPatch) -> c.Iterator[None]:
    """Around every test: every log record, at every level and from every
    logger, is kept, every token flask_pow issues is noted, and no record
    may hold a token.
    """
    issued: list[str] = []
    issue = records.new_token

    def noting() -> str:
        token = issue()
        issued.append(token)
        return token

    monkeypatch.setattr(policy_module, "new_token", noting)
    handler = _Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)

    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    leaked = [t for t in issued for line in handler.lines if t in line]
    assert not leaked, "a token was logged"


@pytest.fixture(autouse=True)
def instance_folder(tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every application a test makes without an instance path gets one of
    its own: the default store lives there, and must not be shared between
    tests (or written into the checkout).
    """
    folder = str(tmp_path / "instance")
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: folder)


@pytest.fixture(scope="session")
def redis_server() -> c.Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def memcached_server() -> c.Iterator[MemcachedServer]:
    server = MemcachedServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> c.Iterator[RedisClusterServers]:
    cluster = RedisClusterServers()
    yield cluster
    cluster.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return t.cast(str, request.param)


@pytest.fixture
def cache(backend: str, tmp_path: t.Any, request: pytest.FixtureRequest) -> BaseCache:
    if backend == "simple":
        return SimpleCache(threshold=100_000)

    if backend == "filesystem":
        return FileSystemCache(str(tmp_path / "cache"), threshold=0)

    # A prefix of its own per test: tests share the servers, never their keys.
    prefix = f"test-{uuid.uuid4().hex[:12]}:"

    if backend == "memcached":
        # pymemcache, a client that stores bytes and never pickles, with
        # replies on (cachelib's lock relies on add's answer).
        from pymemcache.client.base import PooledClient

        memcached: MemcachedServer = request.getfixturevalue("memcached_server")
        client = PooledClient(
            ("127.0.0.1", memcached.port), default_noreply=False, timeout=5
        )
        request.addfinalizer(client.close)
        return MemcachedCache(servers=client, key_prefix=prefix)

    if backend in ("redis-cluster", "redis-local-cluster"):
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        return RedisCache(host=cluster.client(), key_prefix=prefix)

    server: RedisServer = request.getfixturevalue("redis_server")

    if backend == "valkey":
        # The valkey client and cachelib's ValkeyCache, against the suite's
        # redis-server (Debian 12 has no valkey-server; the protocol is the
        # same).
        import valkey
        from cachelib import ValkeyCache

        client = valkey.Valkey(host="127.0.0.1", port=server.port)
        return ValkeyCache(host=client, key_prefix=prefix)

    return RedisCache(host=server.client(), key_prefix=prefix)


@pytest.fixture
def make_env(cache: BaseCache, tmp_path: t.Any, backend: str) -> c.Callable[..., Env]:
    def make(**config: t.Any) -> Env:
        if backend.startswith("redis-local"):
            config.setdefault("POW_REDIS_LOCAL_CACHE", True)

        app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'app.db'}", **config)
        env = Env(app, db, User, Pow(app, db=db, user_model=User))
        add_routes(env)
        return env

    return make


@pytest.fixture
def env(make_env: MakeEnv) -> Env:
    return make_env()


@pytest.fixture
def app(env: Env) -> Flask:
    return env.app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def user_id(env: Env) -> int:
    return env.add_user()


@pytest.fixture
def logged_in(env: Env, client: FlaskClient, user_id: int) -> FlaskClient:
    env.login(client, user_id)
    return client


@pytest.fixture
def queries(env: Env) -> c.Iterator[QueryCounter]:
    with counting_queries(env) as counter:
        yield counter
