"""Workers whose clocks disagree still agree on every deadline: on Redis
they are kept in the server's clock (``TIME``, read with every session).
Tried with a real second process whose clock is an hour off (libfaketime),
on one Redis.

No outcome here depends on how fast the machine is. The server's clock is
real (redis-server does not run under libfaketime), so the test's own
worker writes with a clock the test moves by hand, and every deadline is
far (minutes) from the server's time when the other worker reads it: a
grace window that has not begun to run out, or one that ended a minute
before the test started.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import typing as t
import uuid

import pytest
from flask import Flask

from tests.apps.stress_app import create_app
from tests.apps.stress_app import create_users
from tests.support.env import Clock
from tests.support.servers import RedisServer
from tests.support.servers import require
from tests.support.sessions import pow_value

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
#: Far longer than any stall between a rotation and another worker's read;
#: shorter than the 30 minutes idle timeout, as it must be.
GRACE = 600

WORKER = """
import sys
from tests.apps.stress_app import create_app

app = create_app()

with app.app_context():
    credentials = app.extensions["pow"].get_state(app).credentials
    found = credentials.authenticate(sys.argv[1], sys.argv[2])

if found is None:
    print("anonymous")
else:
    print(found.record.user_key, "follow" if found.follow else "current")
"""


@pytest.fixture
def settings(
    redis_server: RedisServer, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    database = str(tmp_path / "clocks.db")
    create_users(database, 1)
    values = {
        "POW_TEST_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "POW_TEST_DATABASE": database,
        "POW_TEST_NAMESPACE": f"clocks-{uuid.uuid4().hex[:8]}",
        "POW_TEST_ROTATION_GRACE": str(GRACE),
    }

    for name, value in values.items():
        monkeypatch.setenv(name, value)

    return values


@pytest.fixture
def app(settings: dict[str, str]) -> Flask:
    return create_app()


@pytest.fixture
def clock(app: Flask, redis_server: RedisServer) -> Clock:
    """The clock the test's own worker (``app``) decides and writes every
    deadline by, in place of the server's: set to the server's time when the
    test starts, and moved only by hand.
    """
    client = redis_server.client()
    seconds, micros = client.time()
    client.close()
    clock = Clock()
    clock.now = seconds + micros / 1_000_000

    with app.app_context():
        app.extensions["pow"].credentials.clock = clock

    return clock


def other_worker(offset: str, value: str, settings: dict[str, str]) -> str:
    """What a worker process whose clock is ``offset`` off makes of the
    session and token of a flask_pow cookie value. (Asked of flask_pow
    directly: Flask's own cookie signature refuses a cookie signed in the
    future of the worker's clock, flask_pow or not.)
    """
    faketime = require("faketime")
    session_id, token = value.split(".")[:2]
    result = subprocess.run(
        [faketime, "-f", offset, sys.executable, "-c", WORKER, session_id, token],
        env={**os.environ, **settings, "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def log_in_and_rotate(app: Flask, clock: Clock) -> tuple[str, str]:
    """Log in, then rotate the token once (the renewal is 1 s).

    :return: the rotated-away token's cookie value, and the current one's.
    """
    client = app.test_client()
    client.post("/login/1")
    rotated_away = pow_value(client)
    clock.advance(2)
    assert client.get("/whoami").text == "1"  # rotates
    current = pow_value(client)
    assert rotated_away is not None and current is not None
    assert current != rotated_away
    return rotated_away, current


def test_worker_with_a_clock_behind_follows_a_token_inside_its_grace(
    app: Flask, clock: Clock, settings: dict[str, str]
) -> None:
    rotated_away, current = log_in_and_rotate(app, clock)
    assert other_worker("-1h", rotated_away, settings) == "User:1 follow"
    assert other_worker("-1h", current, settings) == "User:1 current"


def test_worker_with_a_clock_behind_refuses_a_token_after_its_grace(
    app: Flask, clock: Clock, settings: dict[str, str]
) -> None:
    """Before, a worker an hour behind honoured a rotated-away token for the
    grace window plus an hour. Here the rotation happened a minute more
    than the grace before the server's time (the test's worker logged in
    and rotated with its clock set back), so its grace ended a minute ago
    by the server's clock, and 59 minutes from now by the other worker's.
    """
    clock.advance(-(GRACE + 60))
    rotated_away, current = log_in_and_rotate(app, clock)
    assert other_worker("-1h", rotated_away, settings) == "anonymous"
    assert other_worker("-1h", current, settings) == "User:1 current"


def test_worker_with_a_clock_ahead_keeps_a_live_session(
    app: Flask, settings: dict[str, str]
) -> None:
    """Before, a worker an hour ahead saw every session as expired (the
    idle timeout is 30 minutes): its users were logged out at random.
    """
    client = app.test_client()
    client.post("/login/1")
    value = pow_value(client)
    assert value is not None
    assert other_worker("+1h", value, settings) == "User:1 current"


def test_record_from_a_worker_ahead_is_logged_once(
    tmp_path: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The stores other than Redis keep deadlines in the workers' clocks:
    a worker that reads a record written in its future says so, once.
    """
    from cachelib import FileSystemCache

    from tests.support.env import add_routes
    from tests.support.env import make_pow_app

    path = str(tmp_path / "shared")
    ahead = make_pow_app(tmp_path, FileSystemCache(path, threshold=0))
    behind = make_pow_app(tmp_path, FileSystemCache(path, threshold=0))
    add_routes(ahead)
    add_routes(behind)
    ahead.clock.advance(60)
    client = ahead.app.test_client()
    ahead.login(client, ahead.add_user())

    cookie = client.get_cookie("session")
    assert cookie is not None
    other = behind.app.test_client()
    other.set_cookie("session", cookie.value)

    for _ in range(2):
        assert behind.me(other) == "ada@example.com free"

    skews = [r for r in caplog.records if "in this worker's future" in r.message]
    assert len(skews) == 1
    assert "60 s" in skews[0].message
