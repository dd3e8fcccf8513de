"""Security properties, checked end to end. (No token in any log line is
checked around every test, in conftest.py.)
"""

from __future__ import annotations

import base64
import threading

import pytest
from cachelib import SimpleCache
from flask.testing import FlaskClient
from flask_session import Session

from flask_pow import records
from tests.support import raw
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.http import request
from tests.support.sessions import pow_value
from tests.support.sessions import set_value


def test_tokens_are_256_random_bits() -> None:
    tokens = [records.new_token() for _ in range(1000)]
    decoded = [base64.urlsafe_b64decode(token + "=") for token in tokens]
    assert {len(token) for token in tokens} == {43}
    assert {len(raw) for raw in decoded} == {32}
    assert len(set(tokens)) == 1000
    # Every bit is set in about half the tokens: 1000 draws, 6 standard
    # deviations either way.
    counts = [
        sum((raw[bit // 8] >> (bit % 8)) & 1 for raw in decoded) for bit in range(256)
    ]
    assert 400 < min(counts) and max(counts) < 600


def test_session_ids_never_start_with_a_dash() -> None:
    assert not any(records.new_session_id().startswith("-") for _ in range(5000))


def test_session_ids_are_128_random_bits() -> None:
    ids = {records.new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert {len(base64.urlsafe_b64decode(sid + "==")) for sid in ids} == {16}


def test_server_side_session_from_before_login_is_dead_after(
    make_env: MakeEnv,
) -> None:
    """Fixation with a server-side Flask session: the id a visitor had (or
    was given by an attacker) before logging in opens nothing after.
    """
    env = make_env(
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=SimpleCache(threshold=100_000),
        SESSION_SERIALIZATION_FORMAT="json",
    )
    Session(env.app)

    @env.app.get("/visit")
    def visit() -> str:
        from flask import session

        session["visited"] = True
        return "ok"

    client = env.app.test_client()
    client.get("/visit")
    planted = client.get_cookie("session")
    assert planted is not None
    env.login(client, env.add_user())
    assert env.me(client) == "ada@example.com free"
    attacker = env.app.test_client()
    attacker.set_cookie("session", planted.value)
    assert env.me(attacker) == "anonymous"


def test_revoked_session_replay_is_anonymous(env: Env, logged_in: FlaskClient) -> None:
    stolen = pow_value(logged_in)

    with env.app.app_context():
        user = env.db.session.get(env.User, 1)
        [info] = env.pow.credentials.sessions(user)
        assert env.pow.credentials.delete(info.id)

    thief = env.app.test_client()

    with thief.session_transaction() as session:
        session["pow_auth"] = stolen

    assert env.me(thief) == "anonymous"
    assert env.me(logged_in) == "anonymous"


def test_excluded_columns_never_reach_the_store(env: Env, user_id: int) -> None:
    with env.app.app_context():
        user = env.db.session.get(env.User, user_id)
        assert user is not None
        user.api_token = "tok-do-not-cache"
        env.db.session.commit()

    client = env.app.test_client()
    env.login(client, user_id)
    env.clock.advance(15 * 60 + 1)
    env.me(client)

    with env.app.app_context():
        user = env.db.session.get(env.User, user_id)
        env.pow.credentials.update_user(user)

    cache = env.pow.get_state(env.app).config.cache
    blob = b"".join(v for item in raw.items(cache) for v in item.values)
    assert b"ada@example.com" in blob
    assert b"secret-hash" not in blob
    assert b"tok-do-not-cache" not in blob


def test_logout_then_old_cookie_from_before_rotation_is_anonymous(
    env: Env, logged_in: FlaskClient
) -> None:
    old = pow_value(logged_in)
    env.clock.advance(15 * 60 + 1)
    env.me(logged_in)
    logged_in.post("/logout")
    set_value(logged_in, old)
    assert env.me(logged_in) == "anonymous"


@pytest.mark.backends
def test_parallel_logins_and_logouts_leave_a_consistent_index(
    env: Env, user_id: int
) -> None:
    """Many logins and logouts of one user at once, through a real threaded
    server: afterwards the index lists exactly the sessions still in use.
    """
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, env.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = ("127.0.0.1", server.server_port)

    try:
        cookies: list[str | None] = [None] * 24

        def login(n: int) -> None:
            cookies[n] = request(address, "POST", f"/login/{user_id}", None)[1]

        def logout(n: int) -> None:
            request(address, "POST", "/logout", cookies[n])

        run_all([lambda n=n: login(n) for n in range(12)])
        # Half of those log out while twelve more log in.
        run_all(
            [lambda n=n: logout(n) for n in range(6)]
            + [lambda n=n: login(n) for n in range(12, 24)]
        )
        live = cookies[6:]
        answers = [request(address, "GET", "/me", cookie)[0] for cookie in live]
        gone = [request(address, "GET", "/me", cookie)[0] for cookie in cookies[:6]]
    finally:
        server.shutdown()
        thread.join(timeout=10)

    assert set(answers) == {"ada@example.com free"}
    assert set(gone) == {"anonymous"}

    with env.app.app_context():
        user = env.db.session.get(env.User, user_id)
        listed = env.pow.credentials.sessions(user)

    assert len(listed) == len(live) == 18
    assert len({info.id for info in listed}) == 18


def run_all(actions: list[object]) -> None:
    barrier = threading.Barrier(len(actions))

    def go(action: object) -> None:
        barrier.wait(timeout=30)
        action()  # type: ignore[operator]

    threads = [threading.Thread(target=go, args=(a,)) for a in actions]

    for thread in threads:
        thread.start()

    for thread in threads:
        thread.join(timeout=60)


def test_a_signer_that_holds_no_verified_values_verifies_each_read() -> None:
    from flask import Flask

    from flask_pow.signing import TokenSigner

    app = Flask(__name__)
    app.secret_key = "test secret key"
    signer = TokenSigner()
    signer.max_verified = 0

    with app.app_context():
        value = signer.sign("a" * 22, "b" * 43)
        assert signer.read(value) == signer.read(value) == ("a" * 22, "b" * 43, False)
        assert signer.read("b" + value[1:]) is None
        assert signer._signers().verified == {}
