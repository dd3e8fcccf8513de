"""Logging in and out, and telling the cache about a changed user. Each
call changes what the rest of the request sees at once, and records its
effect in the request's list, which :func:`flask_pow.effects.apply` runs
once the view has returned.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

from flask import current_app
from flask import has_request_context
from flask import request

from . import serialization
from . import signals
from .effects import ClearCookie
from .effects import End
from .effects import Login
from .effects import RequestState
from .effects import RevokeOthers
from .effects import Sync
from .effects import log_out
from .effects import request_state
from .lifecycle import current
from .remember import presented
from .state import get_state
from .users import resolve_user

#: The user agent kept in the session metadata is cut to this length.
MAX_USER_AGENT = 512


def login_user(
    user: t.Any,
    remember: bool = False,
    duration: dt.timedelta | None = None,
    force: bool = False,
    fresh: bool = True,
    *,
    metadata: dict[str, t.Any] | None = None,
) -> bool:
    """Log a user in: a new session with a new token and a new session id.
    A session the request was already authenticated by ends, so a token from
    before the login is dead after it (no session fixation). Where the Flask
    session interface can regenerate its id (Flask-Session), it does.

    ``g.current_user`` is the user at once; the records are stored when the
    view has returned. The arguments are Flask-Login's, in its order.

    :param user: the user, as the user adapter takes it (the
        :data:`current_user` proxy too).
    :param remember: also issue a remember-me credential for this device,
        in its own cookie (``POW_REMEMBER_COOKIE_NAME``): when the session
        has ended, the next request logs the user in again (not fresh),
        until ``duration`` (else ``POW_REMEMBER_TTL``) after this login.
        See :doc:`fresh-logins`.
    :param duration: how long the remember-me credential lasts from this
        login, instead of ``POW_REMEMBER_TTL``, as a
        :class:`~datetime.timedelta` (as Flask-Login): the credential's
        expiry in the store and its cookie's, kept by every use of it.
        Checked even without ``remember``, so that a bad value fails
        whichever way the "remember me" box was ticked.
    :param force: log the user in even if ``user.is_active`` is false.
    :param fresh: whether the user proved who they are for this login (a
        password); :func:`~flask_pow.fresh_login_required` lets only fresh
        sessions through (``POW_FRESHNESS``).
    :param metadata: extra metadata for the session, merged over the IP,
        user agent and the application's
        :meth:`~flask_pow.Pow.session_metadata` callbacks. Must be
        JSON-serializable (tagged JSON types are fine).
    :return: ``False``, with nothing stored and nobody logged in, for an
        inactive user; ``True`` otherwise.
    :raise TypeError: if the metadata cannot be stored, or ``duration`` is
        not a timedelta.
    :raise ValueError: if ``duration`` is not positive.
    """
    remember_for = _remember_seconds(duration)
    user = resolve_user(user)

    if not force and not getattr(user, "is_active", True):
        return False

    rs = current()
    state = rs.state
    if rs.applied:
        _refuse_late("login_user()", "the new session's cookie")
    # Fail here, in the view, rather than after it: no secret key, a user
    # with no identity, or metadata that cannot be stored.
    state.signer.check()
    values: dict[str, t.Any] = {
        "ip": request.remote_addr,
        "user_agent": request.user_agent.string[:MAX_USER_AGENT],
    }

    for callback in state.metadata_callbacks:
        values.update(callback(user))

    if metadata:
        values.update(metadata)

    serialization.dumps(values)
    record, token = state.credentials.new_login(
        user, values, fresh=fresh, remember=bool(remember), remember_for=remember_for
    )
    _end_current(rs)
    rs.effects.append(Login(user, record, token, bool(remember)))
    # The rest of the request sees the session the next request will.
    rs.record = record
    rs.set_user(user)
    return True


def _remember_seconds(duration: object) -> float | None:
    """The seconds of ``login_user``'s ``duration``, ``None`` for the
    setting's.
    """
    if duration is None:
        return None

    # A number is refused, as Flask-Login refuses it: seconds or days?
    if not isinstance(duration, dt.timedelta):
        raise TypeError(
            "login_user()'s duration must be a datetime.timedelta, such as"
            f" timedelta(days=14), or None for POW_REMEMBER_TTL; got {duration!r}."
        )

    seconds = duration.total_seconds()

    if seconds <= 0:
        raise ValueError(f"login_user()'s duration must be positive, got {duration!r}.")

    return seconds


def _refuse_late(call: str, needs: str) -> t.NoReturn:
    """Raise: the request's effects were already applied, and what ``call``
    does needs ``needs``, which goes out with the response's headers.
    """
    raise RuntimeError(
        f"{call} was called after flask_pow applied this request's"
        " changes (inside a streamed response's generator, or an"
        " after_request function registered before flask_pow's): it"
        f" needs {needs}, which can no longer be sent. Call it in the"
        " view, before it returns its response."
    )


def _end_current(rs: RequestState) -> None:
    """The request's session ends: a login not stored yet is dropped, a
    stored session is ended after the view.
    """
    for effect in rs.effects:
        if isinstance(effect, Login):
            rs.effects.remove(effect)
            break
    else:
        if rs.record is not None:
            rs.effects.append(End(rs.record, rs.user))

    rs.forget_session()


def logout_user() -> bool:
    """Log the current user out. The session's token is dead server-side
    once the view returns, so a copy of the cookie is of no use.

    :return: whether a user was logged in.
    """
    rs = current()
    state = rs.state
    was_in = rs.user is not None

    if rs.applied:
        # Too late for the cookie (a streamed response): the session ends
        # now, server-side, so the cookie the client keeps opens nothing.
        record, user = rs.record, rs.user
        rs.forget_session()
        rs.set_user(None)

        if record is not None:
            log_out(state, rs, record, user)

        return was_in

    _end_current(rs)
    rs.effects.append(ClearCookie())
    rs.set_user(None)
    return was_in


def sync_user(user: t.Any) -> None:
    """Write a user's current values to the cache, after the user's row
    changed: the next request of every session of that user sees them, with
    no query.

    In a request whose user this is, the current token is also rotated (a
    new token, the same session id), as a privilege change calls for. Inside
    a request the write happens once the view has returned, like a login's;
    outside one (a background job, a shell, a CLI command) it happens at
    once, with no rotation.

    :param user: the user, with its new values (the :data:`current_user`
        proxy too).
    """
    user = resolve_user(user)
    state = get_state()

    if not has_request_context():
        state.credentials.update_user(user)
        return

    rs = current()
    key = state.users.key(user)
    own = rs.record is not None and key == rs.record.user_key

    if rs.applied:
        # After the request's writes (a streamed response): written now;
        # the token cannot rotate, its cookie having gone out.
        state.credentials.update_user(user)
    else:
        rs.effects.append(Sync(key, state.users.dump(user)))

        if own:
            rs.rotate_at_least("hard")

    if own:
        rs.set_user(user)


def database_user(user: t.Any = None) -> t.Any:
    """The row of a user, attached to the database session, for what the
    cached user cannot do: read a relationship or an excluded column, or
    change the user and commit. Costs one query, or none when the session
    already holds the row (after :func:`~flask_pow.reload_user`). In a
    request the row is held until it ends, so a second call, and the
    relationships the row has loaded, cost no query again.

    .. code-block:: python

        user = database_user()
        user.name = form.name.data
        db.session.commit()  # POW_SYNC_ON_COMMIT updates the cache

    :param user: the user (or :data:`current_user`); the current user if not
        given.
    :return: the row, or ``None`` if there is no user or it no longer exists.
    """
    state = get_state()

    if user is None:
        if not has_request_context():
            return None

        user = current().user

        if user is None:
            return None

    user = resolve_user(user)

    if not has_request_context():
        return state.users.row(user)

    # Held for the request: the session's identity map holds rows weakly.
    rows = request_state(state).rows
    key = state.users.key(user)
    row = rows.get(key)

    if row is None or not state.users.in_session(row):
        row = rows[key] = state.users.row(user)

    return row


def logout_other_sessions() -> int:
    """End every session of the current user but this one ("log out other
    devices"), and give this one a new token at once, with no grace window
    for the old one: the one call to make after a password change, which
    leaves exactly one valid credential of the user, the caller's new one
    (a copy of this cookie made before is dead too). The writes happen once
    the view has returned.

    :return: how many other sessions the user has now.
    """
    rs = current()
    state = rs.state
    if rs.applied:
        _refuse_late("logout_other_sessions()", "the new token's cookie")
    record = rs.record

    if record is None or rs.token is None:
        return 0

    rs.effects.append(RevokeOthers(record.user_key, keep=record.id))
    rs.rotate_at_least("hard")
    others = state.credentials.sessions_by_key(record.user_key)
    return sum(1 for info in others if info.id != record.id)


def login_fresh() -> bool:
    """Whether the current session is fresh: the user proved who they are
    in it (a login with a password, or :func:`confirm_login`) within
    :data:`~flask_pow.config.POW_FRESHNESS`. ``False`` when nobody is logged
    in, and for a user a :meth:`~flask_pow.Pow.request_loader` authenticated.
    """
    info = current().session_info
    return info is not None and info.fresh


def login_remembered() -> bool:
    """Whether the current login is remembered across browser sessions, as
    Flask-Login's ``login_remembered``: the session has a remember-me
    credential that has not run out (it was logged in with
    ``remember=True``, or restored by a remember-me cookie), and the
    device holds its cookie (sent with the request, or set by this
    response). ``False`` when nobody is logged in, after
    :func:`logout_user`, for a login without ``remember``, and for a user a
    :meth:`~flask_pow.Pow.request_loader` authenticated. Unlike
    Flask-Login's, it is already ``True`` in the request of the login.

    It reads no store: a credential ended on its own while its session
    lives (evicted by :data:`~flask_pow.config.POW_MAX_SESSIONS`) still
    counts until the session ends.
    """
    rs = current()
    record = rs.record

    if record is None or record.remembered_until is None:
        return False

    if record.remembered_until <= rs.state.credentials.clock():
        return False

    logging_in = any(
        isinstance(effect, Login) and effect.record is record for effect in rs.effects
    )
    cookie = rs.remember
    return (
        logging_in
        or cookie.issue is not None
        or presented(rs.state, cookie) is not None
    )


def confirm_login() -> None:
    """Mark the current session fresh again, after the application checked
    the user's password (a "confirm your password" form), as Flask-Login's
    ``confirm_login``. This is a privilege change: the token rotates once
    the view has returned, with no grace window for the old one. Sends
    :data:`~flask_pow.user_login_confirmed`.

    :raise RuntimeError: if the request has no session (nobody logged in,
        or a user from a request loader).
    """
    rs = current()
    state = rs.state
    if rs.applied:
        _refuse_late("confirm_login()", "the new token's cookie")
    info = rs.session_info

    if info is None:
        raise RuntimeError(
            "confirm_login() needs a logged-in session: nobody is logged in"
            " with flask_pow in this request."
        )

    now = state.credentials.clock()
    rs.rotate_at_least("confirm")
    rs.info = dataclasses.replace(
        info, fresh=True, fresh_at=dt.datetime.fromtimestamp(now, dt.timezone.utc)
    )
    signals.user_login_confirmed.send(
        current_app._get_current_object()  # type: ignore[attr-defined]
    )
