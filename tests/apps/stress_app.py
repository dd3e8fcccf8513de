"""The application the load and fault runs serve with gunicorn:
``gunicorn 'tests.apps.stress_app:create_app()'``, configured by environment
variables (``POW_TEST_REDIS_URL``, ``POW_TEST_DATABASE``,
``POW_TEST_NAMESPACE``, ``POW_TEST_LOCAL_CACHE``). Tokens are rotated every second.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask import Flask
from flask import g
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import login_user
from flask_pow import logout_user


class Base(sa_orm.DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class User(db.Model):  # type: ignore[name-defined,misc]
    id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
    email: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(100))


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="stress",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{os.environ['POW_TEST_DATABASE']}",
        POW_REDIS_URL=os.environ["POW_TEST_REDIS_URL"],
        POW_NAMESPACE=os.environ.get("POW_TEST_NAMESPACE", "credentials"),
        POW_SESSION_TTL_RENEWAL=1,
        POW_ROTATION_GRACE=int(os.environ.get("POW_TEST_ROTATION_GRACE", "30")),
        POW_REDIS_LOCAL_CACHE=bool(os.environ.get("POW_TEST_LOCAL_CACHE")),
    )
    db.init_app(app)
    Pow(app, db=db, user_model=User)
    add_account_routes(app)

    @app.get("/whoami")
    def whoami() -> str:
        user = g.current_user
        return "anonymous" if user is None else str(user.id)

    return app


def add_account_routes(app: Flask) -> None:
    """``POST /login/<id>``, ``POST /logout`` (``was in`` or ``was out``) and
    ``GET /me`` (the email, or ``anonymous``): what the servers the tests
    start answer.
    """

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> str:
        login_user(db.get_or_404(User, user_id))
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        return "was in" if logout_user() else "was out"

    @app.get("/me")
    def me() -> str:
        user = g.current_user
        return "anonymous" if user is None else str(user.email)


def create_users(database: str, count: int) -> None:
    """Make the database and its users, before the workers start."""
    engine = sa.create_engine(f"sqlite:///{database}")
    Base.metadata.create_all(engine)

    with engine.begin() as connection:
        connection.execute(
            sa.insert(User),
            [{"id": n, "email": f"user{n}@example.com"} for n in range(1, count + 1)],
        )

    engine.dispose()
