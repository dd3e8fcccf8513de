"""Signals sent by flask_pow, with :mod:`blinker` as Flask does. The sender
is always the application; connect with ``signal.connect(func, app)`` to
hear one application only.

Handlers run inside the request (or app context) that caused the event.
No signal carries a token.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent after a login's records are stored, when the response is being
#: finished. Arguments: ``user``, the user, and ``session``, the new
#: :class:`~flask_pow.SessionInfo`.
user_logged_in = _signals.signal("logged-in")

#: Sent after a session is ended by :func:`~flask_pow.logout_user`.
#: Arguments: ``user``, the user who was logged in (or ``None`` if their
#: cached record was gone), and ``session_id``.
user_logged_out = _signals.signal("logged-out")

#: Sent after a session's token was rotated by this request. Arguments:
#: ``session_id``, and ``user``, the current user.
session_rotated = _signals.signal("session-rotated")
