"""The request side: read the signed token from :data:`flask.session`, load
the user from the credentials cache into ``g.current_user``, rotate stale
tokens, and apply logins and logouts once the view has returned.

Nothing is written to the store while the view runs. :func:`login_user` and
:func:`logout_user` change ``g.current_user`` at once and record what to
write; :func:`persist` writes it in ``after_request``, and skips it if the
request failed with an unhandled exception, so a failed request consumes no
token.

What a request knows and plans lives on the request object, never in ``g``:
Flask reuses an application context that is already pushed (a test suite's
``with app.app_context():``, a worker that pushed one at import) and its
``g`` for every request it handles, and state left there would hand one
client's session to the next. ``g.current_user`` is dropped when a request
starts and when it ends for the same reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import typing as t

import sqlalchemy as sa
from flask import current_app
from flask import g
from flask import has_app_context
from flask import has_request_context
from flask import request
from flask import session
from werkzeug.local import LocalProxy

from . import serialization
from . import signals
from .records import SessionInfo
from .records import SessionRecord
from .stores import StoreUnavailable
from .users import resolve_user

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask.wrappers import Response

    from .extension import PowState

logger = logging.getLogger("flask_pow")

#: The user agent kept in the session metadata is cut to this length.
MAX_USER_AGENT = 512


@dataclasses.dataclass
class RequestState:
    """What flask_pow knows and plans for one request, kept on the request
    object (see the module's docstring for why not in ``g``).

    :meta private:
    """

    loaded: bool = False
    #: The id of the session the request is authenticated by.
    session_id: str | None = None
    #: Its stored record; turned into :attr:`session` only when asked for,
    #: since most requests never look.
    record: SessionRecord | None = None
    #: The session as :class:`SessionInfo`, once built.
    info: SessionInfo | None = None
    #: The identity key of the session's user.
    user_key: str | None = None
    #: The token the client holds (or should hold, after a follow).
    token: str | None = None
    user_data: dict[str, t.Any] | None = None
    #: The user was reloaded from the database in this request.
    reloaded: bool = False
    #: Write the token to the cookie again (followed, or signed with an old
    #: key).
    resign: bool = False
    rotate: bool = False
    #: Rotate even if the token is fresh, waiting for the lock (a sync).
    force_rotate: bool = False
    #: Users to write to the cache after the view returns: key and values.
    syncs: list[tuple[str, dict[str, t.Any]]] = dataclasses.field(default_factory=list)
    #: Users whose changed rows a database transaction committed in this
    #: request (``POW_SYNC_ON_COMMIT``): written after the view even if it
    #: then fails, since the database has the change. Key and values, or
    #: ``None`` for a deleted row.
    committed: dict[str, dict[str, t.Any] | None] = dataclasses.field(
        default_factory=dict
    )
    #: The anonymous user object of this request, once built.
    anonymous: t.Any = None
    #: End the user's other sessions after the view returns.
    revoke_others: bool = False
    #: Sessions to end after the view returns: id, user key, user.
    ended: list[tuple[str, str | None, t.Any]] = dataclasses.field(default_factory=list)
    #: A login to store after the view returns: the user and metadata.
    login: tuple[t.Any, dict[str, t.Any]] | None = None
    #: Drop the session key from the cookie (a logout).
    clear_cookie: bool = False
    #: An unhandled exception happened: write nothing.
    failed: bool = False

    @property
    def session(self) -> SessionInfo | None:
        if self.info is None and self.record is not None:
            self.info = self.record.info()

        return self.info


def _pow_state(app: Flask | None = None) -> PowState:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    pow_ = app.extensions.get("pow")

    if pow_ is None:
        raise RuntimeError(
            "flask_pow is not set up on this application. Call 'Pow(app)' or"
            " 'pow.init_app(app)' before handling requests."
        )

    return pow_.get_state(app)  # type: ignore[no-any-return]


#: The attribute of the request object that holds its :class:`RequestState`.
_STATE_ATTRIBUTE = "_flask_pow_state"


def _request_state() -> RequestState:
    request_object = request._get_current_object()  # type: ignore[attr-defined]
    state: RequestState | None = request_object.__dict__.get(_STATE_ATTRIBUTE)

    if state is None:
        state = RequestState()
        setattr(request_object, _STATE_ATTRIBUTE, state)

    return state


def begin_request(sender: Flask, **kwargs: t.Any) -> None:
    """Connected to :data:`flask.request_started`: a ``g.current_user`` that
    is there before any of this request's hooks ran was left by something
    else (an application context pushed outside the request), and is not
    this request's user.

    :meta private:
    """
    g.pop("current_user", None)


def end_request(exc: BaseException | None = None) -> None:
    """Registered as a ``teardown_request`` function: the user does not
    outlive the request in an application context that does.

    :meta private:
    """
    g.pop("current_user", None)


# -- writing the cookie -----------------------------------------------------


def _write_cookie(state: PowState, session_id: str, token: str) -> None:
    session[state.config.session_key] = state.signer.sign(session_id, token)


def _regenerate_session() -> None:
    # Flask-Session's server-side interface can issue a new session id;
    # Flask's cookie session has no id to fix.
    regenerate = getattr(current_app.session_interface, "regenerate", None)

    if callable(regenerate):
        regenerate(session)


# -- loading -----------------------------------------------------------------


def load_user() -> None:
    """Authenticate the request and set ``g.current_user``. Registered as a
    ``before_request`` function; runs once per request, also when
    :data:`current_user` is used before it.

    :raise StoreUnavailable: if the store cannot be read.
    """
    request_state = _request_state()

    if request_state.loaded:
        return

    request_state.loaded = True

    # Another mechanism (an API token hook that ran first) already decided
    # who this is; Pow keeps an assigned user too.
    if "current_user" in g:
        return

    g.current_user = None
    state = _pow_state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signals.user_accessed.send(app)

    if not _load_from_session(state, request_state) and state.request_loaders:
        _load_from_request(state, app)


def _load_from_request(state: PowState, app: Flask) -> None:
    """Ask the application's :meth:`~flask_pow.Pow.request_loader`
    callbacks, in order, for a user; nothing is stored.
    """
    for loader in state.request_loaders:
        user = loader(request._get_current_object())  # type: ignore[attr-defined]

        if user is not None:
            g.current_user = resolve_user(user)
            signals.user_loaded_from_request.send(app, user=g.current_user)
            return


def _load_from_session(state: PowState, request_state: RequestState) -> bool:
    """Load the user of the session the request's cookie names.

    :return: whether a user was loaded.
    """
    cookie = state.signer.read(session.get(state.config.session_key))

    if cookie is None:
        return False

    session_id, token, old_key = cookie
    credentials = state.credentials
    found = credentials.authenticate(session_id, token)

    if found is None:
        return False

    if credentials.is_past_absolute(found.record):
        credentials.end(session_id, found.record.user_key)
        return False

    user = credentials.load_user(found.record.user_key, found.user_data)

    if user is None:
        return False

    record = found.record
    request_state.session_id = record.id
    request_state.record = record
    request_state.user_key = record.user_key
    request_state.token = found.follow or token
    request_state.user_data = found.user_data
    request_state.resign = old_key or found.follow is not None
    renewal = state.config.session_ttl_renewal

    if (
        renewal is not None
        and found.follow is None
        and record.inserted_at + renewal < credentials.clock()
    ):
        request_state.rotate = True

    g.current_user = user

    if _wants_reload(state):
        reload_current_user()

    return g.current_user is not None


def _wants_reload(state: PowState) -> bool:
    """Whether this request reloads the user: ``POW_RELOAD``, a view marked
    with :func:`~flask_pow.reload_user`, or a view of a reload blueprint (or
    one nested in it).
    """
    if state.config.reload:
        return True

    view = current_app.view_functions.get(request.endpoint or "")

    if getattr(view, "_pow_reload", False):
        return True

    names = state.config.reload_blueprints
    return bool(names) and not names.isdisjoint(request.blueprints)


def reload_current_user() -> t.Any:
    """Reload the current user from the database, once per request. If the
    user no longer exists, their session ends at once and the request is
    anonymous from here on.

    :return: the reloaded user, or ``None``.
    :meta private:
    """
    load_user()
    request_state = _request_state()
    user = g.current_user

    if request_state.reloaded or user is None or request_state.session_id is None:
        return user

    request_state.reloaded = True
    state = _pow_state()
    fresh = state.users.reload(user)

    if fresh is not None:
        g.current_user = fresh
        return fresh

    session_id = request_state.session_id
    user_key = request_state.user_key
    # Now, not after the view: the user is gone whatever the view does (Pow
    # deletes at once too).
    state.credentials.end(session_id, user_key)
    _forget_session(request_state)
    g.current_user = None
    signals.user_reloaded_gone.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        user_key=user_key,
        session_id=session_id,
    )
    return None


def get_current_user() -> t.Any:
    """The logged-in user of this request, or ``None`` (also outside a
    request).

    :meta private:
    """
    if not has_request_context():
        return None

    load_user()
    return g.get("current_user")


def _current_user_or_anonymous() -> t.Any:
    user = get_current_user()

    if user is not None:
        return user

    if not has_request_context():
        return _anonymous_user()

    request_state = _request_state()

    if request_state.anonymous is None:
        request_state.anonymous = _anonymous_user()

    return request_state.anonymous


def _anonymous_user() -> t.Any:
    if not has_app_context():
        raise RuntimeError(
            "'current_user' was used outside of an application context, so"
            " there is no application to ask who is logged in."
        )

    pow_ = current_app.extensions.get("pow")

    if pow_ is None:
        _pow_state()  # raises, saying how to set flask_pow up

    return pow_.anonymous_user()  # type: ignore[union-attr]


def get_current_session() -> SessionInfo | None:
    """The session of this request, or ``None`` when anonymous.

    :meta private:
    """
    load_user()
    return _request_state().session


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
    get_current_session
)


# -- logging in and out ------------------------------------------------------


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
    :param remember: Flask-Login's remember-me. Accepted, so that code
        written for Flask-Login runs; not implemented yet: the session lives
        while it is used, as ``POW_CREDENTIALS_TTL`` says. A warning is
        logged once per application when it is asked for.
    :param duration: how long a remember-me login lasts; see ``remember``.
    :param force: log the user in even if ``user.is_active`` is false.
    :param fresh: Flask-Login's fresh login; every login is fresh for now.
    :param metadata: extra metadata for the session, merged over the IP,
        user agent and the application's
        :meth:`~flask_pow.Pow.session_metadata` callbacks. Must be
        JSON-serializable (tagged JSON types are fine).
    :return: ``False``, with nothing stored and nobody logged in, for an
        inactive user; ``True`` otherwise.
    :raise TypeError: if the metadata cannot be stored.
    """
    user = resolve_user(user)

    if not force and not getattr(user, "is_active", True):
        return False

    load_user()
    state = _pow_state()

    if (remember or duration is not None) and not state.warned_remember:
        state.warned_remember = True
        logger.warning(
            "login_user(remember=True) was called, but flask_pow has no"
            " remember-me yet: the session lasts while it is used"
            " (POW_CREDENTIALS_TTL)."
        )

    # Fail here, in the view, rather than after it: no secret key, a user
    # with no identity, or metadata that cannot be stored.
    state.signer.check()
    state.users.key(user)
    values: dict[str, t.Any] = {
        "ip": request.remote_addr,
        "user_agent": request.user_agent.string[:MAX_USER_AGENT],
    }

    for callback in state.metadata_callbacks:
        values.update(callback(user))

    values.update(metadata or {})
    serialization.dumps(values)

    request_state = _request_state()
    _end_current(request_state)
    request_state.login = (user, values)
    g.current_user = user
    return True


def logout_user() -> bool:
    """Log the current user out. The session's token is dead server-side
    once the view returns, so a copy of the cookie is of no use.

    :return: whether a user was logged in.
    """
    load_user()
    request_state = _request_state()
    was_in = g.current_user is not None
    _end_current(request_state)
    request_state.login = None
    request_state.clear_cookie = True
    g.current_user = None
    return was_in


def _end_current(request_state: RequestState) -> None:
    if request_state.session_id is not None:
        request_state.ended.append(
            (request_state.session_id, request_state.user_key, g.current_user)
        )

    _forget_session(request_state)


def _forget_session(request_state: RequestState) -> None:
    request_state.session_id = request_state.record = request_state.info = None
    request_state.user_key = request_state.token = None
    request_state.rotate = request_state.force_rotate = False
    request_state.resign = request_state.revoke_others = False


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
    state = _pow_state()

    if not has_request_context():
        state.credentials.update_user(user)
        return

    load_user()
    request_state = _request_state()
    key = state.users.key(user)
    request_state.syncs.append((key, state.users.dump(user)))

    if key == request_state.user_key:
        request_state.force_rotate = True
        g.current_user = user


def database_user(user: t.Any = None) -> t.Any:
    """The row of a user, attached to the database session, for what the
    cached user cannot do: read a relationship or an excluded column, or
    change the user and commit. Costs one query, or none when the session
    already holds the row (after :func:`~flask_pow.reload_user`).

    .. code-block:: python

        user = database_user()
        user.name = form.name.data
        db.session.commit()  # POW_SYNC_ON_COMMIT updates the cache

    :param user: the user (or :data:`current_user`); the current user if not
        given.
    :return: the row, or ``None`` if there is no user or it no longer exists.
    """
    state = _pow_state()

    if user is None:
        user = get_current_user()

        if user is None:
            return None

    user = resolve_user(user)
    row = getattr(state.users, "row", None)

    if row is None:
        return state.users.reload(user)

    return row(user)


def logout_other_sessions() -> int:
    """End every session of the current user but this one ("log out other
    devices"). The sessions end once the view has returned.

    :return: how many other sessions the user has now.
    """
    load_user()
    request_state = _request_state()

    if request_state.user_key is None:
        return 0

    request_state.revoke_others = True
    others = _pow_state().credentials.sessions_by_key(request_state.user_key)
    return sum(1 for info in others if info.id != request_state.session_id)


# -- persisting --------------------------------------------------------------


def mark_failed(sender: Flask, **kwargs: t.Any) -> None:
    """Connected to :data:`flask.got_request_exception`: a request that
    failed writes nothing.

    :meta private:
    """
    if has_request_context():
        _request_state().failed = True


def persist(response: Response) -> Response:
    """Apply the writes this request decided, in order: ended sessions, a
    login, a rotation, a new cookie value. Registered as an
    ``after_request`` function.

    If the store fails, the response becomes a 503 and the cookie is left
    as it was.
    """
    request_object = request._get_current_object()  # type: ignore[attr-defined]
    request_state: RequestState | None = request_object.__dict__.get(_STATE_ATTRIBUTE)

    if request_state is None:
        return response

    if request_state.user_key is not None:
        _warn_if_changed_in_vain(g.get("current_user"))

    try:
        written = _apply_committed(request_state)

        if not request_state.failed:
            _apply(request_state, written)
    except StoreUnavailable as e:
        return e.get_response()  # type: ignore[return-value]

    return response


def _warn_if_changed_in_vain(user: t.Any) -> None:
    """Warn when the view changed the cached user itself: it is not in the
    database session, so the change was saved nowhere (code written for
    Flask-Login does ``current_user.last_seen = now``, then commits).
    """
    state = sa.inspect(user, raiseerr=False)

    if state is None or not state.detached or not state.modified:
        return

    changed = ", ".join(a.key for a in state.attrs if a.history.has_changes())
    logger.warning(
        "The cached current_user was changed in this request (%s), but it is"
        " not in the database session, so nothing was saved. Change the row"
        " instead: flask_pow.database_user(), then commit.",
        changed,
    )


def _apply_committed(request_state: RequestState) -> dict[str, t.Any]:
    """Write what committed transactions changed (``POW_SYNC_ON_COMMIT``).

    :return: what was written, by user key.
    """
    credentials = _pow_state().credentials
    written = request_state.committed
    request_state.committed = {}

    for user_key, user_data in written.items():
        if user_data is None:
            credentials.delete_sessions_by_key(user_key)
        else:
            credentials.update_user_data(user_key, user_data)

    return written


def _apply(request_state: RequestState, written: dict[str, t.Any]) -> None:
    state = _pow_state()
    credentials = state.credentials
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    for ended_id, ended_user_key, user in request_state.ended:
        credentials.end(ended_id, ended_user_key)
        signals.user_logged_out.send(app, user=user, session_id=ended_id)

    for user_key, user_data in request_state.syncs:
        # A sync_user after a commit that already wrote the same values.
        if written.get(user_key) != user_data:
            credentials.update_user_data(user_key, user_data)

    if request_state.login is not None:
        user, metadata = request_state.login
        info, issued = credentials.put(user, metadata)
        _write_cookie(state, info.id, issued)
        _regenerate_session()
        request_state.session_id = info.id
        request_state.info = info
        signals.user_logged_in.send(app, user=user, session=info)
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
        rotated = credentials.rotate(
            session_id,
            token,
            request_state.user_data,
            wait=request_state.force_rotate,
            record=request_state.record,
        )

        if rotated is not None:
            new_token, by_us = rotated
            _write_cookie(state, session_id, new_token)

            if by_us:
                _regenerate_session()
                signals.session_rotated.send(
                    app, session_id=session_id, user=g.current_user
                )

        return

    if request_state.resign:
        _write_cookie(state, session_id, token)
