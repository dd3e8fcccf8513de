"""The SQLAlchemy user adapter: which columns and relationships of a user
are cached, how they are read back, and how a commit finds the users it
changed (for :mod:`flask_pow.sync`).
"""

from __future__ import annotations

import collections.abc as c
import logging
import typing as t
import urllib.parse

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.base import DEFAULT_STATE_ATTR

from . import serialization
from .detached import NotCached
from .detached import Related
from .detached import Shape
from .detached import refuse_cached_user
from .users import UserAdapter
from .users import identity_key

if t.TYPE_CHECKING:  # pragma: no cover
    from flask_sqlalchemy import SQLAlchemy

U = t.TypeVar("U")

logger = logging.getLogger("flask_pow")

LABEL_COLUMNS = ("email", "username", "name", "login")

#: Users loaded at a time to rewrite the holders of a changed related row.
RELOAD_BATCH = 500


def is_plain_class(model: object) -> bool:
    """Whether ``model`` is a class that SQLAlchemy does not map."""
    return isinstance(model, type) and sa.inspect(model, raiseerr=False) is None


class SQLAlchemyUsers(UserAdapter[U]):
    """The adapter for a Flask-SQLAlchemy (or any SQLAlchemy) mapped model.
    See :doc:`users`.

    :param db: the Flask-SQLAlchemy extension, used by :meth:`reload`.
    :param model: the user model.
    :param exclude: :mod:`fnmatch` patterns of column names never cached,
        on the user model and on its cached relationships' models.
    :param relationships: names of relationships of the user model cached
        with the user (:data:`~flask_pow.config.POW_CACHE_RELATIONSHIPS`).
    """

    def __init__(
        self,
        db: SQLAlchemy,
        model: type[U],
        *,
        exclude: t.Iterable[str] = (),
        relationships: t.Iterable[str] = (),
    ) -> None:
        mapper = sa.inspect(model, raiseerr=False)

        if not isinstance(mapper, sa_orm.Mapper):
            raise TypeError(
                f"user_model must be a mapped SQLAlchemy model, got {model!r}."
            )

        self.db = db
        self.model = model
        self._mapper: sa_orm.Mapper[t.Any] = mapper
        self._name = mapper.class_.__name__
        patterns = [pattern.lower() for pattern in exclude]
        relationships = list(relationships)
        self._shape = Shape(mapper, patterns, relationships)
        self._pk = self._shape.pk
        self._names = self._shape.names
        self._related = [
            Related(prop, Shape(prop.mapper, patterns))
            for prop in map(self._relationship, relationships)
        ]
        self._keys = self._shape.name_set.union(r.key for r in self._related)
        self._label = next((n for n in LABEL_COLUMNS if n in self._keys), None)

        # Every session's attaches, once per process; raw: given the state.
        if not sa.event.contains(sa_orm.Session, "before_attach", refuse_cached_user):
            sa.event.listen(
                sa_orm.Session, "before_attach", refuse_cached_user, raw=True
            )

    def _relationship(self, key: str) -> sa_orm.RelationshipProperty[t.Any]:
        prop = self._mapper.relationships.get(key)

        if prop is None:
            names = ", ".join(sorted(self._mapper.relationships.keys())) or "none"
            raise ValueError(
                f"POW_CACHE_RELATIONSHIPS names {key!r}, which is not a"
                f" relationship of {self._name} (its relationships: {names})."
            )

        if prop.lazy in ("dynamic", "write_only"):
            raise ValueError(
                f"POW_CACHE_RELATIONSHIPS names {self._name}.{key}, a"
                f" {prop.lazy!r} relationship: it is a query, not rows, and"
                " cannot be cached. Cache a plain relationship instead."
            )

        return prop

    @property
    def cached_columns(self) -> list[str]:
        """The attribute names that are written to the cache."""
        return list(self._names)

    @property
    def cached_relationships(self) -> list[str]:
        """The relationships that are written to the cache with the user."""
        return [related.key for related in self._related]

    def key(self, user: U) -> str:
        ident = self.ident(user)

        for name, value in ident.items():
            if value is None:
                raise ValueError(
                    f"The primary key {name!r} of this {self._name} is None. Add"
                    " and flush (or commit) the user before logging it in."
                )

        return identity_key(self._name, *ident.items())

    def key_for_id(self, ident: str) -> str:
        return f"{self._name}:{ident}"

    def dump(self, user: U) -> dict[str, t.Any]:
        data = self._shape.dump(user)

        for related in self._related:
            data[related.key] = related.dump(user)

        try:
            serialization.dumps(data)
        except TypeError:
            raise TypeError(self._unstorable(data)) from None

        return data

    def _unstorable(self, data: dict[str, t.Any]) -> str:
        """Name the first column whose value cannot be stored."""
        rows = [(self._name, data)]

        for related in self._related:
            value = data[related.key]
            rows += [
                (related.shape.name, row) for row in ([value], value)[related.many]
            ]

        for model, row in rows:
            for name, value in (row or {}).items():
                try:
                    serialization.dumps(value)
                except TypeError:
                    return (
                        f"The column {model}.{name} holds a {type(value).__name__},"
                        " which flask_pow cannot cache. Add it to POW_CACHE_EXCLUDE."
                    )

        return "A cached value cannot be stored."  # pragma: no cover

    def load(self, data: dict[str, t.Any]) -> U:
        instance = self._shape.new(data)
        missing = self._shape.missing(data) if data.keys() != self._keys else {}

        for related in self._related:
            if related.key in data:
                rows = related.build(data[related.key])
                set_committed_value(instance, related.key, rows)
            else:
                missing[related.key] = NotCached(
                    self._name, related.key, "missing", column=False
                )

        self._shape.detach(instance, True, missing)
        return t.cast(U, instance)

    def is_stale(self, data: dict[str, t.Any]) -> bool:
        if data.keys() != self._keys:
            return True

        for related in self._related:
            if related.is_stale(data[related.key]):
                return True

        return False

    def reload_key(self, user_key: str) -> U | None:
        kind, _, identity = user_key.partition(":")

        if kind != self._name or not identity:
            return None

        if len(self._pk) == 1:
            texts = {self._pk[0]: identity}
        else:
            texts = dict(part.partition("=")[::2] for part in identity.split(","))

        try:
            ident = {
                name: self._python_value(name, urllib.parse.unquote(texts[name]))
                for name in self._pk
            }
        except (KeyError, ValueError, TypeError):
            return None

        return self.db.session.get(self.model, ident)

    def _python_value(self, name: str, text: str) -> t.Any:
        try:
            python_type = self._mapper.get_property(name).columns[0].type.python_type
        except NotImplementedError:
            return text

        return text if python_type is str else python_type(text)

    def reload(self, user: U) -> U | None:
        return self.db.session.get(self.model, self.ident(user), populate_existing=True)

    def row(self, user: U) -> U | None:
        return self.db.session.get(self.model, self.ident(user))

    def ident(self, user: U) -> dict[str, t.Any]:
        """The user's primary key values, by attribute name."""
        ident = {}

        for name in self._pk:
            ident[name] = getattr(user, name)

        return ident

    def label(self, user: U) -> str | None:
        value = None if self._label is None else getattr(user, self._label, None)
        return None if value is None else str(value)

    def in_session(self, user: U) -> bool:
        state = sa.inspect(user, raiseerr=False)
        return state is not None and state.session_id is not None

    def warn_if_changed(self, user: U) -> None:
        # The instance's state, without the inspection registry: after
        # every authenticated request.
        state = getattr(user, DEFAULT_STATE_ATTR, None)

        if state is not None and state.modified and state.detached:
            changed = [a.key for a in state.attrs if a.history.has_changes()]

            # Post(author=current_user) marks the cached user's backref as
            # changed, with no change to its values: nothing to warn of.
            if not (changed := [key for key in changed if key in self._keys]):
                return

            logger.warning(
                "The cached current_user was changed in this request (%s), but it"
                " is not in the database session, so nothing was saved. Change the"
                " row instead: flask_pow.database_user(), then commit.",
                ", ".join(changed),
            )

    # -- for sync on commit (flask_pow.sync) --------------------------------

    def changed(self, user: U) -> bool:
        """Whether a row's cached columns or relationships have changed."""
        attrs = sa.inspect(user).attrs
        return any(attrs[key].history.has_changes() for key in self._keys)

    def holders(self, session: sa_orm.Session, row: t.Any) -> dict[str, t.Any]:
        """The users (key: identity) whose cached relationships hold ``row``,
        if it is of a cached relationship's model and was changed or deleted:
        as the database has them now (one query a relationship), and those
        the row was linked to or unlinked from in the session.
        """
        found: dict[str, t.Any] = {}
        deleted = row in session.deleted
        attrs = sa.inspect(row).attrs

        for related in self._related:
            shape = related.shape

            if not isinstance(row, shape.mapper.class_):
                continue

            links = [
                user
                for key in shape.mapper.relationships.keys()
                for user in attrs[key].history.sum()
                if attrs[key].history.has_changes() and isinstance(user, self.model)
            ]

            if not (deleted or links or shape.changed(row)):
                continue

            columns = [getattr(self.model, name) for name in self._pk]
            query = sa.select(*columns).where(related.holding(row))
            idents = [
                dict(zip(self._pk, values, strict=True))
                for values in session.connection().execute(query)
            ]
            idents += [self.ident(user) for user in links]

            for ident in idents:
                found[identity_key(self._name, *ident.items())] = ident

        return found

    def dump_current(
        self, session: sa_orm.Session, idents: c.Mapping[str, t.Any]
    ) -> dict[str, dict[str, t.Any] | None]:
        """The users' values as the session's transaction has them now
        (``None`` for one that is gone), read in a session of their own on its
        connection: the application's session and its rows are left alone.
        """
        dumped: dict[str, dict[str, t.Any] | None] = dict.fromkeys(idents)
        options = [
            sa_orm.selectinload(getattr(self.model, related.key))
            for related in self._related
        ]
        pairs = list(idents.items())

        with sa_orm.Session(bind=session.connection()) as reading:
            for start in range(0, len(pairs), RELOAD_BATCH):
                batch = pairs[start : start + RELOAD_BATCH]

                if len(self._pk) == 1:
                    column = getattr(self.model, self._pk[0])
                    ids = [ident[self._pk[0]] for _, ident in batch]
                    query = sa.select(self.model).where(column.in_(ids))
                    rows: list[U | None] = list(
                        reading.scalars(query.options(*options))
                    )
                else:
                    rows = [
                        reading.get(self.model, ident, options=options)
                        for _, ident in batch
                    ]

                for row in rows:
                    if row is not None:
                        dumped[self.key(row)] = self.dump(row)

        return dumped
