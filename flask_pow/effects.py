"""What one request knows and did. The calls of :mod:`flask_pow.auth`
change what the rest of the request sees at once and append an effect to
the request's list; :func:`apply` runs the list in order, once the view has
returned, then the one rotation the request decided. A request that failed
with an unhandled exception writes nothing but what its committed
transactions changed (the database has the change), so a failed request
consumes no token.

:meta private:
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

from flask import Request
from flask import current_app
from flask import g
from flask import has_request_context
from flask import request
from flask import session

from . import remember
from . import signals
from .records import SessionInfo
from .records import SessionRecord
from .remember import RememberCookie
from .state import PowState
from .stores import StoreUnavailable

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask.wrappers import Response

logger = logging.getLogger("flask_pow")

# -- the effects ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Login:
    """Store a new session (and a remember-me credential); set its cookie."""

    user: t.Any
    record: SessionRecord
    token: str
    remember: bool


@dataclasses.dataclass(frozen=True)
class End:
    """End a session the request was authenticated by (a logout)."""

    record: SessionRecord
    user: t.Any


@dataclasses.dataclass(frozen=True)
class ClearCookie:
    """Drop the session key from the cookie, and the remember-me cookie."""


@dataclasses.dataclass(frozen=True)
class Sync:
    """Write a user's new values to the cache."""

    user_key: str
    user_data: dict[str, t.Any]


@dataclasses.dataclass(frozen=True)
class RevokeOthers:
    """End every session of a user but one."""

    user_key: str
    keep: str


@dataclasses.dataclass(frozen=True)
class Committed:
    """What a committed transaction changed (``POW_SYNC_ON_COMMIT``): new
    values, or ``None`` for a deleted user. Written even if the request fails.
    """

    changes: Changes


Effect = Login | End | ClearCookie | Sync | RevokeOthers | Committed
#: Users' new values by user key; ``None`` for a deleted user.
Changes = dict[str, dict[str, t.Any] | None]

#: The rotations a request can end with, weakest first: write the cookie
#: again (an old signing key, a followed rotation); rotate a token that is
#: due; rotate hard, no grace for the old token (a privilege change); rotate
#: hard and make the session fresh (:func:`~flask_pow.confirm_login`).
ROTATIONS = (None, "resign", "routine", "hard", "confirm")
Rotation = t.Literal["resign", "routine", "hard", "confirm"] | None

#: The attribute of the request object that holds its :class:`RequestState`:
#: never ``g``, which Flask 3.1 reuses across requests (see
#: :mod:`flask_pow.lifecycle`).
STATE_ATTRIBUTE = "_flask_pow_state"


@dataclasses.dataclass(eq=False)
class RequestState:
    """What flask_pow knows and plans for one request."""

    state: PowState
    loaded: bool = False
    #: The session the request is authenticated by (or logged into now),
    #: the token the client holds, and the user's cached values.
    record: SessionRecord | None = None
    token: str | None = None
    user_data: dict[str, t.Any] | None = None
    info: SessionInfo | None = None
    #: The request's user, as in ``g.current_user``.
    user: t.Any = None
    anonymous: t.Any = None
    rotate: Rotation = None
    reloaded: bool = False
    effects: list[Effect] = dataclasses.field(default_factory=list)
    remember: RememberCookie = dataclasses.field(default_factory=RememberCookie)
    #: The session and user the request was authenticated with: what the
    #: request's user is again if the writes fail.
    origin: tuple[SessionRecord | None, t.Any] = (None, None)
    #: An unhandled exception happened: write nothing.
    failed: bool = False
    #: The effects were applied: a later call takes effect at once, or raises.
    applied: bool = False
    #: The teardown ran: a commit after it is written at once.
    finished: bool = False
    #: The ``g`` the user was loaded in: the request's own context's.
    dispatch_g: t.Any = None
    #: Rows :func:`~flask_pow.database_user` gave, by user key: held for the
    #: request, so that a second call, or their relationships, cost no query.
    rows: dict[str, t.Any] = dataclasses.field(default_factory=dict)

    def set_user(self, user: t.Any) -> None:
        g.current_user = self.user = user

    def forget_session(self) -> None:
        self.record = self.token = self.user_data = self.info = self.rotate = None

    def rotate_at_least(self, rotation: Rotation) -> None:
        if ROTATIONS.index(rotation) > ROTATIONS.index(self.rotate):
            self.rotate = rotation

    @property
    def session_info(self) -> SessionInfo | None:
        if self.info is None and self.record is not None:
            self.info = self.state.credentials.info_of(self.record)

        return self.info


def request_state(
    state: PowState, request_object: Request | None = None
) -> RequestState:
    """The state of the current request (``request_object``, if the caller
    has looked it up already), made on first use.
    """
    if request_object is None:
        request_object = request._get_current_object()  # type: ignore[attr-defined]

    rs: RequestState | None = request_object.__dict__.get(STATE_ATTRIBUTE)

    if rs is None:
        rs = RequestState(state)
        setattr(request_object, STATE_ATTRIBUTE, rs)

    return rs


def note_committed(
    state: PowState, changes: dict[str, dict[str, t.Any] | None]
) -> None:
    """Record what a committed transaction changed: written after the view
    in a request, at once outside one (or after its teardown). The rest of
    the request sees the current user's new values at once.
    """
    rs = request_state(state) if has_request_context() else None

    if rs is None or rs.finished:
        _write_changes(state, changes)
        return

    rs.effects.append(Committed(changes))

    if rs.record is None or rs.record.user_key not in changes:
        return

    user_data = changes[rs.record.user_key]

    if user_data is None:
        rs.forget_session()
        rs.effects.append(ClearCookie())
        rs.set_user(None)
    else:
        rs.user_data = user_data

        # A user attached to the database session (reloaded) loads its new
        # values itself; the cached, detached one is replaced.
        if not state.users.in_session(rs.user):
            rs.set_user(state.users.load(user_data))


def _write_changes(
    state: PowState, changes: dict[str, dict[str, t.Any] | None]
) -> None:
    for user_key, user_data in changes.items():
        if user_data is None:
            state.credentials.delete_sessions_by_key(user_key)
        else:
            state.credentials.update_user_data(user_key, user_data)


def apply_committed(rs: RequestState) -> None:
    """Write the committed changes in the request's list, and drop the rest
    (a failed request, or a teardown after an exception).
    """
    effects, rs.effects = rs.effects, []

    for effect in effects:
        if isinstance(effect, Committed):
            _write_changes(rs.state, effect.changes)


# -- after the view --------------------------------------------------------------


def apply(state: PowState, response: Response) -> Response:
    """Apply what this request did, in order, then its rotation. Registered
    as an ``after_request`` function.

    If the store fails on a write the client relies on (a login, a logout,
    a revocation, a sync), the response becomes the application's 503 (its
    error handler for 503 or :exc:`~flask_pow.StoreUnavailable`) and the
    cookie is left as it was. A failed routine rotation keeps the response
    and the client's current token.
    """
    rs: RequestState | None = request.__dict__.get(STATE_ATTRIBUTE)

    if rs is None:
        return response

    rs.applied = True

    if rs.record is not None:
        state.users.warn_if_changed(rs.user)

    if rs.failed:
        apply_committed(rs)
        return response

    if rs.effects or rs.rotate is not None:
        done: list[Effect] = []

        try:
            _apply(state, rs, done)
        except StoreUnavailable as e:
            # Through the application's error handlers, so that its 503 page
            # is the one shown, and shows the user the store really has.
            _back_to_stored(rs, done)
            return current_app.make_response(current_app.handle_http_exception(e))

    if rs.remember.issue is not None or rs.remember.clear:
        remember.write(state, rs.remember, response)

    return response


def _apply(state: PowState, rs: RequestState, done: list[Effect]) -> None:
    credentials = state.credentials
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    effects, rs.effects = rs.effects, []
    written: dict[str, t.Any] = {}
    logged_in = False

    for effect in effects:
        if isinstance(effect, Committed):
            _write_changes(state, effect.changes)
            written.update(effect.changes)
        elif isinstance(effect, End):
            log_out(state, rs, effect.record, effect.user)
        elif isinstance(effect, Sync):
            # A sync_user after a commit that already wrote the same values.
            if written.get(effect.user_key) != effect.user_data:
                credentials.update_user_data(effect.user_key, effect.user_data)
        elif isinstance(effect, RevokeOthers):
            credentials.delete_sessions_by_key(effect.user_key, keep=effect.keep)
        elif isinstance(effect, ClearCookie):
            session.pop(state.config.session_key, None)
            remember.forget(rs.remember)
        else:
            _store_login(state, rs, effect, app)
            logged_in = True

        done.append(effect)

    if rs.rotate is not None and rs.record is not None and not logged_in:
        _rotate(state, rs, app)


def log_out(
    state: PowState, rs: RequestState, record: SessionRecord, user: t.Any
) -> None:
    """End a logged-in session now, with its device's credential, and send
    the logout signals.
    """
    remember.end_with_device(state, rs.remember, record.id, record.user_key)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signals.send_logged_out(app, user, record.id, record.user_key)


def _store_login(state: PowState, rs: RequestState, login: Login, app: Flask) -> None:
    record = login.record
    user_data = state.users.dump(login.user)
    state.credentials.create(record, user_data, state.credentials.clock())
    session[state.config.session_key] = state.signer.sign(record.id, login.token)

    if login.remember:
        remember.issue(state, rs.remember, record, user_data)
    elif remember.presented(state, rs.remember) is not None:
        # The device's old credential ended with the session it belonged
        # to, or belongs to someone else: not kept for this login.
        remember.forget(rs.remember)

    _regenerate_session()
    signals.user_logged_in.send(app, user=login.user)


def _rotate(state: PowState, rs: RequestState, app: Flask) -> None:
    record, token, rotation = rs.record, rs.token, rs.rotate
    assert record is not None and token is not None
    hard = rotation in ("hard", "confirm")

    if rotation == "resign":
        rotated: tuple[str, bool] | None = (token, False)
    else:
        try:
            rotated = state.credentials.rotate(
                record.id,
                token,
                rs.user_data or {},
                wait=hard,
                record=record,
                confirm=rotation == "confirm",
            )
        except StoreUnavailable:
            if hard:
                raise

            # A routine rotation is housekeeping: the view's response stands
            # and the client keeps its token, which is still valid.
            _warn_rotation_failed()
            return

    if rotated is None:
        return

    new_token, by_us = rotated
    session[state.config.session_key] = state.signer.sign(record.id, new_token)

    if by_us:
        # A server-side session id is renewed where fixation is the risk (a
        # privilege change); a routine rotation keeps it, so that a parallel
        # request still carrying it stays inside the grace window.
        if hard:
            _regenerate_session()

        signals.session_rotated.send(app, session_id=record.id, user=rs.user)


def _regenerate_session() -> None:
    # Flask-Session's server-side interface can issue a new session id;
    # Flask's cookie session has no id to fix.
    regenerate = getattr(current_app.session_interface, "regenerate", None)

    if callable(regenerate):
        regenerate(session)


def _back_to_stored(rs: RequestState, done: list[Effect]) -> None:
    """After the store failed part way: make the request's user the one the
    client's cookie now opens. A login that was not stored logged nobody
    in; a logout whose session did not end logged nobody out.
    """
    if any(isinstance(effect, Login) for effect in done):
        return

    record, user = rs.origin
    ended = {effect.record.id for effect in done if isinstance(effect, End)}

    if record is not None and record.id in ended:
        record = user = None

    rs.record, rs.info = record, None
    rs.set_user(user)


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
