"""The state of the extension on one application, and the one place that
finds it: :func:`get_state`. Everything below receives the state (or the
part it needs) as an argument.

:meta private:
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import typing as t

from flask import Flask
from flask import Request
from flask import current_app
from flask.typing import ResponseReturnValue

from .config import PowConfig
from .credentials import CredentialsCache
from .mixins import AnonymousUser
from .signing import REMEMBER_SALT
from .signing import TokenSigner
from .users import UserAdapter

MetadataCallback = c.Callable[[t.Any], c.Mapping[str, t.Any]]
RequestLoader = c.Callable[[Request], t.Any]
UnauthorizedCallback = c.Callable[[], ResponseReturnValue]

#: An attribute of :class:`LoginManager` that was not set.
UNSET: t.Any = object()


class LoginManager:
    """The attributes Flask-Login keeps on its ``login_manager``, kept on
    :class:`~flask_pow.Pow` too: Flask-Login code that sets them keeps
    working, rather than being silently ignored. Each one that is set wins
    over the ``POW_*`` setting it names.
    """

    #: The class of :data:`~flask_pow.current_user` when nobody is logged
    #: in, as Flask-Login's ``login_manager.anonymous_user``. Set it to a
    #: subclass of :class:`~flask_pow.AnonymousUser` to give it the methods
    #: your templates call on any user.
    anonymous_user: type[t.Any] = AnonymousUser
    #: Flask-Login's ``login_manager.login_view``, an endpoint or a URL:
    #: wins over ``POW_LOGIN_VIEW``.
    login_view: str | None = None
    #: Wins over ``POW_BLUEPRINT_LOGIN_VIEWS`` for the blueprints it names.
    blueprint_login_views: dict[str, str | None]
    #: When set (``None`` too: flash nothing), wins over
    #: ``POW_LOGIN_MESSAGE``.
    login_message: t.Any = UNSET
    #: When set, wins over ``POW_LOGIN_MESSAGE_CATEGORY``.
    login_message_category: str | None = None
    #: Flask-Login's ``login_manager.refresh_view``, an endpoint or a URL:
    #: wins over ``POW_REFRESH_VIEW``.
    refresh_view: str | None = None
    #: When set (``None`` too: flash nothing), wins over
    #: ``POW_NEEDS_REFRESH_MESSAGE``.
    needs_refresh_message: t.Any = UNSET
    #: When set, wins over ``POW_NEEDS_REFRESH_MESSAGE_CATEGORY``.
    needs_refresh_message_category: str | None = None

    def __init__(self) -> None:
        self.blueprint_login_views = {}
        #: The function given to ``@user_loader``.
        self.user_callback: c.Callable[[str], t.Any] | None = None
        self.unauthorized_callback: UnauthorizedCallback | None = None
        self.needs_refresh_callback: UnauthorizedCallback | None = None

    def login_views(self, config: PowConfig) -> dict[str, str | None]:
        """Every login view the application names, by the setting that
        names it: the extension's attributes and the configuration, the
        refresh views (a login that makes the session fresh) included.
        """
        views: dict[str, str | None] = {
            "POW_LOGIN_VIEW": config.login_view,
            "POW_REFRESH_VIEW": config.refresh_view,
        }

        if self.login_view is not None:
            views["login_manager.login_view"] = self.login_view

        if self.refresh_view is not None:
            views["login_manager.refresh_view"] = self.refresh_view

        for name, endpoint in config.blueprint_login_views.items():
            views[f"POW_BLUEPRINT_LOGIN_VIEWS[{name!r}]"] = endpoint

        for name, endpoint in self.blueprint_login_views.items():
            views[f"login_manager.blueprint_login_views[{name!r}]"] = endpoint

        return views

    def login_view_for(
        self, config: PowConfig, blueprints: c.Iterable[str]
    ) -> str | None:
        """The login view of a request in these blueprints (innermost
        first): the innermost blueprint that has one of its own wins, and a
        blueprint mapped to ``None`` answers 401.
        """
        for name in blueprints:
            for views in (self.blueprint_login_views, config.blueprint_login_views):
                if name in views:
                    return views[name]

        return self.login_view or config.login_view


@dataclasses.dataclass(eq=False)
class PowState:
    """The per-application state of a :class:`~flask_pow.Pow` extension."""

    config: PowConfig
    users: UserAdapter[t.Any]
    credentials: CredentialsCache
    #: The extension's Flask-Login attributes and handlers.
    manager: LoginManager
    metadata_callbacks: list[MetadataCallback]
    request_loaders: list[RequestLoader]
    signer: TokenSigner = dataclasses.field(default_factory=TokenSigner)
    #: Signs the remember-me cookie, with a salt of its own.
    remember_signer: TokenSigner = dataclasses.field(
        default_factory=lambda: TokenSigner(REMEMBER_SALT)
    )
    #: The checks that need the built application have passed.
    checked: bool = False
    #: The store lives in this process's memory only.
    process_local: bool = False
    #: The users are loaded by the manager's ``user_loader`` function.
    loads_by_callback: bool = False
    #: Whether each endpoint's views reload the user
    #: (:func:`~flask_pow.lifecycle.wants_reload`).
    reloads: dict[str | None, bool] = dataclasses.field(default_factory=dict)
    #: The ``POW_*`` keys as ``init_app`` read them, compared with the
    #: application's config at its first request, then dropped.
    read_settings: dict[str, t.Any] | None = None


#: The key of the extension in ``app.extensions``.
EXTENSION_KEY = "pow"


def refuse_second(app: Flask) -> None:
    """:raise RuntimeError: if the application has a flask_pow extension."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError(
            "A 'Pow' instance has already been registered on this Flask app."
            " Import and use that instance instead."
        )


def register(app: Flask, extension: t.Any) -> None:
    """Record ``extension`` as the application's flask_pow extension."""
    app.extensions[EXTENSION_KEY] = extension


def find_state(app: Flask | None = None) -> PowState | None:
    """The state of the flask_pow extension of ``app`` (the current one), or
    ``None`` if it has none: the one lookup of the extension in the package.
    """
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]

    extension = app.extensions.get(EXTENSION_KEY)
    return None if extension is None else extension.get_state(app)


def get_state(app: Flask | None = None) -> PowState:
    """:func:`find_state`, for an application flask_pow must be set up on.

    :raise RuntimeError: if it is not.
    """
    state = find_state(app)

    if state is None:
        raise RuntimeError(
            "flask_pow is not set up on this application. Call 'Pow(app)' or"
            " 'auth.init_app(app)' before handling requests."
        )

    return state
