"""The user adapter protocol, and the user keys that name users."""

from __future__ import annotations

import re
import typing as t
from urllib.parse import quote

from werkzeug.local import LocalProxy

U = t.TypeVar("U")

#: A kind (a model name), a colon, and an identity with no space or control.
USER_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[^\s\x00-\x1f\x7f]+")


def identity_key(kind: str, *parts: tuple[str, t.Any]) -> str:
    """Build a user key from a kind (a model name) and the parts of an
    identity, unambiguously: ``identity_key("User", ("id", 42))`` is
    ``"User:42"``. See :doc:`users` for keys of several parts.
    """
    if not parts:
        raise ValueError("A user key needs at least one identity part.")

    # One part escapes only what a key may not hold: ids read as they are.
    if len(parts) == 1:
        return f"{kind}:" + quote(str(parts[0][1]), safe="!$&'()*+,;=:@/~")

    return f"{kind}:" + ",".join(f"{n}={quote(str(v), safe='')}" for n, v in parts)


def check_user_key(key: t.Any) -> str:
    """Refuse a key that is not ``<Kind>:<identity>`` (``"42"`` has no kind)."""
    if not isinstance(key, str) or USER_KEY.fullmatch(key) is None:
        raise ValueError(
            f"The user adapter returned the user key {key!r}, not a unique"
            " '<Kind>:<identity>' (as 'User:42') without whitespace or control"
            " characters: build it with flask_pow.identity_key()."
        )

    return key


@t.runtime_checkable
class UserAdapter(t.Protocol[U]):
    """How flask_pow caches one kind of user (see :doc:`users`). The methods
    after the first five are optional: any adapter, subclass or not, gets
    these defaults.
    """

    def key(self, user: U) -> str:
        """The user's identity key, ``"<Model>:<primary key>"``: it names the
        user's records, so it must be stable and unique among all users.

        :raise ValueError: if the user has no identity yet (not saved).
        """

    def dump(self, user: U) -> dict[str, t.Any]:
        """The values to cache, as a dict that tagged JSON can store. It must
        leave out secrets such as password hashes.
        """

    def load(self, data: dict[str, t.Any]) -> U:
        """Build a user from what :meth:`dump` returned, without a query.

        :raise ValueError: if ``data`` is not something :meth:`dump` wrote.
        """

    def reload(self, user: U) -> U | None:
        """The user again, from the source of truth; ``None`` if it is gone."""

    def label(self, user: U) -> str | None:
        """A readable label for listings (an email or a name), or ``None``."""

    def is_stale(self, data: dict[str, t.Any]) -> bool:
        """Whether ``data`` was written for other values than :meth:`dump`
        writes now (a deploy added a column). The default: never.
        """
        return False

    def reload_key(self, user_key: str) -> U | None:
        """The user with this key, from the source of truth; ``None`` if
        there is none. It heals a session whose cached user the store lost;
        without it, such a session waits for the user's next login.
        """
        return None

    def row(self, user: U) -> U | None:
        """The user as the source of truth has it, to change it there
        (:func:`~flask_pow.database_user`); ``None`` if gone. By default :meth:`reload`.
        """
        return self.reload(user)

    def key_for_id(self, ident: str) -> str | None:
        """The user key for an id typed on ``flask pow sessions --user 42``;
        ``None``, the default, if users are not named by id (see :doc:`cli`).

        :raise ValueError: if ``ident`` is not an id of this adapter's.
        """
        return None

    def in_session(self, user: U) -> bool:
        """Whether this user object is the source of truth's own (in a
        database session), not one built from the cache. The default: never.
        """
        return False

    def warn_if_changed(self, user: U) -> None:
        """Called after each authenticated request's view with its cached
        user, to warn if the view changed it. The default: nothing.
        """
        return None


_REQUIRED = ("key", "dump", "load", "reload", "label")
_OPTIONAL = "is_stale reload_key row key_for_id in_session warn_if_changed".split()


def as_adapter(users: object) -> UserAdapter[t.Any]:
    """``Pow(users=...)`` with every method: itself, or with the defaults added.

    :raise TypeError: if ``users`` lacks a required method.
    """
    if isinstance(users, UserAdapter):
        return users

    methods = {
        name: getattr(users, name)
        for name in (*_REQUIRED, *_OPTIONAL)
        if callable(getattr(users, name, None))
    }
    missing = [name for name in _REQUIRED if name not in methods]

    if missing:
        raise TypeError(
            f"The user adapter {users!r} has no {', '.join(missing)} method."
            " An adapter implements key, dump, load, reload and label: see"
            " flask_pow.UserAdapter."
        )

    namespace = {name: staticmethod(method) for name, method in methods.items()}
    adapter = type(type(users).__name__, (UserAdapter,), namespace)
    return t.cast("UserAdapter[t.Any]", adapter())


def reloads_by_key(adapter: UserAdapter[t.Any]) -> bool:
    """Whether the adapter has a :meth:`UserAdapter.reload_key` of its own."""
    return type(adapter).reload_key is not UserAdapter.reload_key


def resolve_user(user: t.Any) -> t.Any:
    """The user behind a proxy such as ``current_user``, never the anonymous."""
    while isinstance(user, LocalProxy):
        user = user._get_current_object()

    if user is None or getattr(user, "is_anonymous", False) is True:
        raise ValueError(
            "Expected a user, got the anonymous user: nobody is logged in in"
            " this request."
        )

    return user
