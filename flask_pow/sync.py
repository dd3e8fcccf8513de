"""Sync on commit: the database session's events that hand a committed
transaction's changed users to the extension.
"""

from __future__ import annotations

import typing as t
import weakref

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm

from .orm import SQLAlchemyUsers

if t.TYPE_CHECKING:  # pragma: no cover
    from flask_sqlalchemy import SQLAlchemy

#: ``session.info`` keys: users a flush changed or deleted, and the holders of
#: related rows it changed; their values by transaction, until it commits (a
#: savepoint's go to its parent); and the transactions that committed.
_FLUSHED = "flask_pow.flushed_users"
_HOLDERS = "flask_pow.holders"
_PENDING = "flask_pow.pending_users"
_COMMITTED = "flask_pow.committed_transactions"

Committed = t.Callable[[dict[str, dict[str, t.Any] | None]], None]
Found = tuple[SQLAlchemyUsers[t.Any], Committed] | None
Find = t.Callable[[], Found]

_listened: weakref.WeakSet[t.Any] = weakref.WeakSet()


def listen(db: SQLAlchemy, find: Find) -> None:
    """Once per ``db``: a commit hands ``find()[1]`` the new values of the
    cached users whose rows it changed (``None`` for a deleted user), and of
    the users whose cached relationships hold a row it changed.
    """
    if db in _listened:
        return

    _listened.add(db)
    listener = _CommitListener(find)
    events = "before_flush after_flush after_flush_postexec after_commit"

    for event in (*events.split(), "after_transaction_end"):
        sa.event.listen(db.session, event, getattr(listener, event))


class _CommitListener:
    def __init__(self, find: Find) -> None:
        self.find = find

    def _adapter(self) -> SQLAlchemyUsers[t.Any] | None:
        found = self.find()
        return None if found is None else found[0]

    def before_flush(
        self, session: sa_orm.Session, context: t.Any, instances: t.Any
    ) -> None:
        users = self._adapter()

        # Before the flush: the database still says who holds a deleted row.
        if users is not None and users.cached_relationships:
            holders = session.info.setdefault(_HOLDERS, {})

            for row in (*session.dirty, *session.deleted):
                if not isinstance(row, users.model):
                    holders.update(users.holders(session, row))

    def after_flush(self, session: sa_orm.Session, context: t.Any) -> None:
        users = self._adapter()

        if users is None:
            return

        model = users.model
        flushed = session.info.setdefault(_FLUSHED, [])
        flushed += [
            (user, False)
            for user in session.dirty
            if isinstance(user, model) and users.changed(user)
        ]
        flushed += [(user, True) for user in session.deleted if isinstance(user, model)]

    def after_flush_postexec(self, session: sa_orm.Session, context: t.Any) -> None:
        flushed = session.info.pop(_FLUSHED, None) or []
        holders = session.info.pop(_HOLDERS, None) or {}
        users = self._adapter()

        if not (flushed or holders) or users is None:
            return

        innermost = session.get_nested_transaction() or session.get_transaction()
        pending = session.info.setdefault(_PENDING, {}).setdefault(innermost, {})
        deleted = {users.key(user) for user, gone in flushed if gone}
        changed = {users.key(user): user for user, gone in flushed if not gone}

        if users.cached_relationships:
            # Read again in this transaction, with the rows they hold.
            idents = {key: users.ident(user) for key, user in changed.items()}
            idents.update(holders)
            pending.update(users.dump_current(session, idents))
        else:
            pending.update((key, users.dump(user)) for key, user in changed.items())

        pending.update(dict.fromkeys(deleted))

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
            session.info.pop(_HOLDERS, None)

        if not pending or not was_committed:
            return

        if transaction.parent is not None:
            session.info[_PENDING].setdefault(transaction.parent, {}).update(pending)
        elif (found := self.find()) is not None:
            found[1](pending)
