"""A test client that logs a user in, for applications' own tests."""

from __future__ import annotations

import typing as t

from flask import request
from flask.testing import FlaskClient

from .records import SessionInfo
from .remember import cookie_options
from .remember import new_credential
from .state import PowState
from .state import get_state
from .users import resolve_user


class PowClient(FlaskClient):
    """A :class:`~flask.testing.FlaskClient` that can start logged in: set
    ``app.test_client_class = PowClient``. See :doc:`testing`.

    :param user: log this user in before the first request, as a real login
        would (a session in the store, its signed token in the Flask session).
    :param fresh: whether that login is fresh. ``False`` gives a session
        that :func:`~flask_pow.fresh_login_required` refuses, as a session a
        remember-me cookie restored is.
    :param fresh_login: Flask-Login's ``FlaskLoginClient`` name for
        ``fresh``; when given, it wins.
    :param remember: also issue a remember-me credential for the client, in
        its cookie, as ``login_user(user, remember=True)`` does.
    :param metadata: the session's metadata.
    """

    def __init__(
        self,
        *args: t.Any,
        user: t.Any = None,
        fresh: bool = True,
        fresh_login: bool | None = None,
        remember: bool = False,
        metadata: dict[str, t.Any] | None = None,
        **kwargs: t.Any,
    ) -> None:
        super().__init__(*args, **kwargs)

        if fresh_login is not None:
            fresh = fresh_login

        if user is not None:
            self.login(user, fresh=fresh, remember=remember, metadata=metadata)

    def login(
        self,
        user: t.Any,
        *,
        fresh: bool = True,
        remember: bool = False,
        metadata: dict[str, t.Any] | None = None,
    ) -> SessionInfo:
        """Log a user in, and return the new session. The arguments are the
        constructor's.
        """
        app = self.application
        state = get_state(app)
        credentials = state.credentials

        with app.app_context():
            user = resolve_user(user)
            record, token = credentials.new_login(
                user, metadata or {}, fresh=fresh, remember=remember
            )
            user_data = state.users.dump(user)
            credentials.create(record, user_data, credentials.clock())
            value = state.signer.sign(record.id, token)

            if remember:
                series, remember_token = new_credential(credentials, record, user_data)
                self._set_remember_cookie(state, series, remember_token)

            info = credentials.info_of(record)

        with self.session_transaction() as session:
            session[state.config.session_key] = value

        return info

    def _set_remember_cookie(self, state: PowState, series: str, token: str) -> None:
        # Sent where the application's own cookie would be: its domain (or
        # the host the client's requests go to) and its path.
        with self.application.test_request_context():
            options = cookie_options(state)
            host = request.host.partition(":")[0]

        domain = options["domain"]
        self.set_cookie(
            state.config.remember_cookie_name,
            state.remember_signer.sign(series, token),
            domain=domain.lstrip(".") if domain else host,
            origin_only=not domain,
            path=options["path"],
        )
