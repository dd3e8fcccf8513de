"""All of flask_pow that knows SQLAlchemy: the adapter, and sync on commit."""

from __future__ import annotations

import enum
import fnmatch
import logging
import typing as t
import urllib.parse
import weakref

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
import sqlalchemy.orm as sa_orm
from sqlalchemy.orm.attributes import instance_dict
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import LoaderCallableStatus
from sqlalchemy.orm.base import PassiveFlag
from sqlalchemy.orm.exc import DetachedInstanceError

from . import serialization
from .users import UserAdapter
from .users import identity_key

if t.TYPE_CHECKING:  # pragma: no cover
    from flask_sqlalchemy import SQLAlchemy

U = t.TypeVar("U")

logger = logging.getLogger("flask_pow")

LABEL_COLUMNS = ("email", "username", "name", "login")


class NotCachedError(DetachedInstanceError):
    """A cached user's attribute that the cache does not hold was read."""

    code = None  # type: ignore[assignment]


class _NotCached:
    """The loader of an attribute a cached user does not hold: it raises."""

    WHY = {
        "excluded": "is not in flask_pow's cache: a pattern of POW_CACHE_EXCLUDE"
        " matches it. If it is not a secret, narrow POW_CACHE_EXCLUDE to cache"
        " it; otherwise read it from the row:",
        "missing": "is not in this user's cached record, written before the"
        " column was cached; the user's next login or sync writes it. Until"
        " then read it from the row:",
        "relationship": "is a relationship, and the cached user holds columns"
        " only. Read it from the row:",
    }

    def __init__(self, model: str, key: str, kind: str) -> None:
        self.key = key
        self.column = kind != "relationship"
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


#: The states of cached users (not ``state.info``, which reading creates).
_cached_states: weakref.WeakSet[sa_orm.InstanceState[t.Any]] = weakref.WeakSet()


def _refuse_cached_user(session: sa_orm.Session, state: t.Any) -> None:
    if state in _cached_states:
        raise sa_exc.InvalidRequestError(
            f"This {state.class_.__name__} is flask_pow's cached current_user,"
            " built from the cache: it is not a database row, and cannot be put"
            " in a database session (db.session.add(), delete(), or a relationship"
            " that cascades to it, as in Post(author=current_user)). Use the row:"
            " flask_pow.database_user(), or @reload_user on the view."
        )


class SQLAlchemyUsers(UserAdapter[U]):
    """The adapter for a Flask-SQLAlchemy (or any SQLAlchemy) mapped model.
    See :doc:`users`.

    :param db: the Flask-SQLAlchemy extension, used by :meth:`reload`.
    :param model: the user model.
    :param exclude: :mod:`fnmatch` patterns of attribute names never cached.
    """

    def __init__(
        self, db: SQLAlchemy, model: type[U], *, exclude: t.Iterable[str] = ()
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
        self._pk = sorted(
            mapper.get_property_by_column(column).key for column in mapper.primary_key
        )
        columns = [prop.key for prop in mapper.column_attrs]
        patterns = [pattern.lower() for pattern in exclude]
        excluded = [
            name
            for name in columns
            if any(fnmatch.fnmatchcase(name.lower(), pattern) for pattern in patterns)
        ]

        for name in sorted(set(self._pk) & set(excluded)):
            raise ValueError(
                f"POW_CACHE_EXCLUDE excludes {name!r}, a primary key column"
                f" of {self._name}; the cache cannot identify users without"
                " it. Narrow the pattern."
            )

        self._names = [name for name in columns if name not in excluded]
        self._name_set = frozenset(self._names)
        kinds = dict.fromkeys(excluded, "excluded")
        kinds.update((prop.key, "relationship") for prop in mapper.relationships)
        self._not_cached = {n: _NotCached(self._name, n, k) for n, k in kinds.items()}
        self._enums: dict[str, type[enum.Enum]] = {
            name: kind.enum_class
            for name in self._names
            if isinstance(kind := mapper.column_attrs[name].columns[0].type, sa.Enum)
            and kind.enum_class
        }
        self._label = next((n for n in LABEL_COLUMNS if n in self._name_set), None)

        # Every session's attaches, once per process; raw: given the state.
        if not sa.event.contains(sa_orm.Session, "before_attach", _refuse_cached_user):
            sa.event.listen(
                sa_orm.Session, "before_attach", _refuse_cached_user, raw=True
            )

    @property
    def cached_columns(self) -> list[str]:
        """The attribute names that are written to the cache."""
        return list(self._names)

    def key(self, user: U) -> str:
        ident = self._ident(user)

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
        data = {}

        # Loops, not comprehensions: one call less each, at every login.
        for name in self._names:
            value = getattr(user, name)
            data[name] = value.name if isinstance(value, enum.Enum) else value

        try:
            serialization.dumps(data)
        except TypeError:
            for name, value in data.items():
                try:
                    serialization.dumps(value)
                except TypeError:
                    raise TypeError(
                        f"The column {self._name}.{name} holds a"
                        f" {type(value).__name__}, which flask_pow cannot cache."
                        " Add it to POW_CACHE_EXCLUDE."
                    ) from None
            raise  # pragma: no cover

        return data

    def load(self, data: dict[str, t.Any]) -> U:
        if not isinstance(data, dict) or any(name not in data for name in self._pk):
            raise ValueError(f"not a cached {self._name}")

        instance = self._mapper.class_manager.new_instance()
        # Filled as SQLAlchemy's loader fills a row's: no attribute events.
        values = instance_dict(instance)
        values.update({name: data[name] for name in self._names if name in data})
        missing = self._name_set.difference(data)

        try:
            for name, enum_class in self._enums.items():
                if values.get(name) is not None:
                    values[name] = enum_class[values[name]]
        except (KeyError, TypeError):
            raise ValueError(f"not a cached {self._name}") from None

        # Detached: an attribute not cached raises rather than reading None.
        sa_orm.make_transient_to_detached(instance)

        if self._not_cached or missing:
            loaders: dict[str, t.Any] = dict(self._not_cached)
            loaders.update(
                (name, _NotCached(self._name, name, "missing")) for name in missing
            )
            state = instance_state(instance)
            state.expired_attributes.difference_update(loaders)
            state.callables = loaders

        _cached_states.add(instance_state(instance))
        return t.cast(U, instance)

    def is_stale(self, data: dict[str, t.Any]) -> bool:
        return data.keys() != self._name_set

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
        return self.db.session.get(
            self.model, self._ident(user), populate_existing=True
        )

    def row(self, user: U) -> U | None:
        return self.db.session.get(self.model, self._ident(user))

    def _ident(self, user: U) -> dict[str, t.Any]:
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
        state = sa.inspect(user, raiseerr=False)

        if state is not None and state.modified and state.detached:
            changed = ", ".join(a.key for a in state.attrs if a.history.has_changes())
            logger.warning(
                "The cached current_user was changed in this request (%s), but it"
                " is not in the database session, so nothing was saved. Change the"
                " row instead: flask_pow.database_user(), then commit.",
                changed,
            )


#: ``session.info`` keys: users a flush changed or deleted; their values by
#: transaction, until it commits (a savepoint's go to its parent); and the
#: transactions that committed.
_FLUSHED = "flask_pow.flushed_users"
_PENDING = "flask_pow.pending_users"
_COMMITTED = "flask_pow.committed_transactions"

Committed = t.Callable[[dict[str, dict[str, t.Any] | None]], None]
Found = tuple[SQLAlchemyUsers[t.Any], Committed] | None
Find = t.Callable[[], Found]

_listened: weakref.WeakSet[t.Any] = weakref.WeakSet()


def listen(db: SQLAlchemy, find: Find) -> None:
    """Once per ``db``: a commit hands ``find()[1]`` the new values of the
    cached users whose rows it changed (``None`` for a deleted user).
    """
    if db in _listened:
        return

    _listened.add(db)
    listener = _CommitListener(find)
    events = "after_flush after_flush_postexec after_commit after_transaction_end"

    for event in events.split():
        sa.event.listen(db.session, event, getattr(listener, event))


class _CommitListener:
    def __init__(self, find: Find) -> None:
        self.find = find

    def _adapter(self) -> SQLAlchemyUsers[t.Any] | None:
        found = self.find()
        return None if found is None else found[0]

    def after_flush(self, session: sa_orm.Session, context: t.Any) -> None:
        users = self._adapter()

        if users is None:
            return

        model, names = users.model, users._names
        flushed = session.info.setdefault(_FLUSHED, [])
        flushed += [
            (user, False)
            for user in session.dirty
            if isinstance(user, model)
            and any(sa.inspect(user).attrs[n].history.has_changes() for n in names)
        ]
        flushed += [(user, True) for user in session.deleted if isinstance(user, model)]

    def after_flush_postexec(self, session: sa_orm.Session, context: t.Any) -> None:
        flushed = session.info.pop(_FLUSHED, None)
        users = self._adapter()

        if not flushed or users is None:
            return

        innermost = session.get_nested_transaction() or session.get_transaction()
        pending = session.info.setdefault(_PENDING, {}).setdefault(innermost, {})

        for user, deleted in flushed:
            pending[users.key(user)] = None if deleted else users.dump(user)

    def after_commit(self, session: sa_orm.Session) -> None:
        innermost = session.get_nested_transaction() or session.get_transaction()
        session.info.setdefault(_COMMITTED, set()).add(innermost)

    def after_transaction_end(
        self, session: sa_orm.Session, transaction: sa_orm.SessionTransaction
    ) -> None:
        committed = session.info.get(_COMMITTED, set())
        was_committed = transaction in committed
        committed.discard(transaction)
        pending = session.info.get(_PENDING, {}).pop(transaction, None)

        if transaction.parent is None:
            session.info.pop(_FLUSHED, None)

        if not pending or not was_committed:
            return

        if transaction.parent is not None:
            session.info[_PENDING].setdefault(transaction.parent, {}).update(pending)
        elif (found := self.find()) is not None:
            found[1](pending)
