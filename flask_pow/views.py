"""View decorators."""

from __future__ import annotations

import collections.abc as c
import functools
import typing as t

from blinker import NamedSignal
from flask import abort
from flask import current_app
from flask import flash
from flask import jsonify
from flask import redirect
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from . import signals
from .auth import login_fresh
from .lifecycle import current
from .lifecycle import reload
from .state import UNSET
from .state import get_state

F = t.TypeVar("F", bound=c.Callable[..., t.Any])

#: Methods that pass ``login_required`` unauthenticated: a CORS preflight
#: carries no cookie.
EXEMPT_METHODS = frozenset({"OPTIONS"})


def unauthorized() -> ResponseReturnValue:
    """See :meth:`Pow.unauthorized <flask_pow.Pow.unauthorized>`.

    :meta private:
    """
    state = get_state()
    config, manager = state.config, state.manager
    message = manager.login_message
    return _refuse(
        signals.user_unauthorized,
        manager.unauthorized_callback,
        config.login_message if message is UNSET else message,
        manager.login_message_category or config.login_message_category,
        ("unauthorized", "Login required."),
        manager.login_view_for(config, request.blueprints),
    )


def needs_refresh() -> ResponseReturnValue:
    """See :meth:`Pow.needs_refresh <flask_pow.Pow.needs_refresh>`.

    :meta private:
    """
    state = get_state()
    config, manager = state.config, state.manager
    message = manager.needs_refresh_message
    return _refuse(
        signals.user_needs_refresh,
        manager.needs_refresh_callback,
        config.needs_refresh_message if message is UNSET else message,
        manager.needs_refresh_message_category or config.needs_refresh_message_category,
        ("reauthentication_required", "Please reauthenticate."),
        manager.refresh_view or config.refresh_view,
    )


def _refuse(
    signal: NamedSignal,
    callback: c.Callable[[], ResponseReturnValue] | None,
    message: t.Any,
    category: str,
    json_error: tuple[str, str],
    view: str | None,
) -> ResponseReturnValue:
    """What a request turned away gets, after ``signal``: the application's
    handler, a JSON 401 to a request that asks for JSON, a redirect to
    ``view`` with ``message`` flashed, or a 401.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signal.send(app)

    if callback is not None:
        return current_app.ensure_sync(callback)()  # type: ignore[no-any-return]

    # A browser's Accept header prefers HTML (or says */*, which picks the
    # first offer); a fetch or an API client that asks for JSON, or sends
    # it, gets JSON.
    offers = ("text/html", "application/json")

    if request.is_json or request.accept_mimetypes.best_match(offers) == offers[1]:
        error, fallback = json_error
        response = jsonify(error=error, message=str(message) if message else fallback)
        response.status_code = 401
        return response

    if view is None:
        abort(401)

    if message:
        flash(str(message), category)

    # A path, not a full URL, so the login view cannot be turned into an
    # open redirect by a forged Host header.
    next_url = request.full_path if request.query_string else request.path
    return redirect(url_for(view, next=next_url))


def login_required(view: F) -> F:
    """Let only logged-in users through to the view, and users a
    :meth:`~flask_pow.Pow.request_loader` authenticated.

    Anyone else gets what :meth:`Pow.unauthorized
    <flask_pow.Pow.unauthorized>` answers: by default a redirect to the
    login view, or a 401.
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        if request.method not in EXEMPT_METHODS and current().user is None:
            return unauthorized()

        return current_app.ensure_sync(view)(*args, **kwargs)

    return t.cast(F, wrapper)


def fresh_login_required(view: F) -> F:
    """Let only users whose session is fresh through to the view: they
    proved who they are (a login with a password, or
    :func:`~flask_pow.confirm_login`) within
    :data:`~flask_pow.config.POW_FRESHNESS`. For the views where an old
    stolen cookie must not be enough: changing the password or the email,
    payment details.

    An anonymous request gets what :func:`login_required` answers; a
    logged-in but not fresh one what :meth:`Pow.needs_refresh
    <flask_pow.Pow.needs_refresh>` answers: by default a redirect to
    ``POW_REFRESH_VIEW``, or a 401.
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        if request.method not in EXEMPT_METHODS:
            if current().user is None:
                return unauthorized()

            if not login_fresh():
                return needs_refresh()

        return current_app.ensure_sync(view)(*args, **kwargs)

    return t.cast(F, wrapper)


def reload_user(view: F) -> F:
    """Make a view see the current user as the database has it now, not as
    the cache does: for views where a stale value is not acceptable, such as
    authorization checks.

    If the user no longer exists, their session ends and the request is
    anonymous; a :func:`login_required` view then answers 401 or redirects,
    whichever order the two decorators are in, since the reload happens
    before the view's decorators run.
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        # Normally done before the request's decorators run, from the mark
        # below; this covers a view called some other way.
        reload_current_user()
        return current_app.ensure_sync(view)(*args, **kwargs)

    wrapper._pow_reload = True  # type: ignore[attr-defined]
    return t.cast(F, wrapper)


def reload_current_user() -> None:
    """Reload the current user from the database, once per request (see
    :func:`reload_user`).

    :meta private:
    """
    rs = current()
    reload(rs.state, rs)
