"""flask_pow against Flask-Login, side by side, in one run; and how the
cost grows with the store.

    python -m benchmarks.run            # the full run (make bench)
    python -m benchmarks.run --tiny     # seconds, to check it still works

Every setup of ``benchmarks/apps.py`` serves the same view (the current
user's email and plan) and is measured in the same run, two ways: in-process
WSGI calls (the library's own cost) and HTTP through gunicorn with ``wrk``
on loopback (what a deployment sees). Then, on Redis: the per-request cost
with 1,000 to 1,000,000 stored sessions, memory per session and per user,
and the cost of login, rotation, logout, ``sessions(user)`` and ``users()``.
Ratios are what to quote; absolute times belong to the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t

import redis
import redis.connection
import sqlalchemy as sa

from tests.support.servers import RedisServer
from tests.support.servers import free_port

from . import floors
from . import harness
from . import postgres
from .apps import SETUPS
from .apps import build
from .apps import create_users

# -- counting round trips ------------------------------------------------------

_sends = 0
_send = redis.connection.Connection.send_packed_command


def _counting_send(self: t.Any, *args: t.Any, **kwargs: t.Any) -> None:
    # One send is one round trip: a pipeline is sent in one go. Observing
    # only, in this benchmark process.
    global _sends
    _sends += 1
    _send(self, *args, **kwargs)  # type: ignore[no-untyped-call]


redis.connection.Connection.send_packed_command = _counting_send  # type: ignore[method-assign]


@dataclasses.dataclass
class Sizes:
    requests: int = 3000
    rounds: int = 5
    http_seconds: float = 10.0
    scale: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    sessions_per_user: int = 1_000
    users: int = 10_000
    memory_sessions: int = 10_000
    memory_users: int = 1_000
    local_sessions: int = 100_000
    local_workers: int = 4
    local_seconds: float = 20.0
    #: The floors' rounds: more of them, the floors are close together.
    floor_rounds: int = 25


TINY = Sizes(
    requests=20,
    rounds=1,
    http_seconds=1.0,
    scale=(100, 1_000),
    sessions_per_user=20,
    users=50,
    memory_sessions=100,
    memory_users=10,
    local_sessions=200,
    local_workers=2,
    local_seconds=1.0,
    floor_rounds=1,
)


@dataclasses.dataclass
class Row:
    setup: str
    us_per_request: float = 0.0
    sql: float = 0.0
    commands: float | None = None
    round_trips: float | None = None
    http_rps: float | None = None
    http_latency_ms: float | None = None


# -- in-process --------------------------------------------------------------


def in_process(
    setups: list[str], stores: dict[str, str | None], sizes: Sizes, admin: t.Any
) -> dict[str, Row]:
    apps = {}

    for setup in setups:
        database = stores["postgres"] if setup == "login-postgres" else stores["sqlite"]
        assert database is not None
        app, db = build(setup, database, stores["redis"])
        environ = harness.environ(harness.login_cookie(app))
        expected = b"anonymous" if setup == "anonymous" else b"user1@example.com pro"
        assert harness.call(app, environ) == expected, setup
        apps[setup] = (app, db, environ)

    times = harness.fastest(
        {
            setup: functools.partial(harness.call, app, environ)
            for setup, (app, _, environ) in apps.items()
        },
        sizes.requests,
        sizes.rounds,
    )
    rows = {}

    for setup, (app, db, environ) in apps.items():
        row = Row(setup, us_per_request=times[setup] * 1e6)
        statements: list[str] = []

        with app.app_context():
            engine = db.engine

        def listener(*args: t.Any, found: list[str] = statements) -> None:
            found.append(args[2])

        sa.event.listen(engine, "before_cursor_execute", listener)
        admin.config_resetstat()
        sends = _sends
        n = max(10, sizes.requests // 10)

        for _ in range(n):
            harness.call(app, environ)

        sa.event.remove(engine, "before_cursor_execute", listener)
        row.sql = len(statements) / n

        if "redis" in setup:
            stats = admin.info("commandstats")
            calls = sum(
                int(stat["calls"])
                for name, stat in stats.items()
                if name not in ("cmdstat_info", "cmdstat_config|resetstat")
            )
            row.commands = calls / n
            row.round_trips = (_sends - sends) / n

        rows[setup] = row

    for app, db, _ in apps.values():
        _close(app, db)

    return rows


def _close(app: t.Any, db: t.Any) -> None:
    """Close what an app opened: its database pool and Redis clients."""
    with app.app_context():
        db.engine.dispose()

    pow_ = app.extensions.get("pow")
    local = (
        getattr(pow_.get_state(app).credentials.store, "local", None) if pow_ else None
    )

    if local is not None:
        local.close()

    cache = app.config.get("POW_CACHE")

    for client in (
        getattr(cache, "_write_client", None),
        app.config.get("SESSION_REDIS"),
    ):
        if client is not None:
            client.close()


# -- over HTTP ------------------------------------------------------------------


def over_http(
    setups: list[str], stores: dict[str, str | None], sizes: Sizes, rows: dict[str, Row]
) -> None:
    wrk = shutil.which("wrk")

    for setup in setups:
        if setup in ("pow-memory", "handmade-cache"):
            # An in-process cache lives in one worker: a session made on one
            # is unknown to the other. Not a setup for several workers.
            continue

        database = stores["postgres"] if setup == "login-postgres" else stores["sqlite"]
        port = free_port()
        env = {
            **os.environ,
            "BENCH_SETUP": setup,
            "BENCH_DATABASE": str(database),
            "BENCH_REDIS_URL": str(stores["redis"]),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
             "--log-level", "warning", "benchmarks.apps:create_app()"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

        try:
            cookie = _http_login(port)
            url = f"http://127.0.0.1:{port}/me"

            if wrk:
                out = subprocess.run(
                    [wrk, "-t2", "-c16", f"-d{max(1, int(sizes.http_seconds))}s",
                     "-H", f"Cookie: {cookie}", url],
                    capture_output=True, text=True, check=True, timeout=120,
                ).stdout  # fmt: skip
                rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
                assert rps is not None
                rows[setup].http_rps = float(rps[1])
                latency = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
                assert latency is not None
                scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[latency[2]]
                rows[setup].http_latency_ms = float(latency[1]) * scale

            # wrk does not read the answers: check that the cookie worked.
            expected = "anonymous" if setup == "anonymous" else "user1@example.com pro"
            assert _http_get(port, cookie) == expected, setup
        finally:
            server.terminate()
            server.wait(timeout=30)


def _http_get(port: int, cookie: str) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    try:
        conn.request("GET", "/me", headers={"Cookie": cookie})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _http_login(port: int) -> str:
    import http.client

    deadline = time.monotonic() + 30

    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/login")
            response = conn.getresponse()
            response.read()
            cookie = response.getheader("Set-Cookie") or ""
            conn.close()
            return cookie.split(";", 1)[0]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- scale, on Redis -------------------------------------------------------------


def scale(stores: dict[str, str | None], sizes: Sizes) -> dict[str, t.Any]:
    """Per-request cost against the number of stored sessions, and the cost
    of each operation.
    """
    from flask_pow.records import SessionRecord

    results: dict[str, t.Any] = {"flat": []}
    assert stores["redis"] is not None and stores["sqlite"] is not None
    app, db = build("pow-redis", stores["sqlite"], stores["redis"])
    environ = harness.environ(harness.login_cookie(app))
    local_app, local_db = build("pow-redis-local", stores["sqlite"], stores["redis"])
    local_environ = harness.environ(harness.login_cookie(local_app))
    client = redis.Redis.from_url(stores["redis"])
    state = app.extensions["pow"].get_state(app)
    credentials = state.credentials
    backend = credentials.store
    filled = 0
    # Realistic filler: real session records, under ids of their own.
    sample = SessionRecord(
        id="x", user_key="User:1", token="0" * 64, created_at=time.time(),
        inserted_at=time.time(), expires_at=time.time() + 1800,
        metadata={"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11) Firefox/145"},
    )  # fmt: skip
    from flask_pow import serialization

    value = serialization.dumps(sample.dump())

    for target in sizes.scale:
        pipe = client.pipeline(transaction=False)

        for n in range(filled, target):
            pipe.set(
                f"{backend.prefix}session:{{f{n % 4096:07d}}}{n:022d}",
                value,
                ex=3600,
            )

            if n % 10_000 == 9_999:
                pipe.execute()

        pipe.execute()
        filled = target
        loops = max(50, sizes.requests // 3)
        best = min(
            _timed(lambda: harness.call(app, environ), loops)
            for _ in range(max(1, sizes.rounds))
        )
        best_local = min(
            _timed(lambda: harness.call(local_app, local_environ), loops)
            for _ in range(max(1, sizes.rounds))
        )
        results["flat"].append((target, best * 1e6, best_local * 1e6, client.dbsize()))

    with app.app_context():
        User = state.users.model

        def user(n: int) -> t.Any:
            return User(
                id=n, email=f"user{n}@example.com", plan="pro", password_hash="x"
            )

        ada = user(1)
        loops = max(20, sizes.requests // 30)
        results["login"] = _timed(
            lambda: credentials.put(ada, {"ip": "127.0.0.1"}), loops
        )
        info, token = credentials.put(ada, {})
        tokens = [token]

        def rotate() -> None:
            result = credentials.rotate(info.id, tokens[-1], {})
            assert result is not None and result[1]
            tokens.append(result[0])

        results["rotation"] = _timed(rotate, loops)
        ended = [credentials.put(ada, {})[0].id for _ in range(loops)]
        results["logout"] = _timed(
            lambda: credentials.end(ended.pop(), "User:1"), loops
        )

        one = user(900_001)
        credentials.put(one, {})
        results["sessions_1"] = _timed(lambda: credentials.sessions(one), loops)
        many = user(900_002)

        for _ in range(sizes.sessions_per_user):
            credentials.put(many, {})

        results["sessions_many"] = _timed(lambda: credentials.sessions(many), 5)
        results["sessions_per_user"] = sizes.sessions_per_user

        for n in range(1000, 1000 + sizes.users):
            credentials.put(user(n), {})

        results["users_count"] = len(credentials.users())
        results["users"] = _timed(credentials.users, 3)

    client.close()
    _close(app, db)
    _close(local_app, local_db)
    return results


def _timed(action: t.Callable[[], object], loops: int) -> float:
    start = time.perf_counter()

    for _ in range(loops):
        action()

    return (time.perf_counter() - start) / loops


# -- the run -------------------------------------------------------------------


def run(sizes: Sizes, *, require_postgres: bool = False) -> str:
    """Run everything and return the report (reST tables)."""
    redis_server = RedisServer()
    scale_server = RedisServer()
    pg = (
        postgres.PostgresServer()
        if (postgres.available() or require_postgres)
        else None
    )
    tmp = tempfile.mkdtemp(prefix="flask-pow-bench-")
    stores: dict[str, str | None] = {
        "sqlite": f"sqlite:///{tmp}/bench.db",
        "postgres": pg.url if pg else None,
        "redis": f"redis://127.0.0.1:{redis_server.port}/0",
    }
    setups = [s for s in SETUPS if s != "login-postgres" or pg is not None]
    admin = redis_server.client()

    try:
        create_users(str(stores["sqlite"]))

        if pg is not None:
            create_users(pg.url)

        rows = in_process(setups, stores, sizes, admin)
        over_http(setups, stores, sizes, rows)
        scale_stores = {**stores, "redis": f"redis://127.0.0.1:{scale_server.port}/0"}
        grown = scale(scale_stores, sizes)
        from .redis_memory import measure

        memory = io.StringIO()

        memory_server = RedisServer()

        try:
            with contextlib.redirect_stdout(memory):
                measure(memory_server, sizes.memory_sessions, sizes.memory_users)
        finally:
            memory_server.close()
    finally:
        admin.close()
        redis_server.close()
        scale_server.close()

        if pg is not None:
            pg.close()

    from . import local_cache

    local = local_cache.run(
        sizes.local_sessions, sizes.local_workers, sizes.local_seconds, None
    )
    floor_report = floors.measure(sizes.requests, sizes.floor_rounds)
    return report(rows, grown, memory.getvalue(), local, floor_report, sizes)


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if not value or not base else f"{value / base:.2f}"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(
    rows: dict[str, Row],
    grown: dict[str, t.Any],
    memory: str,
    local: str,
    floor_report: str,
    sizes: Sizes,
) -> str:
    base = rows["anonymous"]
    logins = [r for name, r in rows.items() if name.startswith("login-")]
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}, {platform.platform(terse=True)}.",
        f"In-process: fastest of {sizes.rounds} interleaved rounds of"
        f" {sizes.requests} requests per setup. HTTP: gunicorn, 2 sync workers,"
        f" wrk -t2 -c16 for {sizes.http_seconds:.0f} s per setup.",
        "",
        "In-process WSGI (the library's own cost):",
        "",
    ]
    header = ["setup", "us/request", "x anonymous"]
    header += [f"x {r.setup}" for r in logins]
    header += ["SQL/request", "Redis commands", "round trips"]
    table = []

    for name, row in rows.items():
        us = row.us_per_request
        cells = [SETUPS[name], f"{us:.0f}", _ratio(us, base.us_per_request)]
        cells += [_ratio(us, other.us_per_request) for other in logins]
        cells += [f"{row.sql:.0f}", _num(row.commands, 1), _num(row.round_trips, 1)]
        table.append(cells)

    lines += harness.rst_table(header, table)
    lines += ["", "HTTP through gunicorn (what a deployment sees):", ""]
    header = ["setup", "req/s", "x anonymous"]
    header += [f"x {r.setup}" for r in logins]
    header += ["latency ms"]
    table = []

    for name, row in rows.items():
        rps = row.http_rps
        cells = [SETUPS[name], _num(rps), _ratio(rps, base.http_rps)]
        cells += [_ratio(rps, other.http_rps) for other in logins]
        cells += [_num(row.http_latency_ms, 2)]
        table.append(cells)

    lines += harness.rst_table(header, table)
    lines += ["", "Per-request cost (flask_pow on Redis) against stored sessions:", ""]
    lines += harness.rst_table(
        ["sessions stored", "keys in Redis", "us/request", "with local cache"],
        [
            [f"{n:,}", f"{keys:,}", f"{us:.0f}", f"{local:.0f}"]
            for n, us, local, keys in grown["flat"]
        ],
    )
    many = f"sessions(user), {grown['sessions_per_user']:,} sessions"
    lines += ["", "Operations on Redis (in-process, loopback):", ""]
    lines += harness.rst_table(
        ["operation", "ms"],
        [
            ["login (put)", f"{grown['login'] * 1e3:.2f}"],
            ["rotation", f"{grown['rotation'] * 1e3:.2f}"],
            ["logout (end)", f"{grown['logout'] * 1e3:.2f}"],
            ["sessions(user), 1 session", f"{grown['sessions_1'] * 1e3:.2f}"],
            [many, f"{grown['sessions_many'] * 1e3:.2f}"],
            [f"users(), {grown['users_count']:,} users", f"{grown['users'] * 1e3:.1f}"],
        ],
    )
    lines += ["", "Redis memory:", "", "::", ""]
    lines += ["    " + line for line in memory.strip().splitlines()]
    lines += ["", "The Redis local cache under many sessions:", ""]
    lines += local.strip().splitlines()
    lines += ["", "The physical floors (benchmarks/floors.py):", ""]
    lines += floor_report.strip().splitlines()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="seconds, not minutes")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else Sizes()
    print(run(sizes, require_postgres=bool(os.environ.get("CI"))), end="")


if __name__ == "__main__":
    main()
