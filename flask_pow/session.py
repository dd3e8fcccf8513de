"""The request side: read the signed token from :data:`flask.session`, load
the user from the credentials cache into ``g.current_user``, rotate stale
tokens, and apply logins and logouts once the view has returned.

Nothing is written to the store while the view runs. :func:`login_user` and
:func:`logout_user` change ``g.current_user`` at once and record what to
write; :func:`persist` writes it in ``after_request``, and skips it if the
request failed with an unhandled exception, so a failed request consumes no
token.
"""

from __future__ import annotations

import dataclasses
import typing as t

from flask import current_app
from flask import g
from flask import has_request_context
from flask import request
from flask import session
from werkzeug.local import LocalProxy

from . import serialization
from . import signals
from .records import SessionInfo
from .records import SessionRecord
from .stores import StoreUnavailable

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask.wrappers import Response

    from .extension import PowState

#: The user agent kept in the session metadata is cut to this length.
MAX_USER_AGENT = 512


@dataclasses.dataclass
class RequestState:
    """What flask_pow knows and plans for one request, kept as ``g._pow``.

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


def _request_state() -> RequestState:
    state: RequestState | None = g.get("_pow")

    if state is None:
        state = g._pow = RequestState()

    return state


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
    cookie = state.signer.read(session.get(state.config.session_key))

    if cookie is None:
        return

    session_id, token, old_key = cookie
    credentials = state.credentials
    found = credentials.authenticate(session_id, token)

    if found is None:
        return

    if credentials.is_past_absolute(found.record):
        credentials.end(session_id, found.record.user_key)
        return

    user = credentials.load_user(found.record.user_key, found.user_data)

    if user is None:
        return

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
    """The logged-in user of this request, or ``None``.

    :meta private:
    """
    load_user()
    return g.current_user


def get_current_session() -> SessionInfo | None:
    """The session of this request, or ``None`` when anonymous.

    :meta private:
    """
    load_user()
    return _request_state().session


#: The logged-in user of the current request, or ``None``: a proxy to
#: ``g.current_user``. Test it with ``if current_user:`` or
#: ``g.current_user is None``; the proxy itself is never ``None``.
current_user: t.Any = LocalProxy(get_current_user)

#: The :class:`~flask_pow.SessionInfo` of the current request (its id, login
#: and rotation times, IP, user agent and custom metadata), or ``None``: a
#: proxy, so test it with ``if current_session:``.
current_session: SessionInfo | None = LocalProxy(  # type: ignore[assignment]
    get_current_session
)


# -- logging in and out ------------------------------------------------------


def login_user(user: t.Any, *, metadata: dict[str, t.Any] | None = None) -> None:
    """Log a user in: a new session with a new token and a new session id.
    A session the request was already authenticated by ends, so a token from
    before the login is dead after it (no session fixation). Where the Flask
    session interface can regenerate its id (Flask-Session), it does.

    ``g.current_user`` is the user at once; the records are stored when the
    view has returned.

    :param user: the user, as the user adapter takes it.
    :param metadata: extra metadata for the session, merged over the IP,
        user agent and the application's
        :meth:`~flask_pow.Pow.session_metadata` callbacks. Must be
        JSON-serializable (tagged JSON types are fine).
    :raise TypeError: if the metadata cannot be stored.
    """
    load_user()
    state = _pow_state()
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

    :param user: the user, with its new values.
    """
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
    state = g.get("_pow")

    if state is not None:
        state.failed = True


def persist(response: Response) -> Response:
    """Apply the writes this request decided, in order: ended sessions, a
    login, a rotation, a new cookie value. Registered as an
    ``after_request`` function.

    If the store fails, the response becomes a 503 and the cookie is left
    as it was.
    """
    request_state: RequestState | None = g.get("_pow")

    if request_state is None or request_state.failed:
        return response

    try:
        _apply(request_state)
    except StoreUnavailable as e:
        return e.get_response()  # type: ignore[return-value]

    return response


def _apply(request_state: RequestState) -> None:
    state = _pow_state()
    credentials = state.credentials
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    for ended_id, ended_user_key, user in request_state.ended:
        credentials.end(ended_id, ended_user_key)
        signals.user_logged_out.send(app, user=user, session_id=ended_id)

    for user_key, user_data in request_state.syncs:
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
