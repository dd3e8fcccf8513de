"""Remember me: ``login_user(user, remember=True)`` issues a remember-me
credential in its own cookie; once the session has ended it logs the user
in again (not fresh), rotating its single-use token; parallel requests end
on one session; a token used again after its grace window ends everything
of the user. Parallel requests run on every backend.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import datetime as dt
import threading
import typing as t

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from flask_pow import current_session
from flask_pow import login_fresh
from flask_pow import login_remembered
from flask_pow import login_user
from flask_pow import logout_user
from flask_pow import remember_token_reused
from flask_pow import user_loaded_from_remember
from flask_pow.records import utc
from flask_pow.remember import PARALLEL_RESTORE_WINDOW
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.hostile import hostile
from tests.support.sessions import pow_value

TTL = 30 * 60
GRACE = 30
REMEMBER_TTL = 30 * 24 * 3600


def add_remember_routes(env: Env) -> None:
    @env.app.post("/login-remember/<int:user_id>")
    def login_remember(user_id: int) -> str:
        login_user(env.db.session.get(env.User, user_id), remember=True)
        return "ok"

    @env.app.post("/login-remember/<int:user_id>/for/<int:seconds>")
    def login_remember_for(user_id: int, seconds: int) -> str:
        user = env.db.session.get(env.User, user_id)
        login_user(user, remember=True, duration=dt.timedelta(seconds=seconds))
        return "ok"

    @env.app.get("/fresh")
    def fresh() -> str:
        return str(login_fresh())

    @env.app.get("/remembered")
    def remembered() -> str:
        return str(login_remembered())


@pytest.fixture
def renv(env: Env) -> Env:
    add_remember_routes(env)
    return env


def remembered(env: Env, user_id: int) -> FlaskClient:
    client = env.app.test_client()
    assert client.post(f"/login-remember/{user_id}").status_code == 200
    return client


def remembered_for(env: Env, user_id: int, seconds: int) -> FlaskClient:
    """A client logged in with ``remember=True`` and a ``duration``."""
    client = env.app.test_client()
    response = client.post(f"/login-remember/{user_id}/for/{seconds}")
    assert response.status_code == 200
    return client


def remember_header(response: TestResponse) -> str:
    """The response's ``Set-Cookie`` header for the remember-me cookie."""
    return next(
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("remember_token=")
    )


def remember_value(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("remember_token")
    return None if cookie is None else cookie.value


def drop_session(client: FlaskClient) -> None:
    """What a browser does when the session cookie ends (closed, or idle)."""
    client.delete_cookie("session")


def restored(env: Env, user_id: int) -> tuple[FlaskClient, str]:
    """A remembered client whose session ended and was restored, which
    replaced its token; and the token it presented to be restored.
    """
    client = remembered(env, user_id)
    used = t.cast(str, remember_value(client))
    drop_session(client)
    assert env.me(client) == "ada@example.com free"
    return client, used


def presenting(env: Env, value: str) -> FlaskClient:
    """Another client, with ``value`` as its remember-me cookie."""
    client = env.app.test_client()
    client.set_cookie("remember_token", value)
    return client


@contextlib.contextmanager
def token_reuses(env: Env) -> c.Iterator[list[dict[str, t.Any]]]:
    """What :data:`~flask_pow.remember_token_reused` sends in the block."""
    sent: list[dict[str, t.Any]] = []

    with remember_token_reused.connected_to(
        lambda app, **kwargs: sent.append(kwargs), env.app
    ):
        yield sent


def test_remember_login_sets_an_httponly_cookie_for_the_remember_ttl(
    renv: Env, user_id: int
) -> None:
    client = renv.app.test_client()
    response = client.post(f"/login-remember/{user_id}")
    header = next(
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("remember_token=")
    )
    assert "HttpOnly" in header
    assert f"Max-Age={REMEMBER_TTL}" in header


def test_remembered_device_is_logged_in_again_not_fresh(
    renv: Env, user_id: int
) -> None:
    client = remembered(renv, user_id)
    before = remember_value(client)
    drop_session(client)
    loaded: list[t.Any] = []

    with user_loaded_from_remember.connected_to(
        lambda app, user: loaded.append(user), renv.app
    ):
        assert renv.me(client) == "ada@example.com free"

    assert len(loaded) == 1
    assert client.get("/fresh").text == "False"
    # The token was used: the client holds a new one, same series.
    after = remember_value(client)
    assert after is not None and after != before
    assert after.split(".")[0] == t.cast(str, before).split(".")[0]
    assert pow_value(client) is not None


def test_remembered_device_is_one_device_in_the_listing(
    renv: Env, user_id: int
) -> None:
    client = remembered(renv, user_id)
    renv.clock.advance(TTL + 1)  # the session idles out
    assert renv.me(client) == "ada@example.com free"

    with renv.app.app_context():
        [info] = renv.pow.credentials.sessions_by_key(f"User:{user_id}")

    assert info.remembered_until is not None
    assert not info.fresh


def test_session_idled_out_is_restored(renv: Env, user_id: int) -> None:
    client = remembered(renv, user_id)
    renv.clock.advance(TTL + 1)
    assert renv.me(client) == "ada@example.com free"


def test_remember_credential_ends_at_its_ttl_however_used(
    renv: Env, user_id: int
) -> None:
    client = remembered(renv, user_id)

    for _ in range(3):
        renv.clock.advance(REMEMBER_TTL // 3 - 10)
        drop_session(client)
        assert renv.me(client) == "ada@example.com free"

    renv.clock.advance(60)
    drop_session(client)
    assert renv.me(client) == "anonymous"


def test_logout_ends_the_remember_credential_and_clears_the_cookie(
    renv: Env, user_id: int
) -> None:
    client = remembered(renv, user_id)
    value = remember_value(client)
    client.post("/logout")
    assert remember_value(client) is None
    # A copy of the cookie from before is dead on the server.
    client.set_cookie("remember_token", t.cast(str, value))
    assert renv.me(client) == "anonymous"


def test_revoking_the_device_ends_its_remember_credential(
    renv: Env, user_id: int
) -> None:
    client = remembered(renv, user_id)

    with renv.app.app_context():
        credentials = renv.pow.credentials
        [info] = credentials.sessions_by_key(f"User:{user_id}")
        assert credentials.delete(info.id)

    assert renv.me(client) == "anonymous"


def test_logout_everywhere_ends_remember_credentials(renv: Env, user_id: int) -> None:
    client = remembered(renv, user_id)

    with renv.app.app_context():
        assert renv.pow.credentials.delete_sessions_by_key(f"User:{user_id}") == 1

    assert renv.me(client) == "anonymous"


def test_logout_other_sessions_keeps_this_devices_credential(
    renv: Env, user_id: int
) -> None:
    from flask_pow import logout_other_sessions

    @renv.app.post("/others")
    def others() -> str:
        return str(logout_other_sessions())

    here, there = remembered(renv, user_id), remembered(renv, user_id)
    assert here.post("/others").text == "1"
    drop_session(here)
    drop_session(there)
    assert renv.me(here) == "ada@example.com free"
    assert renv.me(there) == "anonymous"


@pytest.mark.backends
def test_parallel_requests_end_on_one_session_and_one_token(
    renv: Env, user_id: int
) -> None:
    """Several tabs open at once after the session ended (Pow's #739): all
    are logged in, and end on the same session and remember token.
    """
    client = remembered(renv, user_id)
    drop_session(client)
    value = t.cast(str, remember_value(client))
    results: list[tuple[str, str | None, str | None]] = []
    start = threading.Barrier(8)

    def tab() -> None:
        own = renv.app.test_client()
        own.set_cookie("remember_token", value)
        start.wait()
        answer = renv.me(own)
        session_value = pow_value(own)
        results.append(
            (answer, session_value and session_value.split(".")[0], remember_value(own))
        )

    threads = [threading.Thread(target=tab) for _ in range(8)]

    for thread in threads:
        thread.start()

    for thread in threads:
        thread.join(timeout=30)

    assert [answer for answer, _, _ in results] == ["ada@example.com free"] * 8
    assert len({session_id for _, session_id, _ in results}) == 1
    assert len({token for _, _, token in results}) == 1

    with renv.app.app_context():
        assert len(renv.pow.credentials.sessions_by_key(f"User:{user_id}")) == 1


def test_a_used_token_inside_the_grace_window_follows(renv: Env, user_id: int) -> None:
    client, value = restored(renv, user_id)
    late = presenting(renv, value)
    renv.clock.advance(GRACE - 1)
    assert renv.me(late) == "ada@example.com free"
    assert remember_value(late) == remember_value(client)


def test_a_used_token_after_the_grace_window_ends_everything(
    renv: Env, user_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Two parties hold the credential: the thief's copy and the owner's
    both stop working, and so does every other session of the user.
    """
    other_device = renv.app.test_client()
    renv.login(other_device, user_id)
    client, stolen = restored(renv, user_id)
    renv.clock.advance(GRACE + 1)
    thief = presenting(renv, stolen)

    with token_reuses(renv) as reused:
        assert renv.me(thief) == "anonymous"

    assert reused == [
        {
            "user_key": f"User:{user_id}",
            "series": stolen.split(".")[0],
            "ip": "127.0.0.1",
        }
    ]
    assert renv.me(client) == "anonymous"
    assert renv.me(other_device) == "anonymous"
    assert any("used again after it was replaced" in r.message for r in caplog.records)


def test_login_without_remember_drops_an_old_remember_cookie(
    renv: Env, user_id: int
) -> None:
    client = remembered(renv, user_id)
    renv.login(client, user_id)
    assert remember_value(client) is None


@hostile
@given(value=st.text(max_size=300))
def test_any_remember_cookie_is_anonymous_and_left_alone(renv: Env, value: str) -> None:
    client = renv.app.test_client()
    printable = "".join(ch for ch in value if 0x20 < ord(ch) < 0x7F and ch not in ";,")
    client.set_cookie("remember_token", printable)
    response = client.get("/me")
    assert (response.status_code, response.text) == (200, "anonymous")
    assert "remember_token=" not in " ".join(response.headers.getlist("Set-Cookie"))


def test_remember_cookie_flags_follow_the_session_cookie_unless_set(
    make_env: MakeEnv, user_id: int
) -> None:
    env = make_env(
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Lax",
        POW_REMEMBER_COOKIE_SAMESITE="Strict",
        POW_REMEMBER_COOKIE_NAME="keep_me",
    )
    add_remember_routes(env)
    response = env.app.test_client().post(f"/login-remember/{user_id}")
    header = next(
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("keep_me=")
    )
    assert "Secure" in header
    assert "SameSite=Strict" in header


def test_flask_logins_remember_cookie_settings_shape_the_cookie(
    make_env: MakeEnv, user_id: int
) -> None:
    env = make_env(
        REMEMBER_COOKIE_NAME="keep_me",
        REMEMBER_COOKIE_DURATION=dt.timedelta(days=7),
        REMEMBER_COOKIE_DOMAIN="example.com",
        REMEMBER_COOKIE_PATH="/app",
        REMEMBER_COOKIE_SECURE=True,
        REMEMBER_COOKIE_SAMESITE="Strict",
    )
    add_remember_routes(env)
    response = env.app.test_client().post(f"/login-remember/{user_id}")
    header = next(
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("keep_me=")
    )
    flags = set(header.split("; ")[1:])
    assert flags >= {
        f"Max-Age={7 * 24 * 3600}",
        "Domain=example.com",
        "Path=/app",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    }


def test_remember_credential_is_not_a_session(renv: Env, user_id: int) -> None:
    """Listings, ``get`` and the count of a revoke-all show sessions only."""
    remembered(renv, user_id)

    with renv.app.app_context():
        credentials = renv.pow.credentials
        infos = credentials.sessions_by_key(f"User:{user_id}")
        assert len(infos) == 1
        assert all(credentials.get(info.id) is not None for info in infos)
        assert [user.email for user in credentials.users()] == ["ada@example.com"]


# -- the cap on a user's credentials (POW_MAX_SESSIONS) ------------------------


def capped(make_env: MakeEnv, cap: int) -> tuple[Env, int]:
    env = make_env(POW_MAX_SESSIONS=cap)
    add_remember_routes(env)
    return env, env.add_user()


def test_remember_logins_up_to_the_cap_never_lock_the_user_out(
    make_env: MakeEnv,
) -> None:
    """Remember credentials outlive sessions: ordered by expiry, every new
    login was the first to go once the cap was full of them.
    """
    env, user_id = capped(make_env, 4)

    for _ in range(4):
        remembered(env, user_id)
        env.clock.advance(60)

    plain = env.app.test_client()
    env.login(plain, user_id)
    assert env.me(plain) == "ada@example.com free"
    again = remembered(env, user_id)
    assert env.me(again) == "ada@example.com free"


def test_the_cap_ends_the_least_recently_used_device(make_env: MakeEnv) -> None:
    env, user_id = capped(make_env, 4)
    idle = remembered(env, user_id)
    env.clock.advance(60)
    used = remembered(env, user_id)
    env.clock.advance(60)
    drop_session(used)
    assert env.me(used) == "ada@example.com free"  # restored: used just now
    env.clock.advance(60)

    # Two logins past the cap: both of the idle device's credentials go.
    for _ in range(2):
        env.login(env.app.test_client(), user_id)
        env.clock.advance(60)

    assert env.me(used) == "ada@example.com free"
    assert env.me(idle) == "anonymous"


def test_a_cap_of_one_keeps_the_login_just_made(make_env: MakeEnv) -> None:
    env, user_id = capped(make_env, 1)
    first = remembered(env, user_id)
    env.clock.advance(60)
    second = remembered(env, user_id)
    assert env.me(second) == "ada@example.com free"
    assert env.me(first) == "anonymous"


# -- theft: a replaced token used again ----------------------------------------


def test_a_token_replaced_twice_and_used_again_ends_everything(
    renv: Env, user_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The thief restores twice; the owner's token is then two replacements
    old. Only the one before the current token was recognised: the owner
    was logged out silently and the thief stayed in.
    """
    owner = remembered(renv, user_id)
    thief = renv.app.test_client()
    thief.set_cookie("remember_token", t.cast(str, remember_value(owner)))

    for _ in range(2):
        assert renv.me(thief) == "ada@example.com free"  # a restore
        drop_session(thief)
        renv.clock.advance(GRACE + 1)

    with token_reuses(renv) as reused:
        drop_session(owner)
        assert renv.me(owner) == "anonymous"

    assert [event["user_key"] for event in reused] == [f"User:{user_id}"]
    assert renv.me(thief) == "anonymous"
    assert any("used again after it was replaced" in r.message for r in caplog.records)


def test_a_token_used_again_after_its_series_ended_is_no_theft(
    renv: Env, user_id: int
) -> None:
    client = remembered(renv, user_id)
    stolen = t.cast(str, remember_value(client))
    renv.clock.advance(REMEMBER_TTL + 1)
    late = presenting(renv, stolen)

    with token_reuses(renv) as reused:
        assert renv.me(late) == "anonymous"

    assert reused == []


# -- listing a remembered device whose session ended ---------------------------


def test_remembered_device_whose_session_idled_out_is_listed(
    renv: Env, user_id: int
) -> None:
    remembered(renv, user_id)
    renv.clock.advance(TTL + 1)

    with renv.app.app_context():
        [info] = renv.pow.credentials.sessions_by_key(f"User:{user_id}")

    assert info.kind == "remember"
    assert info.remembered_until == info.expires_at
    assert info.metadata["ip"] == "127.0.0.1"


def test_remembered_device_is_ended_by_the_id_its_listing_shows(
    renv: Env, user_id: int
) -> None:
    client = remembered(renv, user_id)
    renv.clock.advance(TTL + 1)

    with renv.app.app_context():
        credentials = renv.pow.credentials
        [info] = credentials.sessions_by_key(f"User:{user_id}")
        assert credentials.get(info.id) == info
        assert credentials.delete(info.id)
        assert credentials.sessions_by_key(f"User:{user_id}") == []

    assert renv.me(client) == "anonymous"


def test_logout_everywhere_counts_a_remembered_device_once(
    renv: Env, user_id: int
) -> None:
    idle = remembered(renv, user_id)
    renv.clock.advance(TTL + 1)
    remembered(renv, user_id)  # a second device, with a live session

    with renv.app.app_context():
        credentials = renv.pow.credentials
        assert len(credentials.sessions_by_key(f"User:{user_id}")) == 2
        assert credentials.delete_sessions_by_key(f"User:{user_id}") == 2

    assert renv.me(idle) == "anonymous"


def test_current_session_knows_the_device_is_remembered(
    renv: Env, user_id: int
) -> None:
    """In the login's request, and in every request after it, as the
    listing says (only the listings said it).
    """

    @renv.app.get("/remembered-until")
    def remembered_until() -> str:
        return str(current_session.remembered_until if current_session else None)

    @renv.app.post("/login-remember-and-tell/<int:user_id>")
    def login_and_tell(user_id: int) -> str:
        login_user(renv.db.session.get(renv.User, user_id), remember=True)
        return remembered_until()

    client = renv.app.test_client()
    during = client.post(f"/login-remember-and-tell/{user_id}").text

    with renv.app.app_context():
        [info] = renv.pow.credentials.sessions_by_key(f"User:{user_id}")

    assert during == str(info.remembered_until) != "None"
    assert client.get("/remembered-until").text == during
    drop_session(client)
    assert client.get("/remembered-until").text == during  # restored


# -- login_user's duration -------------------------------------------------------

WEEK = 7 * 24 * 3600


def test_duration_sets_the_remember_cookies_max_age(renv: Env, user_id: int) -> None:
    response = renv.app.test_client().post(f"/login-remember/{user_id}/for/{WEEK}")
    assert f"Max-Age={WEEK};" in remember_header(response)


def test_duration_sets_the_credentials_expiry(renv: Env, user_id: int) -> None:
    login_at = renv.clock.now
    remembered_for(renv, user_id, WEEK)

    with renv.app.app_context():
        [info] = renv.pow.credentials.sessions_by_key(f"User:{user_id}")

    assert info.remembered_until == utc(login_at + WEEK)


def test_duration_restores_a_session_within_it(renv: Env, user_id: int) -> None:
    client = remembered_for(renv, user_id, WEEK)
    renv.clock.advance(WEEK - 60)
    drop_session(client)
    assert renv.me(client) == "ada@example.com free"


def test_duration_shorter_than_the_remember_ttl_ends_the_credential(
    renv: Env, user_id: int
) -> None:
    client = remembered_for(renv, user_id, WEEK)
    renv.clock.advance(WEEK)
    drop_session(client)
    assert renv.me(client) == "anonymous"


def test_duration_longer_than_the_remember_ttl_lasts_however_used(
    renv: Env, user_id: int
) -> None:
    """Each restore replaces the credential's token and keeps its expiry:
    the login's duration, not ``POW_REMEMBER_TTL`` from the login.
    """
    duration = 2 * REMEMBER_TTL
    client = remembered_for(renv, user_id, duration)

    for _ in range(3):
        renv.clock.advance(duration // 3 - 10)
        drop_session(client)
        assert renv.me(client) == "ada@example.com free"

    renv.clock.advance(60)
    drop_session(client)
    assert renv.me(client) == "anonymous"


def test_restore_sets_the_cookie_for_the_rest_of_the_duration(
    renv: Env, user_id: int
) -> None:
    client = remembered_for(renv, user_id, WEEK)
    renv.clock.advance(24 * 3600)
    drop_session(client)
    assert f"Max-Age={WEEK - 24 * 3600};" in remember_header(client.get("/me"))


def test_restored_session_is_remembered_until_the_durations_end(
    renv: Env, user_id: int
) -> None:
    login_at = renv.clock.now
    client = remembered_for(renv, user_id, WEEK)
    renv.clock.advance(TTL + 1)  # the session idles out
    assert renv.me(client) == "ada@example.com free"

    with renv.app.app_context():
        [info] = renv.pow.credentials.sessions_by_key(f"User:{user_id}")

    assert info.kind == "session"
    assert info.remembered_until == utc(login_at + WEEK)


@pytest.mark.parametrize(
    ("duration", "error", "message"),
    [
        (
            dt.timedelta(0),
            ValueError,
            "login_user()'s duration must be positive, got datetime.timedelta(0).",
        ),
        (
            dt.timedelta(seconds=-1),
            ValueError,
            "login_user()'s duration must be positive, got"
            " datetime.timedelta(days=-1, seconds=86399).",
        ),
        (
            3600,
            TypeError,
            "login_user()'s duration must be a datetime.timedelta, such as"
            " timedelta(days=14), or None for POW_REMEMBER_TTL; got 3600.",
        ),
        (
            "14d",
            TypeError,
            "login_user()'s duration must be a datetime.timedelta, such as"
            " timedelta(days=14), or None for POW_REMEMBER_TTL; got '14d'.",
        ),
    ],
)
def test_bad_duration_raises_naming_it(
    env: Env, user_id: int, duration: object, error: type[Exception], message: str
) -> None:
    with env.app.test_request_context():
        user = env.db.session.get(env.User, user_id)

        with pytest.raises(error) as info:
            login_user(user, remember=True, duration=duration)  # type: ignore[arg-type]

    assert str(info.value) == message


def test_bad_duration_raises_without_remember_too(env: Env, user_id: int) -> None:
    with env.app.test_request_context():
        user = env.db.session.get(env.User, user_id)

        with pytest.raises(TypeError, match="duration must be a datetime.timedelta"):
            login_user(user, duration=3600)  # type: ignore[arg-type]


# -- login_remembered() ----------------------------------------------------------


def test_login_remembered_after_a_remember_login(renv: Env, user_id: int) -> None:
    client = remembered(renv, user_id)
    assert client.get("/remembered").text == "True"


def test_login_remembered_in_the_request_of_the_login(renv: Env, user_id: int) -> None:
    @renv.app.post("/login-remember-and-ask/<int:user_id>")
    def login_and_ask(user_id: int) -> str:
        login_user(renv.db.session.get(renv.User, user_id), remember=True)
        return str(login_remembered())

    client = renv.app.test_client()
    assert client.post(f"/login-remember-and-ask/{user_id}").text == "True"


def test_login_remembered_in_the_request_that_restored_the_session(
    renv: Env, user_id: int
) -> None:
    client = remembered(renv, user_id)
    drop_session(client)
    assert client.get("/remembered").text == "True"


def test_login_not_remembered_without_remember(renv: Env, user_id: int) -> None:
    client = renv.app.test_client()
    renv.login(client, user_id)
    assert client.get("/remembered").text == "False"


def test_login_not_remembered_when_anonymous(renv: Env) -> None:
    assert renv.app.test_client().get("/remembered").text == "False"


def test_login_not_remembered_after_logout_in_the_same_request(
    renv: Env, user_id: int
) -> None:
    @renv.app.post("/logout-and-ask")
    def logout_and_ask() -> str:
        logout_user()
        return str(login_remembered())

    client = remembered(renv, user_id)
    assert client.post("/logout-and-ask").text == "False"


def test_login_not_remembered_without_the_cookie(renv: Env, user_id: int) -> None:
    client = remembered(renv, user_id)
    client.delete_cookie("remember_token")
    assert client.get("/remembered").text == "False"


def test_login_not_remembered_once_the_credential_ran_out(
    renv: Env, user_id: int
) -> None:
    client = remembered_for(renv, user_id, 60)
    renv.clock.advance(61)  # the session lives on
    assert renv.me(client) == "ada@example.com free"
    assert client.get("/remembered").text == "False"


@pytest.fixture
def no_grace(make_env: MakeEnv) -> Env:
    env = make_env(POW_ROTATION_GRACE=0)
    add_remember_routes(env)
    return env


def test_without_a_grace_window_a_parallel_restore_is_anonymous_not_theft(
    no_grace: Env,
) -> None:
    """Tabs reopened at once present one token; the first restore replaces
    it, and with no grace window the others cannot follow. They are
    anonymous, and nobody is logged out for it.
    """
    user_id = no_grace.add_user()
    other_device = no_grace.app.test_client()
    no_grace.login(other_device, user_id)
    client, value = restored(no_grace, user_id)
    parallel = presenting(no_grace, value)
    no_grace.clock.advance(PARALLEL_RESTORE_WINDOW - 1)

    with token_reuses(no_grace) as reused:
        assert no_grace.me(parallel) == "anonymous"

    assert reused == []
    assert no_grace.me(client) == "ada@example.com free"
    assert no_grace.me(other_device) == "ada@example.com free"


def test_without_a_grace_window_a_token_used_again_later_ends_everything(
    no_grace: Env,
) -> None:
    client, stolen = restored(no_grace, no_grace.add_user())
    no_grace.clock.advance(PARALLEL_RESTORE_WINDOW + 1)
    assert no_grace.me(presenting(no_grace, stolen)) == "anonymous"
    assert no_grace.me(client) == "anonymous"
