"""``flask run --debug``, the way a developer runs an application: the
reloader restarts the server when a source file changes, and sessions in a
FileSystemCache outlive the restart. The application is tests/apps/reload_app.py,
served on a free loopback port.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import http.client
import os
import pathlib
import subprocess
import sys
import time

import pytest

from tests.apps.stress_app import create_users
from tests.support.http import Browser
from tests.support.processes import ADA
from tests.support.processes import ROOT
from tests.support.processes import START_TIMEOUT
from tests.support.processes import server_environ
from tests.support.processes import stop_group
from tests.support.processes import wait_until_serving
from tests.support.servers import free_port

#: The module tests/apps/reload_app.py imports, written by each test in a
#: directory of its own on PYTHONPATH; editing it restarts the server.
MARKER = "pow_reload_marker"


def write_marker(directory: pathlib.Path, version: str) -> pathlib.Path:
    path = directory / f"{MARKER}.py"
    path.write_text(f"VERSION = {version!r}\n")
    return path


@contextlib.contextmanager
def flask_run(tmp_path: pathlib.Path, *args: str, **env: str) -> c.Iterator[int]:
    """``python -m flask --app tests.apps.reload_app run ARGS`` on a free loopback
    port, with a new database and cache in ``tmp_path`` and the marker
    module at version "one"; yields the port once the server answers.
    """
    database = tmp_path / "app.db"
    create_users(str(database), 2)
    watched = tmp_path / "watched"
    watched.mkdir()
    write_marker(watched, "one")
    port = free_port()
    log = tmp_path / "flask.log"
    python_path = [str(watched), *filter(None, [os.environ.get("PYTHONPATH")])]

    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "tests.apps.reload_app",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            cwd=ROOT,
            env={
                **server_environ(
                    {
                        "POW_TEST_DATABASE": str(database),
                        "POW_TEST_CACHE_DIR": str(tmp_path / "cache"),
                        "POW_TEST_MARKER_MODULE": MARKER,
                        **env,
                    }
                ),
                "PYTHONPATH": os.pathsep.join(python_path),
            },
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own process group: the reloader runs the server as a child,
            # and both must go at the end.
            start_new_session=True,
        )

    try:
        wait_until_serving(port, process, log, "/version")
        yield port
    finally:
        stop_group(process)


def version(port: int) -> str | None:
    """What ``/version`` answers, or None while the server cannot answer."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

        try:
            conn.request("GET", "/version")
            response = conn.getresponse()
            body = response.read().decode()
            return body if response.status == 200 else None
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return None


@pytest.mark.slow
def test_login_survives_a_reload(tmp_path: pathlib.Path) -> None:
    """A client logged in before the reloader restarts the server (a source
    file was edited) is still logged in with the same cookie afterwards:
    the session is in the FileSystemCache, not in the old process.
    """
    with flask_run(tmp_path, "--debug") as port:
        client = Browser(port)
        client.login()
        assert client.me() == ADA
        cookies = dict(client.cookies)

        marker = write_marker(tmp_path / "watched", "two")
        # The reloader compares modification times; make the edit newer than
        # anything it saw, whatever the file system's time resolution.
        later = time.time() + 2
        os.utime(marker, (later, later))
        deadline = time.monotonic() + START_TIMEOUT

        while version(port) != "two":
            assert time.monotonic() < deadline, (
                "the reloader did not restart the server:\n"
                + (tmp_path / "flask.log").read_text(errors="replace")
            )
            time.sleep(0.1)

        assert client.cookies == cookies
        assert client.me() == ADA
        assert client.post("/logout") == "was in"


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--debug",), id="threaded"),
        # Without the reloader and without threads, the development server
        # serves every request in the main thread, where the context was
        # pushed: the case of a gunicorn sync worker. (The reloader serves
        # from a thread of its own, so with it every request has a context
        # of its own even without threads.)
        pytest.param(("--debug", "--no-reload", "--without-threads"), id="main-thread"),
    ],
)
def test_stranger_is_anonymous_with_a_context_pushed_at_import(
    tmp_path: pathlib.Path, args: tuple[str, ...]
) -> None:
    """Under ``flask run --debug``, with an application context pushed at
    import, a client without a cookie is anonymous and given no cookie after
    another client logged in, and its logout leaves the other one logged in:
    with the threaded development server, and with one serving every request
    in its main thread.
    """
    with flask_run(tmp_path, *args, POW_TEST_PUSH_CONTEXT="1") as port:
        owner, stranger = Browser(port), Browser(port)
        owner.login()
        assert owner.me() == ADA
        answer = stranger.send("GET", "/me")
        assert (answer.body, answer.set_cookies) == ("anonymous", [])
        assert stranger.post("/logout") == "was out"
        assert owner.me() == ADA
