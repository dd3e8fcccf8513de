"""A store that fails: 503, not 500, and the client's cookie is left alone.
(Redis outages are tested with a real server stopped mid-test; here a
FileSystemCache whose directory is gone.) And the log line of a failure:
it names the server, never a password, a session id or a token.
"""

from __future__ import annotations

import collections.abc as c
import logging
import os
import shutil
import typing as t

import pytest
from cachelib import FileSystemCache
from cachelib import RedisCache
from cachelib import SimpleCache

from flask_pow import Pow
from flask_pow import StoreUnavailable
from flask_pow import current_user
from flask_pow.stores import locks
from flask_pow.stores.cachelib import CachelibSessionStore
from tests.support.env import Env
from tests.support.env import add_routes
from tests.support.env import make_app
from tests.support.env import make_pow_app
from tests.support.servers import RedisServer
from tests.support.servers import free_port
from tests.support.sessions import pow_value
from tests.support.sweeps import join_sweeps


def broken_env(tmp_path: t.Any) -> tuple[Env, str]:
    path = str(tmp_path / "cache")
    env = make_pow_app(tmp_path, FileSystemCache(path, threshold=0))
    add_routes(env)
    return env, path


def break_directory(path: str) -> None:
    # Root ignores permissions, so the directory is replaced by a file.
    shutil.rmtree(path)

    with open(path, "w") as f:
        f.write("not a directory")


def test_login_on_failing_store_is_503_without_cookie(tmp_path: t.Any) -> None:
    env, path = broken_env(tmp_path)
    user_id = env.add_user()
    client = env.app.test_client()
    break_directory(path)
    response = client.post(f"/login/{user_id}")
    assert response.status_code == 503
    assert "Service Unavailable" in response.get_data(as_text=True)
    assert pow_value(client) is None


def test_failed_routine_rotation_keeps_the_response_and_the_cookie(
    tmp_path: t.Any,
) -> None:
    """A routine rotation is housekeeping: before, its failure replaced the
    view's (committed) response with a 503, although the token was valid.
    """
    env, path = broken_env(tmp_path)
    client = env.app.test_client()
    env.login(client, env.add_user())
    before = pow_value(client)
    env.clock.advance(15 * 60 + 1)
    # Reads still work; the rotation cannot take its lock.
    break_directory(path + ".pow-locks")
    response = client.get("/me")
    assert response.status_code == 200
    assert response.text == "ada@example.com free"
    assert pow_value(client) == before


def test_request_when_the_cache_directory_is_gone_is_503_and_keeps_cookie(
    tmp_path: t.Any,
) -> None:
    """FileSystemCache reads a file it cannot open as a miss: without a
    check, a volume that went away would log everyone out for good.
    """
    env, path = broken_env(tmp_path)
    client = env.app.test_client()
    env.login(client, env.add_user())
    before = pow_value(client)
    moved = path + ".away"
    os.rename(path, moved)
    response = client.get("/me")
    assert response.status_code == 503
    assert pow_value(client) == before
    os.rename(moved, path)
    assert env.me(client) == "ada@example.com free"


def test_store_comes_back_and_same_cookie_works(tmp_path: t.Any) -> None:
    env, path = broken_env(tmp_path)
    client = env.app.test_client()
    env.login(client, env.add_user())
    env.clock.advance(15 * 60 + 1)
    locks = path + ".pow-locks"
    break_directory(locks)
    assert client.post("/logout").status_code == 503
    os.remove(locks)
    os.mkdir(locks)
    assert env.me(client) == "ada@example.com free"


def test_store_failure_after_the_view_uses_the_apps_error_handler(
    tmp_path: t.Any,
) -> None:
    env, path = broken_env(tmp_path)
    user_id = env.add_user()

    @env.app.errorhandler(503)
    def store_down(error: Exception) -> tuple[str, int]:
        return "our own 503 page", 503

    break_directory(path)
    response = env.app.test_client().post(f"/login/{user_id}")
    assert (response.status_code, response.get_data(as_text=True)) == (
        503,
        "our own 503 page",
    )


class FailingCache(SimpleCache):
    """A cache whose server went away: every operation raises, as a
    network client's would. (The stores that take this lock, in-process and
    Memcached, cannot be made to fail for real here.)
    """

    def add(self, *args: t.Any, **kwargs: t.Any) -> bool:
        raise ConnectionError("connection refused")

    def get(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        raise ConnectionError("connection refused")


def failing_store() -> CachelibSessionStore:
    return CachelibSessionStore(
        FailingCache(threshold=100_000), "pow", lambda: ["secret"]
    )


def test_cache_lock_failure_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        locks.lock(*failing_store()._locking, "session", "x", 0)


def test_cache_lock_release_failure_does_not_escape() -> None:
    locks.unlock(failing_store().cache, ("pow:lock:session:x", b"owner"))


def who_is_shown(env: Env) -> None:
    """The application's 503 page names the request's user, as error pages
    with a navigation bar do.
    """

    @env.app.errorhandler(503)
    def store_down(error: Exception) -> tuple[str, int]:
        who = current_user.email if current_user else "anonymous"
        return f"down for {who}", 503


def test_failed_login_renders_its_error_page_for_nobody(tmp_path: t.Any) -> None:
    env, path = broken_env(tmp_path)
    who_is_shown(env)
    user_id = env.add_user()
    break_directory(path)
    response = env.app.test_client().post(f"/login/{user_id}")
    assert (response.status_code, response.text) == (503, "down for anonymous")


def test_failed_logout_renders_its_error_page_for_the_user_still_in(
    tmp_path: t.Any,
) -> None:
    env, path = broken_env(tmp_path)
    who_is_shown(env)
    client = env.app.test_client()
    env.login(client, env.add_user())
    # Reads work; ending the session cannot take its lock.
    break_directory(path + ".pow-locks")
    response = client.post("/logout")
    assert (response.status_code, response.text) == (503, "down for ada@example.com")


# -- the log line of a failure --------------------------------------------------


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "flask_pow" and r.getMessage().startswith("The credentials store")
    ]


def closed_port_env(tmp_path: t.Any) -> tuple[Env, int]:
    """An application whose POW_REDIS_URL, with a password, names a port
    nothing listens on.
    """
    port = free_port()
    app, db, User = make_app(
        None,  # type: ignore[arg-type]
        f"sqlite:///{tmp_path / 'down.db'}",
        POW_CACHE=None,
        POW_REDIS_URL=f"redis://:secret@127.0.0.1:{port}/0",
    )
    env = Env(app, db, User, Pow(app, db=db, user_model=User))
    add_routes(env)
    return env, port


def test_redis_failure_log_names_the_server_and_the_error(
    tmp_path: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    env, port = closed_port_env(tmp_path)
    user_id = env.add_user()

    with caplog.at_level(logging.ERROR, "flask_pow"):
        assert env.app.test_client().post(f"/login/{user_id}").status_code == 503

    [line] = failure_lines(caplog)
    assert line.startswith(
        f"The credentials store (Redis at 127.0.0.1:{port}) failed: ConnectionError: "
    )
    assert f"connecting to 127.0.0.1:{port}" in line
    assert "Connection refused" in line


def test_redis_failure_log_holds_no_password(
    tmp_path: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    env, _ = closed_port_env(tmp_path)
    user_id = env.add_user()

    with caplog.at_level(logging.DEBUG):
        assert env.app.test_client().post(f"/login/{user_id}").status_code == 503

    assert failure_lines(caplog)
    assert "secret" not in caplog.text


@pytest.fixture
def stopping_server() -> c.Iterator[RedisServer]:
    """A redis-server of the test's own, which the test stops."""
    server = RedisServer()
    yield server
    server.close()


def test_redis_failure_log_holds_no_session_id(
    tmp_path: t.Any, stopping_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client = stopping_server.client(socket_timeout=1, socket_connect_timeout=1)

    try:
        env = make_pow_app(tmp_path, RedisCache(host=redis_client))
        add_routes(env)
        client = env.app.test_client()
        env.login(client, env.add_user())
        value = pow_value(client)
        assert value is not None
        session_id = value.split(".", 1)[0]
        stopping_server.stop()

        with caplog.at_level(logging.DEBUG):
            assert client.get("/me").status_code == 503
    finally:
        redis_client.close()

    assert failure_lines(caplog)
    assert session_id not in caplog.text


def test_file_store_failure_log_names_the_folder(
    tmp_path: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    env, path = broken_env(tmp_path)
    client = env.app.test_client()
    env.login(client, env.add_user())
    # The first login sweeps the folder in a thread of its own: once it is
    # done, the request's failure is the only one logged.
    join_sweeps()

    os.rename(path, path + ".away")

    with caplog.at_level(logging.ERROR, "flask_pow"):
        assert client.get("/me").status_code == 503

    assert failure_lines(caplog) == [
        f"The credentials store (FileSystemCache at {path}) failed:"
        " NotADirectoryError: no such folder"
    ]
