"""Servers run as processes of their own (gunicorn serving
``tests.apps.context_app``): their environment, waiting until one answers,
stopping it.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import http.client
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests.support.servers import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


#: How long a server may take to answer its first request.
START_TIMEOUT = 30.0


#: The email of user 1 in the database of tests.apps.stress_app.create_users.
ADA = "user1@example.com"


def wait_until_serving(
    port: int, process: subprocess.Popen[bytes], log: pathlib.Path, path: str
) -> None:
    """Wait, at most START_TIMEOUT seconds, until ``GET path`` is answered.
    A server that exits or never answers fails the test with its output.
    """
    deadline = time.monotonic() + START_TIMEOUT

    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

            try:
                conn.request("GET", path)
                conn.getresponse().read()
                return
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            if process.poll() is not None:
                pytest.fail(
                    f"the server exited with {process.returncode}:\n"
                    + log.read_text(errors="replace")
                )

            if time.monotonic() > deadline:
                pytest.fail(
                    f"the server did not answer in {START_TIMEOUT:.0f} s:\n"
                    + log.read_text(errors="replace")
                )

            time.sleep(0.05)


def server_environ(env: dict[str, str]) -> dict[str, str]:
    """The environment of a server: this one, with ``env`` as the only
    ``POW_TEST_*`` variables (one left in the shell cannot pick the store).
    """
    kept = {k: v for k, v in os.environ.items() if not k.startswith("POW_TEST_")}
    return {**kept, **env}


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server, and kill it if it does not stop in time."""
    if process.poll() is None:
        process.terminate()

        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """End the reloader and the server it started: the whole process group
    of a process started with ``start_new_session=True``.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)

    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass

    # Whatever is left of the group (a server child slower than its parent).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)

    process.wait(timeout=15)


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], log: pathlib.Path, *, workers: int
) -> c.Iterator[int]:
    """gunicorn with ``workers`` sync workers serving tests.apps.context_app on a
    free loopback port; yields the port once it answers.
    """
    port = free_port()

    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--worker-class",
                "sync",
                "-w",
                str(workers),
                "-b",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                "5",
                "--log-level",
                "warning",
                "tests.apps.context_app:app",
            ],
            cwd=ROOT,
            env=server_environ(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    try:
        # The probe sends no cookie, so it changes nothing a test looks at.
        wait_until_serving(port, process, log, "/sessions")
        yield port
    finally:
        stop(process)
