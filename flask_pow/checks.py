"""Setup mistakes that only requests show, with the fix in the message."""

from __future__ import annotations

import warnings

from cachelib import SimpleCache
from flask import Flask
from flask import request

from .config import LateSettingWarning
from .config import changed_settings
from .config import is_login_url
from .signing import require_secret_key
from .state import PowState


class SetupError(RuntimeError):
    """flask_pow is set up in a way that cannot work; the message says why."""


def is_process_local(state: PowState) -> bool:
    """Whether the store lives in this process's memory only."""
    return isinstance(state.config.cache, SimpleCache)


def check_request(app: Flask, state: PowState) -> None:
    """Raise :exc:`SetupError` if the setup cannot serve this request."""
    if not state.checked:
        # Warned once, even if a check below fails: a POW_* key set after
        # init_app would otherwise be ignored without a word.
        read, state.read_settings = state.read_settings, None
        changed = [] if read is None else changed_settings(read, app.config)

        if changed:
            warnings.warn(
                f"{', '.join(changed)} changed in the application's config after"
                " flask_pow read its settings in init_app, and flask_pow ignores"
                " the change: it goes on with what init_app read. Set these keys"
                " before Pow(app) or init_app(app), or call init_app after setting"
                " them (an application factory does both in order).",
                LateSettingWarning,
                stacklevel=1,  # no application line made the change
            )

        require_secret_key(app, SetupError)

        if state.loads_by_callback and state.manager.user_callback is None:
            raise SetupError(
                "Pow(app, user_model=...) without db caches users that are not"
                " SQLAlchemy models, and loads them with the function registered"
                " by @login_manager.user_loader: register one."
            )

        for setting, view in state.manager.login_views(state.config).items():
            if view is None or is_login_url(view) or view in app.view_functions:
                continue

            known = sorted(e for e in app.view_functions if "login" in e)
            hint = f" Endpoints with 'login' in their name: {known}." if known else ""
            raise SetupError(
                f"{setting} is {view!r}, which is not an endpoint of this"
                " application. It names a view function as url_for() does:"
                " 'login', or 'auth.login' for one in a blueprint; or it is a URL,"
                f" starting with '/', 'http://' or 'https://'.{hint}"
            )

        state.checked = True

    # PEP 3333: the server says whether other processes serve the application.
    if state.process_local and request.environ.get("wsgi.multiprocess"):
        if state.config.testing_store:
            raise SetupError(
                "TESTING is set and POW_CACHE is not, so flask_pow keeps the"
                " sessions in each process's memory (a SimpleCache), and several"
                " processes serve this application (wsgi.multiprocess): each"
                " would keep its own sessions. For a test that runs several, set"
                " POW_CACHE to a cachelib.FileSystemCache in a temporary folder"
                " (threshold=0), or POW_REDIS_URL."
            )

        raise SetupError(
            "POW_CACHE is an in-process SimpleCache under several processes"
            " (wsgi.multiprocess): each would keep its own sessions. Use a"
            " shared store: leave POW_CACHE unset (a FileSystemCache in the"
            " instance folder), set a cachelib.FileSystemCache, or POW_REDIS_URL."
        )
