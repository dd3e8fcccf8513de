"""The request lifecycle: before the view, authenticate the request and
set ``g.current_user``; while it runs, the calls of :mod:`flask_pow.auth`
record their effects in the request's list; after it, :func:`apply` runs
the list in order, once, then the rotation the request decided. Also the
:data:`current_user` and :data:`current_session` proxies.

A request that failed with an unhandled exception writes nothing but what
its committed transactions changed (the database has the change), so a
failed request consumes no token.

:meta private:
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

from flask import current_app
from flask import g
from flask import has_app_context
from flask import has_request_context
from flask import request
from flask import session
from werkzeug.local import LocalProxy

from . import remember
from . import signals
from .checks import check_request
from .records import SessionInfo
from .records import SessionRecord
from .remember import RememberCookie
from .state import PowState
from .state import get_state
from .stores import StoreUnavailable
from .users import resolve_user

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask.wrappers import Response

logger = logging.getLogger("flask_pow")

# -- effects -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Login:
    """Store a new session (and a remember-me credential), and write its
    cookie.
    """

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
    """What a committed transaction changed (``POW_SYNC_ON_COMMIT``): users'
    new values, or ``None`` for a deleted row. Written even if the request
    then fails.
    """

    changes: dict[str, dict[str, t.Any] | None]


Effect = Login | End | ClearCookie | Sync | RevokeOthers | Committed

#: The rotations a request can end with, weakest first: write the cookie
#: again (an old signing key, a followed rotation); rotate a token that is
#: due; rotate hard, no grace for the old token (a privilege change);
#: rotate hard and make the session fresh (:func:`~flask_pow.confirm_login`).
ROTATIONS = (None, "resign", "routine", "hard", "confirm")
Rotation = t.Literal["resign", "routine", "hard", "confirm"] | None


@dataclasses.dataclass(eq=False)
class RequestState:
    """What flask_pow knows and plans for one request. It lives on the
    request object, never in ``g`` (see :func:`begin_request`).
    """

    state: PowState
    loaded: bool = False
    #: The session the request is authenticated by (or logged into now),
    #: the token the client holds, and the user's cached values.
    record: SessionRecord | None = None
    token: str | None = None
    user_data: dict[str, t.Any] | None = None
    #: The session as :class:`SessionInfo`, built when asked for.
    info: SessionInfo | None = None
    #: The request's user, as in ``g.current_user``.
    user: t.Any = None
    anonymous: t.Any = None
    rotate: Rotation = None
    #: The user was reloaded from the database in this request.
    reloaded: bool = False
    #: What the request did, applied in order after the view.
    effects: list[Effect] = dataclasses.field(default_factory=list)
    remember: RememberCookie = dataclasses.field(default_factory=RememberCookie)
    #: The session and user the request was authenticated with: what the
    #: request's user is again if the writes fail.
    origin: tuple[SessionRecord | None, t.Any] = (None, None)
    #: An unhandled exception happened: write nothing.
    failed: bool = False
    #: The effects were applied: a later call (inside a streamed
    #: response) takes effect at once, or raises.
    applied: bool = False
    #: The teardown ran: a commit after it is written at once.
    finished: bool = False
    #: The ``g`` the request was dispatched with (see :func:`begin_request`).
    dispatch_g: t.Any = None

    def set_user(self, user: t.Any) -> None:
        g.current_user = self.user = user

    def forget_session(self) -> None:
        """The request is no longer authenticated by a session."""
        self.record = self.token = self.user_data = self.info = None
        self.rotate = None

    def rotate_at_least(self, rotation: Rotation) -> None:
        if ROTATIONS.index(rotation) > ROTATIONS.index(self.rotate):
            self.rotate = rotation

    @property
    def session_info(self) -> SessionInfo | None:
        if self.info is None and self.record is not None:
            self.info = self.state.credentials.info_of(self.record)

        return self.info


# -- the Flask <= 3.1 context-reuse workaround --------------------------------
# Flask 3.1 and older reuse an application context that is already pushed (a
# test suite's ``with app.app_context():``, a worker that pushed one at
# import) and its ``g`` for every request they handle: state left in ``g``
# would hand one client's user to the next. So the request's state lives on
# the request object, ``g.current_user`` is dropped when a request starts and
# when it ends, and the teardown of a copied request context (a thread) is
# told from the request's own. Remove this block, and the two hooks, when
# the floor is a Flask that pushes a fresh context for every request (3.2).

#: The attribute of the request object that holds its :class:`RequestState`.
STATE_ATTRIBUTE = "_flask_pow_state"


def begin_request(state: PowState, sender: Flask, **kwargs: t.Any) -> None:
    """Connected to :data:`flask.request_started`: a ``g.current_user``
    there before any of this request's hooks ran is not this request's.
    """
    g.pop("current_user", None)
    request_state(state).dispatch_g = g._get_current_object()


def end_request(exc: BaseException | None = None) -> None:
    """A ``teardown_request`` function: the user does not outlive the
    request in an application context that does. Writes what committed
    transactions changed if :func:`apply` never ran (an exception propagated
    out of the view: debug mode, ``TESTING``).
    """
    rs = request.__dict__.get(STATE_ATTRIBUTE)

    if rs is not None and (
        rs.dispatch_g is None or rs.dispatch_g is g._get_current_object()
    ):
        rs.finished = True

        try:
            _apply_committed(rs)
        except StoreUnavailable:
            # Nothing can answer 503 any more; the failure is logged, and the
            # cached values stay as they were until the records expire.
            pass

    g.pop("current_user", None)


# -- loading -----------------------------------------------------------------


def request_state(state: PowState) -> RequestState:
    """The state of the current request, made on first use."""
    request_object = request._get_current_object()  # type: ignore[attr-defined]
    rs: RequestState | None = request_object.__dict__.get(STATE_ATTRIBUTE)

    if rs is None:
        rs = RequestState(state)
        setattr(request_object, STATE_ATTRIBUTE, rs)

    return rs


def loaded(state: PowState) -> RequestState:
    """The state of the current request, its user loaded."""
    rs = request_state(state)

    if not rs.loaded:
        load(state, rs)
    elif "current_user" not in g and not rs.finished:
        # Another context of the same request (a copied request context in a
        # thread, an app context pushed in the view) has a ``g`` of its own.
        g.current_user = rs.user

    return rs


def load(state: PowState, rs: RequestState | None = None) -> None:
    """Authenticate the request and set ``g.current_user``. Registered as a
    ``before_request`` function; runs once per request, also when
    :data:`current_user` is used before it.

    :raise StoreUnavailable: if the store cannot be read.
    """
    if rs is None:
        rs = request_state(state)

    if rs.loaded:
        return

    rs.loaded = True
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    if not state.checked or state.process_local:
        check_request(app, state)

    # Whatever another hook left in g.current_user is replaced, never
    # trusted: a user from another mechanism comes through request_loader.
    g.current_user = None
    signals.user_accessed.send(app)
    cookie = state.signer.read(session.get(state.config.session_key))

    if cookie is not None:
        _load_session(state, rs, *cookie)

    if rs.record is None and request.cookies:
        restored = remember.restore(state, rs.remember)

        if restored is not None and _load_session(
            state, rs, restored.session_id, restored.session_token, True
        ):
            signals.user_loaded_from_remember.send(app, user=rs.user)

    if rs.user is None and state.request_loaders:
        for loader in state.request_loaders:
            user = loader(request._get_current_object())  # type: ignore[attr-defined]

            if user is not None:
                rs.set_user(resolve_user(user))
                signals.user_loaded_from_request.send(app, user=rs.user)
                break

    rs.origin = (rs.record, rs.user)


def _load_session(
    state: PowState, rs: RequestState, session_id: str, token: str, resign: bool
) -> bool:
    """Load the user of a session, given its id and token; ``resign``:
    write the cookie again after the view, even if nothing changed.
    """
    credentials = state.credentials
    found = credentials.authenticate(session_id, token)

    if found is None:
        return False

    record, user, user_data = found.record, found.user, found.user_data

    if user is None:
        # Past the absolute timeout, or the user is gone from the database.
        if found.end:
            credentials.end(
                session_id,
                record.user_key,
                remembered=remember.device(state, rs.remember),
            )

        return False

    rs.record, rs.user_data = record, user_data
    rs.token = found.follow or token

    if found.follow is not None or resign:
        rs.rotate = "resign"
    elif found.due:
        rs.rotate = "routine"

    g.current_user = rs.user = user

    if wants_reload(state):
        reload(state, rs)

    return rs.user is not None


def wants_reload(state: PowState) -> bool:
    """Whether this request reloads the user: ``POW_RELOAD``, a view marked
    with :func:`~flask_pow.reload_user`, or a view of a reload blueprint
    (or one nested in it).
    """
    if state.config.reload:
        return True

    view = current_app.view_functions.get(request.endpoint or "")

    if getattr(view, "_pow_reload", False):
        return True

    names = state.config.reload_blueprints
    return bool(names) and not names.isdisjoint(request.blueprints)


def reload(state: PowState, rs: RequestState) -> t.Any:
    """Reload the current user from the database, once per request. If the
    user no longer exists, their session ends at once (as Pow does) and the
    request is anonymous from here on.

    :return: the reloaded user, or ``None``.
    """
    user, record = rs.user, rs.record

    if rs.reloaded or user is None or record is None:
        return user

    rs.reloaded = True
    fresh = state.users.reload(user)

    if fresh is not None:
        rs.set_user(fresh)
        return fresh

    state.credentials.end(
        record.id, record.user_key, remembered=remember.device(state, rs.remember)
    )
    rs.forget_session()
    rs.set_user(None)
    signals.user_reloaded_gone.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        user_key=record.user_key,
        session_id=record.id,
    )
    return None


# -- what the request did ------------------------------------------------------


def note_committed(
    state: PowState, changes: dict[str, dict[str, t.Any] | None]
) -> None:
    """Record what a committed transaction changed. Outside a request, or
    after its teardown, it is written at once; in a request, after the view.
    The rest of the request sees the current user's new values at once.
    """
    rs = request_state(state) if has_request_context() else None

    if rs is None or rs.finished:
        _write_changes(state, changes)
        return

    rs.effects.append(Committed(changes))
    record = rs.record

    if record is None or record.user_key not in changes:
        return

    user_data = changes[record.user_key]

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


def mark_failed(state: PowState, sender: Flask, **kwargs: t.Any) -> None:
    """Connected to :data:`flask.got_request_exception`: a request that
    failed writes nothing.
    """
    if has_request_context():
        request_state(state).failed = True


def _write_changes(
    state: PowState, changes: dict[str, dict[str, t.Any] | None]
) -> None:
    for user_key, user_data in changes.items():
        if user_data is None:
            state.credentials.delete_sessions_by_key(user_key)
        else:
            state.credentials.update_user_data(user_key, user_data)


def _apply_committed(rs: RequestState) -> None:
    effects, rs.effects = rs.effects, []

    for effect in effects:
        if isinstance(effect, Committed):
            _write_changes(rs.state, effect.changes)


# -- after the view ------------------------------------------------------------


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

    if rs.user is not None and rs.record is not None:
        state.users.warn_if_changed(rs.user)

    if rs.failed:
        _apply_committed(rs)
        return response

    if not rs.effects and rs.rotate is None:
        remember.write(state, rs.remember, response)
        return response

    done: list[Effect] = []

    try:
        _apply(state, rs, done)
    except StoreUnavailable as e:
        # Through the application's error handlers, so that its 503 page is
        # the one shown, and shows the user the store really has.
        _back_to_stored(rs, done)
        return current_app.make_response(current_app.handle_http_exception(e))

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
            record = effect.record
            credentials.end(
                record.id,
                record.user_key,
                remembered=remember.device(state, rs.remember),
            )
            signals.send_logged_out(app, effect.user, record.id, record.user_key)
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

    if not logged_in and rs.rotate is not None and rs.record is not None:
        _rotate(state, rs, app)


def _store_login(state: PowState, rs: RequestState, login: Login, app: Flask) -> None:
    record = login.record
    user_data = state.users.dump(login.user)
    state.credentials.store_login(record, user_data)
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

    if rotation == "resign":
        session[state.config.session_key] = state.signer.sign(record.id, token)
        return

    hard = rotation != "routine"

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

        # A routine rotation is housekeeping: the view's response stands and
        # the client keeps its token, which is still valid; the next request
        # tries again.
        _warn_rotation_failed()
        return

    if rotated is None:
        return

    new_token, by_us = rotated
    session[state.config.session_key] = state.signer.sign(record.id, new_token)

    if by_us:
        # A server-side session id is renewed where fixation is the risk (a
        # login, a privilege change); a routine rotation keeps it, so that a
        # parallel request still carrying it stays inside the grace window.
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
    """After the store failed part way through the writes: make the
    request's user the one the client's cookie now opens. A login that was
    not stored did not log anyone in; a logout whose session did not end
    did not log anyone out.
    """
    if any(isinstance(effect, Login) for effect in done):
        return

    record, user = rs.origin

    if record is not None and any(
        isinstance(effect, End) and effect.record.id == record.id for effect in done
    ):
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


# -- the proxies ---------------------------------------------------------------


def current_user_or_none() -> t.Any:
    """The logged-in user of this request, or ``None`` (also outside a
    request).
    """
    if not has_request_context():
        return None

    return loaded(get_state()).user


def _current_user_or_anonymous() -> t.Any:
    if not has_request_context():
        if not has_app_context():
            raise RuntimeError(
                "'current_user' was used outside of an application context, so"
                " there is no application to ask who is logged in."
            )

        return get_state().manager.anonymous_user()

    rs = loaded(get_state())

    if rs.user is not None:
        return rs.user

    if rs.anonymous is None:
        rs.anonymous = rs.state.manager.anonymous_user()

    return rs.anonymous


def _current_session() -> SessionInfo | None:
    return loaded(get_state()).session_info


#: The user of the current request: the logged-in user, or when nobody is
#: (or outside a request) the anonymous user object,
#: :attr:`Pow.anonymous_user <flask_pow.Pow.anonymous_user>`, which is falsy
#: and has ``is_authenticated`` false. So both ``if current_user:`` and
#: ``if current_user.is_authenticated:`` work. ``g.current_user`` is the
#: user or ``None``.
current_user: t.Any = LocalProxy(_current_user_or_anonymous)

#: The :class:`~flask_pow.SessionInfo` of the current request (its id, login
#: and rotation times, IP, user agent and custom metadata), or ``None``: a
#: proxy, so test it with ``if current_session:``.
current_session: SessionInfo | None = LocalProxy(  # type: ignore[assignment]
    _current_session
)
