"""The adapter for users that are not SQLAlchemy models: their attributes
are cached, and Flask-Login's ``user_loader`` loads one only when its record
must be written again.
"""

from __future__ import annotations

import collections.abc as c
import fnmatch
import typing as t
import urllib.parse

from . import serialization
from .users import UserAdapter
from .users import identity_key

U = t.TypeVar("U")

LABEL_ATTRIBUTES = ("email", "username", "name", "login")


class LoaderUsers(UserAdapter[U]):
    """Users of a plain class (from an API, an LDAP directory, a document
    store), cached by their public attributes and loaded by a function of
    their id, as Flask-Login's ``user_loader``. ``Pow(app, user_model=User)``
    with no ``db`` uses it with the function given to
    :meth:`Pow.user_loader <flask_pow.Pow.user_loader>`. See :doc:`users`.

    :param model: the user class. A cached user is an instance made without
        calling its ``__init__``, holding the cached attributes.
    :param loader: called with a user's :meth:`get_id` text, it returns the
        user from the source of truth, or ``None`` if there is none. It is
        called at a reload and to heal a lost record, never per request.
    :param exclude: :mod:`fnmatch` patterns of attribute names never cached.
    """

    def __init__(
        self,
        model: type[U],
        loader: c.Callable[[str], U | None],
        *,
        exclude: t.Iterable[str] = (),
    ) -> None:
        self.model = model
        self.loader = loader
        self._name = model.__name__
        self._patterns = [pattern.lower() for pattern in exclude]

    def _cached(self, name: str) -> bool:
        return not name.startswith("_") and not any(
            fnmatch.fnmatchcase(name.lower(), pattern) for pattern in self._patterns
        )

    def _id(self, user: t.Any) -> str:
        ident = user.get_id()

        if ident is None or ident == "":
            raise ValueError(
                f"This {self._name} has no id: get_id() returned {ident!r}."
            )

        return str(ident)

    def key(self, user: U) -> str:
        return identity_key(self._name, ("id", self._id(user)))

    def key_for_id(self, ident: str) -> str:
        return identity_key(self._name, ("id", ident))

    def dump(self, user: U) -> dict[str, t.Any]:
        if not isinstance(user, self.model):
            raise TypeError(f"Expected a {self._name}, got {user!r}.")

        data = {k: v for k, v in _attributes(user).items() if self._cached(k)}

        for name, value in data.items():
            try:
                serialization.dumps(value)
            except TypeError:
                raise TypeError(
                    f"The attribute {self._name}.{name} holds a"
                    f" {type(value).__name__}, which flask_pow cannot cache."
                    " Add it to POW_CACHE_EXCLUDE."
                ) from None

        return data

    def load(self, data: dict[str, t.Any]) -> U:
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ValueError(f"not a cached {self._name}")

        user = self.model.__new__(self.model)

        # As for a frozen dataclass, or a class with __slots__.
        try:
            for name, value in data.items():
                if self._cached(name):
                    object.__setattr__(user, name, value)
        except AttributeError:
            raise ValueError(f"not a cached {self._name}") from None

        return user

    def reload(self, user: U) -> U | None:
        return self.loader(self._id(user))

    def reload_key(self, user_key: str) -> U | None:
        kind, _, identity = user_key.partition(":")

        if kind != self._name or not identity:
            return None

        return self.loader(urllib.parse.unquote(identity))

    def label(self, user: U) -> str | None:
        for name in LABEL_ATTRIBUTES:
            if (value := getattr(user, name, None)) is not None:
                return str(value)

        return None


def _attributes(user: t.Any) -> dict[str, t.Any]:
    """An instance's own attributes: its ``__dict__``, or its slots."""
    if hasattr(user, "__dict__"):
        return dict(vars(user))

    slots = [s for cls in type(user).__mro__ for s in getattr(cls, "__slots__", ())]
    return {name: getattr(user, name) for name in slots if hasattr(user, name)}
