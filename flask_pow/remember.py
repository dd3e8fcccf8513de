"""Remember-me, end to end: the device's cookie read once per request, a
session restored from it when the device has none, a credential issued at
a login with ``remember=True``, and the cookie set or dropped on the
response. The credential's rules (single-use tokens, theft detection) are
:meth:`CredentialsCache.restore <flask_pow.CredentialsCache>`'s.

:meta private:
"""

from __future__ import annotations

import dataclasses
import typing as t

from flask import current_app
from flask import request

from .credentials import Restored
from .records import SessionRecord
from .state import PowState

if t.TYPE_CHECKING:  # pragma: no cover
    from flask.wrappers import Response

#: The cookie was not read yet in this request.
_UNREAD: t.Any = object()


@dataclasses.dataclass
class RememberCookie:
    """The remember-me cookie of one request: what the client sent, and
    what the response sets.
    """

    #: The series and token the client's cookie holds (signature checked),
    #: ``None`` if it has none of ours, or ``_UNREAD``.
    presented: tuple[str, str] | None = _UNREAD
    #: The cookie to set on the response: series, token, and when the
    #: credential ends.
    issue: tuple[str, str, float] | None = None
    #: Drop the client's cookie (a logout, a dead credential).
    clear: bool = False


def presented(state: PowState, cookie: RememberCookie) -> tuple[str, str] | None:
    """The series and token of the request's cookie, checked once."""
    if cookie.presented is _UNREAD:
        found = state.remember_signer.read(
            request.cookies.get(state.config.remember_cookie_name)
        )
        cookie.presented = None if found is None else found[:2]

    return cookie.presented


def device(state: PowState, cookie: RememberCookie) -> list[str]:
    """The credential of this request's device, as a list for
    :meth:`CredentialsCache.end <flask_pow.CredentialsCache.end>`: a
    device's credential ends with its session, with no lookup.
    """
    found = presented(state, cookie)
    return [] if found is None else [found[0]]


def restore(state: PowState, cookie: RememberCookie) -> Restored | None:
    """With no live session, the session the device's credential restores
    (a new one, not fresh, with a new remember token for the cookie). A
    cookie that is not ours, or tampered with, is ignored and left alone;
    one that is ours and no longer valid is dropped.
    """
    found = presented(state, cookie)

    if found is None:
        return None

    restored = state.credentials.restore(*found, {}, ip=request.remote_addr)

    if restored is None:
        cookie.clear = True
        return None

    cookie.issue = (found[0], restored.remember_token, restored.expires_at)
    return restored


def issue(
    state: PowState,
    cookie: RememberCookie,
    record: SessionRecord,
    user_data: dict[str, t.Any],
) -> None:
    """Issue a credential for the device of a session just stored by a
    login with ``remember=True``.
    """
    series, token = state.credentials.remember(record, user_data)
    assert record.remembered_until is not None
    cookie.issue = (series, token, record.remembered_until)


def forget(cookie: RememberCookie) -> None:
    """Drop the device's cookie (a logout)."""
    cookie.issue = None
    cookie.clear = True


def write(state: PowState, cookie: RememberCookie, response: Response) -> None:
    """Set or drop the cookie: HttpOnly, and ``Secure``, ``SameSite``,
    domain and path as Flask's session cookie unless
    ``POW_REMEMBER_COOKIE_*`` says otherwise. Its max-age runs to the end of
    the credential: using it does not extend it.
    """
    if cookie.issue is None and not cookie.clear:
        return

    app_config = current_app.config
    flags = state.config.remember_cookie
    options: dict[str, t.Any] = {
        "secure": flags.get("secure", app_config["SESSION_COOKIE_SECURE"]),
        "httponly": flags.get("httponly", True),
        "samesite": flags.get("samesite", app_config["SESSION_COOKIE_SAMESITE"]),
        "domain": flags.get("domain", app_config["SESSION_COOKIE_DOMAIN"] or None),
        "path": flags.get(
            "path",
            app_config["SESSION_COOKIE_PATH"] or app_config["APPLICATION_ROOT"] or "/",
        ),
    }
    name = state.config.remember_cookie_name

    if cookie.issue is not None:
        series, token, until = cookie.issue
        max_age = max(0, int(until - state.credentials.clock()))
        value = state.remember_signer.sign(series, token)
        response.set_cookie(name, value, max_age=max_age, **options)
    elif name in request.cookies:
        response.delete_cookie(name, **options)
