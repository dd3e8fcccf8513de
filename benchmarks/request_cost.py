"""Per-request cost of flask_pow: an authenticated request against
anonymous ones, on the same app, in the same run, as in-process WSGI calls.

    python -m benchmarks.request_cost [--requests N] [--rounds R]

Three requests to a view that reads the user's email and plan:

- anonymous: no cookie at all;
- cookie: an anonymous request with a Flask session cookie (not flask_pow's),
  so that decoding Flask's own signed cookie, which any cookie-based login
  pays, is counted apart;
- authenticated: logged in with flask_pow.

Rounds are interleaved so that drift on a shared machine hits all three, and
the fastest round of each is kept (the least disturbed). Prints the time per
request, the ratios, and the SQL statements per authenticated request (it
must be zero). Ratios are what to quote; absolute times depend on the
machine.
"""

from __future__ import annotations

import argparse
import functools
import tempfile

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import RedisCache
from cachelib import SimpleCache
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_pow import Pow
from flask_pow import login_user
from tests.support.servers import RedisServer

from . import harness
from .apps import current_user_me


class Base(sa_orm.DeclarativeBase):
    pass


def build(cache: BaseCache, database: str) -> tuple[Flask, SQLAlchemy]:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=database)
    app.config["POW_CACHE"] = cache
    db = SQLAlchemy(model_class=type("B", (sa_orm.DeclarativeBase,), {}))

    class User(db.Model):  # type: ignore[name-defined,misc]
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        email: sa_orm.Mapped[str]
        plan: sa_orm.Mapped[str]
        password_hash: sa_orm.Mapped[str]

    db.init_app(app)
    Pow(app, db=db, user_model=User)

    app.get("/me")(current_user_me)

    @app.get("/cart")
    def cart() -> str:
        from flask import session

        session["cart"] = "1 book"
        return "ok"

    @app.post("/login")
    def login() -> str:
        login_user(db.session.get(User, 1))
        return "ok"

    with app.app_context():
        db.create_all()
        db.session.add(
            User(id=1, email="ada@example.com", plan="pro", password_hash="x")
        )
        db.session.commit()

    return app, db


def measure(name: str, cache: BaseCache, requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app, db = build(cache, f"sqlite:///{tmp}/bench.db")
        client = app.test_client()
        client.post("/login")
        cookie = client.get_cookie("session")
        assert cookie is not None
        logged_in = harness.environ(f"session={cookie.value}")
        anonymous = harness.environ(None)
        other = app.test_client()
        other.get("/cart")
        cart_cookie = other.get_cookie("session")
        assert cart_cookie is not None
        with_cookie = harness.environ(f"session={cart_cookie.value}")
        assert harness.call(app, with_cookie) == b"anonymous"
        assert harness.call(app, logged_in) == b"ada@example.com pro"
        assert harness.call(app, anonymous) == b"anonymous"
        statements: list[str] = []

        with app.app_context():
            engine = db.engine

        sa.event.listen(
            engine, "before_cursor_execute", lambda *a: statements.append(a[2])
        )

        # Interleaved rounds, so that drift on a shared machine hits all.
        anon, cookie_only, auth = harness.fastest(
            {
                "anon": functools.partial(harness.call, app, anonymous),
                "cookie": functools.partial(harness.call, app, with_cookie),
                "auth": functools.partial(harness.call, app, logged_in),
            },
            requests,
            rounds,
        ).values()
        sql_per_request = len(statements) / (rounds * requests * 3)
        print(
            f"{name:<16} anonymous {anon * 1e6:6.1f} us | cookie"
            f" {cookie_only * 1e6:6.1f} us | authenticated {auth * 1e6:6.1f} us"
            f" | auth/anon {auth / anon:4.2f}x | auth/cookie"
            f" {auth / cookie_only:4.2f}x | flask_pow's own cost"
            f" {(auth - cookie_only) * 1e6:5.1f} us | SQL/request {sql_per_request:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    server = RedisServer()

    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, cache in [
                ("SimpleCache", SimpleCache(threshold=100_000)),
                ("FileSystemCache", FileSystemCache(f"{tmp}/cache", threshold=0)),
                ("Redis (loopback)", RedisCache(host=server.client())),
            ]:
                measure(name, cache, args.requests, args.rounds)
    finally:
        server.close()


if __name__ == "__main__":
    main()
