"""A deploy that changes which columns are cached: sessions cached before
it go on working, and their records are rewritten from the database once.
"""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import current_user
from flask_pow import login_user
from tests.support.raw import items

#: Records are rewritten in the store: every test on every store.
pytestmark = pytest.mark.backends


def build(
    cache: BaseCache,
    database: str,
    *,
    nickname: bool,
    exclude: list[str] | None = None,
) -> tuple[Flask, SQLAlchemy, t.Any, list[str]]:
    """One release of the application: the second adds ``nickname``."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test secret key",
        SQLALCHEMY_DATABASE_URI=database,
        POW_CACHE=cache,
    )

    if exclude is not None:
        app.config["POW_CACHE_EXCLUDE"] = exclude

    db = SQLAlchemy(model_class=type("B", (sa_orm.DeclarativeBase,), {}))
    columns: dict[str, t.Any] = {
        "__tablename__": "user",
        "id": sa_orm.mapped_column(sa.Integer, primary_key=True),
        "email": sa_orm.mapped_column(sa.String),
        "motto": sa_orm.mapped_column(sa.String),
    }

    if nickname:
        columns["nickname"] = sa_orm.mapped_column(sa.String, default="ace")

    User = type("User", (db.Model,), columns)
    db.init_app(app)
    Pow(app, db=db, user_model=User)
    statements: list[str] = []

    with app.app_context():
        sa.event.listen(
            db.engine,
            "before_cursor_execute",
            lambda *args: statements.append(args[2]),
        )

    @app.post("/login")
    def login() -> str:
        login_user(db.session.get(User, 1))
        return "ok"

    @app.get("/me")
    def me() -> str:
        user = current_user
        return f"{user.email} {getattr(user, 'nickname', '-')}"

    return app, db, User, statements


def logged_in_on_the_old_release(
    cache: BaseCache, database: str, motto: str
) -> FlaskClient:
    """The old release (no ``nickname``) with one user, logged in."""
    old, db, User, _ = build(cache, database, nickname=False)

    with old.app_context():
        db.create_all()
        db.session.add(User(id=1, email="ada@example.com", motto=motto))
        db.session.commit()

    client = old.test_client()
    client.post("/login")
    return client


def test_deploy_that_adds_a_column_heals_cached_sessions(
    cache: BaseCache, tmp_path: t.Any
) -> None:
    """Before, reading the new column on a user cached by the old release
    raised DetachedInstanceError (a 500) for everyone logged in, until they
    logged in again.
    """
    database = f"sqlite:///{tmp_path / 'deploy.db'}"
    client = logged_in_on_the_old_release(cache, database, "hi")
    assert client.get("/me").text == "ada@example.com -"

    # The migration, then the new release on the same store.
    engine = sa.create_engine(database)

    with engine.begin() as connection:
        connection.execute(
            sa.text("ALTER TABLE user ADD COLUMN nickname VARCHAR DEFAULT 'ace'")
        )

    engine.dispose()

    new, _, _, statements = build(cache, database, nickname=True)
    browser = new.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None
    browser.set_cookie("session", cookie.value)
    assert browser.get("/me").text == "ada@example.com ace"
    assert len(statements) == 1  # the one query that healed the record
    assert browser.get("/me").text == "ada@example.com ace"
    assert len(statements) == 1  # and then none again


def test_deploy_that_excludes_a_column_drops_it_from_the_store(
    cache: BaseCache, tmp_path: t.Any
) -> None:
    database = f"sqlite:///{tmp_path / 'deploy.db'}"
    client = logged_in_on_the_old_release(cache, database, "s3cret-motto")
    assert any(
        b"s3cret-motto" in value for item in items(cache) for value in item.values
    )

    new, _, _, _ = build(cache, database, nickname=False, exclude=["motto"])
    browser = new.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None
    browser.set_cookie("session", cookie.value)
    assert browser.get("/me").text == "ada@example.com -"
    assert not any(
        b"s3cret-motto" in value for item in items(cache) for value in item.values
    )
