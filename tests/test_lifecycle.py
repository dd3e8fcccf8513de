"""The request lifecycle: login, loading the user from the cache, logout.
On SimpleCache; what the store decides is tested on every one (the
``backends`` marker, ``conftest.BACKENDS``).
"""

from __future__ import annotations

import typing as t

import pytest
from flask import g
from flask.testing import FlaskClient

from flask_pow import current_session
from flask_pow import current_user
from flask_pow import login_fresh
from flask_pow import login_user
from flask_pow import logout_user
from flask_pow import session_ended
from flask_pow import session_rotated
from flask_pow import user_logged_in
from flask_pow import user_logged_out
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.env import QueryCounter
from tests.support.sessions import pow_value


def test_anonymous_request_has_no_user(env: Env, client: FlaskClient) -> None:
    assert env.me(client) == "anonymous"


def test_login_then_request_sees_user(env: Env, logged_in: FlaskClient) -> None:
    """T4: a stored session assigns the user."""
    assert env.me(logged_in) == "ada@example.com free"


def test_user_is_current_in_login_request(env: Env, client: FlaskClient) -> None:
    user_id = env.add_user()

    @env.app.post("/login-and-show")
    def login_and_show() -> str:
        login_user(env.db.session.get(env.User, user_id))
        return str(g.current_user.email)

    assert client.post("/login-and-show").get_data(as_text=True) == "ada@example.com"


def test_authenticated_requests_run_no_sql(
    env: Env, logged_in: FlaskClient, queries: QueryCounter
) -> None:
    for _ in range(50):
        assert env.me(logged_in) == "ada@example.com free"

    assert queries.statements == []


def test_current_user_proxy_follows_g(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.get("/proxy")
    def proxy() -> str:
        return f"{bool(current_user)} {current_user.email}"

    env.login(client, user_id)
    assert client.get("/proxy").get_data(as_text=True) == "True ada@example.com"


def test_current_user_proxy_is_falsy_when_anonymous(
    env: Env, client: FlaskClient
) -> None:
    @env.app.get("/proxy")
    def proxy() -> str:
        return str(bool(current_user))

    assert client.get("/proxy").get_data(as_text=True) == "False"


def test_current_user_in_templates(env: Env, client: FlaskClient, user_id: int) -> None:
    from flask import render_template_string

    @env.app.get("/tpl")
    def tpl() -> str:
        return render_template_string("{{ current_user.name }}")

    env.login(client, user_id)
    assert client.get("/tpl").get_data(as_text=True) == "Ada"


def test_none_assigned_by_an_earlier_hook_does_not_turn_authentication_off(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """Pow's T3 keeps a user an earlier hook assigned; flask_pow does not
    trust ``g.current_user``: an app that sets it to ``None`` first would
    turn authentication off. Another mechanism's user comes through
    ``request_loader``.
    """

    @env.app.before_request
    def api_token() -> None:
        g.current_user = None

    env.app.before_request_funcs[None].insert(
        0, env.app.before_request_funcs[None].pop()
    )
    env.login(client, user_id)
    assert env.me(client) == "ada@example.com free"


def test_user_assigned_by_a_later_hook_does_not_pass_login_required(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """A blueprint's API hook that puts its own object in
    ``g.current_user`` does not log anyone in.
    """

    @env.app.before_request
    def api_token() -> None:
        g.current_user = env.db.session.get(env.User, user_id)

    @env.app.get("/who")
    def who() -> str:
        return str(current_user.is_authenticated)

    assert client.get("/private").status_code == 401
    assert client.get("/who").text == "False"


def test_session_id_and_metadata_are_readable(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """T4: the session's id and metadata are there for the request."""

    @env.app.get("/session")
    def show() -> dict[str, object]:
        assert current_session
        return {
            "id": current_session.id,
            "ip": current_session.metadata["ip"],
            "ua": current_session.metadata["user_agent"],
            "created": current_session.created_at.isoformat(),
        }

    env.login(client, user_id)
    data = client.get("/session", headers={"User-Agent": "pytest-ua"}).get_json()
    assert len(data["id"]) in (22, 30)  # 30 on Redis: the user tag first
    assert data["ip"] == "127.0.0.1"
    assert data["ua"].startswith("Werkzeug/")
    assert data["created"] == "2027-01-15T08:00:00+00:00"


def test_custom_metadata_from_callback_is_stored(env: Env, client: FlaskClient) -> None:
    """T5 and T15: custom metadata keys are stored and exposed."""
    user_id = env.add_user()

    @env.pow.session_metadata
    def add_plan(user: object) -> dict[str, object]:
        return {"a": 1}

    @env.app.post("/login-custom")
    def login_custom() -> str:
        login_user(env.db.session.get(env.User, user_id), metadata={"b": [2]})
        return "ok"

    @env.app.get("/meta")
    def meta() -> dict[str, object]:
        assert current_session
        return current_session.metadata

    client.post("/login-custom")
    data = client.get("/meta").get_json()
    assert (data["a"], data["b"], data["ip"]) == (1, [2], "127.0.0.1")


def test_unstorable_metadata_raises_in_the_view(env: Env, client: FlaskClient) -> None:
    user_id = env.add_user()
    env.app.config["PROPAGATE_EXCEPTIONS"] = True

    @env.app.post("/login-bad")
    def login_bad() -> str:
        login_user(env.db.session.get(env.User, user_id), metadata={"x": object()})
        return "ok"

    with pytest.raises(TypeError, match="cannot be stored"):
        client.post("/login-bad")


def test_logout_makes_user_anonymous(env: Env, logged_in: FlaskClient) -> None:
    """T17: logout removes the session."""
    assert logged_in.post("/logout").get_data(as_text=True) == "was in"
    assert env.me(logged_in) == "anonymous"
    assert pow_value(logged_in) is None


def test_logout_when_anonymous_reports_it(env: Env, client: FlaskClient) -> None:
    assert client.post("/logout").get_data(as_text=True) == "was out"


def test_replayed_cookie_after_logout_is_anonymous(
    env: Env, logged_in: FlaskClient
) -> None:
    stolen = pow_value(logged_in)
    logged_in.post("/logout")

    with logged_in.session_transaction() as session:
        session["pow_auth"] = stolen

    assert env.me(logged_in) == "anonymous"


def test_token_from_before_login_is_dead_after_login(
    env: Env, logged_in: FlaskClient
) -> None:
    """T13: a new login ends the session the client had."""
    before = pow_value(logged_in)
    other = env.add_user("bob@example.com")
    env.login(logged_in, other)
    assert pow_value(logged_in) != before

    with logged_in.session_transaction() as session:
        session["pow_auth"] = before

    assert env.me(logged_in) == "anonymous"


def test_login_gives_new_session_id(env: Env, logged_in: FlaskClient) -> None:
    with env.app.app_context():
        user = env.db.session.get(env.User, 1)
        first = [s.id for s in env.pow.credentials.sessions(user)]

    env.login(logged_in, 1)

    with env.app.app_context():
        second = [s.id for s in env.pow.credentials.sessions(user)]

    assert len(first) == len(second) == 1
    assert first != second


def test_login_then_logout_in_one_request_leaves_no_session(
    env: Env, client: FlaskClient
) -> None:
    """T18: create then delete in one request."""
    user_id = env.add_user()

    @env.app.post("/in-and-out")
    def in_and_out() -> str:
        user = env.db.session.get(env.User, user_id)
        login_user(user)
        logout_user()
        return "ok"

    client.post("/in-and-out")
    assert env.me(client) == "anonymous"

    with env.app.app_context():
        user = env.db.session.get(env.User, user_id)
        assert env.pow.credentials.sessions(user) == []


def test_failed_request_does_not_store_login(env: Env, client: FlaskClient) -> None:
    user_id = env.add_user()

    env.app.config["PROPAGATE_EXCEPTIONS"] = False

    @env.app.post("/login-fails")
    def login_fails() -> str:
        login_user(env.db.session.get(env.User, user_id))
        raise RuntimeError("boom")

    assert client.post("/login-fails").status_code == 500
    assert env.me(client) == "anonymous"

    with env.app.app_context():
        user = env.db.session.get(env.User, user_id)
        assert env.pow.credentials.sessions(user) == []


def test_failed_request_does_not_consume_token(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    env.app.config["PROPAGATE_EXCEPTIONS"] = False

    @env.app.post("/logout-fails")
    def logout_fails() -> str:
        logout_user()
        raise RuntimeError("boom")

    env.login(client, user_id)
    assert client.post("/logout-fails").status_code == 500
    assert env.me(client) == "ada@example.com free"


def test_login_required_answers_401_when_anonymous(client: FlaskClient) -> None:
    assert client.get("/private").status_code == 401


def test_login_required_lets_user_through(logged_in: FlaskClient) -> None:
    assert logged_in.get("/private").get_data(as_text=True) == "private"


def test_login_required_redirects_to_login_view(make_env: MakeEnv) -> None:
    env = make_env(POW_LOGIN_VIEW="sign_in")

    @env.app.get("/sign-in")
    def sign_in() -> str:
        return "sign in"

    response = env.app.test_client().get("/private?tab=2")
    assert response.status_code == 302
    assert response.location == "/sign-in?next=%2Fprivate%3Ftab%3D2"


def test_login_required_lets_preflight_through(client: FlaskClient) -> None:
    assert client.options("/private").status_code == 200


def test_custom_session_key_is_used(make_env: MakeEnv) -> None:
    """T10: the session key is configurable."""
    env = make_env(POW_SESSION_KEY="my_app_auth")
    client = env.app.test_client()
    env.login(client, env.add_user())
    assert pow_value(client, "my_app_auth") is not None
    assert pow_value(client) is None
    assert env.me(client) == "ada@example.com free"


def test_logged_in_signal_has_flask_logins_arguments(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """A handler written for Flask-Login, ``(sender, user)``, works; the
    new session is ``current_session`` inside it.
    """
    seen: list[tuple[str, str | None]] = []

    def on_login(sender: object, user: t.Any) -> None:
        seen.append((user.email, current_session.id if current_session else None))

    with user_logged_in.connected_to(on_login, env.app):
        env.login(client, user_id)

    with env.app.app_context():
        [info] = env.pow.credentials.sessions(env.db.session.get(env.User, user_id))

    assert seen == [("ada@example.com", info.id)]


def test_logged_out_signal_has_flask_logins_arguments(
    env: Env, logged_in: FlaskClient
) -> None:
    seen: list[str] = []

    def on_logout(sender: object, user: t.Any) -> None:
        seen.append(user.email)

    with user_logged_out.connected_to(on_logout, env.app):
        logged_in.post("/logout")

    assert seen == ["ada@example.com"]


def test_session_ended_signal_carries_session_id(
    env: Env, logged_in: FlaskClient
) -> None:
    seen: list[tuple[str, str]] = []

    def record(sender: object, session_id: str, user_key: str) -> None:
        seen.append((session_id, user_key))

    with env.app.app_context():
        user = env.db.session.get(env.User, 1)
        [info] = env.pow.credentials.sessions(user)

    with session_ended.connected_to(record, env.app):
        logged_in.post("/logout")

    assert seen == [(info.id, "User:1")]


def test_no_rotation_signal_on_fresh_token(env: Env, logged_in: FlaskClient) -> None:
    seen: list[object] = []

    with session_rotated.connected_to(lambda *a, **k: seen.append(k), env.app):
        env.me(logged_in)

    assert seen == []


def test_current_session_proxy_is_falsy_when_anonymous(
    env: Env, client: FlaskClient
) -> None:
    @env.app.get("/has-session")
    def has_session() -> str:
        return str(bool(current_session))

    assert client.get("/has-session").get_data(as_text=True) == "False"


def test_the_login_request_sees_the_session_the_next_request_will(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """``login_fresh()`` was false, and ``current_session`` ``None``, in
    the request that logged the user in.
    """

    @env.app.post("/login-and-tell/<int:user_id>")
    def login_and_tell(user_id: int) -> str:
        login_user(env.db.session.get(env.User, user_id))
        return f"{login_fresh()} {current_session.id if current_session else None}"

    @env.app.get("/tell")
    def tell() -> str:
        return f"{login_fresh()} {current_session.id if current_session else None}"

    during = client.post(f"/login-and-tell/{user_id}").text
    assert during == client.get("/tell").text
    assert during.startswith("True ") and not during.endswith("None")
