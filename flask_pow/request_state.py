"""What flask_pow knows and plans for one request, and where it keeps it.

It lives on the request object, never in ``g``: Flask reuses an application
context that is already pushed (a test suite's ``with app.app_context():``,
a worker that pushed one at import) and its ``g`` for every request it
handles, and state left there would hand one client's session to the next.
``g.current_user`` is dropped when a request starts and when it ends for the
same reason.

:meta private:
"""

from __future__ import annotations

import dataclasses
import typing as t

from flask import current_app
from flask import g
from flask import request

from .records import SessionInfo
from .records import SessionRecord

if t.TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from .extension import PowState


@dataclasses.dataclass
class RequestState:
    """What flask_pow knows and plans for one request, kept on the request
    object (see the module's docstring for why not in ``g``).

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
    #: Users whose changed rows a database transaction committed in this
    #: request (``POW_SYNC_ON_COMMIT``): written after the view even if it
    #: then fails, since the database has the change. Key and values, or
    #: ``None`` for a deleted row.
    committed: dict[str, dict[str, t.Any] | None] = dataclasses.field(
        default_factory=dict
    )
    #: The anonymous user object of this request, once built.
    anonymous: t.Any = None
    #: The request's user, as in ``g.current_user``: a context that shares
    #: the request but not its ``g`` (``copy_current_request_context``, an
    #: app context pushed in a view) gets it from here.
    user: t.Any = None
    #: The request's teardown has run: a commit after it is written at once.
    finished: bool = False
    #: The ``g`` the request was dispatched with, to tell its teardown from
    #: that of a copied request context (a thread), which shares the request.
    dispatch_g: t.Any = None
    #: End the user's other sessions after the view returns.
    revoke_others: bool = False
    #: Sessions to end after the view returns: id, user key, user.
    ended: list[tuple[str, str | None, t.Any]] = dataclasses.field(default_factory=list)
    #: A login to store after the view returns: the user, the new
    #: session's record (its id and times already known to the request)
    #: and token, and whether to remember the device.
    login: tuple[t.Any, SessionRecord, str, bool] | None = None
    #: The session and user the request was authenticated with once
    #: loaded: what the request's user is again if the writes fail.
    origin: tuple[str | None, SessionRecord | None, str | None, t.Any] = (
        None,
        None,
        None,
        None,
    )
    #: Sessions the after-view writes ended, and whether they stored the
    #: login: how far they got if the store failed part way.
    ended_now: set[str] = dataclasses.field(default_factory=set)
    login_stored: bool = False
    #: The after-view writes have run: a call that changes sessions after
    #: this (inside a streamed response) takes effect at once, or raises.
    applied: bool = False
    #: The user proved who they are again: the rotation makes it fresh.
    confirm: bool = False
    #: A remember-me cookie to set after the view: series id and token,
    #: and when the credential ends.
    remember_cookie: tuple[str, str] | None = None
    remember_until: float = 0.0
    #: Drop the remember-me cookie (a logout, a dead credential).
    clear_remember: bool = False
    #: Drop the session key from the cookie (a logout).
    clear_cookie: bool = False
    #: An unhandled exception happened: write nothing.
    failed: bool = False

    @property
    def session(self) -> SessionInfo | None:
        if self.info is None and self.record is not None:
            self.info = get_pow_state().credentials.info_of(self.record)

        return self.info


def get_pow_state(app: Flask | None = None) -> PowState:
    """The state of the flask_pow extension of ``app`` (the current one)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    pow_ = app.extensions.get("pow")

    if pow_ is None:
        raise RuntimeError(
            "flask_pow is not set up on this application. Call 'Pow(app)' or"
            " 'auth.init_app(app)' before handling requests."
        )

    return pow_.get_state(app)  # type: ignore[no-any-return]


#: The attribute of the request object that holds its :class:`RequestState`.
STATE_ATTRIBUTE = "_flask_pow_state"


def find_request_state() -> RequestState | None:
    """The state of the current request, if something made it."""
    request_object = request._get_current_object()  # type: ignore[attr-defined]
    return request_object.__dict__.get(STATE_ATTRIBUTE)  # type: ignore[no-any-return]


def get_request_state() -> RequestState:
    """The state of the current request, made on first use."""
    state = find_request_state()

    if state is None:
        state = RequestState()
        setattr(request._get_current_object(), STATE_ATTRIBUTE, state)  # type: ignore[attr-defined]

    return state


def remembered_here() -> list[str]:
    """The remember-me credential this request's cookie names (signature
    checked), as a list for :meth:`CredentialsCache.end
    <flask_pow.CredentialsCache.end>`: a device's credential ends with its
    session, with no lookup.
    """
    state = get_pow_state()
    cookie = state.remember_signer.read(
        request.cookies.get(state.config.remember_cookie_name)
    )
    return [] if cookie is None else [cookie[0]]


def set_current_user(user: t.Any, request_state: RequestState | None = None) -> None:
    """Make ``user`` (or ``None``) the user of the current request (whose
    state may be given, when the caller has it at hand).
    """
    g.current_user = user
    (request_state or get_request_state()).user = user


def begin_request(sender: Flask, **kwargs: t.Any) -> None:
    """Connected to :data:`flask.request_started`: a ``g.current_user`` that
    is there before any of this request's hooks ran was left by something
    else (an application context pushed outside the request), and is not
    this request's user.

    :meta private:
    """
    g.pop("current_user", None)
    get_request_state().dispatch_g = g._get_current_object()


def is_dispatch_context(request_state: RequestState) -> bool:
    """Whether this is the context the request was dispatched in, not a
    copy of it (``copy_current_request_context``).
    """
    dispatch_g = request_state.dispatch_g
    return dispatch_g is None or dispatch_g is g._get_current_object()


def end_request(exc: BaseException | None = None) -> None:
    """Registered as a ``teardown_request`` function: the user does not
    outlive the request in an application context that does.

    :meta private:
    """
    g.pop("current_user", None)


def forget_session(request_state: RequestState) -> None:
    """The request is no longer authenticated by a session: nothing about
    it is rotated, re-signed or revoked after the view.
    """
    request_state.session_id = request_state.record = request_state.info = None
    request_state.user_key = request_state.token = None
    request_state.rotate = request_state.force_rotate = False
    request_state.resign = request_state.revoke_others = False
