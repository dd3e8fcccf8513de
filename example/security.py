"""A small CSRF guard for the example's forms: a random token in the Flask
session, checked on every POST. (A real application may use Flask-WTF.)
"""

from __future__ import annotations

import hmac
import secrets

from flask import abort
from flask import request
from flask import session


def csrf_token() -> str:
    """The token for this browser, made on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)

    return str(session["csrf"])


def check_csrf() -> None:
    """A ``before_request`` function: refuse a POST without the token."""
    if request.method != "POST":
        return

    sent = request.form.get("csrf", "")
    expected = session.get("csrf", "")

    # Both must be there: two empty strings compare equal.
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        abort(400, "The form expired. Go back, reload the page and try again.")
