"""Detached copies of rows, built from cached values: the columns of a
model as its loader fills a row, with a loader that raises for what the
cache does not hold, and the relationships cached with a user.
"""

from __future__ import annotations

import collections.abc as c
import enum
import fnmatch
import typing as t
import weakref

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
import sqlalchemy.orm as sa_orm
from sqlalchemy.orm.attributes import instance_dict
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import LoaderCallableStatus
from sqlalchemy.orm.base import PassiveFlag
from sqlalchemy.orm.exc import DetachedInstanceError


class NotCachedError(DetachedInstanceError):
    """A cached user's attribute that the cache does not hold was read."""

    code = None  # type: ignore[assignment]


class NotCached:
    """The loader of an attribute a cached user does not hold: it raises."""

    WHY = {
        "excluded": "is not in flask_pow's cache: a pattern of POW_CACHE_EXCLUDE"
        " matches it. If it is not a secret, narrow POW_CACHE_EXCLUDE to cache"
        " it; otherwise read it from the row:",
        "missing": "is not in this user's cached record, written before it"
        " was cached; the user's next request writes it. Until then read it"
        " from the row:",
        "relationship": "is a relationship that flask_pow does not cache: name"
        " it in POW_CACHE_RELATIONSHIPS to cache it with the user (a"
        " relationship of the user model, one level deep), or read it from the"
        " row:",
    }

    def __init__(self, model: str, key: str, kind: str, column: bool) -> None:
        self.key = key
        self.column = column
        self.message = (
            f"{model}.{key} {self.WHY[kind]} flask_pow.database_user(), or"
            " @reload_user on the view."
        )

    def __call__(
        self, state: sa_orm.InstanceState[t.Any], passive: PassiveFlag
    ) -> t.Any:
        if state.session_id is not None:
            del state.callables[self.key]
            impl = state.manager[self.key].impl

            if self.column:
                state.expired_attributes.add(self.key)

            return impl._fire_loader_callables(state, self.key, passive)

        if not passive & PassiveFlag.SQL_OK:
            return LoaderCallableStatus.PASSIVE_NO_RESULT

        raise NotCachedError(self.message)


#: The states of cached users, and of the rows cached with them (not
#: ``state.info``, which reading creates).
cached_users: weakref.WeakSet[sa_orm.InstanceState[t.Any]] = weakref.WeakSet()
cached_rows: weakref.WeakSet[sa_orm.InstanceState[t.Any]] = weakref.WeakSet()


def refuse_cached_user(session: sa_orm.Session, state: t.Any) -> None:
    """Refuse a cached user, or a row cached with one, to a database session."""
    if state in cached_users:
        what = "flask_pow's cached current_user"
    elif state in cached_rows:
        what = "a row cached with flask_pow's current_user"
    else:
        return

    raise sa_exc.InvalidRequestError(
        f"This {state.class_.__name__} is {what}, built from the cache: it is"
        " not a database row, and cannot be put in a database session"
        " (db.session.add(), delete(), or a relationship that cascades to it, as"
        " in Post(author=current_user)). Use the row: flask_pow.database_user(),"
        " or @reload_user on the view."
    )


class Shape:
    """How the rows of one model are cached: their columns but those
    ``POW_CACHE_EXCLUDE`` matches, read back as SQLAlchemy's loader fills a
    row, detached, with a loader that raises for what is not cached.
    """

    def __init__(
        self,
        mapper: sa_orm.Mapper[t.Any],
        patterns: c.Sequence[str],
        relationships: c.Collection[str] = (),
    ) -> None:
        self.mapper = mapper
        self.name = name = mapper.class_.__name__
        self.pk = sorted(
            mapper.get_property_by_column(column).key for column in mapper.primary_key
        )
        self.pk_set = frozenset(self.pk)
        columns = [prop.key for prop in mapper.column_attrs]
        excluded = [
            key
            for key in columns
            if any(fnmatch.fnmatchcase(key.lower(), pattern) for pattern in patterns)
        ]

        for key in sorted(set(self.pk) & set(excluded)):
            raise ValueError(
                f"POW_CACHE_EXCLUDE excludes {key!r}, a primary key column"
                f" of {name}; the cache cannot identify its rows without"
                " it. Narrow the pattern."
            )

        self.names = [key for key in columns if key not in excluded]
        self.name_set = frozenset(self.names)
        self.not_cached = {
            key: NotCached(name, key, "excluded", column=True) for key in excluded
        }
        self.not_cached.update(
            (prop.key, NotCached(name, prop.key, "relationship", column=False))
            for prop in mapper.relationships
            if prop.key not in relationships
        )
        self.enums: dict[str, type[enum.Enum]] = {
            key: kind.enum_class
            for key in self.names
            if isinstance(kind := mapper.column_attrs[key].columns[0].type, sa.Enum)
            and kind.enum_class
        }

    def dump(self, row: t.Any) -> dict[str, t.Any]:
        data = {}

        # Loops, not comprehensions: one call less each, at every login.
        for key in self.names:
            value = getattr(row, key)
            data[key] = value.name if isinstance(value, enum.Enum) else value

        return data

    def new(self, data: t.Any) -> t.Any:
        """A transient instance holding ``data``'s columns."""
        if not isinstance(data, dict) or not data.keys() >= self.pk_set:
            raise ValueError(f"not a cached {self.name}")

        instance = self.mapper.class_manager.new_instance()
        values = instance_dict(instance)

        # Filled as SQLAlchemy's loader fills a row's: no attribute events.
        # Loops, not comprehensions: one call less each, at every request.
        if data.keys() <= self.name_set:
            values.update(data)
        else:
            for key in self.names:
                if key in data:
                    values[key] = data[key]

        try:
            for key, enum_class in self.enums.items():
                if values.get(key) is not None:
                    values[key] = enum_class[values[key]]
        except (KeyError, TypeError):
            raise ValueError(f"not a cached {self.name}") from None

        return instance

    def missing(self, data: c.Collection[str]) -> dict[str, NotCached]:
        """Loaders for the columns a record written before them lacks."""
        if self.name_set.issubset(data):
            return {}

        return {
            key: NotCached(self.name, key, "missing", column=True)
            for key in self.name_set.difference(data)
        }

    def detach(
        self, instance: t.Any, cached: bool, extra: c.Mapping[str, NotCached] = {}
    ) -> None:
        """Make a built instance detached: what is not cached raises."""
        sa_orm.make_transient_to_detached(instance)
        loaders: dict[str, t.Any] = {**self.not_cached, **extra}

        if loaders:
            state = instance_state(instance)
            state.expired_attributes.difference_update(loaders)
            state.callables = loaders

        (cached_users if cached else cached_rows).add(instance_state(instance))

    def build(self, data: t.Any) -> t.Any:
        """A detached row cached with a user."""
        instance = self.new(data)
        self.detach(instance, False, self.missing(data))
        return instance

    def is_stale(self, data: t.Any) -> bool:
        return not isinstance(data, dict) or data.keys() != self.name_set

    def changed(self, row: t.Any) -> bool:
        """Whether a row's cached columns have changes not yet flushed."""
        attrs = sa.inspect(row).attrs
        return any(attrs[key].history.has_changes() for key in self.names)


class Related:
    """A relationship of the user model cached with the user."""

    def __init__(self, prop: sa_orm.RelationshipProperty[t.Any], shape: Shape) -> None:
        self.key = prop.key
        self.many = bool(prop.uselist)
        self.shape = shape
        #: The relationship seen from the related model, to find holders.
        self.attribute: t.Any = getattr(prop.parent.class_, prop.key)

    def dump(self, user: t.Any) -> t.Any:
        value = getattr(user, self.key)

        if self.many:
            return [self.shape.dump(row) for row in value]

        return None if value is None else self.shape.dump(value)

    def build(self, value: t.Any) -> t.Any:
        if self.many:
            if not isinstance(value, list):
                raise ValueError(f"not a cached {self.shape.name} list")

            return [self.shape.build(data) for data in value]

        return None if value is None else self.shape.build(value)

    def is_stale(self, value: t.Any) -> bool:
        rows = value if self.many and isinstance(value, list) else [value]
        return any(row is not None and self.shape.is_stale(row) for row in rows)

    def holding(self, row: t.Any) -> t.Any:
        """The condition on users that hold ``row``."""
        if self.many:
            return self.attribute.contains(row)

        return self.attribute == row
