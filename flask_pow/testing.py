"""A test client that logs a user in, for applications' own tests."""

from __future__ import annotations

import typing as t

from flask.testing import FlaskClient

from .records import SessionInfo
from .state import get_state


class PowClient(FlaskClient):
    """A :class:`~flask.testing.FlaskClient` that can start logged in: set
    ``app.test_client_class = PowClient``. See :doc:`testing`.

    :param user: log this user in before the first request, as a real login
        would (a session in the store, its signed token in the Flask session).
    :param metadata: the session's metadata.
    """

    def __init__(
        self,
        *args: t.Any,
        user: t.Any = None,
        metadata: dict[str, t.Any] | None = None,
        **kwargs: t.Any,
    ) -> None:
        super().__init__(*args, **kwargs)

        if user is not None:
            self.login(user, metadata=metadata)

    def login(
        self, user: t.Any, *, metadata: dict[str, t.Any] | None = None
    ) -> SessionInfo:
        """Log a user in, and return the new session."""
        app = self.application
        state = get_state(app)

        with app.app_context():
            info, token = state.credentials.put(user, metadata or {})
            value = state.signer.sign(info.id, token)

        with self.session_transaction() as session:
            session[state.config.session_key] = value

        return info
