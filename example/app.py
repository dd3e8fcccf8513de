"""The example application: everything flask_pow does, on one small site.

``make demo`` runs it on http://127.0.0.1:5000 with SQLite (``make demo
PORT=5001`` picks another port). ``POW_REDIS_URL=redis://localhost:6379/0
make demo`` runs it on Redis, with the local cache. Several workers can
serve it::

    gunicorn -w 4 -b 127.0.0.1:5000 'example.app:create_app()'

Every way of starting it uses the same instance folder, ``example/instance/``
(or ``EXAMPLE_INSTANCE_PATH``): the database, the secret key, and flask_pow's
file store when no other store is configured.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import secrets
import tempfile
import typing as t
import urllib.parse

import sqlalchemy as sa
from cachelib import FileSystemCache
from flask import Flask
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError
from werkzeug.security import generate_password_hash

from .devices import describe_device
from .errors import register_error_pages
from .extensions import auth
from .models import ROLES
from .models import Permission
from .models import Role
from .models import User
from .models import db
from .models import role_named
from .security import check_csrf
from .security import csrf_token
from .views import account
from .views import admin
from .views import logged_out_elsewhere

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "correct horse battery staple"

#: The instance folder, next to this file, whatever the current directory
#: and however the app is started (``python -m example.app``, ``flask --app
#: example.app:create_app run``, gunicorn). Flask would otherwise guess it
#: from the import name, which differs between them.
INSTANCE_PATH = pathlib.Path(__file__).resolve().parent / "instance"


def instance_path() -> pathlib.Path:
    """The instance folder: ``EXAMPLE_INSTANCE_PATH`` if set, else
    ``example/instance/``.
    """
    configured = os.environ.get("EXAMPLE_INSTANCE_PATH")
    return pathlib.Path(configured).resolve() if configured else INSTANCE_PATH


def create_app(config: dict[str, t.Any] | None = None) -> Flask:
    instance = instance_path()
    app = Flask(__name__, instance_path=str(instance))
    instance.mkdir(parents=True, exist_ok=True)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{instance / 'example.sqlite'}",
        SESSION_COOKIE_SAMESITE="Lax",
        POW_LOGIN_VIEW="account.login",
        # Short, so that rotation can be seen on the devices page.
        POW_SESSION_TTL_RENEWAL=60,
        # Changing the password needs a password given in the last 10
        # minutes (EXAMPLE_FRESHNESS seconds to try it sooner).
        POW_FRESHNESS=int(os.environ.get("EXAMPLE_FRESHNESS", "600")),
        POW_REFRESH_VIEW="account.reauthenticate",
        # The header shows the user's role and what it permits on every page:
        # cached with the user, so no query (docs/users.rst).
        POW_CACHE_RELATIONSHIPS=["role"],
        POW_REDIS_URL=os.environ.get("POW_REDIS_URL") or None,
        # On Redis, each worker answers repeat requests from its own copy,
        # which Redis invalidates: no round trip (docs/redis.rst).
        POW_REDIS_LOCAL_CACHE=bool(os.environ.get("POW_REDIS_URL")),
    )
    app.config.update(config or {})

    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secret_key(
            instance / "secret_key"
        )

    db.init_app(app)
    auth.init_app(app)
    # After flask_pow's own before_request: it needs g.current_user.
    app.before_request(logged_out_elsewhere)
    app.before_request(check_csrf)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["permission"] = Permission
    app.jinja_env.filters["device"] = describe_device
    app.register_blueprint(account)
    app.register_blueprint(admin)
    register_error_pages(app)

    with app.app_context():
        _create_database()

    return app


def _create_database() -> None:
    _refuse_an_older_database()

    # Several gunicorn workers start at once and race to create the tables
    # and the demo user: the first one wins, the others find them made.
    try:
        db.create_all()
        _add_roles()
        _add_demo_user()
    except (OperationalError, IntegrityError):
        db.session.rollback()


def _refuse_an_older_database() -> None:
    # create_all() adds missing tables, never missing columns.
    inspector = sa.inspect(db.engine)

    if inspector.has_table("user") and "role_id" not in {
        column["name"] for column in inspector.get_columns("user")
    }:
        raise RuntimeError(
            f"{db.engine.url.database} was made by an older version of the"
            " example, before roles: delete it, and start the example again."
        )


def secret_key(path: pathlib.Path) -> str:
    """The key kept in ``path``, made there on first use.

    One key for every worker and every restart: a key made per process
    would log users out between workers. Several gunicorn workers start at
    once, so the file is created atomically: the key is written to a file
    of its own, which is then hard-linked to ``path``. Linking fails if
    ``path`` exists, so exactly one process's key wins, and nobody ever
    reads a half-written file; the others read the winner's key.
    """
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path)

    fd, draft = tempfile.mkstemp(dir=path.parent, prefix=".secret_key-")

    try:
        with os.fdopen(fd, "w") as file:  # mkstemp makes it 0600
            file.write(secrets.token_hex(32))
            file.flush()
            os.fsync(file.fileno())

        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        os.unlink(draft)

    return _read_key(path)


def _read_key(path: pathlib.Path) -> str:
    key = path.read_text().strip()

    if not key:
        raise RuntimeError(
            f"The secret key file {path} is empty. Delete it and start the"
            " app again to make a new one (this logs everybody out)."
        )

    return key


def _add_roles() -> None:
    if db.session.scalar(sa.select(Role).limit(1)) is None:
        db.session.add_all(
            Role(name=name, permissions=permissions) for name, permissions in ROLES
        )
        db.session.commit()


def _add_demo_user() -> None:
    if db.session.scalar(sa.select(User).where(User.email == DEMO_EMAIL)) is None:
        db.session.add(
            User(
                email=DEMO_EMAIL,
                name="Demo",
                role=role_named("admin"),
                password_hash=generate_password_hash(DEMO_PASSWORD),
            )
        )
        db.session.commit()


def describe_store(app: Flask) -> str:
    """Where flask_pow keeps the sessions of ``app``, for the start banner."""
    if url := app.config.get("POW_REDIS_URL"):
        return f"Redis at {_without_password(url)}"

    with app.app_context():
        cache = auth.config.cache

    name = type(cache).__name__

    if not isinstance(cache, FileSystemCache):
        return name

    if app.config.get("POW_CACHE") is None:
        # flask_pow's default store, in the instance folder.
        folder = os.path.join(app.instance_path, "flask_pow")
    else:
        folder = getattr(cache, "_path", "")

    return f"{name} at {_shown_path(folder)}" if folder else name


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)

    if parts.password is None:
        return url

    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _shown_path(path: str | os.PathLike[str]) -> str:
    # Relative to the current directory when inside it: shorter to read.
    try:
        return str(pathlib.Path(path).resolve().relative_to(pathlib.Path.cwd()))
    except ValueError:
        return str(path)


def banner(app: Flask, url: str) -> str:
    """What ``python -m example.app`` prints when it starts."""
    return "\n".join(
        [
            "flask_pow demo",
            f"  Open:        {url}  (Ctrl+C to stop)",
            f"  Log in as:   {DEMO_EMAIL}  password: {DEMO_PASSWORD}",
            f"  Sessions:    {describe_store(app)}",
            f"  Instance:    {_shown_path(app.instance_path)}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m example.app", description="Run the flask_pow demo."
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 5000),
        help="the port on 127.0.0.1 (default: $PORT, else 5000)",
    )
    port = parser.parse_args(argv).port
    app = create_app()
    print(banner(app, f"http://127.0.0.1:{port}"), flush=True)
    app.run(host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
