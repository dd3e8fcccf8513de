"""The example application: everything flask_pow does, on one small site.

``make demo`` runs it on http://127.0.0.1:5000 with SQLite and the
in-process cache. ``POW_REDIS_URL=redis://localhost:6379/0 make demo`` runs
it on Redis, and with Redis several workers can serve it::

    POW_REDIS_URL=redis://localhost:6379/0 \\
        gunicorn -w 4 -b 127.0.0.1:5000 'example.app:create_app()'
"""

from __future__ import annotations

import os
import pathlib
import secrets
import typing as t

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError
from werkzeug.security import generate_password_hash

from .extensions import auth
from .models import User
from .models import db
from .security import check_csrf
from .security import csrf_token
from .views import account
from .views import admin

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "correct horse battery staple"


def create_app(config: dict[str, t.Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    instance = pathlib.Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    app.config.update(
        SECRET_KEY=_secret_key(instance),
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{instance / 'example.sqlite'}",
        SESSION_COOKIE_SAMESITE="Lax",
        POW_LOGIN_VIEW="account.login",
        # Short, so that rotation can be seen on the devices page.
        POW_SESSION_TTL_RENEWAL=60,
        POW_REDIS_URL=os.environ.get("POW_REDIS_URL") or None,
    )
    app.config.update(config or {})
    db.init_app(app)
    auth.init_app(app)
    app.before_request(check_csrf)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.register_blueprint(account)
    app.register_blueprint(admin)

    with app.app_context():
        _create_database()

    return app


def _create_database() -> None:
    # Several gunicorn workers start at once and race to create the tables
    # and the demo user: the first one wins, the others find them made.
    try:
        db.create_all()
        _add_demo_user()
    except (OperationalError, IntegrityError):
        db.session.rollback()


def _secret_key(instance: pathlib.Path) -> str:
    # One key for every worker and every restart, kept in the instance
    # folder: a key made per process would log users out between workers.
    if key := os.environ.get("SECRET_KEY"):
        return key

    path = instance / "secret_key"

    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)

    return path.read_text().strip()


def _add_demo_user() -> None:
    if db.session.scalar(sa.select(User).where(User.email == DEMO_EMAIL)) is None:
        db.session.add(
            User(
                email=DEMO_EMAIL,
                name="Demo",
                is_admin=True,
                password_hash=generate_password_hash(DEMO_PASSWORD),
            )
        )
        db.session.commit()


def main() -> None:
    app = create_app()
    print(f"Demo user: {DEMO_EMAIL}  password: {DEMO_PASSWORD}")
    print("Open http://127.0.0.1:5000  (Ctrl+C to stop)")
    app.run(host="127.0.0.1", port=5000)


if __name__ == "__main__":
    main()
