"""``POW_SYNC_ON_COMMIT``: a committed ORM change of a user's cached columns
updates their cached record, after the commit and never before, one write
per changed user per commit.
"""

from __future__ import annotations

import collections.abc as c
import logging
import typing as t

import pytest
from flask import g
from flask.testing import FlaskClient

from flask_pow import current_user
from flask_pow import database_user
from flask_pow import sync_user
from flask_pow import user_synced
from tests.support.env import Env
from tests.support.env import MakeEnv
from tests.support.env import counting_queries


@pytest.fixture
def synced(env: Env) -> c.Iterator[list[str]]:
    """The user keys ``user_synced`` was sent for, with whether it wrote."""
    seen: list[str] = []

    def record(sender: object, user_key: str, updated: bool, **kw: object) -> None:
        seen.append(f"{user_key} {updated}")

    with user_synced.connected_to(record, env.app):
        yield seen


def row(env: Env, user_id: int) -> t.Any:
    user = env.db.session.get(env.User, user_id)
    assert user is not None
    return user


def set_plan(env: Env, user_id: int, plan: str) -> None:
    with env.app.app_context():
        user = row(env, user_id)
        user.plan = plan
        env.db.session.commit()


def test_commit_updates_every_session_of_the_user(env: Env, user_id: int) -> None:
    clients = [env.app.test_client() for _ in range(2)]

    for client in clients:
        env.login(client, user_id)

    set_plan(env, user_id, "pro")

    with counting_queries(env) as queries:
        assert [env.me(client) for client in clients] == ["ada@example.com pro"] * 2

    assert queries.statements == []


def test_commit_writes_once_per_user(
    env: Env, logged_in: FlaskClient, user_id: int, synced: list[str]
) -> None:
    with env.app.app_context():
        user = row(env, user_id)
        user.plan = "pro"
        env.db.session.flush()
        user.name = "Ada L."
        env.db.session.flush()
        assert synced == []
        env.db.session.commit()

    assert synced == ["User:1 True"]


def test_rollback_writes_nothing(
    env: Env, logged_in: FlaskClient, user_id: int, synced: list[str]
) -> None:
    with env.app.app_context():
        user = row(env, user_id)
        user.plan = "pro"
        env.db.session.flush()
        env.db.session.rollback()

    assert synced == []
    assert env.me(logged_in) == "ada@example.com free"


def test_rolled_back_change_is_not_written_by_a_later_commit(
    env: Env, logged_in: FlaskClient, user_id: int
) -> None:
    with env.app.app_context():
        user = row(env, user_id)
        user.plan = "pro"
        env.db.session.flush()
        env.db.session.rollback()
        env.db.session.commit()

    assert env.me(logged_in) == "ada@example.com free"


def test_change_of_an_excluded_column_writes_nothing(
    env: Env, logged_in: FlaskClient, user_id: int, synced: list[str]
) -> None:
    with env.app.app_context():
        user = row(env, user_id)
        user.password_hash = "pbkdf2:sha256$new"
        env.db.session.commit()

    assert synced == []


def test_deleting_the_user_ends_their_sessions(
    env: Env, logged_in: FlaskClient, user_id: int
) -> None:
    with env.app.app_context():
        env.db.session.delete(row(env, user_id))
        env.db.session.commit()
        assert env.pow.credentials.sessions_by_key("User:1") == []

    assert env.me(logged_in) == "anonymous"


def test_sync_on_commit_can_be_turned_off(make_env: MakeEnv) -> None:
    env = make_env(POW_SYNC_ON_COMMIT=False)
    user_id = env.add_user()
    client = env.app.test_client()
    env.login(client, user_id)
    set_plan(env, user_id, "pro")
    assert env.me(client) == "ada@example.com free"


# -- in a request ------------------------------------------------------------


def add_edit_route(env: Env) -> None:
    @env.app.post("/plan/<plan>")
    def plan(plan: str) -> str:
        user = database_user()
        user.plan = plan
        env.db.session.commit()
        return env.me_text()


def test_commit_in_a_view_updates_the_cache(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    add_edit_route(env)
    env.login(client, user_id)
    client.post("/plan/pro")
    assert env.me(client) == "ada@example.com pro"


def test_current_user_sees_the_commit_in_the_same_request(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    add_edit_route(env)
    env.login(client, user_id)
    assert client.post("/plan/pro").get_data(as_text=True) == "ada@example.com pro"


def test_view_failing_after_its_commit_still_updates_the_cache(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.post("/plan-then-fail")
    def plan_then_fail() -> str:
        database_user().plan = "pro"
        env.db.session.commit()
        raise RuntimeError("after the commit")

    env.app.config["PROPAGATE_EXCEPTIONS"] = False
    env.login(client, user_id)
    assert client.post("/plan-then-fail").status_code == 500
    assert env.me(client) == "ada@example.com pro"


def test_exception_propagating_after_the_commit_still_updates_the_cache(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """With ``TESTING`` (or debug) the exception leaves the app, and no
    ``after_request`` function runs; the teardown writes the change.
    """

    @env.app.post("/plan-then-fail")
    def plan_then_fail() -> str:
        database_user().plan = "pro"
        env.db.session.commit()
        raise RuntimeError("after the commit")

    env.login(client, user_id)

    with pytest.raises(RuntimeError, match="after the commit"):
        client.post("/plan-then-fail")

    assert env.me(client) == "ada@example.com pro"


def test_sync_user_after_the_commit_writes_once(
    env: Env, client: FlaskClient, user_id: int, synced: list[str]
) -> None:
    @env.app.post("/plan-and-sync")
    def plan_and_sync() -> str:
        user = database_user()
        user.plan = "pro"
        env.db.session.commit()
        sync_user(user)
        return "ok"

    env.login(client, user_id)
    synced.clear()
    client.post("/plan-and-sync")
    assert synced == ["User:1 True"]


def test_deleting_the_current_user_in_a_view_logs_them_out(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.post("/delete-me")
    def delete_me() -> str:
        env.db.session.delete(database_user())
        env.db.session.commit()
        return repr(g.current_user)

    env.login(client, user_id)
    assert client.post("/delete-me").get_data(as_text=True) == "None"
    assert env.me(client) == "anonymous"


def test_changing_the_cached_user_is_warned_about(
    env: Env, client: FlaskClient, user_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The cached user is not in the database session: changing it saves
    nothing (Flask-Login apps do ``current_user.last_seen = now``).
    """

    @env.app.post("/touch")
    def touch() -> str:
        current_user.name = "Ada L."
        env.db.session.commit()
        return "ok"

    env.login(client, user_id)

    with caplog.at_level(logging.WARNING, "flask_pow"):
        client.post("/touch")

    assert [r.getMessage() for r in caplog.records if r.name == "flask_pow"] == [
        "The cached current_user was changed in this request (name), but it is"
        " not in the database session, so nothing was saved. Change the row"
        " instead: flask_pow.database_user(), then commit."
    ]


def test_released_savepoint_waits_for_the_outer_commit(
    env: Env, logged_in: FlaskClient, user_id: int, synced: list[str]
) -> None:
    with env.app.app_context():
        with env.db.session.begin_nested():
            row(env, user_id).plan = "pro"

        assert synced == []
        env.db.session.commit()

    assert env.me(logged_in) == "ada@example.com pro"


def test_change_abandoned_by_close_is_not_written_by_a_later_commit(
    env: Env, logged_in: FlaskClient, user_id: int
) -> None:
    """``close()`` rolls back without ``after_rollback``: what its flush
    noted must not reach the cache with the next, unrelated commit.
    """
    with env.app.app_context():
        row(env, user_id).plan = "pro"
        env.db.session.flush()
        env.db.session.close()
        bob = env.User(
            email="bob@example.com", name="Bob", plan="free", password_hash="x"
        )
        env.db.session.add(bob)
        env.db.session.commit()

    assert env.me(logged_in) == "ada@example.com free"


def test_rolled_back_savepoint_keeps_the_outer_transactions_changes(
    env: Env, logged_in: FlaskClient, user_id: int
) -> None:
    with env.app.app_context():
        row(env, user_id).plan = "pro"
        env.db.session.flush()
        savepoint = env.db.session.begin_nested()
        row(env, user_id).name = "Ada L."
        env.db.session.flush()
        savepoint.rollback()
        env.db.session.commit()

    assert env.me(logged_in) == "ada@example.com pro"


def test_commit_in_a_later_teardown_is_written(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    """A teardown function registered before flask_pow's runs after it:
    its commit is written at once, not queued for a request that is over.
    """

    @env.app.post("/touch")
    def touch() -> str:
        return "ok"

    def commit_late(exc: BaseException | None) -> None:
        if env.app.config.get("commit_late"):
            row(env, user_id).plan = "pro"
            env.db.session.commit()

    env.app.teardown_request_funcs.setdefault(None, []).insert(0, commit_late)
    env.login(client, user_id)
    env.app.config["commit_late"] = True
    assert client.post("/touch").status_code == 200
    env.app.config["commit_late"] = False
    assert env.me(client) == "ada@example.com pro"
