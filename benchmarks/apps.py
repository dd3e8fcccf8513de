"""The benchmark's one tiny application, in each setup it is measured in.
Every setup serves ``GET /me`` (the current user's email and plan) and
``POST /login`` (log user 1 in). ``create_app()`` builds the setup named by
``BENCH_SETUP`` from the environment, for gunicorn.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import typing as t

import redis
import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from cachelib import RedisCache
from cachelib import SimpleCache
from flask import Flask
from flask import g
from flask_sqlalchemy import SQLAlchemy

#: Setup name -> what it is, in the order of the tables.
SETUPS = {
    "anonymous": "anonymous baseline (no auth)",
    "pow-default": "flask_pow, default store (FileSystemCache)",
    "pow-memory": "flask_pow, in-process cache",
    "pow-redis": "flask_pow, Redis",
    "pow-redis-local": "flask_pow, Redis + local cache",
    "handmade-cache": "hand-made cache (signed id, 2 reads, JSON)",
    "pow-default-no-memos": "flask_pow, default store, memos off",
    "pow-redis-no-memos": "flask_pow, Redis, memos off",
    "login-sqlite": "Flask-Login, SQLite user_loader",
    "login-session-redis": "Flask-Login + Flask-Session on Redis",
    "login-postgres": "Flask-Login, PostgreSQL user_loader",
}


def current_user_me() -> str:
    """``GET /me`` where the user is ``g.current_user`` (flask_pow, and the
    hand-made cache).
    """
    user = g.current_user
    return "anonymous" if user is None else f"{user.email} {user.plan}"


def models() -> tuple[SQLAlchemy, t.Any]:
    class Base(sa_orm.DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)

    class User(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "bench_user"
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(primary_key=True)
        email: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(100))
        plan: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(20))
        password_hash: sa_orm.Mapped[str] = sa_orm.mapped_column(sa.String(200))

        # Flask-Login's interface, for its setups.
        is_authenticated = True
        is_active = True
        is_anonymous = False

        def get_id(self) -> str:
            return str(self.id)

    return db, User


def create_users(database: str, count: int = 1) -> None:
    """The users table with ``count`` users, made before any worker starts."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database
    db, User = models()
    db.init_app(app)

    with app.app_context():
        db.drop_all()
        db.create_all()
        db.session.add_all(
            User(id=n, email=f"user{n}@example.com", plan="pro", password_hash="x")
            for n in range(1, count + 1)
        )
        db.session.commit()
        db.engine.dispose()


def build(
    setup: str,
    database: str,
    redis_url: str | None,
    *,
    local_max_entries: int | None = None,
    cache: SimpleCache | None = None,
    redis_options: dict[str, t.Any] | None = None,
) -> tuple[Flask, SQLAlchemy]:
    """The application in one setup, and its Flask-SQLAlchemy extension;
    ``cache``: the in-process store's cache; ``redis_options``: more
    arguments of the Redis client.
    """
    app = Flask(__name__)
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=database)
    db, User = models()
    db.init_app(app)

    if setup == "anonymous":

        @app.get("/me")
        def anonymous_me() -> str:
            return "anonymous"

        @app.post("/login")
        def anonymous_login() -> str:
            return "ok"

        return app, db

    log_in: t.Callable[[t.Any], object]

    if setup == "handmade-cache":
        return _handmade(app, db, User), db

    if setup.startswith("pow-"):
        from flask_pow import Pow
        from flask_pow import login_user

        log_in = login_user
        memos = not setup.endswith("-no-memos")
        setup = setup.removesuffix("-no-memos")

        if setup == "pow-default":
            # Nothing configured: the store is a FileSystemCache in the
            # instance folder, beside the SQLite file, shared by the workers.
            folder = os.path.dirname(database.removeprefix("sqlite:///"))
            app.instance_path = os.path.join(folder, "instance")
        elif setup == "pow-memory":
            app.config["POW_CACHE"] = cache or SimpleCache(threshold=100_000)
        else:
            assert redis_url is not None
            client = redis.Redis.from_url(redis_url, **(redis_options or {}))
            app.config["POW_CACHE"] = RedisCache(host=client)
            app.config["POW_REDIS_LOCAL_CACHE"] = setup == "pow-redis-local"

            if local_max_entries is not None:
                app.config["POW_REDIS_LOCAL_CACHE_MAX_ENTRIES"] = local_max_entries

        pow_ = Pow(app, db=db, user_model=User)

        if not memos:
            # What the memos save: every read parses and verifies anew.
            state = pow_.get_state(app)
            state.credentials.store.parsed.max_bytes = 0  # type: ignore[attr-defined]
            state.signer.max_verified = 0

        app.get("/me")(current_user_me)

    else:
        import flask_login

        log_in = flask_login.login_user

        if setup == "login-session-redis":
            from flask_session import Session

            assert redis_url is not None
            app.config.update(
                SESSION_TYPE="redis",
                SESSION_REDIS=redis.Redis.from_url(redis_url),
                SESSION_SERIALIZATION_FORMAT="json",
            )
            Session(app)

        manager = flask_login.LoginManager(app)

        def load_user(user_id: str) -> t.Any:
            return db.session.get(User, int(user_id))

        manager.user_loader(load_user)

        @app.get("/me")
        def login_me() -> str:
            user = flask_login.current_user

            if not user.is_authenticated:
                return "anonymous"

            return f"{user.email} {user.plan}"

    @app.post("/login")
    def login() -> str:
        log_in(db.session.get(User, 1))
        return "ok"

    return app, db


def _handmade(app: Flask, db: SQLAlchemy, User: t.Any) -> Flask:
    """What an application writes by hand to skip the query: the Flask
    session cookie carries a random session id; an in-process cache maps it
    to the user id (read 1) and the user id to the user's columns as JSON
    (read 2); the view gets a detached model instance built from them. No
    rotation, no revocation index, no expiry policy: the floor to beat.
    """
    import json
    import secrets

    from flask import session

    cache = SimpleCache(threshold=100_000)
    columns = ("id", "email", "plan")

    @app.before_request
    def load_user() -> None:
        g.current_user = None
        session_id = session.get("sid")

        if session_id is None:
            return

        user_id = cache.get(f"session:{session_id}")

        if user_id is None:
            return

        data = cache.get(f"user:{user_id}")

        if data is not None:
            g.current_user = User(**json.loads(data))

    app.get("/me")(current_user_me)

    @app.post("/login")
    def handmade_login() -> str:
        user = db.session.get(User, 1)
        assert user is not None
        session_id = secrets.token_urlsafe(32)
        cache.set(f"session:{session_id}", user.id, timeout=1800)
        data = {name: getattr(user, name) for name in columns}
        cache.set(f"user:{user.id}", json.dumps(data), timeout=1800)
        session["sid"] = session_id
        return "ok"

    return app


def create_app() -> Flask:
    """For gunicorn: the setup and its stores from the environment. With
    ``BENCH_STATS_DIR``, a worker with the Redis local cache writes its
    counters there when it exits (``benchmarks/local_cache.py``).
    """
    entries = os.environ.get("BENCH_LOCAL_MAX_ENTRIES")
    app, _ = build(
        os.environ["BENCH_SETUP"],
        os.environ["BENCH_DATABASE"],
        os.environ.get("BENCH_REDIS_URL"),
        local_max_entries=int(entries) if entries else None,
    )
    stats_dir = os.environ.get("BENCH_STATS_DIR")

    if stats_dir:
        atexit.register(_write_stats, app, stats_dir)

    return app


def _write_stats(app: Flask, stats_dir: str) -> None:
    local = app.extensions["pow"].get_state(app).credentials.store.local

    if local is None or local.stats.hits + local.stats.misses == 0:
        return  # the master process, or a worker that served nothing

    with open("/proc/self/status") as f:
        # "VmRSS:   70152 kB"
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

    stats = {**dataclasses.asdict(local.stats), "entries": len(local)}
    stats.update(bytes=local.size, rss=rss * 1024)

    with open(os.path.join(stats_dir, f"{os.getpid()}.json"), "w") as f:
        json.dump(stats, f)
