"""View decorators."""

from __future__ import annotations

import collections.abc as c
import functools
import typing as t
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from blinker import NamedSignal
from flask import abort
from flask import current_app
from flask import flash
from flask import jsonify
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue

from . import signals
from .auth import login_fresh
from .config import is_login_url
from .lifecycle import current
from .lifecycle import reload
from .state import UNSET
from .state import get_state

F = t.TypeVar("F", bound=c.Callable[..., t.Any])

#: Methods let through unauthenticated: a CORS preflight carries no cookie.
EXEMPT_METHODS = frozenset({"OPTIONS"})

#: The key in :data:`flask.session` that holds the page a refused request
#: asked for, with ``USE_SESSION_FOR_NEXT``: Flask-Login's.
NEXT_SESSION_KEY = "next"


def login_url(
    login_view: str, next_url: str | None = None, next_field: str = "next"
) -> str:
    """The URL of a login page, with ``next_url`` in its query string for
    the page to send the user back to after the login: the URL
    :func:`login_required` redirects to. Flask-Login's ``login_url``, with
    its arguments and the URLs it builds, so code and test assertions
    written for Flask-Login keep working. Call it where
    :func:`~flask.url_for` works.

    With ``next_url``,
    :data:`~flask_pow.config.FORCE_HOST_FOR_REDIRECTS` in the application's
    config (read at each call, as Flask-Login reads it) replaces the host of
    the URL returned: a login page given as an endpoint or a path becomes
    ``//host/login?next=...``, on the scheme of the request.

    :param login_view: The endpoint of the login view, as
        :func:`~flask.url_for` takes it, or a URL: a value that starts with
        ``/``, ``http://`` or ``https://``, such as ``"/accounts/login"``
        or a single sign-on page, ``"https://sso.example.com/login"``. The
        query string of a URL is kept.
    :param next_url: The page to come back to, percent-encoded into the
        query string (``/login?next=%2Fsecret``). When the login page is on
        the same scheme and host as ``next_url`` (a login page given as an
        endpoint or a path always is), only its path and query string are
        given: the login page gets a path on its own site, not a URL.
        Without it, the URL of the login page is returned as it is.
    :param next_field: The name of the query parameter.
    """
    page = expand_login_view(login_view)

    if next_url is None:
        return page

    parts = urlsplit(page)
    query = parse_qs(parts.query, keep_blank_values=True)
    query[next_field] = [make_next_param(page, next_url)]
    host = current_app.config.get("FORCE_HOST_FOR_REDIRECTS") or parts.netloc
    return urlunsplit(parts._replace(netloc=host, query=urlencode(query, doseq=True)))


def expand_login_view(login_view: str) -> str:
    """The URL of a login view given as an endpoint or a URL (a value that
    starts with ``/``, ``http://`` or ``https://``, returned as it is).
    Flask-Login's ``expand_login_view``. Call it where :func:`~flask.url_for`
    works.
    """
    return login_view if is_login_url(login_view) else url_for(login_view)


def make_next_param(login_page: str, next_url: str) -> str:
    """``next_url`` as the login page at ``login_page`` is given it: its
    path and query string when both are on the same site (a relative
    ``login_page`` is), else the whole URL, which a page on another host
    needs to send the user back. Flask-Login's ``make_next_param``.
    """
    page, target = urlsplit(login_page), urlsplit(next_url)
    same_scheme = not page.scheme or page.scheme == target.scheme
    same_host = not page.netloc or page.netloc == target.netloc

    if same_scheme and same_host:
        return urlunsplit(("", "", target.path, target.query, ""))

    return next_url


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

    return redirect(_login_redirect(view))


def _login_redirect(view: str) -> str:
    """The URL a refused browser request is sent to, with the page it asked
    for: in the query string, or in :data:`flask.session` under
    :data:`NEXT_SESSION_KEY` when the application's config sets
    ``USE_SESSION_FOR_NEXT`` (read at each request, as Flask-Login reads it).
    """
    # The request's URL, as Flask-Login gives it: the script root (an
    # application mounted under a prefix) included, the path percent-encoded.
    # make_next_param reduces it to a path for a login page on this site, so a
    # forged Host header makes no open redirect.
    if current_app.config.get("USE_SESSION_FOR_NEXT"):
        session[NEXT_SESSION_KEY] = make_next_param(
            expand_login_view(view), request.url
        )
        return login_url(view)

    return login_url(view, next_url=request.url)


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
