"""An application for ``flask --app tests.apps.cli_app pow ...`` in a subprocess:
Redis and the database come from ``POW_TEST_REDIS_URL``,
``POW_TEST_NAMESPACE`` and ``POW_TEST_DATABASE``.
"""

from __future__ import annotations

import os

from flask import Flask

from flask_pow import Pow
from tests.support.env import make_app


def create_app() -> Flask:
    app, db, User = make_app(
        None,  # type: ignore[arg-type]
        f"sqlite:///{os.environ['POW_TEST_DATABASE']}",
        POW_CACHE=None,
        POW_REDIS_URL=os.environ["POW_TEST_REDIS_URL"],
        POW_NAMESPACE=os.environ["POW_TEST_NAMESPACE"],
    )
    Pow(app, db=db, user_model=User)
    return app
