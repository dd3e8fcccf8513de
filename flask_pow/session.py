"""The request side: read the signed token from :data:`flask.session` and
load the user from the credentials cache into ``g.current_user`` (or from a
:meth:`~flask_pow.Pow.request_loader`), and the :data:`current_user` and
:data:`current_session` proxies. What a request changes is applied after the
view by :mod:`flask_pow.persist`.
"""

from __future__ import annotations

import typing as t

from flask import current_app
from flask import g
from flask import has_app_context
from flask import has_request_context
from flask import request
from flask import session
from werkzeug.local import LocalProxy

from . import signals
from .checks import check_request
from .records import SessionInfo
from .request_state import RequestState
from .request_state import forget_session
from .request_state import get_pow_state
from .request_state import get_request_state
from .request_state import remembered_here
from .request_state import set_current_user
from .users import resolve_user

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from .extension import PowState


# -- loading -----------------------------------------------------------------


def load_user() -> None:
    """Authenticate the request and set ``g.current_user``. Registered as a
    ``before_request`` function; runs once per request, also when
    :data:`current_user` is used before it.

    :raise StoreUnavailable: if the store cannot be read.
    """
    request_state = get_request_state()

    if request_state.loaded:
        # Another context of the same request (a copied request context in
        # a thread, an app context pushed in the view) has a ``g`` of its
        # own: give it the request's user.
        if "current_user" not in g and not request_state.finished:
            g.current_user = request_state.user

        return

    request_state.loaded = True
    state = get_pow_state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    check_request(app, state)

    # Whatever another hook left in g.current_user is replaced, never
    # trusted: a user from another mechanism comes through request_loader.
    set_current_user(None, request_state)
    signals.user_accessed.send(app)

    if (
        not _load_from_session(state, request_state)
        and not _load_from_remember(state, request_state, app)
        and state.request_loaders
    ):
        _load_from_request(state, app)

    request_state.origin = (
        request_state.session_id,
        request_state.record,
        request_state.user_key,
        request_state.user,
    )


def _load_from_remember(
    state: PowState, request_state: RequestState, app: Flask
) -> bool:
    """With no live session, log the user in again from a remember-me
    cookie: a new session (not fresh), and a new remember token. A cookie
    that is not ours, or tampered with, is ignored and left alone.

    :return: whether a user was loaded.
    """
    value = request.cookies.get(state.config.remember_cookie_name)

    if value is None:
        return False

    cookie = state.remember_signer.read(value)

    if cookie is None:
        return False

    series, token, _ = cookie
    restored = state.credentials.restore(series, token, {})

    if restored is None:
        # Ours, and no longer valid (logged out, revoked, expired): drop it.
        request_state.clear_remember = True
        return False

    request_state.remember_cookie = (series, restored.remember_token)
    request_state.remember_until = restored.expires_at

    if not _load_session(
        state, request_state, restored.session_id, restored.session_token, True
    ):
        return False

    signals.user_loaded_from_remember.send(app, user=request_state.user)
    return True


def _load_from_request(state: PowState, app: Flask) -> None:
    """Ask the application's :meth:`~flask_pow.Pow.request_loader`
    callbacks, in order, for a user; nothing is stored.
    """
    for loader in state.request_loaders:
        user = loader(request._get_current_object())  # type: ignore[attr-defined]

        if user is not None:
            user = resolve_user(user)
            set_current_user(user)
            signals.user_loaded_from_request.send(app, user=user)
            return


def _load_from_session(state: PowState, request_state: RequestState) -> bool:
    """Load the user of the session the request's cookie names.

    :return: whether a user was loaded.
    """
    cookie = state.signer.read(session.get(state.config.session_key))

    if cookie is None:
        return False

    session_id, token, old_key = cookie
    return _load_session(state, request_state, session_id, token, old_key)


def _load_session(
    state: PowState,
    request_state: RequestState,
    session_id: str,
    token: str,
    resign: bool,
) -> bool:
    """Load the user of a session, given its id and token; ``resign``:
    write the cookie value again after the view, even if nothing changed.
    """
    credentials = state.credentials
    found = credentials.authenticate(session_id, token)

    if found is None:
        return False

    if credentials.is_past_absolute(found.record):
        credentials.end(session_id, found.record.user_key, remembered=remembered_here())
        return False

    user_data = found.user_data

    if user_data is None:
        # The store lost the user record of a valid session: the user is
        # loaded from the database once and cached again.
        healed = credentials.heal_missing_user(found.record.user_key)

        if healed is None:
            # The user is gone from the database (as a reload finds): the
            # session ends. An adapter that cannot load by key leaves it.
            if credentials.reloads_by_key:
                credentials.end(
                    session_id, found.record.user_key, remembered=remembered_here()
                )

            return False

        user, user_data = healed
    else:
        user = credentials.load_user(found.record.user_key, user_data)

    if user is None:
        return False

    if credentials.is_stale(user_data):
        healed = credentials.heal_user(found.record.user_key, user)

        if healed is None:
            credentials.end(
                session_id, found.record.user_key, remembered=remembered_here()
            )
            return False

        user, user_data = healed

    record = found.record
    request_state.session_id = record.id
    request_state.record = record
    request_state.user_key = record.user_key
    request_state.token = found.follow or token
    request_state.user_data = user_data
    request_state.resign = resign or found.follow is not None
    renewal = state.config.session_ttl_renewal

    if (
        renewal is not None
        and found.follow is None
        and record.inserted_at + renewal < credentials.clock()
    ):
        request_state.rotate = True

    set_current_user(user, request_state)

    if _wants_reload(state):
        reload_current_user()

    return request_state.user is not None


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
    request_state = get_request_state()
    user = request_state.user

    if request_state.reloaded or user is None or request_state.session_id is None:
        return user

    request_state.reloaded = True
    state = get_pow_state()
    fresh = state.users.reload(user)

    if fresh is not None:
        set_current_user(fresh)
        return fresh

    session_id = request_state.session_id
    user_key = request_state.user_key
    # Now, not after the view: the user is gone whatever the view does (Pow
    # deletes at once too).
    state.credentials.end(session_id, user_key, remembered=remembered_here())
    forget_session(request_state)
    set_current_user(None)
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
    return get_request_state().user


def _current_user_or_anonymous() -> t.Any:
    user = get_current_user()

    if user is not None:
        return user

    if not has_request_context():
        return _anonymous_user()

    request_state = get_request_state()

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
        get_pow_state()  # raises, saying how to set flask_pow up

    return pow_.anonymous_user()  # type: ignore[union-attr]


def get_current_session() -> SessionInfo | None:
    """The session of this request, or ``None`` when anonymous.

    :meta private:
    """
    load_user()
    return get_request_state().session


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
