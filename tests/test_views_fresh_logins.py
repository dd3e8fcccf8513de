"""Fresh logins: ``fresh_login_required``, ``confirm_login``,
``login_fresh`` and ``POW_FRESHNESS``."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
from flask import Flask
from flask import get_flashed_messages

from flask_pow import confirm_login
from flask_pow import current_session
from flask_pow import fresh_login_required
from flask_pow import login_fresh
from flask_pow import login_user
from flask_pow import user_login_confirmed
from flask_pow import user_needs_refresh
from flask_pow.policy import Policy
from flask_pow.records import SessionRecord
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.sessions import pow_value

FRESHNESS = 600


def add_fresh_routes(env: Env) -> None:
    app, db, User = env.app, env.db, env.User

    @app.post("/login-remembered/<int:user_id>")
    def login_not_fresh(user_id: int) -> str:
        # What a login without a password (a remember-me cookie, a magic
        # link the app treats as weaker) asks for.
        login_user(db.session.get(User, user_id), fresh=False)
        return "ok"

    @app.get("/settings")
    @fresh_login_required
    def settings() -> str:
        return "settings"

    @app.get("/fresh")
    def fresh() -> dict[str, t.Any]:
        return {"fresh": login_fresh(), "session": bool(current_session)}

    @app.post("/confirm")
    def confirm() -> str:
        confirm_login()
        return "confirmed"

    @app.get("/reauthenticate")
    def reauthenticate() -> str:
        return "; ".join(str(message) for message in get_flashed_messages())


@pytest.fixture
def fresh_env(make_env: MakeEnv) -> Env:
    env = make_env(POW_FRESHNESS=FRESHNESS, POW_REFRESH_VIEW="reauthenticate")
    add_fresh_routes(env)
    return env


def test_a_login_is_fresh(fresh_env: Env, user_id: int) -> None:
    client = fresh_env.app.test_client()
    fresh_env.login(client, user_id)
    assert client.get("/fresh").json == {"fresh": True, "session": True}
    assert client.get("/settings").text == "settings"


def test_a_login_without_fresh_is_not(fresh_env: Env, user_id: int) -> None:
    client = fresh_env.app.test_client()
    client.post(f"/login-remembered/{user_id}")
    assert client.get("/fresh").json == {"fresh": False, "session": True}
    assert fresh_env.me(client) == "ada@example.com free"


def test_freshness_ends_after_pow_freshness(fresh_env: Env, user_id: int) -> None:
    client = fresh_env.app.test_client()
    fresh_env.login(client, user_id)
    fresh_env.clock.advance(FRESHNESS - 1)
    assert client.get("/fresh").json == {"fresh": True, "session": True}
    fresh_env.clock.advance(2)
    assert client.get("/fresh").json == {"fresh": False, "session": True}


def test_login_disabled_lets_a_stale_session_through(
    fresh_env: Env, user_id: int
) -> None:
    fresh_env.app.config["LOGIN_DISABLED"] = True
    client = fresh_env.app.test_client()
    client.post(f"/login-remembered/{user_id}")
    assert client.get("/settings").text == "settings"
    assert fresh_env.app.test_client().get("/settings").text == "settings"


def test_stale_session_is_sent_to_the_refresh_view_with_next(
    fresh_env: Env, user_id: int
) -> None:
    client = fresh_env.app.test_client()
    fresh_env.login(client, user_id)
    fresh_env.clock.advance(FRESHNESS + 1)
    sent: list[Flask] = []

    with user_needs_refresh.connected_to(lambda app: sent.append(app), fresh_env.app):
        response = client.get("/settings?tab=password")

    assert response.status_code == 302
    assert response.headers["Location"] == (
        "/reauthenticate?next=%2Fsettings%3Ftab%3Dpassword"
    )
    assert sent == [fresh_env.app]
    assert client.get("/reauthenticate").text == (
        "Please reauthenticate to access this page."
    )


def test_stale_session_asking_for_json_gets_a_401(fresh_env: Env, user_id: int) -> None:
    client = fresh_env.app.test_client()
    client.post(f"/login-remembered/{user_id}")
    response = client.get("/settings", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "reauthentication_required"


def test_stale_session_without_a_refresh_view_is_a_401(
    make_env: MakeEnv, user_id: int
) -> None:
    env = make_env()
    add_fresh_routes(env)
    client = env.app.test_client()
    client.post(f"/login-remembered/{user_id}")
    assert client.get("/settings").status_code == 401


def test_anonymous_request_is_treated_as_by_login_required(
    fresh_env: Env,
) -> None:
    client = fresh_env.app.test_client()
    response = client.get("/settings")
    assert response.status_code == 401


def test_confirm_login_makes_the_session_fresh_and_rotates_hard(
    fresh_env: Env, user_id: int
) -> None:
    client = fresh_env.app.test_client()
    fresh_env.login(client, user_id)
    fresh_env.clock.advance(FRESHNESS + 1)
    assert client.get("/settings").status_code == 302
    before = pow_value(client)
    stolen = fresh_env.app.test_client()
    stolen.set_cookie("session", t.cast(t.Any, client.get_cookie("session")).value)
    confirmed: list[Flask] = []

    with user_login_confirmed.connected_to(
        lambda app: confirmed.append(app), fresh_env.app
    ):
        assert client.post("/confirm").text == "confirmed"

    assert confirmed == [fresh_env.app]
    assert pow_value(client) != before
    assert client.get("/settings").text == "settings"
    # A privilege change: the token from before is dead at once.
    assert fresh_env.me(stolen) == "anonymous"

    with fresh_env.app.app_context():
        [info] = fresh_env.pow.credentials.sessions_by_key(f"User:{user_id}")

    assert info.fresh
    assert info.fresh_at == dt.datetime.fromtimestamp(
        fresh_env.clock(), dt.timezone.utc
    )


def test_confirm_login_without_a_session_is_an_error(
    fresh_env: Env,
) -> None:
    client = fresh_env.app.test_client()
    fresh_env.app.config["PROPAGATE_EXCEPTIONS"] = True

    with pytest.raises(RuntimeError, match="needs a logged-in session"):
        client.post("/confirm")


def test_request_loader_user_is_not_fresh(make_env: MakeEnv, user_id: int) -> None:
    env = make_env()
    add_fresh_routes(env)

    @env.pow.request_loader
    def by_header(request: t.Any) -> t.Any:
        if request.headers.get("X-Api-Key") == "k":
            return env.db.session.get(env.User, user_id)

        return None

    response = env.app.test_client().get("/settings", headers={"X-Api-Key": "k"})
    assert response.status_code == 401


def test_needs_refresh_handler_answers_instead(fresh_env: Env, user_id: int) -> None:
    client = fresh_env.app.test_client()

    @fresh_env.pow.needs_refresh_handler
    def custom() -> tuple[str, int]:
        return "confirm your password", 403

    client.post(f"/login-remembered/{user_id}")
    response = client.get("/settings")
    assert (response.status_code, response.text) == (403, "confirm your password")


def test_refresh_view_attribute_wins_over_the_setting(
    make_env: MakeEnv, user_id: int
) -> None:
    env = make_env(POW_REFRESH_VIEW="settings")
    add_fresh_routes(env)
    client = env.app.test_client()
    env.pow.refresh_view = "reauthenticate"
    client.post(f"/login-remembered/{user_id}")
    assert client.get("/settings").headers["Location"].startswith("/reauthenticate")


@pytest.mark.backends("filesystem", "redis")
def test_show_command_says_when_the_password_was_given(
    fresh_env: Env, user_id: int
) -> None:
    client = fresh_env.app.test_client()
    if fresh_env.pow.get_state(fresh_env.app).process_local:
        pytest.skip("the command cannot see an in-process store")

    fresh_env.login(client, user_id)
    [session_id] = [
        info.id
        for info in fresh_env.pow.get_state(fresh_env.app).credentials.sessions_by_key(
            f"User:{user_id}"
        )
    ]
    result = fresh_env.app.test_cli_runner().invoke(
        args=["pow", "sessions", "show", session_id]
    )
    assert "Password" in result.output


# -- the rule on its own --------------------------------------------------------


def record(**values: t.Any) -> SessionRecord:
    value = {
        "user": "User:1",
        "token": "0" * 64,
        "created_at": 1000.0,
        "inserted_at": 1000.0,
        "expires_at": 5000.0,
        "metadata": {},
        **values,
    }
    return SessionRecord.parse("s", value)


def test_a_record_from_before_freshness_was_kept_is_fresh_from_its_login() -> None:
    policy = Policy(1800, 30, freshness=600)
    assert policy.is_fresh(record(), 1500.0)
    assert not policy.is_fresh(record(), 1600.0)


def test_without_pow_freshness_a_proof_lasts_the_whole_session() -> None:
    policy = Policy(1800, 30)
    assert policy.is_fresh(record(fresh_at=1000.0), 10**9)
    assert not policy.is_fresh(record(fresh_at=None), 1000.0)


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, None), (600, 600), (dt.timedelta(hours=1), 3600)]
)
def test_pow_freshness_takes_seconds_or_a_timedelta(
    make_env: MakeEnv, value: t.Any, seconds: int | None
) -> None:
    env = make_env(POW_FRESHNESS=value)
    assert env.pow.get_state(env.app).config.freshness == seconds
