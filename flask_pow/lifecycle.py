"""The request lifecycle: before the view, authenticate the request and set
``g.current_user`` (from the session cookie, a remember-me cookie, or a
request loader); after it, :func:`flask_pow.effects.apply` writes what the
request did. Also the :data:`current_user` and :data:`current_session`
proxies.

:meta private:
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

from . import remember
from . import signals
from .checks import check_request
from .effects import STATE_ATTRIBUTE
from .effects import RequestState
from .effects import apply_committed
from .effects import request_state
from .records import SessionInfo
from .state import PowState
from .state import get_state
from .stores import StoreUnavailable
from .users import resolve_user

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

# -- the Flask <= 3.1 context-reuse workaround --------------------------------
# Flask 3.1 and older reuse an application context that is already pushed (a
# test suite's ``with app.app_context():``, a worker that pushed one at
# import) and its ``g`` for every request they handle: state left in ``g``
# would hand one client's user to the next. So the request's state lives on
# the request object (:data:`~flask_pow.effects.STATE_ATTRIBUTE`),
# ``g.current_user`` is replaced when the user is loaded and dropped when the
# request ends, and the teardown of a copied request context (a thread) is
# told from the request's own by the ``g`` the user was loaded in. Remove
# this block, its hook and ``dispatch_g`` when the floor is a Flask that
# pushes a fresh context for every request (3.2).


def end_request(exc: BaseException | None = None) -> None:
    """A ``teardown_request`` function: the user does not outlive the
    request in an application context that does. Writes what committed
    transactions changed if :func:`~flask_pow.effects.apply` never ran (an
    exception propagated out of the view: debug mode, ``TESTING``).
    """
    rs = request.__dict__.get(STATE_ATTRIBUTE)
    app_g = g._get_current_object()

    if rs is not None and rs.dispatch_g in (None, app_g):
        rs.finished = True

        if rs.effects:
            try:
                apply_committed(rs)
            except StoreUnavailable:
                # Nothing can answer 503 any more; the failure is logged, and
                # the cached values stay as they were until they expire.
                pass

    app_g.pop("current_user", None)


def mark_failed(state: PowState, sender: Flask, **kwargs: t.Any) -> None:
    """Connected to :data:`flask.got_request_exception`: a request that
    failed writes nothing.
    """
    if has_request_context():
        request_state(state).failed = True


# -- loading -----------------------------------------------------------------


def current() -> RequestState:
    """The state of the current request, its user loaded. The extension is
    looked up only if the request has no state yet.
    """
    rs: RequestState | None = request.__dict__.get(STATE_ATTRIBUTE)

    if rs is None:
        rs = request_state(get_state())

    if not rs.loaded:
        load(rs.state, rs)
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
    # The objects behind the proxies, looked up once each.
    req = request._get_current_object()  # type: ignore[attr-defined]

    if rs is None:
        rs = req.__dict__.get(STATE_ATTRIBUTE) or request_state(state, req)

    if rs.loaded:
        return

    rs.loaded = True
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    app_g = g._get_current_object()
    # The context the user is loaded in is the request's own: a copy (a
    # thread) is made from a request whose hooks have run.
    rs.dispatch_g = app_g

    if not state.checked or (
        state.process_local and req.environ.get("wsgi.multiprocess")
    ):
        check_request(app, state)

    # Whatever another hook left in g.current_user is replaced, never
    # trusted: a user from another mechanism comes through request_loader.
    app_g.current_user = None

    if signals.user_accessed.receivers:
        signals.user_accessed.send(app)

    cookie = state.signer.read(session.get(state.config.session_key), app.config)

    if cookie is not None:
        _load_session(state, rs, app_g, req, *cookie)

    if rs.record is None and req.cookies:
        restored = remember.restore(state, rs.remember)

        if restored is not None and _load_session(
            state, rs, app_g, req, restored.session_id, restored.session_token, True
        ):
            signals.user_loaded_from_remember.send(app, user=rs.user)

    if rs.user is None and state.request_loaders:
        for loader in state.request_loaders:
            user = loader(req)

            if user is not None:
                rs.set_user(resolve_user(user))
                signals.user_loaded_from_request.send(app, user=rs.user)
                break

    rs.origin = (rs.record, rs.user)


def _load_session(
    state: PowState,
    rs: RequestState,
    app_g: t.Any,
    req: t.Any,
    session_id: str,
    token: str,
    resign: bool,
) -> bool:
    """Load the user of a session, given its id and token; ``resign``:
    write the cookie again after the view, even if nothing changed.
    ``app_g`` and ``req``: :data:`~flask.g` and the request, not proxies.
    """
    found = state.credentials.authenticate(session_id, token)

    if found is None:
        return False

    if found.user is None:
        # Past the absolute timeout, or the user is gone from the database.
        if found.end:
            remember.end_with_device(
                state, rs.remember, session_id, found.record.user_key
            )

        return False

    rs.record, rs.user_data = found.record, found.user_data
    rs.token = found.follow or token

    if found.follow is not None or resign:
        rs.rotate = "resign"
    elif found.due:
        rs.rotate = "routine"

    app_g.current_user = rs.user = found.user

    if wants_reload(state, req):
        reload(state, rs)

    return rs.user is not None


def wants_reload(state: PowState, req: t.Any) -> bool:
    """Whether this request reloads the user: ``POW_RELOAD``, a view marked
    with :func:`~flask_pow.reload_user`, or a view of a reload blueprint
    (or one nested in it). Decided once per endpoint: an application's
    views and blueprints are fixed once it serves requests.
    """
    endpoint = req.endpoint
    wanted = state.reloads.get(endpoint)

    if wanted is None:
        view = current_app.view_functions.get(endpoint or "")
        names = state.config.reload_blueprints
        wanted = state.reloads[endpoint] = (
            state.config.reload
            or getattr(view, "_pow_reload", False)
            or (bool(names) and not names.isdisjoint(req.blueprints))
        )

    return wanted


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

    remember.end_with_device(state, rs.remember, record.id, record.user_key)
    rs.forget_session()
    rs.set_user(None)
    signals.user_reloaded_gone.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        user_key=record.user_key,
        session_id=record.id,
    )
    return None


# -- the proxies ---------------------------------------------------------------


def _current_user_or_anonymous() -> t.Any:
    if not has_request_context():
        if not has_app_context():
            raise RuntimeError(
                "'current_user' was used outside of an application context, so"
                " there is no application to ask who is logged in."
            )

        return get_state().manager.anonymous_user()

    rs = current()

    if rs.user is not None:
        return rs.user

    if rs.anonymous is None:
        rs.anonymous = rs.state.manager.anonymous_user()

    return rs.anonymous


def _current_session() -> SessionInfo | None:
    return current().session_info


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
