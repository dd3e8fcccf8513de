"""Remember-me, end to end: the credential's rules (a series with a
single-use token, theft detection), the device's cookie read once per
request, a session restored from it when the device has none, a credential
issued at a login with ``remember=True``, and the cookie set or dropped on
the response.

:meta private:
"""

from __future__ import annotations

import dataclasses
import typing as t

from flask import current_app
from flask import request

from . import signals
from .credentials import CredentialsCache
from .credentials import logger
from .records import SessionRecord
from .records import seal
from .records import unseal
from .state import PowState

if t.TYPE_CHECKING:  # pragma: no cover
    from flask.wrappers import Response

#: The cookie was not read yet in this request.
_UNREAD: t.Any = object()
#: Seconds after a credential's token is replaced during which, with no
#: grace window (``POW_ROTATION_GRACE = 0``), the replaced token is taken
#: for a parallel restore (anonymous), not for a stolen copy (every session
#: of the user ends): tabs reopened at once all present the same token.
PARALLEL_RESTORE_WINDOW = 10.0


@dataclasses.dataclass
class Restored:
    """A session a credential restored (or a parallel request restored from
    it moments ago), and the credential's next token.
    """

    session_id: str
    session_token: str
    remember_token: str
    #: When the credential ends (its login plus ``POW_REMEMBER_TTL``, or
    #: plus the login's ``duration``).
    expires_at: float


# -- the credential -------------------------------------------------------------


def new_credential(
    credentials: CredentialsCache, session: SessionRecord, user_data: dict[str, t.Any]
) -> tuple[str, str]:
    """Issue a credential for the device of a session just stored: a series
    id and a single-use token. It lives until the session's
    ``remembered_until`` (``POW_REMEMBER_TTL``, or ``login_user``'s
    ``duration``, from the login), however often it is used.
    """
    assert session.remembered_until is not None
    now = credentials.clock()
    series = credentials.store.new_session_id(session.user_key, now)
    record, token = credentials.remember_policy.new_session(
        series, session.user_key, session.metadata, session.created_at, fresh=False
    )
    record.kind, record.linked = "remember", session.id
    # Its rotations keep this expiry (the remember policy does not slide).
    record.expires_at = session.remembered_until
    credentials.create(record, user_data, now, keep=(session.id,))
    return series, token


def use_credential(
    credentials: CredentialsCache, series: str, token: str, ip: str | None
) -> Restored | None:
    """A new session (not fresh) for the credential's user and device, and a
    new token for the credential (the one used keeps working for the grace
    window, and moves a parallel request to the same new session and
    token). ``None`` if the credential is not valid. A token used again
    after its grace window means two parties hold the credential: every
    session of the user ends, and :data:`~flask_pow.remember_token_reused`
    is sent.
    """
    store = credentials.store
    # From the store itself: theft detection must see the latest token.
    found = store.read(series, fresh=True)

    if found is None or found.record.kind != "remember":
        return None

    record, now = found.record, credentials.clock()
    match = credentials.remember_policy.match(record, token, now)

    if match is None:
        # The signature says flask_pow issued this token for this series, and
        # the series lives on with another one: the token was replaced and is
        # used again (Spring Security's series-and-token scheme). Without a
        # grace window, a parallel restore that lost the race cannot follow
        # the winner: just after the replacement, that is what it is.
        raced = (
            not credentials.remember_policy.rotation_grace
            and now - record.inserted_at < PARALLEL_RESTORE_WINDOW
        )

        if now < record.expires_at and not raced:
            ended = credentials.delete_sessions_by_key(record.user_key)
            logger.warning(
                "A remember-me token was used again after it was replaced: two"
                " parties hold the credential. Every session of the user was"
                " ended (%d).",
                ended,
            )
            credentials.send(
                signals.remember_token_reused,
                user_key=record.user_key,
                series=record.id,
                ip=ip,
            )

        return None

    if match.follow is not None:
        return _followed(record, token)

    if found.user_data is None:
        return None

    session_id = store.new_session_id(record.user_key, now)
    session, session_token = credentials.policy.new_session(
        session_id, record.user_key, record.metadata, now, fresh=False
    )
    session.remembered_until = record.expires_at
    credentials.create(session, found.user_data, now, keep=(series,))
    advanced, fresh_token = credentials.remember_policy.advance(record, token, now)
    advanced.linked = session_id
    advanced.linked_sealed = seal(session_token, token)
    swapped = store.swap(
        advanced, record.token, now, user_data=found.user_data, wait=True
    )

    if swapped.ok:
        # The device's session before: its cookie is gone (that is why the
        # credential was used), so it ends, and the device is listed once.
        if record.linked is not None:
            store.delete(record.user_key, [record.linked], now)

        return Restored(session_id, session_token, fresh_token, advanced.expires_at)

    # A parallel request used the credential first: this session goes, and
    # the client follows that request's.
    store.delete(record.user_key, [session_id], now)
    current = swapped.current
    return None if current is None else _followed(current, token)


def _followed(record: SessionRecord, token: str) -> Restored | None:
    """The session and token a parallel restore issued, unsealed with the
    token this request holds.
    """
    linked, sealed, rotated = record.linked, record.linked_sealed, record.rotated_to

    if linked is None or sealed is None or rotated is None:
        return None

    return Restored(
        linked, unseal(sealed, token), unseal(rotated, token), record.expires_at
    )


# -- the cookie -----------------------------------------------------------------


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


def end_with_device(
    state: PowState, cookie: RememberCookie, session_id: str, user_key: str
) -> None:
    """End a session, and the credential of this request's device with it."""
    state.credentials.end(session_id, user_key, remembered=device(state, cookie))


def restore(state: PowState, cookie: RememberCookie) -> Restored | None:
    """With no live session, the session the device's credential restores
    (a new one, not fresh, with a new remember token for the cookie). A
    cookie that is not ours, or tampered with, is ignored and left alone;
    one that is ours and no longer valid is dropped.
    """
    found = presented(state, cookie)

    if found is None:
        return None

    restored = use_credential(state.credentials, *found, request.remote_addr)

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
    series, token = new_credential(state.credentials, record, user_data)
    assert record.remembered_until is not None  # new_credential checked
    cookie.issue = (series, token, record.remembered_until)


def forget(cookie: RememberCookie) -> None:
    """Drop the device's cookie (a logout)."""
    cookie.issue = None
    cookie.clear = True


def cookie_options(state: PowState) -> dict[str, t.Any]:
    """The cookie's flags: ``POW_REMEMBER_COOKIE_*``, else those of Flask's
    session cookie, and ``HttpOnly``.
    """
    app_config = current_app.config
    flags = state.config.remember_cookie
    return {
        "secure": flags.get("secure", app_config["SESSION_COOKIE_SECURE"]),
        "httponly": flags.get("httponly", True),
        "samesite": flags.get("samesite", app_config["SESSION_COOKIE_SAMESITE"]),
        "domain": flags.get("domain", app_config["SESSION_COOKIE_DOMAIN"] or None),
        "path": flags.get(
            "path",
            app_config["SESSION_COOKIE_PATH"] or app_config["APPLICATION_ROOT"] or "/",
        ),
    }


def write(state: PowState, cookie: RememberCookie, response: Response) -> None:
    """Set or drop the cookie: HttpOnly, and ``Secure``, ``SameSite``,
    domain and path as Flask's session cookie unless
    ``POW_REMEMBER_COOKIE_*`` says otherwise. Its max-age runs to the end of
    the credential: using it does not extend it.
    """
    if cookie.issue is None and not cookie.clear:
        return

    options = cookie_options(state)
    name = state.config.remember_cookie_name

    if cookie.issue is not None:
        series, token, until = cookie.issue
        max_age = max(0, int(until - state.credentials.clock()))
        value = state.remember_signer.sign(series, token)
        response.set_cookie(name, value, max_age=max_age, **options)
    elif name in request.cookies:
        response.delete_cookie(name, **options)
