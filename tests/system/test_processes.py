"""A FileSystemCache shared by two real server processes on one host, as
two gunicorn workers would share it.
"""

from __future__ import annotations

import collections.abc as c
import os
import subprocess
import sys
import time
import typing as t

import pytest
from flask import Flask

from tests.support.env import make_app
from tests.support.http import all_at_once
from tests.support.http import pow_token
from tests.support.http import request

PARALLEL = 20


@pytest.fixture
def servers(tmp_path: t.Any) -> c.Iterator[tuple[list[tuple[str, int]], Flask]]:
    cache_dir = str(tmp_path / "cache")
    database = str(tmp_path / "app.db")
    app, db, User = make_app(None, f"sqlite:///{database}")  # type: ignore[arg-type]

    with app.app_context():
        db.session.add(
            User(email="ada@example.com", name="Ada", plan="free", password_hash="x")
        )
        db.session.commit()

    processes = []
    addresses = []

    try:
        for n in range(2):
            port_file = str(tmp_path / f"port{n}")
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.apps.fs_server",
                        cache_dir,
                        database,
                        port_file,
                    ],
                    cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                )
            )
            deadline = time.monotonic() + 30

            while not os.path.exists(port_file):
                assert time.monotonic() < deadline, "the server did not start"
                assert processes[-1].poll() is None, "the server exited"
                time.sleep(0.05)

            with open(port_file) as f:
                addresses.append(("127.0.0.1", int(f.read())))

        yield addresses, app
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


@pytest.mark.slow
def test_session_made_in_one_process_works_in_the_other(
    servers: tuple[list[tuple[str, int]], Flask],
) -> None:
    (one, two), _ = servers
    _, cookie = request(one, "POST", "/login/1", None)
    assert request(two, "GET", "/me", cookie)[0] == "ada@example.com free"
    request(two, "POST", "/logout", cookie)
    assert request(one, "GET", "/me", cookie)[0] == "anonymous"


@pytest.mark.slow
def test_parallel_stale_requests_across_processes_rotate_once(
    servers: tuple[list[tuple[str, int]], Flask],
) -> None:
    addresses, app = servers
    _, cookie = request(addresses[0], "POST", "/login/1", None)
    assert cookie is not None
    time.sleep(2.1)  # the renewal TTL is one second, and cachelib counts seconds
    results = all_at_once(
        [addresses[n % 2] for n in range(PARALLEL)], "/slow-me", cookie
    )

    assert len(results) == PARALLEL
    assert {body for body, _ in results} == {"ada@example.com free"}
    moved_to = {pow_token(app, c) for _, c in results if c is not None}
    assert len(moved_to) == 1
    assert moved_to != {pow_token(app, cookie)}


@pytest.mark.slow
def test_lock_of_a_killed_process_is_released(tmp_path: t.Any) -> None:
    """A process killed while it holds a rotation lock (SIGKILL, mid-request)
    does not leave the session locked: the kernel drops its flock.
    """
    from cachelib import FileSystemCache

    from flask_pow.stores import locks
    from flask_pow.stores.cachelib import CachelibSessionStore

    store = (
        f"CachelibSessionStore(FileSystemCache({str(tmp_path)!r}, threshold=0),"
        " 'pow', lambda: ['secret'])"
    )

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from cachelib import FileSystemCache\n"
            "from flask_pow.stores import locks\n"
            "from flask_pow.stores.cachelib import CachelibSessionStore\n"
            f"assert locks.lock(*{store}._locking, 'session', 'abc', 0) is not None\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )

    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        ours = CachelibSessionStore(
            FileSystemCache(str(tmp_path), threshold=0), "pow", lambda: ["secret"]
        )
        assert locks.lock(*ours._locking, "session", "abc", 0) is None
        holder.kill()
        holder.wait(timeout=10)
        held = locks.lock(*ours._locking, "session", "abc", 0)
        assert held is not None
        locks.unlock(ours.cache, held)
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
