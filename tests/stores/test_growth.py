"""The store does not grow without end: a cap on each user's sessions,
and expired records swept from a FileSystemCache, by a command and by
flask_pow itself.
"""

from __future__ import annotations

import os
import time
import typing as t

import pytest
from cachelib import FileSystemCache
from flask import Flask

from flask_pow import session_revoked
from flask_pow.stores.cachelib import CachelibSessionStore
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.env import add_routes
from tests.support.env import make_pow_app
from tests.support.sweeps import join_sweeps

#: The cap on sessions is each store's to keep: every test on every store.
pytestmark = pytest.mark.backends


def files(path: str) -> list[str]:
    return [name for name in os.listdir(path) if not name.startswith("__wz_cache")]


def test_login_past_max_sessions_ends_the_least_recently_used(
    make_env: MakeEnv,
) -> None:
    env = make_env(POW_MAX_SESSIONS=2)
    user_id = env.add_user()
    ended: list[str] = []
    devices = [env.app.test_client() for _ in range(3)]

    def on_revoked(sender: Flask, session_id: str, user_key: str) -> None:
        ended.append(session_id)

    with session_revoked.connected_to(on_revoked, env.app):
        for device in devices:
            env.login(device, user_id)
            env.clock.advance(10)

    assert env.me(devices[0]) == "anonymous"
    assert env.me(devices[1]) == "ada@example.com free"
    assert env.me(devices[2]) == "ada@example.com free"
    assert len(ended) == 1

    with env.app.app_context():
        assert len(env.pow.credentials.sessions_by_key(f"User:{user_id}")) == 2


@pytest.fixture
def file_env(tmp_path: t.Any) -> tuple[Env, str]:
    path = str(tmp_path / "cache")
    env = make_pow_app(tmp_path, FileSystemCache(path, threshold=0))
    add_routes(env)
    return env, path


def test_cleanup_removes_the_records_of_idled_out_sessions(
    file_env: tuple[Env, str],
) -> None:
    """``threshold=0`` (what the docs ask for) never deletes an expired
    file: every idled-out session stayed on disk for good.
    """
    env, path = file_env

    with env.app.app_context():
        credentials = env.pow.credentials
        user = env.db.session.get(env.User, env.add_user())

        for _ in range(50):
            credentials.put(user)

        assert len(files(path)) >= 50
        later = time.time() + 30 * 60 + 5
        assert credentials.store.cleanup(later) >= 50

    assert files(path) == []


def test_cleanup_keeps_live_sessions(file_env: tuple[Env, str]) -> None:
    env, path = file_env
    client = env.app.test_client()

    env.login(client, env.add_user())
    before = len(files(path))

    with env.app.app_context():
        assert env.pow.credentials.store.cleanup(time.time()) == 0

    assert len(files(path)) == before
    assert env.me(client) == "ada@example.com free"


def test_cleanup_runs_by_itself_once_per_interval(file_env: tuple[Env, str]) -> None:
    env, path = file_env
    cache = FileSystemCache(path, threshold=0)
    cache.set("left-over", "x", timeout=-1)  # expired a second ago
    client = env.app.test_client()
    env.login(client, env.add_user())
    deadline = time.monotonic() + 10

    while cache._get_filename("left-over").split(os.sep)[-1] in files(path):
        assert time.monotonic() < deadline, "the sweep did not run"
        time.sleep(0.05)

    # Once per interval: the next login does not sweep again (a sweep it
    # started would be joined here, and would have removed the file).
    join_sweeps()
    cache.set("another", "x", timeout=-1)
    env.login(env.app.test_client(), env.add_user("bob@example.com"))
    join_sweeps()
    assert cache._get_filename("another").split(os.sep)[-1] in files(path)


def test_cleanup_command_reports_what_it_removed(file_env: tuple[Env, str]) -> None:
    env, path = file_env
    FileSystemCache(path, threshold=0).set("left-over", "x", timeout=-1)
    result = env.app.test_cli_runner().invoke(args=["pow", "cleanup"])
    assert result.exit_code == 0, result.output
    assert result.output == "Removed 1 expired record.\n"


def test_other_backends_need_no_cleanup(env: Env) -> None:
    with env.app.app_context():
        store = env.pow.credentials.store

        if isinstance(store, CachelibSessionStore) and store.sweeps:
            pytest.skip("a FileSystemCache without a threshold is swept")

        assert store.cleanup(time.time() + 10**6) == 0
