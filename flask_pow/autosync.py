"""Sync on commit (``POW_SYNC_ON_COMMIT``): when a database transaction that
changed a cached user's row commits, that user's cached record is updated,
for all of their sessions, so that an edit made through the ORM cannot be
forgotten by a missing :func:`~flask_pow.sync_user`. A deleted user's
sessions end.

It listens to the Flask-SQLAlchemy session. After each flush it notes the
users whose cached columns changed (the flush still knows the changes), and
dumps their values once the flush is done (when a server-made value can be
read back). Nothing is written before the outermost transaction commits: a
rollback forgets what was noted. Then, in a request, the writes are queued
for after the view (where a store failure is a 503, as for any write);
outside one they happen at once. A flush that changes no user costs a scan
of the flushed objects and nothing else; no query is added.

Changes made with plain SQL (``db.session.execute(update(User)...)``) or by
another program are not seen: use :func:`~flask_pow.sync_user`,
:func:`~flask_pow.reload_user` or a reload blueprint for those.
"""

from __future__ import annotations

import typing as t
from weakref import WeakKeyDictionary

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask import current_app
from flask import has_app_context

from .lifecycle import note_committed
from .state import get_state
from .users import SQLAlchemyUsers

if t.TYPE_CHECKING:  # pragma: no cover
    from flask_sqlalchemy import SQLAlchemy

#: ``session.info`` keys: instances a flush changed or deleted; the values
#: (``None`` for a deleted user) waiting for their transaction to commit, by
#: transaction (the outermost one, or a savepoint); and the transactions
#: that committed. What a transaction noted goes to its parent when it
#: commits, is written when the outermost one commits, and is dropped when
#: one ends any other way (a rollback, ``close()``, ``reset()``).
_FLUSHED = "flask_pow.flushed_users"
_PENDING = "flask_pow.pending_users"
_COMMITTED = "flask_pow.committed_transactions"

_listeners: WeakKeyDictionary[t.Any, _CommitListener] = WeakKeyDictionary()


def listen(db: SQLAlchemy) -> None:
    """Listen to the commits of ``db``'s session, once per ``db``.

    :meta private:
    """
    if db in _listeners:
        return

    listener = _listeners[db] = _CommitListener(db)
    session = db.session
    sa.event.listen(session, "after_flush", listener.after_flush)
    sa.event.listen(session, "after_flush_postexec", listener.after_flush_postexec)
    sa.event.listen(session, "after_commit", listener.after_commit)
    sa.event.listen(session, "after_transaction_end", listener.after_transaction_end)


class _CommitListener:
    def __init__(self, db: SQLAlchemy) -> None:
        self.db = db

    def _adapter(self) -> SQLAlchemyUsers[t.Any] | None:
        """The current application's adapter, if it caches users of this
        ``db`` and syncs on commit.
        """
        if not has_app_context():
            return None

        if "pow" not in current_app.extensions:
            return None

        users = (state := get_state()).users

        if (
            not state.config.sync_on_commit
            or not isinstance(users, SQLAlchemyUsers)
            or users.db is not self.db
        ):
            return None

        return users

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

        _write(pending)


def _innermost(session: sa_orm.Session) -> t.Any:
    """The savepoint in progress, or else the outermost transaction (never
    the short sub-transaction of a flush).
    """
    return session.get_nested_transaction() or session.get_transaction()


def _write(pending: dict[str, dict[str, t.Any] | None]) -> None:
    note_committed(get_state(), pending)
