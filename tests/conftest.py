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
from tests.support import servers
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.env import QueryCounter
from tests.support.env import add_routes
from tests.support.env import counting_queries
from tests.support.env import make_app
from tests.support.servers import MemcachedServer
from tests.support.servers import RedisClusterServers
from tests.support.servers import RedisServer

#: The stores a test can run on. A test runs on SimpleCache alone, unless it
#: is marked ``@pytest.mark.backends`` (on itself, or on its module with
#: ``pytestmark``): then once on each of these, or on the ones the marker
#: names (``@pytest.mark.backends("simple", "filesystem")``). Mark only
#: tests whose outcome the store decides: the store contract, races, lost
#: keys, what is stored and how it parses. ``--backends`` narrows the set
#: for a run (``make test-fast`` keeps the two that need no server).
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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=",".join(BACKENDS),
        metavar="NAMES",
        help="comma-separated stores that tests marked 'backends' run on "
        f"(default: all, {','.join(BACKENDS)})",
    )
    parser.addoption(
        "--no-servers",
        action="store_true",
        help="start no redis-server or memcached: the tests that need one skip",
    )


def _chosen(config: pytest.Config) -> list[str]:
    return [name for name in config.getoption("--backends").split(",") if name]


def pytest_configure(config: pytest.Config) -> None:
    unknown = set(_chosen(config)) - set(BACKENDS)

    if unknown:
        raise pytest.UsageError(
            f"--backends: unknown {', '.join(sorted(unknown))}; "
            f"known: {', '.join(BACKENDS)}"
        )

    servers.START = not config.getoption("--no-servers")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")

    if marker is None or "backend" not in metafunc.fixturenames:
        return

    # A test that names its backends with parametrize keeps them.
    for mark in metafunc.definition.iter_markers("parametrize"):
        if "backend" in mark.args[0]:
            return

    metafunc.parametrize("backend", list(marker.args) or BACKENDS, indirect=True)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Leave out the runs on backends that ``--backends`` did not choose,
    whether the marker or a test's own parametrize asked for them.
    """
    chosen = set(_chosen(config))
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []

    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec else None
        (left_out if backend not in (None, *chosen) else kept).append(item)

    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


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


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store the test runs on: SimpleCache's unless it asked for others."""
    return t.cast(str, getattr(request, "param", "simple"))


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
