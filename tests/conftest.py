from __future__ import annotations

import collections.abc as c
import contextlib
import datetime as dt
import logging
import time
import typing as t
import uuid

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import MemcachedCache
from cachelib import RedisCache
from cachelib import SimpleCache
from flask import Flask
from flask import g
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import login_required
from flask_pow import login_user
from flask_pow import logout_user
from flask_pow import policy as policy_module
from flask_pow import records

from .servers import MemcachedServer
from .servers import RedisClusterServers
from .servers import RedisServer

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


class Clock:
    """A clock the tests move by hand, set as ``pow.credentials.clock``."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Env:
    """An application with flask_pow, a user model and a few routes."""

    def __init__(self, app: Flask, db: SQLAlchemy, user_model: t.Any, pow: Pow) -> None:
        self.app = app
        self.db = db
        self.User = user_model
        self.pow = pow
        self.clock = Clock()

        with app.app_context():
            pow.credentials.clock = self.clock

    def add_user(self, email: str = "ada@example.com", **values: t.Any) -> int:
        with self.app.app_context():
            values.setdefault("name", email.split("@")[0].title())
            values.setdefault("plan", "free")
            values.setdefault("password_hash", "pbkdf2:sha256$secret-hash")
            user = self.User(email=email, **values)
            self.db.session.add(user)
            self.db.session.commit()
            return int(user.id)

    def login(self, client: FlaskClient, user_id: int) -> None:
        response = client.post(f"/login/{user_id}")
        assert response.status_code == 200

    def me_text(self) -> str:
        """What ``/me`` answers, inside a request."""
        user = g.current_user
        return "anonymous" if user is None else f"{user.email} {user.plan}"

    def me(self, client: FlaskClient) -> str:
        return client.get("/me").get_data(as_text=True)


MakeEnv = c.Callable[..., Env]


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


def make_app(
    cache: BaseCache, database: str, **config: t.Any
) -> tuple[Flask, SQLAlchemy, t.Any]:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test secret key",
        SQLALCHEMY_DATABASE_URI=database,
        POW_CACHE=cache,
    )
    app.config.update(config)

    class Base(sa_orm.DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)

    class User(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "user"
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        email: sa_orm.Mapped[str] = sa_orm.mapped_column(unique=True)
        name: sa_orm.Mapped[str]
        plan: sa_orm.Mapped[str]
        password_hash: sa_orm.Mapped[str]
        api_token: sa_orm.Mapped[str | None]
        joined: sa_orm.Mapped[dt.datetime] = sa_orm.mapped_column(
            default=lambda: dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
        )

    db.init_app(app)

    with app.app_context():
        db.create_all()

    return app, db, User


def add_routes(env: Env) -> None:
    app, db, User = env.app, env.db, env.User

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> str:
        login_user(db.session.get(User, user_id))
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        return "was in" if logout_user() else "was out"

    @app.get("/me")
    def me() -> str:
        return env.me_text()

    @app.get("/slow-me")
    def slow_me() -> str:
        # Parallel requests all read the session before any has finished.
        time.sleep(0.3)
        return env.me_text()

    @app.get("/private")
    @login_required
    def private() -> str:
        return "private"


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


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, *args: t.Any) -> None:
        self.statements.append(args[2])


@contextlib.contextmanager
def counting_queries(env: Env) -> c.Iterator[QueryCounter]:
    """Record the SQL statements ``env``'s engine runs."""
    counter = QueryCounter()

    with env.app.app_context():
        engine = env.db.engine

    sa.event.listen(engine, "before_cursor_execute", counter)

    try:
        yield counter
    finally:
        sa.event.remove(engine, "before_cursor_execute", counter)


@pytest.fixture
def queries(env: Env) -> c.Iterator[QueryCounter]:
    with counting_queries(env) as counter:
        yield counter
