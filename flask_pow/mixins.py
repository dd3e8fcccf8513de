"""Flask-Login's user interface, so that code and templates written for
Flask-Login keep working. flask_pow needs neither class: any mapped model
can be cached, and Flask-Login's own ``UserMixin`` works too.
"""

from __future__ import annotations

import typing as t

from werkzeug.local import LocalProxy


class UserMixin:
    """The attributes Flask-Login expects of a user, with its meaning:
    a user object is authenticated and active, not anonymous, and
    :meth:`get_id` is its ``id`` as text.

    Two users are equal when they are the same user: the same mapped class
    (or base class) and primary key. So ``post.author == current_user``
    holds although the cached user is another instance than the row
    ``post.author`` loaded. Users that are not mapped compare by
    :meth:`get_id`, as under Flask-Login. The hash stays the object's own,
    as in Flask-Login, so the ORM's identity sets are not disturbed.
    """

    __hash__ = object.__hash__

    @property
    def is_active(self) -> bool:
        """Whether the user may log in: :func:`~flask_pow.login_user`
        refuses an inactive user unless ``force=True``. Override it, or map
        a column of that name.
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

        # current_user passes the isinstance test above as the user it
        # stands for, but SQLAlchemy cannot inspect the proxy itself.
        if isinstance(other, LocalProxy):
            other = t.cast(UserMixin, other._get_current_object())

        # Imported here: users of other adapters need no SQLAlchemy.
        from sqlalchemy import inspect

        states = inspect(self, raiseerr=False), inspect(other, raiseerr=False)

        if states == (None, None):
            return bool(self.get_id() == other.get_id())

        keys = [getattr(state, "key", None) for state in states]

        # An instance with no row yet (transient) is only itself.
        if keys[0] is None or keys[1] is None:
            return self is other

        # The same mapper base class and primary key: the cached (detached)
        # user and a row a query returned alike.
        return bool(keys[0][:2] == keys[1][:2])


class AnonymousUser:
    """What :data:`~flask_pow.current_user` is when nobody is logged in, as
    Flask-Login's ``AnonymousUserMixin``: not authenticated, not active,
    anonymous, no id. Unlike Flask-Login's, it is falsy, so ``if
    current_user:`` reads "if someone is logged in".

    ``g.current_user`` is ``None`` in that case, never this object. Set
    :attr:`Pow.anonymous_user <flask_pow.Pow.anonymous_user>` to a subclass
    to add methods that templates call on any user
    (``current_user.can("edit")``).
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
