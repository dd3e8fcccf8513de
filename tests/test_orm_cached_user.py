"""The cached user is not a database row: no SQLAlchemy session takes it,
whether or not the session already holds the row. The row
(:func:`~flask_pow.database_user`, :func:`~flask_pow.reload_user`,
``session.merge()``) is what a view writes.
"""

from __future__ import annotations

import typing as t

import pytest
from cachelib import SimpleCache
from flask import g
from flask.testing import FlaskClient
from sqlalchemy.exc import InvalidRequestError

from flask_pow import current_user
from flask_pow import database_user
from flask_pow import reload_user
from tests.support.env import Env
from tests.support.env import add_routes
from tests.support.env import make_pow_app

REFUSAL = (
    "This User is flask_pow's cached current_user, built from the cache: it is"
    " not a database row, and cannot be put in a database session"
    " (db.session.add(), delete(), or a relationship that cascades to it, as in"
    " Post(author=current_user)). Use the row: flask_pow.database_user(), or"
    " @reload_user on the view."
)


@pytest.fixture
def env(tmp_path: t.Any) -> Env:
    # One store is enough: what is refused is the ORM's, not the store's.
    env = make_pow_app(tmp_path, SimpleCache(threshold=100_000))
    add_routes(env)
    return env


def add_in_view(env: Env, client: FlaskClient, *, hold_row: bool, user: str) -> str:
    """What ``db.session.add()`` of the cached user does in a view of a
    logged-in client: the error's message, or ``added``.
    """

    @env.app.get("/add")
    def add() -> str:
        if hold_row:
            # As a view that loaded something of the user's would.
            env.db.session.get(env.User, g.current_user.id)

        try:
            env.db.session.add(current_user if user == "proxy" else g.current_user)
        except InvalidRequestError as e:
            return str(e)

        return "added"

    env.login(client, env.add_user())
    return client.get("/add").get_data(as_text=True)


def upgrades(env: Env, client: FlaskClient, user_id: int) -> None:
    """Log in, and the view at ``/upgrade`` makes the user's plan pro."""
    env.login(client, user_id)
    assert client.post("/upgrade").status_code == 200
    assert env.me(client) == "ada@example.com pro"


@pytest.mark.parametrize("user", ["proxy", "g.current_user"])
def test_adding_the_cached_user_is_refused_when_the_session_holds_the_row(
    env: Env, client: FlaskClient, user: str
) -> None:
    assert add_in_view(env, client, hold_row=True, user=user) == REFUSAL


@pytest.mark.parametrize("user", ["proxy", "g.current_user"])
def test_adding_the_cached_user_is_refused_when_the_session_lacks_the_row(
    env: Env, client: FlaskClient, user: str
) -> None:
    assert add_in_view(env, client, hold_row=False, user=user) == REFUSAL


def test_deleting_the_cached_user_is_refused(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.post("/delete")
    def delete() -> str:
        try:
            env.db.session.delete(current_user)
        except InvalidRequestError as e:
            return str(e)

        return "deleted"

    env.login(client, user_id)
    assert client.post("/delete").get_data(as_text=True) == REFUSAL


def test_database_user_can_be_added_and_committed_after_a_refusal(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.post("/upgrade")
    def upgrade() -> str:
        with pytest.raises(InvalidRequestError):
            env.db.session.add(current_user)

        user = database_user()
        user.plan = "pro"
        env.db.session.add(user)
        env.db.session.commit()
        return "ok"

    upgrades(env, client, user_id)


def test_reloaded_user_can_be_added_and_committed(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.post("/upgrade")
    @reload_user
    def upgrade() -> str:
        current_user.plan = "pro"
        env.db.session.add(current_user)
        env.db.session.commit()
        return "ok"

    upgrades(env, client, user_id)


def test_merging_the_cached_user_gives_the_row(
    env: Env, client: FlaskClient, user_id: int
) -> None:
    @env.app.get("/merge")
    def merge() -> str:
        row = env.db.session.merge(current_user)
        return str(row is not g.current_user and row in env.db.session)

    env.login(client, user_id)
    assert client.get("/merge").get_data(as_text=True) == "True"
