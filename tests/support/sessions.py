"""A test client's flask_pow value, read and planted through its Flask
session, and the session ids of user 1.
"""

from __future__ import annotations

from flask.testing import FlaskClient

from .env import Env


def pow_value(client: FlaskClient, key: str = "pow_auth") -> str | None:
    with client.session_transaction() as session:
        value = session.get(key)

    assert value is None or isinstance(value, str)
    return value


def set_value(client: FlaskClient, value: str | None) -> None:
    with client.session_transaction() as session:
        session["pow_auth"] = value


def session_ids(env: Env) -> list[str]:
    with env.app.app_context():
        user = env.db.session.get(env.User, 1)
        return [info.id for info in env.pow.credentials.sessions(user)]
