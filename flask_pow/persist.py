"""Apply the writes a request decided once the view has returned (an
``after_request`` function): ended sessions, what committed transactions
changed, syncs, a login, a rotation, a new cookie value. Nothing is written
while the view runs, and a request that failed with an unhandled exception
writes nothing but what its committed transactions changed, so a failed
request consumes no token.
"""

from __future__ import annotations

import logging
import typing as t

from flask import current_app
from flask import has_request_context
from flask import request
from flask import session

from . import signals
from .orm import in_session
from .orm import warn_if_changed_in_vain
from .request_state import RequestState
from .request_state import end_request
from .request_state import find_request_state
from .request_state import forget_session
from .request_state import get_pow_state
from .request_state import get_request_state
from .request_state import is_dispatch_context
from .request_state import remembered_here
from .request_state import set_current_user
from .stores import StoreUnavailable

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask.wrappers import Response

    from .credentials import CredentialsCache
    from .extension import PowState

logger = logging.getLogger("flask_pow")


# -- writing the cookie -----------------------------------------------------


def _write_cookie(state: PowState, session_id: str, token: str) -> None:
    session[state.config.session_key] = state.signer.sign(session_id, token)


def _regenerate_session() -> None:
    # Flask-Session's server-side interface can issue a new session id;
    # Flask's cookie session has no id to fix.
    regenerate = getattr(current_app.session_interface, "regenerate", None)

    if callable(regenerate):
        regenerate(session)


# -- persisting --------------------------------------------------------------


def mark_failed(sender: Flask, **kwargs: t.Any) -> None:
    """Connected to :data:`flask.got_request_exception`: a request that
    failed writes nothing.

    :meta private:
    """
    if has_request_context():
        get_request_state().failed = True


def persist(response: Response) -> Response:
    """Apply the writes this request decided, in order: ended sessions, a
    login, a rotation, a new cookie value. Registered as an
    ``after_request`` function.

    If the store fails on a write the client relies on (a login, a logout,
    a revocation, a sync), the response becomes the application's 503 (its
    error handler for 503 or :exc:`~flask_pow.StoreUnavailable`, if it has
    one) and the cookie is left as it was. A failed routine rotation keeps
    the response and the client's current token.
    """
    request_state = find_request_state()

    if request_state is None:
        return response

    request_state.applied = True

    if request_state.user_key is not None:
        warn_if_changed_in_vain(request_state.user)

    try:
        written = _apply_committed(request_state)

        if not request_state.failed:
            _apply(request_state, written)
    except StoreUnavailable as e:
        # Through the application's error handlers, so that its 503 page is
        # the one shown, and shows the user the store really has.
        _back_to_stored(request_state)
        return current_app.make_response(current_app.handle_http_exception(e))

    _remember_cookie(response, request_state)
    return response


def _back_to_stored(request_state: RequestState) -> None:
    """After the store failed part way through the writes: make the
    request's user the one the client's cookie now opens. A login that was
    not stored did not log anyone in; a logout whose session did not end
    did not log anyone out.
    """
    if request_state.login_stored:
        return

    session_id, record, user_key, user = request_state.origin

    if session_id is not None and session_id in request_state.ended_now:
        session_id = record = user_key = user = None

    request_state.session_id, request_state.record = session_id, record
    request_state.user_key, request_state.info = user_key, None
    set_current_user(user, request_state)


def _remember_cookie(response: Response, request_state: RequestState) -> None:
    """Set or drop the remember-me cookie: HttpOnly, and ``Secure``,
    ``SameSite``, domain and path as Flask's session cookie unless
    ``POW_REMEMBER_COOKIE_*`` says otherwise. Its max-age runs to the end
    of the credential: using it does not extend it.
    """
    if request_state.remember_cookie is None and not request_state.clear_remember:
        return

    state = get_pow_state()
    config = state.config
    app = current_app
    flags = config.remember_cookie
    options: dict[str, t.Any] = {
        "secure": flags.get("secure", app.config["SESSION_COOKIE_SECURE"]),
        "httponly": flags.get("httponly", True),
        "samesite": flags.get("samesite", app.config["SESSION_COOKIE_SAMESITE"]),
        "domain": flags.get("domain", app.config["SESSION_COOKIE_DOMAIN"] or None),
        "path": flags.get(
            "path",
            app.config["SESSION_COOKIE_PATH"] or app.config["APPLICATION_ROOT"] or "/",
        ),
    }
    name = config.remember_cookie_name

    if request_state.remember_cookie is not None:
        series, token = request_state.remember_cookie
        max_age = max(0, int(request_state.remember_until - state.credentials.clock()))
        value = state.remember_signer.sign(series, token)
        response.set_cookie(name, value, max_age=max_age, **options)
    elif request_state.clear_remember and name in request.cookies:
        response.delete_cookie(
            name,
            path=options["path"],
            domain=options["domain"],
            secure=options["secure"],
            httponly=options["httponly"],
            samesite=options["samesite"],
        )


def finish_request(exc: BaseException | None = None) -> None:
    """Registered as a ``teardown_request`` function. Writes what committed
    transactions changed if :func:`persist` never ran (an exception
    propagated out of the view: debug mode, ``TESTING``,
    ``PROPAGATE_EXCEPTIONS``): the database has the change, so the cache
    must too. Then the request's user is dropped from ``g``.

    :meta private:
    """
    request_state = find_request_state()

    # The teardown of a copied request context (a thread) is not the end
    # of the request.
    if request_state is None or not is_dispatch_context(request_state):
        end_request()
        return

    request_state.finished = True

    try:
        if request_state.committed:
            _apply_committed(request_state)
    except StoreUnavailable:
        # Nothing can answer 503 any more; the failure is logged, and the
        # cached values stay as they were until the user's records expire.
        pass
    finally:
        end_request()


_warned_rotation = False


def _warn_rotation_failed() -> None:
    global _warned_rotation

    if not _warned_rotation:
        _warned_rotation = True
        logger.warning(
            "A routine token rotation failed because the credentials store"
            " did not answer; the response was sent with the client's"
            " current token, which stays valid. Logged once per process."
        )


def note_committed(pending: dict[str, dict[str, t.Any] | None]) -> None:
    """Take what a committed transaction changed (``POW_SYNC_ON_COMMIT``):
    queued for after the view in a request, written at once outside one.
    The current user's new values are the rest of the request's too.

    :param pending: the new values by user key, ``None`` for a deleted user.
    :meta private:
    """
    state = get_pow_state()

    request_state = get_request_state() if has_request_context() else None

    # Outside a request, or after its teardown (a commit in a later teardown
    # function): nothing would write a queued change any more.
    if request_state is None or request_state.finished:
        write_user_changes(state.credentials, pending)
        return

    request_state.committed.update(pending)
    current_key = request_state.user_key

    if current_key is None or current_key not in pending:
        return

    # The current user's row changed: the rest of this request sees it too.
    user_data = pending[current_key]

    if user_data is None:
        forget_session(request_state)
        request_state.clear_cookie = True
        set_current_user(None)
    else:
        request_state.user_data = user_data

        # A user attached to the session (reloaded) loads its new values
        # itself; the cached, detached one is replaced by the new values.
        if not in_session(request_state.user):
            set_current_user(state.users.load(user_data))


def _apply_committed(request_state: RequestState) -> dict[str, t.Any]:
    """Write what committed transactions changed (``POW_SYNC_ON_COMMIT``).

    :return: what was written, by user key.
    """
    written = request_state.committed
    request_state.committed = {}
    write_user_changes(get_pow_state().credentials, written)
    return written


def write_user_changes(
    credentials: CredentialsCache, changes: dict[str, dict[str, t.Any] | None]
) -> None:
    """Write users' new values to the cache, and end the sessions of those
    whose row was deleted (``None``).
    """
    for user_key, user_data in changes.items():
        if user_data is None:
            credentials.delete_sessions_by_key(user_key)
        else:
            credentials.update_user_data(user_key, user_data)


def _apply(request_state: RequestState, written: dict[str, t.Any]) -> None:
    state = get_pow_state()
    credentials = state.credentials
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    for ended_id, ended_user_key, user in request_state.ended:
        credentials.end(ended_id, ended_user_key, remembered=remembered_here())
        request_state.ended_now.add(ended_id)
        signals.send_logged_out(app, user, ended_id, ended_user_key)

    for user_key, user_data in request_state.syncs:
        # A sync_user after a commit that already wrote the same values.
        if written.get(user_key) != user_data:
            credentials.update_user_data(user_key, user_data)

    if request_state.login is not None:
        user, record, issued, remember = request_state.login
        user_data = state.users.dump(user)
        credentials.store_login(record, user_data)
        request_state.login_stored = True
        _write_cookie(state, record.id, issued)

        if remember:
            series, remember_token = credentials.remember(record, user_data)
            request_state.remember_cookie = (series, remember_token)
            assert record.remembered_until is not None
            request_state.remember_until = record.remembered_until
        elif request.cookies.get(state.config.remember_cookie_name) is not None:
            # The device's old credential ended with the session it belonged
            # to, or belongs to someone else: not kept for this login.
            request_state.clear_remember = True

        _regenerate_session()
        request_state.session_id = record.id
        request_state.record = record
        request_state.user_key = record.user_key
        signals.user_logged_in.send(app, user=user)
        return

    if request_state.clear_cookie:
        session.pop(state.config.session_key, None)
        return

    session_id = request_state.session_id
    token = request_state.token

    if session_id is None or token is None:
        return

    if request_state.revoke_others and request_state.user_key is not None:
        credentials.delete_sessions_by_key(request_state.user_key, keep=session_id)

    if request_state.rotate or request_state.force_rotate:
        assert request_state.user_data is not None

        try:
            rotated = credentials.rotate(
                session_id,
                token,
                request_state.user_data,
                wait=request_state.force_rotate,
                record=request_state.record,
                confirm=request_state.confirm,
            )
        except StoreUnavailable:
            if request_state.force_rotate:
                raise

            # A routine rotation is housekeeping: the view's response stands
            # and the client keeps its token, which is still valid; the next
            # request tries again.
            _warn_rotation_failed()
            rotated = None

        if rotated is not None:
            new_token, by_us = rotated
            _write_cookie(state, session_id, new_token)

            if by_us:
                # A server-side session id is renewed where fixation is the
                # risk (a login, a privilege change); a routine rotation
                # keeps it, so that a parallel request still carrying it
                # stays inside the grace window.
                if request_state.force_rotate:
                    _regenerate_session()

                signals.session_rotated.send(
                    app, session_id=session_id, user=request_state.user
                )

        return

    if request_state.resign:
        _write_cookie(state, session_id, token)
