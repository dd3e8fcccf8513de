"""The production setup of the shared-context leak, for real: gunicorn sync
workers serving an application that pushed an application context at import
(tests/apps/context_app.py), over HTTP on a loopback port.

A sync worker serves every request in its main thread, where that context is
the current one, so Flask reuses it, and its ``g``, for every request the
worker handles. Request state kept in ``g`` then passes from one client to
the next: tests/test_lifecycle_shared_context.py shows it in process, these tests show
it where it happened. With one worker both clients of a test are always
served by the same process, so each check is deterministic. Every test runs
on a FileSystemCache and on Redis.
"""

from __future__ import annotations

import collections.abc as c
import pathlib
import uuid

import pytest

from tests.apps.stress_app import create_users
from tests.support.http import Browser
from tests.support.processes import ADA
from tests.support.processes import gunicorn

STORES = ["filesystem", "redis"]


@pytest.fixture(params=STORES)
def store_env(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> dict[str, str]:
    """The environment of tests.apps.context_app: a SQLite database with two
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
