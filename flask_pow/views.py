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

#: Methods let through unauthenticated: a CORS preflight carries no cookie.
EXEMPT_METHODS = frozenset({"OPTIONS"})


def unauthorized() -> ResponseReturnValue:
    """:meth:`Pow.unauthorized <flask_pow.Pow.unauthorized>`."""
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
    """:meth:`Pow.needs_refresh <flask_pow.Pow.needs_refresh>`."""
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
    """After ``signal``: the handler, a JSON 401, a redirect to ``view``, or a 401."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signal.send(app)

    if callback is not None:
        return current_app.ensure_sync(callback)()  # type: ignore[no-any-return]

    # JSON to a client that asks for it or sends it; a browser prefers HTML.
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

    # A path, not a URL: a forged Host header makes no open redirect.
    next_url = request.full_path if request.query_string else request.path
    return redirect(url_for(view, next=next_url))


def _required(view: F, fresh: bool) -> F:
    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        # LOGIN_DISABLED is Flask-Login's switch for tests, read per request
        # as Flask-Login reads it.
        if request.method not in EXEMPT_METHODS and not current_app.config.get(
            "LOGIN_DISABLED"
        ):
            if current().user is None:
                return unauthorized()

            if fresh and not login_fresh():
                return needs_refresh()

        return current_app.ensure_sync(view)(*args, **kwargs)

    return t.cast(F, wrapper)


def login_required(view: F) -> F:
    """Let only logged-in users through to the view, and users a
    :meth:`~flask_pow.Pow.request_loader` authenticated; anyone else gets
    what :meth:`Pow.unauthorized <flask_pow.Pow.unauthorized>` answers.
    With ``LOGIN_DISABLED`` set in the application's config (Flask-Login's
    switch for tests), everyone is let through.
    """
    return _required(view, fresh=False)


def fresh_login_required(view: F) -> F:
    """Let only users whose session is fresh through to the view: they
    proved who they are within :data:`~flask_pow.config.POW_FRESHNESS`.
    See :doc:`fresh-logins`.
    """
    return _required(view, fresh=True)


def reload_user(view: F) -> F:
    """Make a view see the current user as the database has it now, not as
    the cache does. If the user is gone, the session ends and the request is
    anonymous, whatever the order of decorators. See :doc:`freshness`.
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        # Done before the decorators (the mark below), unless called otherwise.
        reload_current_user()
        return current_app.ensure_sync(view)(*args, **kwargs)

    wrapper._pow_reload = True  # type: ignore[attr-defined]
    return t.cast(F, wrapper)


def reload_current_user() -> None:
    """Reload the current user, once per request (:func:`reload_user`)."""
    rs = current()
    reload(rs.state, rs)
