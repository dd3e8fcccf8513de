"""Keeping cached users fresh: reload_user, POW_RELOAD, reload blueprints,
sync_user, logging out other sessions. On SimpleCache (the stores have
tests of their own, in tests/stores/).
"""

from __future__ import annotations

import collections.abc as c

import pytest
import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import g
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import login_required
from flask_pow import logout_other_sessions
from flask_pow import reload_user
from flask_pow import session_revoked
from flask_pow import sync_user
from flask_pow import user_reloaded_gone
from flask_pow import user_synced
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.env import QueryCounter
from tests.support.env import counting_queries
from tests.support.models import Member
from tests.support.sessions import pow_value


def add_fresh_routes(env: Env) -> None:
    app = env.app

    @app.get("/fresh")
    @login_required
    @reload_user
    def fresh() -> str:
        return env.me_text()

    @app.get("/fresh-reversed")
    @reload_user
    @login_required
    def fresh_reversed() -> str:
        return env.me_text()

    @app.post("/upgrade")
    @login_required
    def upgrade() -> str:
        user = env.db.get_or_404(env.User, g.current_user.id)
        user.plan = "pro"
        env.db.session.commit()
        sync_user(user)
        return env.me_text()

    @app.post("/upgrade/<int:user_id>")
    def upgrade_other(user_id: int) -> str:
        user = env.db.get_or_404(env.User, user_id)
        user.plan = "pro"
        env.db.session.commit()
        sync_user(user)
        return "ok"

    @app.post("/upgrade-fails")
    def upgrade_fails() -> str:
        user = env.db.get_or_404(env.User, g.current_user.id)
        user.plan = "pro"
        sync_user(user)
        raise RuntimeError("boom")

    @app.post("/others")
    def others() -> str:
        return str(logout_other_sessions())

    by_config = Blueprint("admin", __name__)
    by_config_nested = Blueprint("reports", __name__)

    @by_config.get("/")
    def admin_home() -> str:
        return env.me_text()

    @by_config_nested.get("/")
    def admin_reports() -> str:
        return env.me_text()

    by_config.register_blueprint(by_config_nested, url_prefix="/reports")
    app.register_blueprint(by_config, url_prefix="/admin")

    by_method = env.pow.reload_blueprint(Blueprint("billing", __name__))
    by_method_nested = Blueprint("invoices", __name__)

    @by_method.get("/")
    def billing_home() -> str:
        return env.me_text()

    @by_method_nested.get("/")
    def billing_invoices() -> str:
        return env.me_text()

    by_method.register_blueprint(by_method_nested, url_prefix="/invoices")
    app.register_blueprint(by_method, url_prefix="/billing")

    other = Blueprint("shop", __name__)

    @other.get("/")
    def shop_home() -> str:
        return env.me_text()

    app.register_blueprint(other, url_prefix="/shop")


@pytest.fixture
def fresh_env(make_env: MakeEnv) -> Env:
    env = make_env(POW_RELOAD_BLUEPRINTS=["admin"])
    add_fresh_routes(env)
    return env


@pytest.fixture
def fresh_queries(fresh_env: Env) -> c.Iterator[QueryCounter]:
    with counting_queries(fresh_env) as counter:
        yield counter


@pytest.fixture
def ada(fresh_env: Env) -> FlaskClient:
    client = fresh_env.app.test_client()
    fresh_env.login(client, fresh_env.add_user())
    return client


def set_plan_by_sql(env: Env, plan: str) -> None:
    with env.app.app_context():
        env.db.session.execute(sa.text("UPDATE user SET plan = :plan"), {"plan": plan})
        env.db.session.commit()


def delete_users_by_sql(env: Env) -> None:
    with env.app.app_context():
        env.db.session.execute(sa.text("DELETE FROM user"))
        env.db.session.commit()


def text(client: FlaskClient, path: str) -> str:
    return client.get(path).get_data(as_text=True)


def test_cached_view_keeps_old_value(fresh_env: Env, ada: FlaskClient) -> None:
    set_plan_by_sql(fresh_env, "pro")
    assert text(ada, "/me") == "ada@example.com free"


@pytest.mark.parametrize("path", ["/fresh", "/fresh-reversed"])
def test_reload_user_view_sees_database(
    fresh_env: Env, ada: FlaskClient, path: str
) -> None:
    set_plan_by_sql(fresh_env, "pro")
    assert text(ada, path) == "ada@example.com pro"


def test_reload_does_not_change_the_cache(fresh_env: Env, ada: FlaskClient) -> None:
    """T23: reload returns the reloaded user; the stored record stays."""
    set_plan_by_sql(fresh_env, "pro")
    assert text(ada, "/fresh") == "ada@example.com pro"
    assert text(ada, "/me") == "ada@example.com free"


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/reports/", "/billing/", "/billing/invoices/"]
)
def test_reload_blueprint_view_sees_database(
    fresh_env: Env, ada: FlaskClient, path: str
) -> None:
    set_plan_by_sql(fresh_env, "pro")
    assert text(ada, path) == "ada@example.com pro"


def test_view_outside_reload_blueprints_runs_no_sql(
    fresh_env: Env, ada: FlaskClient, fresh_queries: QueryCounter
) -> None:
    for _ in range(10):
        assert text(ada, "/shop/") == "ada@example.com free"
        assert text(ada, "/me") == "ada@example.com free"

    assert fresh_queries.statements == []


def test_reload_view_runs_one_query(
    fresh_env: Env, ada: FlaskClient, fresh_queries: QueryCounter
) -> None:
    text(ada, "/fresh")
    assert len(fresh_queries.statements) == 1


def test_pow_reload_reloads_every_request(make_env: MakeEnv) -> None:
    env = make_env(POW_RELOAD=True)
    client = env.app.test_client()
    env.login(client, env.add_user())
    set_plan_by_sql(env, "pro")
    assert env.me(client) == "ada@example.com pro"


@pytest.mark.parametrize("path", ["/fresh", "/fresh-reversed", "/admin/"])
def test_reload_of_deleted_user_ends_session(
    fresh_env: Env, ada: FlaskClient, path: str
) -> None:
    """T11 and T24: a reload that finds no user gives no user, and the
    session is deleted from the cache.
    """
    delete_users_by_sql(fresh_env)
    response = ada.get(path)
    expected = 200 if path == "/admin/" else 401
    assert response.status_code == expected
    assert session_ids_of(fresh_env, "User:1") == []
    assert text(ada, "/me") == "anonymous"


def test_reload_of_deleted_user_redirects_to_login_view(make_env: MakeEnv) -> None:
    env = make_env(POW_LOGIN_VIEW="sign_in")
    add_fresh_routes(env)

    @env.app.get("/sign-in")
    def sign_in() -> str:
        return "sign in"

    client = env.app.test_client()
    env.login(client, env.add_user())
    delete_users_by_sql(env)
    response = client.get("/fresh")
    assert response.status_code == 302
    assert response.location == "/sign-in?next=%2Ffresh"


def test_pow_reload_with_deleted_user_is_anonymous(make_env: MakeEnv) -> None:
    env = make_env(POW_RELOAD=True)
    client = env.app.test_client()
    env.login(client, env.add_user())
    delete_users_by_sql(env)
    assert env.me(client) == "anonymous"


def test_reload_user_without_pow_raises() -> None:
    """T22: reloading needs the extension set up on the application."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "k"

    @app.get("/fresh")
    @reload_user
    def fresh() -> str:
        return "never"

    app.config["PROPAGATE_EXCEPTIONS"] = True

    with pytest.raises(RuntimeError, match="flask_pow is not set up"):
        app.test_client().get("/fresh")


def session_ids_of(env: Env, user_key: str) -> list[str]:
    with env.app.app_context():
        return [info.id for info in env.pow.credentials.sessions_by_key(user_key)]


def test_background_sync_updates_every_session_without_sql(
    fresh_env: Env, fresh_queries: QueryCounter
) -> None:
    """T20: an update of the user is seen through every session."""
    user_id = fresh_env.add_user()
    first, second = fresh_env.app.test_client(), fresh_env.app.test_client()
    fresh_env.login(first, user_id)
    fresh_env.login(second, user_id)

    with fresh_env.app.app_context():
        user = fresh_env.db.session.get(fresh_env.User, user_id)
        assert user is not None
        user.plan = "pro"
        fresh_env.db.session.commit()
        sync_user(user)

    fresh_queries.statements.clear()
    assert text(first, "/me") == "ada@example.com pro"
    assert text(second, "/me") == "ada@example.com pro"
    assert fresh_queries.statements == []


def test_background_sync_does_not_rotate(fresh_env: Env, ada: FlaskClient) -> None:
    before = pow_value(ada)

    with fresh_env.app.app_context():
        sync_user(fresh_env.db.session.get(fresh_env.User, 1))

    text(ada, "/me")
    assert pow_value(ada) == before


def test_sync_in_request_rotates_token_and_keeps_session_id(
    fresh_env: Env, ada: FlaskClient
) -> None:
    before = pow_value(ada)
    [sid] = session_ids_of(fresh_env, "User:1")
    assert ada.post("/upgrade").get_data(as_text=True) == "ada@example.com pro"
    assert pow_value(ada) != before
    assert session_ids_of(fresh_env, "User:1") == [sid]
    assert text(ada, "/me") == "ada@example.com pro"


def test_sync_in_request_reaches_other_sessions(fresh_env: Env) -> None:
    user_id = fresh_env.add_user()
    first, second = fresh_env.app.test_client(), fresh_env.app.test_client()
    fresh_env.login(first, user_id)
    fresh_env.login(second, user_id)
    first.post("/upgrade")
    assert text(second, "/me") == "ada@example.com pro"


def test_sync_of_another_user_does_not_rotate_caller(fresh_env: Env) -> None:
    ada_id = fresh_env.add_user()
    bob_id = fresh_env.add_user("bob@example.com")
    admin, bob = fresh_env.app.test_client(), fresh_env.app.test_client()
    fresh_env.login(admin, ada_id)
    fresh_env.login(bob, bob_id)
    before = pow_value(admin)
    admin.post(f"/upgrade/{bob_id}")
    assert pow_value(admin) == before
    assert text(bob, "/me") == "bob@example.com pro"


def test_sync_of_user_without_session_writes_nothing(fresh_env: Env) -> None:
    user_id = fresh_env.add_user()

    with fresh_env.app.app_context():
        user = fresh_env.db.session.get(fresh_env.User, user_id)
        assert not fresh_env.pow.credentials.update_user(user)
        assert fresh_env.pow.credentials.users() == []


def test_failed_request_does_not_sync(fresh_env: Env, ada: FlaskClient) -> None:
    fresh_env.app.config["PROPAGATE_EXCEPTIONS"] = False
    before = pow_value(ada)
    assert ada.post("/upgrade-fails").status_code == 500
    assert text(ada, "/me") == "ada@example.com free"
    assert pow_value(ada) == before


def three_clients(env: Env) -> list[FlaskClient]:
    user_id = env.add_user()
    clients = [env.app.test_client() for _ in range(3)]

    for client in clients:
        env.login(client, user_id)

    return clients


def test_logout_other_sessions_keeps_this_one(fresh_env: Env) -> None:
    this, *others = three_clients(fresh_env)
    assert this.post("/others").get_data(as_text=True) == "2"
    assert text(this, "/me") == "ada@example.com free"
    assert [text(c, "/me") for c in others] == ["anonymous", "anonymous"]
    assert len(session_ids_of(fresh_env, "User:1")) == 1


def test_logout_other_sessions_when_anonymous_is_zero(fresh_env: Env) -> None:
    client = fresh_env.app.test_client()
    assert client.post("/others").get_data(as_text=True) == "0"


def test_delete_user_sessions_ends_all(fresh_env: Env) -> None:
    clients = three_clients(fresh_env)

    with fresh_env.app.app_context():
        user = fresh_env.db.session.get(fresh_env.User, 1)
        assert fresh_env.pow.credentials.delete_user_sessions(user) == 3
        assert fresh_env.pow.credentials.sessions(user) == []

    assert {text(c, "/me") for c in clients} == {"anonymous"}


def test_session_revoked_fires_once_per_session(fresh_env: Env) -> None:
    this, *_ = three_clients(fresh_env)
    before = set(session_ids_of(fresh_env, "User:1"))
    seen: list[tuple[str, str]] = []

    def record(sender: Flask, session_id: str, user_key: str, **kw: object) -> None:
        assert sender is fresh_env.app
        seen.append((session_id, user_key))

    with session_revoked.connected_to(record, fresh_env.app):
        this.post("/others")

    ended = before - set(session_ids_of(fresh_env, "User:1"))
    assert len(ended) == 2
    assert sorted(seen) == sorted((sid, "User:1") for sid in ended)


def test_user_synced_fires_once(fresh_env: Env, ada: FlaskClient) -> None:
    seen: list[tuple[str, bool]] = []

    def record(sender: Flask, user_key: str, updated: bool, **kw: object) -> None:
        seen.append((user_key, updated))

    with user_synced.connected_to(record, fresh_env.app):
        ada.post("/upgrade")

    assert seen == [("User:1", True)]


def test_user_reloaded_gone_fires_once(fresh_env: Env, ada: FlaskClient) -> None:
    [sid] = session_ids_of(fresh_env, "User:1")
    seen: list[tuple[str, str]] = []

    def record(sender: Flask, user_key: str, session_id: str, **kw: object) -> None:
        seen.append((user_key, session_id))

    delete_users_by_sql(fresh_env)

    with user_reloaded_gone.connected_to(record, fresh_env.app):
        ada.get("/fresh")
        ada.get("/fresh")

    assert seen == [("User:1", sid)]


def test_reload_blueprint_returns_blueprint() -> None:
    blueprint = Blueprint("x", __name__)
    pow = Pow(db=SQLAlchemy(), user_model=Member)
    assert pow.reload_blueprint(blueprint) is blueprint
