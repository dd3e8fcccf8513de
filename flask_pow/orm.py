"""All of flask_pow that knows SQLAlchemy: the adapter for mapped models,
whose cached users no database session takes, and sync on commit. What the
application does with a commit comes in as the callback of :func:`listen`.
"""

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
from .users import resolve_user

if t.TYPE_CHECKING:  # pragma: no cover
    from flask_sqlalchemy import SQLAlchemy

U = t.TypeVar("U")

logger = logging.getLogger("flask_pow")

#: Column names offered as a readable label for a user, in this order.
LABEL_COLUMNS = ("email", "username", "name", "login")


class NotCachedError(DetachedInstanceError):
    """A cached user's attribute that the cache does not hold was read."""

    # SQLAlchemy's link explains detached instances in general; the message
    # already says what to do here.
    code = None  # type: ignore[assignment]


class _NotCached:
    """The loader of an attribute a cached user does not hold: it raises."""

    #: Why an attribute is not cached, by kind, and what to do.
    WHY = {
        "excluded": "is not in flask_pow's cache: a pattern of POW_CACHE_EXCLUDE"
        " matches it. If it is not a secret, narrow POW_CACHE_EXCLUDE to cache"
        " it; otherwise read it from the row:",
        "missing": "is not in this user's cached record, which was written"
        " before the column was cached (a new column, or a narrower"
        " POW_CACHE_EXCLUDE). The user's next login or sync writes it; until"
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
        # Attached all the same (a copy made by other means): load as usual.
        if state.session_id is not None:
            del state.callables[self.key]
            impl = state.manager[self.key].impl

            if self.column:
                state.expired_attributes.add(self.key)

            return impl._fire_loader_callables(state, self.key, passive)

        if not passive & PassiveFlag.SQL_OK:
            return LoaderCallableStatus.PASSIVE_NO_RESULT

        raise NotCachedError(self.message)


#: The states of the users :meth:`SQLAlchemyUsers.load` built (weak: a
#: state goes with its instance); not ``state.info``, which reading would
#: give every instance the application attaches a dict of its own.
_cached_states: weakref.WeakSet[sa_orm.InstanceState[t.Any]] = weakref.WeakSet()


def _refuse_cached_user(session: sa_orm.Session, state: t.Any) -> None:
    # A cached user never joins a session: its values would be taken for
    # the row's, and SQLAlchemy would take it or not ("another instance with
    # key ... is already present") depending on what else the view loaded.
    if state in _cached_states:
        name = state.class_.__name__
        raise sa_exc.InvalidRequestError(
            f"This {name} is flask_pow's cached current_user, built from the"
            " cache: it is not a database row, and cannot be put in a database"
            " session (db.session.add(), delete(), or a relationship that"
            " cascades to it, as in Post(author=current_user)). Use the row:"
            " flask_pow.database_user(), or @reload_user on the view."
        )


class SQLAlchemyUsers(UserAdapter[U]):
    """The adapter for a Flask-SQLAlchemy (or any SQLAlchemy) mapped model.

    The cached values are the model's column attributes, minus those whose
    name matches one of the ``exclude`` patterns. A loaded user is a
    *detached* instance: its cached columns read as usual, while an excluded
    column or a relationship raises :exc:`~flask_pow.NotCachedError` instead
    of running a query. Attaching it to a database session
    (``db.session.add(current_user)``, or a cascading relationship) raises
    :exc:`~sqlalchemy.exc.InvalidRequestError`. Both name the way out: the
    row (:func:`~flask_pow.database_user`), or :func:`~flask_pow.reload_user`.

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
        # Composite keys are sorted by attribute name, as Pow does, so the
        # key does not depend on column order.
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

        for name in self._pk:
            if name in excluded:
                raise ValueError(
                    f"POW_CACHE_EXCLUDE excludes {name!r}, a primary key column"
                    f" of {self._name}; the cache cannot identify users without"
                    " it. Narrow the pattern."
                )

        self._names = [name for name in columns if name not in excluded]
        self._name_set = frozenset(self._names)
        kinds = dict.fromkeys(excluded, "excluded")
        kinds.update((prop.key, "relationship") for prop in mapper.relationships)
        self._not_cached = {
            name: _NotCached(self._name, name, kind) for name, kind in kinds.items()
        }
        types = {
            name: mapper.column_attrs[name].columns[0].type for name in self._names
        }
        self._enums: dict[str, type[enum.Enum]] = {
            name: column_type.enum_class
            for name, column_type in types.items()
            if isinstance(column_type, sa.Enum) and column_type.enum_class
        }
        self._label = next((n for n in LABEL_COLUMNS if n in self._name_set), None)

        # Every SQLAlchemy session's attaches, once per process; raw: the
        # listener gets the instance's state, with no look-up.
        if not sa.event.contains(sa_orm.Session, "before_attach", _refuse_cached_user):
            sa.event.listen(
                sa_orm.Session, "before_attach", _refuse_cached_user, raw=True
            )

    @property
    def cached_columns(self) -> list[str]:
        """The attribute names that are written to the cache."""
        return list(self._names)

    def key(self, user: U) -> str:
        user = resolve_user(user)
        values = [(name, getattr(user, name)) for name in self._pk]

        for name, value in values:
            if value is None:
                raise ValueError(
                    f"The primary key {name!r} of this {self._name} is None. Add"
                    " and flush (or commit) the user before logging it in."
                )

        return identity_key(self._name, *values)

    def cached_values_changed(self, user: U) -> bool:
        """Whether a change not yet flushed touches a cached column."""
        attrs = sa.inspect(user).attrs
        return any(attrs[name].history.has_changes() for name in self._names)

    def key_for_id(self, ident: str) -> str:
        # A composite key is given as a=1,b=2.
        return f"{self._name}:{ident}"

    def dump(self, user: U) -> dict[str, t.Any]:
        user = resolve_user(user)
        data: dict[str, t.Any] = {}

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
        # Filled the way SQLAlchemy's own loader fills a row's instance: into
        # its dict, committed below, with no attribute events.
        values = instance_dict(instance)
        values.update({name: data[name] for name in self._names if name in data})
        missing = self._name_set.difference(data)

        for name, enum_class in self._enums.items():
            value = values.get(name)

            if value is not None:
                try:
                    values[name] = enum_class[value]
                except (KeyError, TypeError):
                    raise ValueError(f"not a cached {self._name}") from None

        # Detached, not transient: SQLAlchemy knows the row exists, and an
        # attribute that was not cached raises rather than reading as None.
        sa_orm.make_transient_to_detached(instance)

        if self._not_cached or missing:
            # ...and raises an error that names the setting and the fix.
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
        # From the session's identity map, else with one query.
        return self.db.session.get(self.model, self._ident(user))

    def _ident(self, user: U) -> dict[str, t.Any]:
        user = resolve_user(user)
        return {name: getattr(user, name) for name in self._pk}

    def label(self, user: U) -> str | None:
        value = None if self._label is None else getattr(user, self._label, None)
        return None if value is None else str(value)

    def in_session(self, user: U) -> bool:
        state = sa.inspect(user, raiseerr=False)
        return state is not None and state.session_id is not None

    def warn_if_changed(self, user: U) -> None:
        # The cached user is not in the database session, so the change was
        # saved nowhere (code written for Flask-Login does
        # current_user.last_seen = now, then commits).
        try:
            state = instance_state(user)
        except AttributeError:
            return  # not a mapped instance

        if state.modified and state.detached:
            changed = ", ".join(a.key for a in state.attrs if a.history.has_changes())
            logger.warning(
                "The cached current_user was changed in this request (%s), but it"
                " is not in the database session, so nothing was saved. Change the"
                " row instead: flask_pow.database_user(), then commit.",
                changed,
            )


# -- sync on commit ----------------------------------------------------------

#: ``session.info`` keys: instances a flush changed or deleted; their values
#: waiting for their transaction (outermost, or a savepoint) to commit; and
#: the transactions that committed. What a savepoint noted goes to its
#: parent when it commits, the outermost transaction's is handed on, and
#: any other end (a rollback, ``close()``, ``reset()``) drops it.
_FLUSHED = "flask_pow.flushed_users"
_PENDING = "flask_pow.pending_users"
_COMMITTED = "flask_pow.committed_transactions"

Committed = t.Callable[[dict[str, dict[str, t.Any] | None]], None]
Find = t.Callable[[], tuple[SQLAlchemyUsers[t.Any], Committed] | None]

_listeners: weakref.WeakKeyDictionary[t.Any, _CommitListener] = (
    weakref.WeakKeyDictionary()
)


def listen(db: SQLAlchemy, find: Find) -> None:
    """Once per ``db``, listen to its session so that a commit hands on the
    new values of the cached users whose rows it changed (``None`` for a
    deleted user): a flush notes them (it still knows the changes), and
    dumps them when done (server-made values can be read back).

    :param find: called at each flush and commit: ``None``, or the current
        application's adapter with the function that takes what a commit
        changed.
    """
    if db in _listeners:
        return

    listener = _listeners[db] = _CommitListener(find)

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

        model = users.model
        flushed = [
            (user, False)
            for user in session.dirty
            if isinstance(user, model) and users.cached_values_changed(user)
        ]
        flushed += [(user, True) for user in session.deleted if isinstance(user, model)]

        if flushed:
            session.info.setdefault(_FLUSHED, []).extend(flushed)

    def after_flush_postexec(self, session: sa_orm.Session, context: t.Any) -> None:
        flushed = session.info.pop(_FLUSHED, None)
        users = self._adapter()

        if not flushed or users is None:
            return

        pending = session.info.setdefault(_PENDING, {}).setdefault(
            _innermost(session), {}
        )

        for user, deleted in flushed:
            pending[users.key(user)] = None if deleted else users.dump(user)

    def after_commit(self, session: sa_orm.Session) -> None:
        # Fired for the outermost transaction and for a savepoint, while it
        # is still the innermost one.
        session.info.setdefault(_COMMITTED, set()).add(_innermost(session))

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
            # A savepoint released: its changes are the outer transaction's.
            session.info[_PENDING].setdefault(transaction.parent, {}).update(pending)
            return

        found = self.find()

        if found is not None:
            found[1](pending)


def _innermost(session: sa_orm.Session) -> t.Any:
    # The savepoint in progress, else the outermost transaction (never the
    # short sub-transaction of a flush).
    return session.get_nested_transaction() or session.get_transaction()
