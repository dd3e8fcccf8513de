"""The user adapter protocol (how a user becomes the dict of values that
is cached, and back without a query), and the user keys that name users.
"""

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
    ``"User:42"``; with several parts each is ``name=value`` with its value
    percent-encoded, so that no two identities share a key, whatever their
    values hold (``"Membership:org=a%2Cb,user=1"``).
    """
    if not parts:
        raise ValueError("A user key needs at least one identity part.")

    # One part needs no separator escaped, only what a key may not hold
    # (whitespace and control characters), so that integer and plain text
    # keys read as they are.
    if len(parts) == 1:
        return f"{kind}:" + quote(str(parts[0][1]), safe="!$&'()*+,;=:@/~")

    return f"{kind}:" + ",".join(f"{n}={quote(str(v), safe='')}" for n, v in parts)


def check_user_key(key: t.Any) -> str:
    """Refuse a user key that is not ``<Kind>:<identity>``: a key without a
    kind (``"42"``) would be shared by users of two kinds with the same id.
    """
    if not isinstance(key, str) or USER_KEY.fullmatch(key) is None:
        raise ValueError(
            f"The user adapter returned the user key {key!r}. A user key is"
            " '<Kind>:<identity>' (for example 'User:42'), with no whitespace"
            " or control character, unique among all users; build it with"
            " flask_pow.identity_key()."
        )

    return key


@t.runtime_checkable
class UserAdapter(t.Protocol[U]):
    """How flask_pow caches one kind of user. Implement the first five
    methods to use users that are not Flask-SQLAlchemy models, and pass an
    instance as ``Pow(users=...)``; the others are optional, and this class
    gives their defaults. Subclass it to inherit them; an adapter that does
    not gets them too, at setup.
    """

    def key(self, user: U) -> str:
        """The user's identity key, ``"<Model>:<primary key>"``: it names the
        user's records, so it must be stable and unique among all users.

        :raise ValueError: if the user has no identity yet (not saved).
        """
        ...

    def dump(self, user: U) -> dict[str, t.Any]:
        """The values to cache, as a dict that tagged JSON can store. It must
        leave out secrets such as password hashes.
        """
        ...

    def load(self, data: dict[str, t.Any]) -> U:
        """Build a user from what :meth:`dump` returned, without a query.

        :raise ValueError: if ``data`` is not something :meth:`dump` wrote.
        """
        ...

    def reload(self, user: U) -> U | None:
        """The user again, from the source of truth; ``None`` if it is gone."""
        ...

    def label(self, user: U) -> str | None:
        """A readable label for listings (an email or a name), or ``None``."""
        ...

    def is_stale(self, data: dict[str, t.Any]) -> bool:
        """Whether cached values were written for other values than
        :meth:`dump` writes now (a deploy added a column): such a record is
        rewritten from :meth:`reload` on its next use. The default: never.
        """
        return False

    def reload_key(self, user_key: str) -> U | None:
        """The user with this key, from the source of truth; ``None`` if
        there is none. A session whose cached user the store lost (an
        eviction) is healed with it, or ended if the user is gone. Without
        it (flask_pow never calls this default) such a session waits for the
        user's next login to write the user's values again.
        """
        return None

    def row(self, user: U) -> U | None:
        """The user as the source of truth has it, for changing it there
        (:func:`~flask_pow.database_user`); ``None`` if it no longer
        exists. The default: :meth:`reload`.
        """
        return self.reload(user)

    def key_for_id(self, ident: str) -> str | None:
        """The user key for an id typed on the command line (``flask pow
        sessions --user 42``); ``None``, the default, if users are not named
        by id: the command then takes user keys and labels only.

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
        user: warn if the view changed it, which saves nothing. The
        default: nothing.
        """
        return None


_REQUIRED = ("key", "dump", "load", "reload", "label")
_OPTIONAL = "is_stale reload_key row key_for_id in_session warn_if_changed".split()


def as_adapter(users: object) -> UserAdapter[t.Any]:
    """``Pow(users=...)`` with every method: itself if it has them, else
    with the defaults added, once at setup so that each call is plain.

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

    # Its own methods as static attributes of a subclass: adapter.key(user)
    # calls users.key(user), and what it lacks is the subclass's default.
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
