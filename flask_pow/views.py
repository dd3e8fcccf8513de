"""View decorators."""

from __future__ import annotations

import collections.abc as c
import functools
import typing as t

from flask import abort
from flask import current_app
from flask import redirect
from flask import request
from flask import url_for

from .session import _pow_state
from .session import get_current_user
from .session import reload_current_user

F = t.TypeVar("F", bound=c.Callable[..., t.Any])

#: Methods that pass ``login_required`` unauthenticated: a CORS preflight
#: carries no cookie.
EXEMPT_METHODS = frozenset({"OPTIONS"})


def _next_url() -> str:
    # A path, not a full URL, so the login view cannot be turned into an
    # open redirect by a forged Host header.
    if request.query_string:
        return request.full_path

    return request.path


def login_required(view: F) -> F:
    """Let only logged-in users through to the view.

    An anonymous request gets ``401 Unauthorized``, or, when
    ``POW_LOGIN_VIEW`` names an endpoint, a redirect to it with the
    requested path in ``next``.
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        if request.method not in EXEMPT_METHODS and get_current_user() is None:
            login_view = _pow_state().config.login_view

            if login_view is None:
                abort(401)

            return redirect(url_for(login_view, next=_next_url()))

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
