"""Flask-Login's user interface, for code written for it (flask_pow needs none)."""

from __future__ import annotations

import typing as t
import warnings

from werkzeug.local import LocalProxy

from .config import MissingUserMixinWarning
from .config import caller_stacklevel


class UserMixin:
    """The attributes Flask-Login expects of a user: authenticated, active,
    not anonymous, and :meth:`get_id` its ``id`` as text.

    Users are equal with the same mapped (base) class and primary key, so
    ``post.author == current_user`` holds; users not mapped compare by
    :meth:`get_id`. The hash stays the object's own. See :doc:`migrating`.
    """

    __hash__ = object.__hash__

    @property
    def is_active(self) -> bool:
        """Whether :func:`~flask_pow.login_user` accepts the user without
        ``force=True``. Override it, or map a column of that name.
        """
        return True

    @property
    def is_authenticated(self) -> bool:
        """Always ``True`` for a user; the anonymous user says ``False``."""
        return True

    @property
    def is_anonymous(self) -> bool:
        """Always ``False`` for a user; the anonymous user says ``True``."""
        return False

    def get_id(self) -> str:
        """The user's ``id`` as text, as Flask-Login's ``UserMixin`` gives it.

        :raise NotImplementedError: if the user has no ``id`` attribute;
            override this method then.
        """
        try:
            return str(self.id)  # type: ignore[attr-defined]
        except AttributeError:
            raise NotImplementedError(
                "No 'id' attribute: override 'get_id' on the user class."
            ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserMixin):
            return NotImplemented

        # current_user passes as its user, but SQLAlchemy cannot inspect it.
        if isinstance(other, LocalProxy):
            other = t.cast(UserMixin, other._get_current_object())

        # Imported here: users of other adapters need no SQLAlchemy.
        from sqlalchemy import inspect

        states = inspect(self, raiseerr=False), inspect(other, raiseerr=False)

        if states == (None, None):
            return bool(self.get_id() == other.get_id())

        keys = [getattr(state, "key", None) for state in states]

        # A transient instance (no row yet) is only itself.
        if keys[0] is None or keys[1] is None:
            return self is other

        return bool(keys[0][:2] == keys[1][:2])


class AnonymousUser:
    """What :data:`~flask_pow.current_user` is when nobody is logged in, as
    Flask-Login's ``AnonymousUserMixin``, but falsy. Subclass it in
    :attr:`Pow.anonymous_user <flask_pow.Pow.anonymous_user>` to add methods
    templates call on any user. See :doc:`migrating`.
    """

    is_authenticated = False
    is_active = False
    is_anonymous = True

    def get_id(self) -> None:
        """An anonymous user has no id."""
        return None

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def warn_without_is_authenticated(model: type[t.Any]) -> None:
    """Warn if the user model has no ``is_authenticated``. Templates written
    for Flask-Login test ``current_user.is_authenticated``: Jinja reads the
    missing attribute of a logged-in user as undefined, which is false, so
    the page shows everyone as anonymous, without an error.
    """
    if hasattr(model, "is_authenticated"):
        return

    name = model.__name__
    warnings.warn(
        f"The user model {name} has no 'is_authenticated': for a logged-in"
        " user, current_user.is_authenticated raises AttributeError, and a"
        " template that tests it shows everyone as anonymous. Add"
        f" flask_pow.UserMixin to the model (class {name}(UserMixin,"
        " db.Model)), or give it an is_authenticated property.",
        MissingUserMixinWarning,
        stacklevel=caller_stacklevel(),
    )
