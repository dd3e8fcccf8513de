"""The physical floors of an authenticated request, and each setup's
distance to its own.

    python -m benchmarks.floors [--requests N] [--rounds R]

A floor is the least work a request that knows its user must do, written
as a few lines of plain Flask, cachelib, redis-py and SQLAlchemy with no
rotation, no revocation, no expiry policy and no error handling. Each line
of the first table adds one piece of work to the one above it, so the
differences show what each piece costs. Every floor and every setup serves
the same ``GET /me`` (the user's email and plan, from ``g.current_user``)
and is timed in the same interleaved rounds (:func:`.harness.fastest`).

Then, on Redis, the store's own work beside the bare script call it
makes; and the cache operations of a login on a cachelib store. Ratios are
what to quote; absolute times belong to the machine.
"""

from __future__ import annotations

import argparse
import collections
import collections.abc as c
import functools
import hmac
import json
import secrets
import shutil
import tempfile
import typing as t

import redis
import redis.utils
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import SimpleCache
from flask import Flask
from flask import g
from flask import session
from redis._parsers import _HiredisParser
from redis._parsers import _RESP2Parser

from flask_pow import current_session
from flask_pow.stores import TAG_LENGTH
from flask_pow.stores.redis_scripts import READ
from tests.support.recording_cache import RecordingCache
from tests.support.servers import RedisServer

from . import harness
from .apps import SETUPS
from .apps import build
from .apps import create_users
from .apps import current_user_me
from .apps import models

#: Floor name -> what it adds, in the order of the table.
FLOORS = {
    "anonymous": "anonymous Flask request",
    "cookie": "+ Flask's cookie session decode",
    "hmac": "+ one HMAC verify",
    "get": "+ one SimpleCache get",
    "memory": "+ two json.loads + a detached SQLAlchemy instance (in-process floor)",
    "file": "cookie + HMAC + one FileSystemCache read + JSON + build (file floor)",
    "redis": "cookie + HMAC + EVALSHA of flask_pow's read script + JSON + build"
    " (Redis floor)",
}

#: Setup -> the floor it is measured against.
AGAINST = {
    "pow-memory": "memory",
    "handmade-cache": "memory",
    "pow-default": "file",
    "pow-redis": "redis",
    "pow-redis-local": "memory",
    "login-sqlite": "memory",
}

_KEY = secrets.token_bytes(32)
_SESSION: dict[str, t.Any] = {
    # A flask_pow session record at a login, in size and kind.
    "u": "User:1",
    "t": "d" * 64,
    "c": 1796312654.8118317,
    "e": 1796314454.8118317,
    "m": {
        "ip": "127.0.0.1",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    },
}
_USER = {"key": "1", "data": {"id": 1, "email": "user1@example.com", "plan": "pro"}}


class _Bytes:
    """A cachelib serializer that stores bytes as they are, as flask_pow's
    copy of a cache does.
    """

    dumps = loads = bytes

    def dump(self, value: bytes, f: t.IO[bytes]) -> None:
        f.write(value)

    def load(self, f: t.IO[bytes]) -> bytes:
        return f.read()


def floor_app(
    floor: str, model: t.Any, *, folder: str = "", client: t.Any = None
) -> Flask:
    """The floor ``floor``: a before-request hook doing just that work."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "bench"
    session_id = secrets.token_urlsafe(16)
    token = f"{session_id}.{hmac.new(_KEY, session_id.encode(), 'sha256').hexdigest()}"
    pair = json.dumps(_SESSION).encode() + b"\n" + json.dumps(_USER).encode()
    new_instance = sa_orm.class_mapper(model).class_manager.new_instance
    cache: BaseCache = SimpleCache(threshold=100_000)

    if floor == "file":
        cache = FileSystemCache(folder, threshold=0)

    cache.serializer = _Bytes()  # type: ignore[attr-defined]
    cache.set(session_id, pair, timeout=1800)

    if floor == "redis":
        keys = f"floor:session:{session_id}", "floor:user:", "floor:sessions:"
        client.set(keys[0], json.dumps(_SESSION))
        client.set(keys[1] + _SESSION["u"], json.dumps(_USER))
        client.zadd(keys[2] + _SESSION["u"], {session_id: 1.8e9})
        read = client.register_script(READ)

    def user_of(session_record: bytes, user_record: bytes) -> t.Any:
        json.loads(session_record)
        instance = new_instance()
        instance.__dict__.update(json.loads(user_record)["data"])
        sa_orm.make_transient_to_detached(instance)
        return instance

    @app.before_request
    def load() -> None:
        g.current_user = None

        if floor == "anonymous":
            return

        value = session.get("t")

        if floor == "cookie" or value is None:
            return

        sid, _, mac = value.partition(".")
        expected = hmac.new(_KEY, sid.encode(), "sha256").hexdigest()

        if not hmac.compare_digest(mac, expected) or floor == "hmac":
            return

        if floor == "redis":
            found = read(keys=[keys[0]], args=[keys[1], keys[2], sid])
            g.current_user = user_of(found[2], found[3])
            return

        stored = cache.get(sid)

        if floor != "get":
            g.current_user = user_of(*stored.split(b"\n"))

    app.get("/me")(current_user_me)

    @app.post("/login")
    def login() -> str:
        session["t"] = token
        return "ok"

    return app


def login_operations(database: str) -> list[str]:
    """The cache operations of one login (``POST /login``) on a cachelib
    store, after a first login has made the user's records.
    """
    cache = RecordingCache()
    app = build("pow-memory", database, None, cache=cache)[0]
    harness.login_cookie(app)
    cache.calls.clear()
    harness.login_cookie(app)
    return cache.names


def _redis_read(app: Flask) -> dict[str, c.Callable[[], object]]:
    """The store's read of a session, and the bare EVALSHA it makes, on the
    store's own connection.
    """
    store = app.extensions["pow"].get_state(app).credentials.store

    with app.test_request_context(headers={"Cookie": harness.login_cookie(app)}):
        assert current_session is not None
        session_id = current_session.id

    sessions, indexes, users = store._keys(session_id[:TAG_LENGTH])
    key, sha = sessions + session_id[TAG_LENGTH:], store._read.sha
    client = store.client

    def bare() -> object:
        return client.evalsha(sha, 1, key, users, indexes, session_id)

    assert store.read(session_id) is not None
    return {"store": lambda: store.read(session_id), "bare": bare}


def measure(requests: int, rounds: int) -> str:
    """Run the floors and the setups; the report, as reST tables."""
    server = RedisServer()
    tmp = tempfile.mkdtemp(prefix="flask-pow-floors-")
    database = f"sqlite:///{tmp}/bench.db"
    redis_url = f"redis://127.0.0.1:{server.port}/0"
    client = redis.Redis.from_url(redis_url)
    create_users(database)
    apps = {}

    try:
        for floor in FLOORS:
            model = models()[1]
            apps[floor] = floor_app(floor, model, folder=f"{tmp}/floor", client=client)

        for setup in AGAINST:
            apps[setup] = build(setup, database, redis_url)[0]

        runs: dict[str, c.Callable[[], object]] = {}

        for name, app in apps.items():
            cookie = None if name == "anonymous" else harness.login_cookie(app)
            env = harness.environ(cookie)
            nobody = name in ("anonymous", "cookie", "hmac", "get")
            expected = b"anonymous" if nobody else b"user1@example.com pro"
            assert harness.call(app, env) == expected, name
            runs[name] = functools.partial(harness.call, app, env)

        times = harness.fastest(runs, requests, rounds)
        reads = {}

        for parser in _parsers():
            options = {"parser_class": parser}
            app = build("pow-redis", database, redis_url, redis_options=options)[0]
            label = "hiredis" if parser is not _PURE_PYTHON else "pure Python"
            reads.update({f"{label}, {k}": run for k, run in _redis_read(app).items()})

        read_times = harness.fastest(reads, requests, rounds)
        operations = login_operations(database)
    finally:
        client.close()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)

    return report(times, read_times, operations, requests, rounds)


_PURE_PYTHON = _RESP2Parser


def _parsers() -> list[type[t.Any]]:
    """redis-py's reply parsers here: the pure-Python one, and hiredis if
    it is installed (``pip install flask-pow[hiredis]``).
    """
    parsers: list[type[t.Any]] = [_PURE_PYTHON]

    if redis.utils.HIREDIS_AVAILABLE:
        parsers.append(_HiredisParser)

    return parsers


def report(
    times: dict[str, float],
    read_times: dict[str, float],
    operations: list[str],
    requests: int,
    rounds: int,
) -> str:
    lines = [
        f"In-process WSGI, the fastest of {rounds} interleaved rounds of"
        f" {requests} requests.",
        "",
        "The floors (each line adds one piece of work):",
        "",
    ]
    lines += harness.rst_table(
        ["floor", "us/request"],
        [[FLOORS[name], f"{times[name] * 1e6:.0f}"] for name in FLOORS],
    )
    lines += ["", "Each setup against its floor:", ""]
    lines += harness.rst_table(
        ["setup", "us/request", "floor", "x its floor"],
        [
            [
                SETUPS[setup],
                f"{times[setup] * 1e6:.0f}",
                floor,
                f"{times[setup] / times[floor]:.2f}",
            ]
            for setup, floor in AGAINST.items()
        ],
    )
    lines += ["", "Redis: the store's read against the bare EVALSHA it makes:", ""]
    rows = []

    for label in dict.fromkeys(name.split(",")[0] for name in read_times):
        store, bare = read_times[f"{label}, store"], read_times[f"{label}, bare"]
        rows.append(
            [label, f"{store * 1e6:.0f}", f"{bare * 1e6:.0f}", f"{store / bare:.2f}"]
        )

    lines += harness.rst_table(
        ["reply parser", "store read us", "bare EVALSHA us", "x bare"], rows
    )
    counts = collections.Counter(operations)
    counted = ", ".join(f"{n} {name}" for name, n in counts.items())
    lines += [
        "",
        f"A login on a cachelib store: {len(operations)} cache operations ({counted}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    print(measure(args.requests, args.rounds), end="")


if __name__ == "__main__":
    main()
