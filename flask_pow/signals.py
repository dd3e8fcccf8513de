"""flask_pow's signals, the application as sender (docs/api.rst has them)."""

from __future__ import annotations

import typing as t

from blinker import Namespace

_signals = Namespace()

#: A login's records are stored. Argument: ``user``.
user_logged_in = _signals.signal("logged-in")
#: :func:`~flask_pow.logout_user` ended a session. Argument: ``user``.
user_logged_out = _signals.signal("logged-out")
#: Beside :data:`user_logged_out`. Arguments: ``session_id``, ``user_key``.
session_ended = _signals.signal("session-ended")
#: This request rotated its token. Arguments: ``session_id``, ``user``.
session_rotated = _signals.signal("session-rotated")
#: Once per session revoked. Arguments: ``session_id``, ``user_key``.
session_revoked = _signals.signal("session-revoked")
#: A user's values were written to the cache. Arguments: ``user_key``, ``updated``.
user_synced = _signals.signal("user-synced")
#: A reload found the user gone. Arguments: ``user_key``, ``session_id``.
user_reloaded_gone = _signals.signal("user-reloaded-gone")

# Flask-Login's signals of the same names.

#: A login is required and the request is anonymous.
user_unauthorized = _signals.signal("user-unauthorized")
#: Once per request when flask_pow looks for its user.
user_accessed = _signals.signal("user-accessed")
#: A request loader authenticated the request. Argument: ``user``.
user_loaded_from_request = _signals.signal("user-loaded-from-request")
#: :func:`~flask_pow.fresh_login_required` found the session not fresh.
user_needs_refresh = _signals.signal("user-needs-refresh")
#: :func:`~flask_pow.confirm_login` made the session fresh again.
user_login_confirmed = _signals.signal("user-login-confirmed")
#: A remember-me cookie logged a user in again. Argument: ``user``.
user_loaded_from_remember = _signals.signal("user-loaded-from-remember")
#: Flask-Login's name for :data:`user_loaded_from_remember`.
user_loaded_from_cookie = user_loaded_from_remember
#: Never sent: Flask-Login's, for its session protection, which flask_pow
#: replaces (docs/migrating.rst); here so that code connecting to it imports.
session_protected = _signals.signal("session-protected")
#: A replaced remember-me token came back. Arguments: ``user_key``, ``series``, ``ip``.
remember_token_reused = _signals.signal("remember-token-reused")


def send_logged_out(
    app: t.Any, user: t.Any, session_id: str, user_key: str | None
) -> None:
    """Send :data:`user_logged_out`, then :data:`session_ended`."""
    user_logged_out.send(app, user=user)
    session_ended.send(app, session_id=session_id, user_key=user_key)
