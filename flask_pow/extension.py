"""The :class:`Pow` extension."""

from __future__ import annotations

import collections.abc as c
import functools
import typing as t
import weakref
from weakref import WeakKeyDictionary

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import got_request_exception
from flask import has_app_context

from . import checks
from . import effects
from . import lifecycle
from . import mixins
from . import orm
from . import sync
from .cli import pow_cli
from .config import PowConfig
from .config import load_config
from .config import read_settings
from .credentials import CredentialsCache
from .loader import LoaderUsers
from .state import LoginManager
from .state import MetadataCallback
from .state import PowState
from .state import RequestLoader
from .state import UnauthorizedCallback
from .state import find_state
from .state import refuse_second
from .state import register
from .stores import store_for
from .users import UserAdapter
from .users import as_adapter
from .views import needs_refresh
from .views import reload_current_user
from .views import unauthorized

if t.TYPE_CHECKING:  # pragma: no cover
    from flask.typing import ResponseReturnValue
    from flask_sqlalchemy import SQLAlchemy


class Pow(LoginManager):
    """Server-side auth sessions for Flask: the logged-in user comes from a
    credentials cache, without a database query per request:
    ``auth = Pow(app, db=db, user_model=User)``, or ``auth = Pow()`` and then
    ``auth.init_app(app, db=db, user_model=User)`` in the factory (see
    :doc:`quickstart`; any name but ``pow``, a builtin).

    :param app: the application to set up now.
    :param db: the Flask-SQLAlchemy extension, with ``user_model``.
    :param user_model: the user model, with ``db``.
    :param users: a user adapter instead of ``db`` and ``user_model``, for
        users that are not Flask-SQLAlchemy models (see :doc:`users`).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        user_model: type[t.Any] | None = None,
        users: UserAdapter[t.Any] | None = None,
    ) -> None:
        super().__init__()
        self.db = db
        self.user_model = user_model
        self.users = users
        self._states: WeakKeyDictionary[Flask, PowState] = WeakKeyDictionary()
        self._metadata_callbacks: list[MetadataCallback] = []
        self._request_loaders: list[RequestLoader] = []

        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        db: SQLAlchemy | None = None,
        user_model: type[t.Any] | None = None,
        users: UserAdapter[t.Any] | None = None,
    ) -> None:
        """Set up an application: read and validate its ``POW_*`` keys (once:
        see :doc:`configuration`), and register the request hooks. Arguments
        given here win over those given to the constructor.

        :raise RuntimeError: if a flask_pow extension is already set up on it.
        :raise ValueError: if a setting or the user source is invalid.
        :raise TypeError: if a setting has the wrong type.
        """
        refuse_second(app)
        db = db or self.db
        user_model = user_model or self.user_model
        users = users or self.users
        config = load_config(app.config, app.instance_path)

        if users is None and db is None and orm.is_plain_class(user_model):
            users = LoaderUsers(
                t.cast(type[t.Any], user_model),
                self._load_user,
                exclude=config.cache_exclude,
            )
            loads_by_callback = True
        else:
            loads_by_callback = False

        if users is None:
            if db is None or user_model is None:
                raise ValueError(
                    "Pow needs to know the users: pass 'db' and 'user_model' (a"
                    " Flask-SQLAlchemy model), 'user_model' alone (a plain class"
                    " whose users @user_loader loads), or 'users' (a user adapter)."
                )

            users = orm.SQLAlchemyUsers(
                db,
                user_model,
                exclude=config.cache_exclude,
                relationships=config.cache_relationships,
            )

            if config.sync_on_commit:
                sync.listen(db, functools.partial(_synced_users, db))

        elif config.cache_relationships:
            raise ValueError(
                "POW_CACHE_RELATIONSHIPS is for SQLAlchemy models (db and"
                " user_model); other users cache what their adapter dumps."
            )

        users = as_adapter(users)

        # Only an adapter that names its model: another's users are its own.
        if isinstance(users, orm.SQLAlchemyUsers):
            mixins.warn_without_is_authenticated(users.model)

        app_ref = weakref.ref(app)

        def secrets() -> list[str | bytes]:
            # At each use (set after init_app?), weakly: the state is the app's.
            app = app_ref()
            assert app is not None
            keys = [app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ())]
            return list(filter(None, keys))

        def send(signal: t.Any, **kwargs: t.Any) -> None:
            signal.send(app_ref(), **kwargs)

        names = "credentials_ttl rotation_grace absolute_ttl max_sessions freshness"
        rules = {name: getattr(config, name) for name in names.split()}
        credentials = CredentialsCache(
            store_for(config, secrets),
            users,
            remember_ttl=config.remember_ttl,
            renewal=config.session_ttl_renewal,
            send=send,
            **rules,
        )
        state = self._states[app] = PowState(
            config=config,
            users=users,
            credentials=credentials,
            manager=self,
            metadata_callbacks=self._metadata_callbacks,
            request_loaders=self._request_loaders,
        )
        state.process_local = checks.is_process_local(state)
        state.loads_by_callback = loads_by_callback
        state.read_settings = read_settings(app.config)
        register(app, self)
        app.before_request(functools.partial(lifecycle.load, state))
        app.after_request(functools.partial(effects.apply, state))
        app.teardown_request(lifecycle.end_request)
        got_request_exception.connect(
            functools.partial(lifecycle.mark_failed, state), app, weak=False
        )
        app.context_processor(_template_context)
        app.cli.add_command(pow_cli)

    def get_state(self, app: Flask | None = None) -> PowState:
        """:meta private:"""
        if app is None:
            app = current_app._get_current_object()  # type: ignore[attr-defined]

        try:
            return self._states[app]
        except KeyError:
            raise RuntimeError(
                "The current Flask app is not registered with this 'Pow'"
                " instance. Did you forget to call 'init_app', or did you"
                " create multiple 'Pow' instances?"
            ) from None

    @property
    def credentials(self) -> CredentialsCache:
        """The :class:`~flask_pow.CredentialsCache` of the current application."""
        return self.get_state().credentials

    @property
    def config(self) -> PowConfig:
        """The validated settings of the current application."""
        return self.get_state().config

    def reload_blueprint(self, blueprint: Blueprint) -> Blueprint:
        """Make every view of a blueprint, and of the blueprints nested in it,
        reload the user from the database, as :func:`~flask_pow.reload_user`
        does for one view. Call it before the blueprint is registered.

        :return: the blueprint.
        """
        # Runs after the application's before_request, which loads the user.
        blueprint.before_request(reload_current_user)
        return blueprint

    def user_loader(
        self, callback: c.Callable[[str], t.Any]
    ) -> c.Callable[[str], t.Any]:
        """Register the function that loads a user by id, as Flask-Login's
        ``user_loader``: called with the user's ``get_id()`` text, it returns
        the user or ``None``.

        With ``Pow(app, user_model=User)`` and no ``db`` (users that are not
        SQLAlchemy models), flask_pow caches the users' attributes and calls
        it only when a user must be read from the source of truth (a
        :func:`~flask_pow.reload_user`, a lost record), never per request
        (:class:`~flask_pow.LoaderUsers`). With SQLAlchemy models it is
        accepted, so that Flask-Login code runs unchanged, and never called.
        """
        self.user_callback = callback
        return callback

    def _load_user(self, ident: str) -> t.Any:
        if self.user_callback is None:
            raise checks.SetupError(
                "Pow(app, user_model=...) without db loads users with the"
                " function registered by @login_manager.user_loader: register one."
            )

        return self.user_callback(ident)

    def request_loader(self, callback: RequestLoader) -> RequestLoader:
        """Register a function that authenticates a request that has no
        session, as Flask-Login's ``request_loader``: called with the request,
        it returns a user or ``None``. The user is that request's only:
        nothing is stored and no cookie is set. See :doc:`lifecycle`.

        .. code-block:: python

            @login_manager.request_loader
            def load_from_api_key(request):
                key = request.headers.get("X-Api-Key")
                return key and User.query.filter_by(api_key_digest=digest(key)).first()
        """
        self._request_loaders.append(callback)
        return callback

    def unauthorized_handler(
        self, callback: UnauthorizedCallback
    ) -> UnauthorizedCallback:
        """Register what :func:`~flask_pow.login_required` answers to an
        anonymous request, as Flask-Login's ``unauthorized_handler``: a
        function of no arguments that returns a response.
        """
        self.unauthorized_callback = callback
        return callback

    def unauthorized(self) -> ResponseReturnValue:
        """What an anonymous request gets where a login is required, as
        Flask-Login's ``login_manager.unauthorized()``: the
        :meth:`unauthorized_handler`'s response, else a JSON 401, a redirect to
        the login view, or a 401 (see :data:`~flask_pow.config.POW_LOGIN_VIEW`).
        """
        return unauthorized()

    def needs_refresh_handler(
        self, callback: UnauthorizedCallback
    ) -> UnauthorizedCallback:
        """Register what :func:`~flask_pow.fresh_login_required` answers to a
        session that is not fresh, as Flask-Login's ``needs_refresh_handler``:
        a function of no arguments that returns a response.
        """
        self.needs_refresh_callback = callback
        return callback

    def needs_refresh(self) -> ResponseReturnValue:
        """What a session that is not fresh gets where a fresh one is
        required, as Flask-Login's ``login_manager.needs_refresh()``: see
        :doc:`fresh-logins`.
        """
        return needs_refresh()

    def session_metadata(self, callback: MetadataCallback) -> MetadataCallback:
        """Register a function that adds keys to a session's metadata at
        login: called with the user, it returns JSON-serializable values, read
        later from :data:`~flask_pow.current_session` and session listings:

        .. code-block:: python

            @auth.session_metadata
            def add_country(user):
                return {"country": request.headers.get("CF-IPCountry")}
        """
        self._metadata_callbacks.append(callback)
        return callback


def _synced_users(db: SQLAlchemy) -> sync.Found:
    """The current app's adapter, if it syncs ``db`` on commit, and its callback."""
    state = find_state() if has_app_context() else None

    if state is not None and state.config.sync_on_commit:
        users = state.users

        if isinstance(users, orm.SQLAlchemyUsers) and users.db is db:
            return users, functools.partial(effects.note_committed, state)

    return None


def _template_context() -> dict[str, t.Any]:
    return {"current_user": lifecycle.current_user}
