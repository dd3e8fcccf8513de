"""The application tests/system/test_flask_run.py serves with ``flask run --debug``,
as a developer does: ``flask --app tests.apps.reload_app run --debug``.

Configured by environment variables: ``POW_TEST_DATABASE``, a SQLite file
with the users of :func:`tests.apps.stress_app.create_users`;
``POW_TEST_CACHE_DIR``, a FileSystemCache directory, so sessions outlive the
process; ``POW_TEST_MARKER_MODULE``, a module the application imports (the
test edits it to make the reloader restart the server, and ``/version``
shows which edit is loaded); and ``POW_TEST_PUSH_CONTEXT``, set to push an
application context at import, never popped, as much application code does.
"""

from __future__ import annotations

import importlib
import os

from cachelib import FileSystemCache
from flask import Flask

from flask_pow import Pow

from .stress_app import User
from .stress_app import add_account_routes
from .stress_app import db

# Imported like any module of the application, so the reloader watches it.
marker = importlib.import_module(os.environ["POW_TEST_MARKER_MODULE"])

app = Flask(__name__)
app.config.update(
    # A fixed key: a restarted server must read the cookies it gave out.
    SECRET_KEY="reload app",
    SQLALCHEMY_DATABASE_URI=f"sqlite:///{os.environ['POW_TEST_DATABASE']}",
    POW_CACHE=FileSystemCache(os.environ["POW_TEST_CACHE_DIR"], threshold=0),
)
db.init_app(app)
Pow(app, db=db, user_model=User)
add_account_routes(app)


@app.get("/version")
def version() -> str:
    return str(marker.VERSION)


if os.environ.get("POW_TEST_PUSH_CONTEXT"):
    app.app_context().push()
