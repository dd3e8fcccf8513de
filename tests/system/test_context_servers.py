"""The production setup of the shared-context leak, for real: gunicorn sync
workers serving an application that pushed an application context at import
(tests/context_app.py), over HTTP on a loopback port.

A sync worker serves every request in its main thread, where that context is
the current one, so Flask reuses it, and its ``g``, for every request the
worker handles. Request state kept in ``g`` then passes from one client to
the next: tests/test_request_state.py shows it in process, these tests show
it where it happened. With one worker both clients of a test are always
served by the same process, so each check is deterministic. Every test runs
on a FileSystemCache and on Redis.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import dataclasses
import http.client
import http.cookies
import os
import pathlib
import subprocess
import sys
import time
import uuid

import pytest

from .servers import free_port
from .stress_app import create_users

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: How long a server may take to answer its first request.
START_TIMEOUT = 30.0
#: The email of user 1 in the database of tests.stress_app.create_users.
ADA = "user1@example.com"
STORES = ["filesystem", "redis"]


@dataclasses.dataclass
class Answer:
    status: int
    body: str
    #: Every Set-Cookie header of the response, as sent.
    set_cookies: list[str]


class Browser:
    """One client with a cookie jar of its own, talking to one loopback port.
    Cookies are taken from every answer and deleted as a browser would
    (``Max-Age=0``), so a client holds exactly what the server gave it.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def send(self, method: str, path: str) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

        try:
            headers = {}

            if self.cookies:
                headers["Cookie"] = "; ".join(
                    f"{name}={value}" for name, value in self.cookies.items()
                )

            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            body = response.read().decode()
            set_cookies = response.headers.get_all("Set-Cookie") or []
        finally:
            conn.close()

        for header in set_cookies:
            jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            jar.load(header)

            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

        return Answer(response.status, body, set_cookies)

    def get(self, path: str) -> str:
        answer = self.send("GET", path)
        assert answer.status == 200, answer
        return answer.body

    def post(self, path: str) -> str:
        answer = self.send("POST", path)
        assert answer.status == 200, answer
        return answer.body

    def me(self) -> str:
        return self.get("/me")

    def login(self, user_id: int = 1) -> None:
        assert self.post(f"/login/{user_id}") == "ok"
        assert self.cookies, "the login gave no cookie"


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


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], log: pathlib.Path, *, workers: int
) -> c.Iterator[int]:
    """gunicorn with ``workers`` sync workers serving tests.context_app on a
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
                "tests.context_app:app",
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


@pytest.fixture(params=STORES)
def store_env(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> dict[str, str]:
    """The environment of tests.context_app: a SQLite database with two
    users, and a FileSystemCache directory or a Redis URL with a namespace
    of its own (the tests share the Redis server, never its keys).
    """
    database = tmp_path / "app.db"
    create_users(str(database), 2)
    env = {"POW_TEST_DATABASE": str(database)}

    if request.param == "filesystem":
        env["POW_TEST_CACHE_DIR"] = str(tmp_path / "cache")
    else:
        server = request.getfixturevalue("redis_server")
        env["POW_TEST_REDIS_URL"] = f"redis://127.0.0.1:{server.port}/0"
        env["POW_TEST_NAMESPACE"] = f"test-{uuid.uuid4().hex[:12]}"

    return env


@pytest.fixture
def one_worker(store_env: dict[str, str], tmp_path: pathlib.Path) -> c.Iterator[int]:
    """The port of gunicorn with one sync worker: every request of a test,
    from every client, is served by the same process in the same context.
    """
    with gunicorn(store_env, tmp_path / "gunicorn.log", workers=1) as port:
        yield port


def session_count(port: int) -> int:
    """User 1's stored sessions, as the server lists them."""
    return int(Browser(port).get("/sessions"))


@pytest.mark.slow
def test_stranger_is_anonymous_after_a_login(one_worker: int) -> None:
    """A client without a cookie, served by the worker just after someone
    logged in there, is anonymous (it was answered as that user).
    """
    owner, stranger = Browser(one_worker), Browser(one_worker)
    owner.login()
    assert owner.me() == ADA
    assert stranger.me() == "anonymous"


@pytest.mark.slow
def test_stranger_is_given_no_cookie_after_a_login(one_worker: int) -> None:
    """A client without a cookie is given no cookie at all by the worker a
    user just logged in on (it was given a valid session cookie of theirs).
    """
    owner, stranger = Browser(one_worker), Browser(one_worker)
    owner.login()
    answer = stranger.send("GET", "/me")
    assert answer.set_cookies == []
    assert stranger.cookies == {}


@pytest.mark.slow
def test_one_login_stores_one_session(one_worker: int) -> None:
    """One login, followed by requests of its client and of another one on
    the same worker, stores exactly one session (the login was stored again
    by later requests).
    """
    owner, stranger = Browser(one_worker), Browser(one_worker)
    owner.login()
    owner.me()
    stranger.me()
    owner.me()
    assert session_count(one_worker) == 1


@pytest.mark.slow
def test_strangers_logout_ends_no_session(one_worker: int) -> None:
    """A client that is not logged in logs out of nothing: it is told so,
    and the user logged in on the same worker stays logged in (another
    client's logout ended their session).
    """
    owner, stranger = Browser(one_worker), Browser(one_worker)
    owner.login()
    assert stranger.post("/logout") == "was out"
    assert owner.me() == ADA
    assert session_count(one_worker) == 1


@pytest.mark.slow
def test_logout_ends_exactly_its_own_session(one_worker: int) -> None:
    """A user logged in on two clients (a laptop and a phone) logs out on
    one: exactly that session ends, the other client stays logged in, the
    cookie the first one held is anonymous when sent again, and the second
    logout leaves no session. (A logout was replayed on the worker's next
    request, whoever sent it, and the login before it stored again.)
    """
    laptop, phone = Browser(one_worker), Browser(one_worker)
    laptop.login()
    phone.login()
    assert session_count(one_worker) == 2
    laptop_cookies = dict(laptop.cookies)

    assert laptop.post("/logout") == "was in"
    assert session_count(one_worker) == 1
    assert phone.me() == ADA

    replay = Browser(one_worker)
    replay.cookies = laptop_cookies
    assert replay.me() == "anonymous"

    assert phone.post("/logout") == "was in"
    assert session_count(one_worker) == 0


#: Requests of each client in the test with several workers.
ROUNDS = 20


@pytest.mark.slow
def test_clients_keep_their_identity_across_workers(
    store_env: dict[str, str], tmp_path: pathlib.Path
) -> None:
    """With three sync workers, a logged-in client stays logged in for 20
    requests (no random logouts) and a client without a cookie stays
    anonymous for 20 requests, their requests taking turns.
    """
    with gunicorn(store_env, tmp_path / "gunicorn.log", workers=3) as port:
        owner, stranger = Browser(port), Browser(port)
        owner.login()
        seen: list[tuple[str, str]] = []

        for _ in range(ROUNDS):
            seen.append((owner.me(), stranger.me()))

        assert seen == [(ADA, "anonymous")] * ROUNDS
        assert stranger.cookies == {}
        assert session_count(port) == 1
