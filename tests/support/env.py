"""The application most tests run against: an app with flask_pow, a user
model and a few routes (:class:`Env`), built by :func:`make_app` and
:func:`add_routes`. The fixtures in ``tests/conftest.py`` build it on the
test's store; tests that need a second application on the same store use
:func:`make_pow_app`.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import datetime as dt
import time
import typing as t

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from flask import Flask
from flask import g
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import login_required
from flask_pow import login_user
from flask_pow import logout_user


class Clock:
    """A clock the tests move by hand, set as ``pow.credentials.clock``."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Env:
    """An application with flask_pow, a user model and a few routes."""

    def __init__(self, app: Flask, db: SQLAlchemy, user_model: t.Any, pow: Pow) -> None:
        self.app = app
        self.db = db
        self.User = user_model
        self.pow = pow
        self.clock = Clock()

        with app.app_context():
            pow.credentials.clock = self.clock

    def add_user(self, email: str = "ada@example.com", **values: t.Any) -> int:
        with self.app.app_context():
            values.setdefault("name", email.split("@")[0].title())
            values.setdefault("plan", "free")
            values.setdefault("password_hash", "pbkdf2:sha256$secret-hash")
            user = self.User(email=email, **values)
            self.db.session.add(user)
            self.db.session.commit()
            return int(user.id)

    def login(self, client: FlaskClient, user_id: int) -> None:
        response = client.post(f"/login/{user_id}")
        assert response.status_code == 200

    def me_text(self) -> str:
        """What ``/me`` answers, inside a request."""
        user = g.current_user
        return "anonymous" if user is None else f"{user.email} {user.plan}"

    def me(self, client: FlaskClient) -> str:
        return client.get("/me").get_data(as_text=True)


MakeEnv = c.Callable[..., Env]


def make_app(
    cache: BaseCache, database: str, **config: t.Any
) -> tuple[Flask, SQLAlchemy, t.Any]:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test secret key",
        SQLALCHEMY_DATABASE_URI=database,
        POW_CACHE=cache,
    )
    app.config.update(config)

    class Base(sa_orm.DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)

    class User(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "user"
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        email: sa_orm.Mapped[str] = sa_orm.mapped_column(unique=True)
        name: sa_orm.Mapped[str]
        plan: sa_orm.Mapped[str]
        password_hash: sa_orm.Mapped[str]
        api_token: sa_orm.Mapped[str | None]
        joined: sa_orm.Mapped[dt.datetime] = sa_orm.mapped_column(
            default=lambda: dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
        )

    db.init_app(app)

    with app.app_context():
        db.create_all()

    return app, db, User


def add_routes(env: Env) -> None:
    app, db, User = env.app, env.db, env.User

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> str:
        login_user(db.session.get(User, user_id))
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        return "was in" if logout_user() else "was out"

    @app.get("/me")
    def me() -> str:
        return env.me_text()

    @app.get("/slow-me")
    def slow_me() -> str:
        # Parallel requests all read the session before any has finished.
        time.sleep(0.3)
        return env.me_text()

    @app.get("/private")
    @login_required
    def private() -> str:
        return "private"


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, *args: t.Any) -> None:
        self.statements.append(args[2])


@contextlib.contextmanager
def counting_queries(env: Env) -> c.Iterator[QueryCounter]:
    """Record the SQL statements ``env``'s engine runs."""
    counter = QueryCounter()

    with env.app.app_context():
        engine = env.db.engine

    sa.event.listen(engine, "before_cursor_execute", counter)

    try:
        yield counter
    finally:
        sa.event.remove(engine, "before_cursor_execute", counter)


def make_pow_app(tmp_path: t.Any, cache: BaseCache) -> Env:
    app, db, User = make_app(cache, f"sqlite:///{tmp_path / 'other.db'}")
    return Env(app, db, User, Pow(app, db=db, user_model=User))
