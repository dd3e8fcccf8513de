"""Everything of flask_pow's that knows SQLAlchemy: the adapter for mapped
models, the cached user that cannot join a database session, sync on
commit, and the warning for a change made to the cached user in vain.

Sync on commit (``POW_SYNC_ON_COMMIT``): when a transaction that changed a
cached user's row commits, that user's cached record is updated for all of
their sessions, so that an edit made through the ORM cannot be forgotten by
a missing :func:`~flask_pow.sync_user`; a deleted user's sessions end. After
each flush the listener notes the users whose cached columns changed (the
flush still knows the changes), and dumps their values once the flush is
done (when a server-made value can be read back). Nothing is handed on
before the outermost transaction commits: a rollback forgets what was
noted. A flush that changes no user costs a scan of the flushed objects; no
query is added. Changes made with plain SQL or by another program are not
seen: use :func:`~flask_pow.sync_user` or :func:`~flask_pow.reload_user`.

This module imports nothing of flask_pow's above the adapter protocol: the
application's side of a commit comes in as the callback of :func:`listen`.
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
    """An attribute of a cached user was read that the cache does not hold:
    a column that ``POW_CACHE_EXCLUDE`` leaves out, or a relationship. A
    subclass of SQLAlchemy's :exc:`~sqlalchemy.orm.exc.DetachedInstanceError`,
    which is what a detached instance raises for any attribute it cannot
    load.
    """

    # SQLAlchemy's link explains detached instances in general; the message
    # already says what to do here.
    code = None  # type: ignore[assignment]


#: A per-instance attribute loader, as SQLAlchemy calls it.
Loader = t.Callable[[sa_orm.InstanceState[t.Any], PassiveFlag], t.Any]


class _NotCached:
    """The per-instance loader of an attribute a cached user does not hold.
    SQLAlchemy calls it instead of loading (a detached instance cannot), and
    it raises an error that says what to do. If the instance has been
    attached to a session all the same (flask_pow refuses to attach one it
    built, but not a copy made by other means), it gets out of the way and
    the attribute loads as usual.
    """

    def __init__(self, model: str, key: str, kind: str) -> None:
        self.key = key
        self.column = kind != "relationship"
        row = " flask_pow.database_user(), or @reload_user on the view."

        if kind == "excluded":
            self.message = (
                f"{model}.{key} is not in flask_pow's cache: a pattern of"
                " POW_CACHE_EXCLUDE matches it. If it is not a secret, narrow"
                " POW_CACHE_EXCLUDE to cache it; otherwise read it from the row:" + row
            )
        elif kind == "missing":
            self.message = (
                f"{model}.{key} is not in this user's cached record, which was"
                " written before the column was cached (a new column, or a"
                " narrower POW_CACHE_EXCLUDE). The user's next login or sync"
                " writes it; until then read it from the row:" + row
            )
        else:
            self.message = (
                f"{model}.{key} is a relationship, and the cached user holds"
                " columns only. Read it from the row:" + row
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


#: The states of the users :meth:`SQLAlchemyUsers.load` built from the
#: cache (weak: a state goes with its instance). A set of its own rather
#: than ``state.info``, which would give every instance the application
#: attaches a dict of its own, when the listener below reads it.
_cached_states: weakref.WeakSet[sa_orm.InstanceState[t.Any]] = weakref.WeakSet()


def _refuse_cached_user(session: sa_orm.Session, state: t.Any) -> None:
    """A ``before_attach`` listener on every SQLAlchemy session: a cached
    user never joins one. Attached, its cached values would be taken for the
    row's; and SQLAlchemy accepts it or raises "another instance with key
    ... is already present" depending on whether the session holds the row,
    that is on what else the view happened to load.

    :raise sqlalchemy.exc.InvalidRequestError: saying to use the row.
    """
    if state in _cached_states:
        name = state.class_.__name__
        raise sa_exc.InvalidRequestError(
            f"This {name} is flask_pow's cached current_user, built from the"
            " cache: it is not a database row, and cannot be put in a database"
            " session (db.session.add(), delete(), or a relationship that"
            " cascades to it, as in Post(author=current_user)). Use the row:"
            " flask_pow.database_user(), or @reload_user on the view."
        )


def _listen_for_attaches() -> None:
    """Listen to every SQLAlchemy session's attaches, once per process."""
    if not sa.event.contains(sa_orm.Session, "before_attach", _refuse_cached_user):
        # raw: the listener gets the instance's state, with no look-up.
        sa.event.listen(sa_orm.Session, "before_attach", _refuse_cached_user, raw=True)


def _matches(name: str, patterns: t.Iterable[str]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


class SQLAlchemyUsers(UserAdapter[U]):
    """The adapter for a Flask-SQLAlchemy (or any SQLAlchemy) mapped model.

    The cached values are the model's column attributes, minus those whose
    name matches one of the ``exclude`` patterns. A loaded user is a
    *detached* instance: its cached columns read as usual, while an excluded
    column or a relationship raises :exc:`~flask_pow.NotCachedError` (a
    :exc:`~sqlalchemy.orm.exc.DetachedInstanceError`) instead of running a
    query. Where a view needs them, read the row
    (:func:`~flask_pow.database_user`) or reload the user
    (:func:`~flask_pow.reload_user`). The cached user cannot be attached
    to a database session (``db.session.add(current_user)``, or a
    relationship that cascades to it): that raises
    :exc:`~sqlalchemy.exc.InvalidRequestError`, naming
    :func:`~flask_pow.database_user`, since its cached values would be taken
    for the row's.

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
        exclude = tuple(exclude)
        # Composite keys are sorted by attribute name, as Pow does, so the
        # key does not depend on column order.
        self._pk = sorted(
            mapper.get_property_by_column(column).key for column in mapper.primary_key
        )

        for name in self._pk:
            if _matches(name, exclude):
                raise ValueError(
                    f"POW_CACHE_EXCLUDE excludes {name!r}, a primary key column"
                    f" of {self._name}; the cache cannot identify users without"
                    " it. Narrow the pattern."
                )

        self._columns = [
            prop for prop in mapper.column_attrs if not _matches(prop.key, exclude)
        ]
        self._names = [prop.key for prop in self._columns]
        self._name_set = frozenset(self._names)
        cached = set(self._names)
        self._not_cached = {
            prop.key: _NotCached(self._name, prop.key, "excluded")
            for prop in mapper.column_attrs
            if prop.key not in cached
        }
        self._not_cached.update(
            (prop.key, _NotCached(self._name, prop.key, "relationship"))
            for prop in mapper.relationships
        )
        self._enums: dict[str, type[enum.Enum]] = {}

        for prop in self._columns:
            column_type = prop.columns[0].type

            if isinstance(column_type, sa.Enum) and column_type.enum_class:
                self._enums[prop.key] = column_type.enum_class

        self._label = next(
            (name for name in LABEL_COLUMNS if name in {p.key for p in self._columns}),
            None,
        )
        _listen_for_attaches()

    @property
    def cached_columns(self) -> list[str]:
        """The attribute names that are written to the cache."""
        return [prop.key for prop in self._columns]

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
        """Whether a change of ``user`` not yet flushed touches a cached
        column (a change of an excluded column does not change the cache).

        :meta private:
        """
        attrs = sa.inspect(user).attrs
        return any(attrs[name].history.has_changes() for name in self._names)

    def key_for_id(self, ident: str) -> str:
        """The user key for a primary key given as text (the CLI's
        ``--user 42``); a composite key is given as ``a=1,b=2``.
        """
        return f"{self._name}:{ident}"

    def dump(self, user: U) -> dict[str, t.Any]:
        user = resolve_user(user)
        data: dict[str, t.Any] = {}

        for prop in self._columns:
            value = getattr(user, prop.key)

            if isinstance(value, enum.Enum):
                value = value.name

            data[prop.key] = value

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
        missing: list[str] = []

        for name in self._names:
            if name in data:
                values[name] = data[name]
            else:
                missing.append(name)

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
            loaders: dict[str, Loader] = dict(self._not_cached)
            loaders.update(
                (name, _NotCached(self._name, name, "missing")) for name in missing
            )
            state = instance_state(instance)
            state.expired_attributes.difference_update(loaders)
            state.callables = loaders

        _cached_states.add(instance_state(instance))
        return t.cast(U, instance)

    def is_stale(self, data: dict[str, t.Any]) -> bool:
        """Whether cached values were written for other columns than the
        model caches now: a deploy added a column, or changed
        ``POW_CACHE_EXCLUDE``. Such a record is rewritten from the database
        on its next use.
        """
        return data.keys() != self._name_set

    def reload_key(self, user_key: str) -> U | None:
        """The user with this key, from the database (one query); ``None``
        if there is none, or the key is not one of this model's.
        """
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
        column = self._mapper.get_property(name).columns[0]

        try:
            python_type = column.type.python_type
        except NotImplementedError:
            return text

        return text if python_type is str else python_type(text)

    def reload(self, user: U) -> U | None:
        return self.db.session.get(
            self.model, self._ident(user), populate_existing=True
        )

    def row(self, user: U) -> U | None:
        """The user's row, attached to the database session: from the
        session's identity map if it holds it, else with one query. ``None``
        if it no longer exists.
        """
        return self.db.session.get(self.model, self._ident(user))

    def _ident(self, user: U) -> dict[str, t.Any]:
        user = resolve_user(user)
        return {name: getattr(user, name) for name in self._pk}

    def label(self, user: U) -> str | None:
        if self._label is None:
            return None

        value = getattr(user, self._label, None)
        return None if value is None else str(value)


# -- sync on commit ----------------------------------------------------------

#: ``session.info`` keys: instances a flush changed or deleted; the values
#: (``None`` for a deleted user) waiting for their transaction to commit, by
#: transaction (the outermost one, or a savepoint); and the transactions
#: that committed. What a transaction noted goes to its parent when it
#: commits, is handed on when the outermost one commits, and is dropped when
#: one ends any other way (a rollback, ``close()``, ``reset()``).
_FLUSHED = "flask_pow.flushed_users"
_PENDING = "flask_pow.pending_users"
_COMMITTED = "flask_pow.committed_transactions"

#: What :func:`listen` is given: called at each flush and commit, it gives
#: ``None``, or the current application's adapter if it caches this db's
#: users and syncs on commit, with the function that takes what a commit
#: changed (a user key's new values, ``None`` for a deleted user).
Committed = t.Callable[[dict[str, dict[str, t.Any] | None]], None]
Find = t.Callable[[], tuple[SQLAlchemyUsers[t.Any], Committed] | None]

_listeners: weakref.WeakKeyDictionary[t.Any, _CommitListener] = (
    weakref.WeakKeyDictionary()
)


def listen(db: SQLAlchemy, find: Find) -> None:
    """Listen to the commits of ``db``'s session, once per ``db``, and hand
    what each changed to the function ``find()`` gives at the time.

    :meta private:
    """
    if db in _listeners:
        return

    listener = _listeners[db] = _CommitListener(find)
    session = db.session
    sa.event.listen(session, "after_flush", listener.after_flush)
    sa.event.listen(session, "after_flush_postexec", listener.after_flush_postexec)
    sa.event.listen(session, "after_commit", listener.after_commit)
    sa.event.listen(session, "after_transaction_end", listener.after_transaction_end)


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
        changed = [
            user
            for user in session.dirty
            if isinstance(user, model) and users.cached_values_changed(user)
        ]
        deleted = [user for user in session.deleted if isinstance(user, model)]

        if changed or deleted:
            flushed = session.info.setdefault(_FLUSHED, [])
            flushed.extend((user, False) for user in changed)
            flushed.extend((user, True) for user in deleted)

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
            table = session.info[_PENDING]
            table.setdefault(transaction.parent, {}).update(pending)
            return

        found = self.find()

        if found is not None:
            found[1](pending)


def _innermost(session: sa_orm.Session) -> t.Any:
    """The savepoint in progress, or else the outermost transaction (never
    the short sub-transaction of a flush).
    """
    return session.get_nested_transaction() or session.get_transaction()


# -- a change in vain -------------------------------------------------------


def warn_if_changed_in_vain(user: t.Any) -> None:
    """Warn when the view changed the cached user itself: it is not in the
    database session, so the change was saved nowhere (code written for
    Flask-Login does ``current_user.last_seen = now``, then commits).

    :meta private:
    """
    try:
        state = instance_state(user)
    except AttributeError:
        return  # not a mapped instance: a user of another adapter

    if not state.modified or not state.detached:
        return

    changed = ", ".join(a.key for a in state.attrs if a.history.has_changes())
    logger.warning(
        "The cached current_user was changed in this request (%s), but it is"
        " not in the database session, so nothing was saved. Change the row"
        " instead: flask_pow.database_user(), then commit.",
        changed,
    )


def in_session(user: t.Any) -> bool:
    """Whether ``user`` is a mapped instance in a database session (a row,
    as :func:`~flask_pow.reload_user` gives it), not the cached user.

    :meta private:
    """
    state = sa.inspect(user, raiseerr=False)
    return state is not None and state.session_id is not None
