"""Signals sent by flask_pow, with :mod:`blinker` as Flask does. The sender
is always the application; connect with ``signal.connect(func, app)`` to
hear one application only.

Handlers run inside the request (or app context) that caused the event.
No signal carries a token.
"""

from __future__ import annotations

import typing as t

from blinker import Namespace

_signals = Namespace()

#: Sent after a login's records are stored. Argument: ``user``, exactly as
#: Flask-Login sends it (``def on_login(sender, user)`` works); the new
#: session is :data:`~flask_pow.current_session`.
user_logged_in = _signals.signal("logged-in")

#: Sent after :func:`~flask_pow.logout_user` ended a session. Argument:
#: ``user`` (``None`` if their cached record was gone), exactly as
#: Flask-Login sends it.
user_logged_out = _signals.signal("logged-out")

#: Sent beside :data:`user_logged_out`. Arguments: ``session_id`` and
#: ``user_key``.
session_ended = _signals.signal("session-ended")

#: Sent after this request rotated its session's token. Arguments:
#: ``session_id`` and ``user``.
session_rotated = _signals.signal("session-rotated")

#: Sent once per session revoked (by the credentials cache,
#: :func:`~flask_pow.logout_other_sessions`, the commit of a deleted user
#: row, or a login past ``POW_MAX_SESSIONS``; not by a logout or a
#: timeout). Arguments: ``session_id`` and ``user_key``.
session_revoked = _signals.signal("session-revoked")

#: Sent after :func:`~flask_pow.sync_user`, ``update_user`` or a commit
#: wrote a user's values to the cache. Arguments: ``user_key``, and
#: ``updated``, whether the user had a live session.
user_synced = _signals.signal("user-synced")

#: Sent when a reload found that the user no longer exists, and ended the
#: session. Arguments: ``user_key`` and ``session_id``.
user_reloaded_gone = _signals.signal("user-reloaded-gone")

# Flask-Login's signals of the same names.

#: Sent when a login is required and the request is anonymous, before the
#: response is chosen. No arguments.
user_unauthorized = _signals.signal("user-unauthorized")

#: Sent once per request when flask_pow looks for its user, whoever it
#: turns out to be. No arguments.
user_accessed = _signals.signal("user-accessed")

#: Sent when a :meth:`~flask_pow.Pow.request_loader` authenticated the
#: request. Argument: ``user``.
user_loaded_from_request = _signals.signal("user-loaded-from-request")

#: Sent when :func:`~flask_pow.fresh_login_required` found the session not
#: fresh, before the response is chosen. No arguments.
user_needs_refresh = _signals.signal("user-needs-refresh")

#: Sent when :func:`~flask_pow.confirm_login` made the session fresh again.
#: No arguments.
user_login_confirmed = _signals.signal("user-login-confirmed")

#: Sent when a remember-me cookie logged a user in again (a new session,
#: not fresh). Argument: ``user``.
user_loaded_from_remember = _signals.signal("user-loaded-from-remember")

#: Flask-Login's name for :data:`user_loaded_from_remember`.
user_loaded_from_cookie = user_loaded_from_remember

#: Sent when a remember-me token was presented again after it was replaced
#: and its grace window was over: two parties hold the credential, and
#: every session and remember credential of the user was ended. Arguments:
#: ``user_key``, ``series`` (the credential's id) and ``ip``.
remember_token_reused = _signals.signal("remember-token-reused")


def send_logged_out(
    app: t.Any, user: t.Any, session_id: str, user_key: str | None
) -> None:
    """Send :data:`user_logged_out`, then :data:`session_ended`."""
    user_logged_out.send(app, user=user)
    session_ended.send(app, session_id=session_id, user_key=user_key)
