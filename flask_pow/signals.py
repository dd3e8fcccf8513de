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

#: Sent after a login's records are stored, when the response is being
#: finished. Argument: ``user``, the user, exactly as Flask-Login sends it,
#: so that a handler written for Flask-Login (``def on_login(sender,
#: user)``) works; the new session is :data:`~flask_pow.current_session`.
user_logged_in = _signals.signal("logged-in")

#: Sent after a session is ended by :func:`~flask_pow.logout_user`.
#: Argument: ``user``, the user who was logged in (or ``None`` if their
#: cached record was gone), exactly as Flask-Login sends it; the ended
#: session's id comes with :data:`session_ended`.
user_logged_out = _signals.signal("logged-out")

#: Sent after :func:`~flask_pow.logout_user` ended a session, beside
#: :data:`user_logged_out`. Arguments: ``session_id`` and ``user_key``.
session_ended = _signals.signal("session-ended")

#: Sent after a session's token was rotated by this request. Arguments:
#: ``session_id``, and ``user``, the current user.
session_rotated = _signals.signal("session-rotated")

#: Sent after a session is revoked through the credentials cache:
#: :meth:`~flask_pow.CredentialsCache.delete`,
#: :meth:`~flask_pow.CredentialsCache.delete_user_sessions`,
#: :func:`~flask_pow.logout_other_sessions`, the commit of a deleted user
#: row (``POW_SYNC_ON_COMMIT``), or a login past ``POW_MAX_SESSIONS``.
#: Arguments: ``session_id`` and ``user_key``. Sent once per session.
session_revoked = _signals.signal("session-revoked")

#: Sent after :func:`~flask_pow.sync_user`,
#: :meth:`~flask_pow.CredentialsCache.update_user`, or the commit of a changed
#: user row (``POW_SYNC_ON_COMMIT``) wrote a user's values to the cache.
#: Arguments: ``user_key``, and ``updated``, whether the user had a live
#: session to update.
user_synced = _signals.signal("user-synced")

#: Sent when a reload (:func:`~flask_pow.reload_user`, ``POW_RELOAD``, a
#: reload blueprint) found that the user no longer exists, and the session
#: was ended. Arguments: ``user_key`` and ``session_id``.
user_reloaded_gone = _signals.signal("user-reloaded-gone")

#: Sent when a login is required and the request is anonymous, before the
#: response is chosen (Flask-Login's signal of the same name). No
#: arguments.
user_unauthorized = _signals.signal("user-unauthorized")

#: Sent once per request when flask_pow looks for its user, whoever it
#: turns out to be (Flask-Login's signal of the same name). No arguments.
user_accessed = _signals.signal("user-accessed")

#: Sent when a :meth:`~flask_pow.Pow.request_loader` authenticated the
#: request (Flask-Login's signal of the same name). Argument: ``user``.
user_loaded_from_request = _signals.signal("user-loaded-from-request")

#: Sent when :func:`~flask_pow.fresh_login_required` found the session not
#: fresh, before the response is chosen (Flask-Login's signal of the same
#: name). No arguments.
user_needs_refresh = _signals.signal("user-needs-refresh")

#: Sent when :func:`~flask_pow.confirm_login` made the session fresh again
#: (Flask-Login's signal of the same name). No arguments.
user_login_confirmed = _signals.signal("user-login-confirmed")

#: Sent when a remember-me cookie logged a user in again (a new session,
#: not fresh). Flask-Login's ``user_loaded_from_cookie``. Argument:
#: ``user``.
user_loaded_from_remember = _signals.signal("user-loaded-from-remember")

#: Flask-Login's name for :data:`user_loaded_from_remember`: the same
#: signal.
user_loaded_from_cookie = user_loaded_from_remember

#: Sent when a remember-me token was presented again after it was replaced
#: and its grace window was over: two parties hold the credential, and
#: every session and remember credential of the user was ended. Arguments:
#: ``user_key``, ``series`` (the credential's id) and ``ip``.
remember_token_reused = _signals.signal("remember-token-reused")


def send_logged_out(
    app: t.Any, user: t.Any, session_id: str, user_key: str | None
) -> None:
    """Send :data:`user_logged_out` with Flask-Login's arguments, then
    :data:`session_ended`.

    :meta private:
    """
    user_logged_out.send(app, user=user)
    session_ended.send(app, session_id=session_id, user_key=user_key)
