"""The application tests/system/test_context_servers.py serves with gunicorn sync
workers: ``gunicorn tests.apps.context_app:app``.

Like much application code in the wild, it pushes an application context
when it is imported (the usual answer to Flask-SQLAlchemy's "Working outside
of application context"). A sync worker imports it and serves every request
in that same main thread, so Flask reuses the pushed context, and its ``g``,
for every request the worker handles.

Configured by environment variables: ``POW_TEST_DATABASE``, a SQLite file
with the users of :func:`tests.apps.stress_app.create_users` (made before the
workers start); ``POW_TEST_CACHE_DIR``, a FileSystemCache directory, or
``POW_TEST_REDIS_URL``, or ``POW_TEST_SIMPLE_CACHE=1`` for an in-process
store, or none of them for flask_pow's default store in the instance folder
``POW_TEST_INSTANCE``; and ``POW_TEST_NAMESPACE``, the key prefix in the
store.
"""

from __future__ import annotations

import os

from cachelib import FileSystemCache
from cachelib import SimpleCache
from flask import Flask

from flask_pow import Pow

from .stress_app import User
from .stress_app import add_account_routes
from .stress_app import db


def create_app() -> tuple[Flask, Pow]:
    app = Flask(__name__, instance_path=os.environ.get("POW_TEST_INSTANCE"))
    app.config.update(
        SECRET_KEY="context app",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{os.environ['POW_TEST_DATABASE']}",
        POW_NAMESPACE=os.environ.get("POW_TEST_NAMESPACE", "credentials"),
    )

    if "POW_TEST_REDIS_URL" in os.environ:
        app.config["POW_REDIS_URL"] = os.environ["POW_TEST_REDIS_URL"]
    elif "POW_TEST_CACHE_DIR" in os.environ:
        app.config["POW_CACHE"] = FileSystemCache(
            os.environ["POW_TEST_CACHE_DIR"], threshold=0
        )
    elif "POW_TEST_SIMPLE_CACHE" in os.environ:
        app.config["POW_CACHE"] = SimpleCache(threshold=100_000)

    db.init_app(app)
    pow = Pow(app, db=db, user_model=User)

    add_account_routes(app)

    @app.get("/sessions")
    def sessions() -> str:
        # The stored sessions of user 1, read from the store by the server.
        return str(len(pow.credentials.sessions_by_key("User:1")))

    return app, pow


app, pow = create_app()

# The common pattern under test: a context pushed at import, never popped,
# and then used as such code does (the tables exist already; this only looks).
app.app_context().push()
db.create_all()
