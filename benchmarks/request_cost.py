"""Per-request cost of flask_pow: an authenticated request against an
anonymous one, on the same app, in the same run, as in-process WSGI calls.

    python benchmarks/request_cost.py [--requests N] [--rounds R]

Prints the time per request of each and their ratio, plus the SQL statements
run per authenticated request (it must be zero). Ratios are what to quote;
absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import typing as t

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import SimpleCache
from flask import Flask
from flask import g
from flask_sqlalchemy import SQLAlchemy
from werkzeug.test import EnvironBuilder

from flask_pow import Pow
from flask_pow import login_user


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

    @app.get("/me")
    def me() -> str:
        user = g.current_user
        return "anonymous" if user is None else f"{user.email} {user.plan}"

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


def environ(cookie: str | None) -> dict[str, t.Any]:
    headers = [("Cookie", cookie)] if cookie else []
    return EnvironBuilder(path="/me", headers=headers).get_environ()


def call(app: Flask, env: dict[str, t.Any]) -> bytes:
    def start_response(*args: t.Any) -> t.Callable[[bytes], object]:
        return lambda data: None

    return b"".join(app.wsgi_app(dict(env), start_response))


def time_per_request(app: Flask, env: dict[str, t.Any], n: int) -> float:
    start = time.perf_counter()

    for _ in range(n):
        call(app, env)

    return (time.perf_counter() - start) / n


def measure(name: str, cache: BaseCache, requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app, db = build(cache, f"sqlite:///{tmp}/bench.db")
        client = app.test_client()
        client.post("/login")
        cookie = client.get_cookie("session")
        assert cookie is not None
        logged_in = environ(f"session={cookie.value}")
        anonymous = environ(None)
        assert call(app, logged_in) == b"ada@example.com pro"
        assert call(app, anonymous) == b"anonymous"
        statements: list[str] = []

        with app.app_context():
            engine = db.engine

        sa.event.listen(
            engine, "before_cursor_execute", lambda *a: statements.append(a[2])
        )

        # Interleaved rounds, so that drift on a shared machine hits both.
        anon_times, auth_times = [], []

        for _ in range(rounds):
            anon_times.append(time_per_request(app, anonymous, requests))
            auth_times.append(time_per_request(app, logged_in, requests))

        anon = statistics.median(anon_times)
        auth = statistics.median(auth_times)
        sql_per_request = len(statements) / (rounds * requests * 2)
        print(
            f"{name:<22} anonymous {anon * 1e6:7.1f} us   authenticated"
            f" {auth * 1e6:7.1f} us   ratio {auth / anon:4.2f}x"
            f"   SQL/request {sql_per_request:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        for name, cache in [
            ("SimpleCache", SimpleCache(threshold=100_000)),
            ("FileSystemCache", FileSystemCache(f"{tmp}/cache", threshold=0)),
        ]:
            measure(name, cache, args.requests, args.rounds)


if __name__ == "__main__":
    main()
