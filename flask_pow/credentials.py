"""The credentials cache: the records of every session, the cached users,
and the per-user index that lets sessions be listed and revoked without
scanning the store.

Records, under the namespace (``POW_NAMESPACE``):

``session:<session id>``
    One login on one device: the user key, the SHA-256 digest of the current
    token (the token itself is never stored), login and rotation times,
    metadata, and after a rotation the previous token's digest with the new
    token sealed under the previous one, for the grace window. Lives
    ``POW_CREDENTIALS_TTL`` from its last write.
``user:<user key>``
    The user's cached columns, shared by all of their sessions. Rewritten,
    and its TTL restarted, by every write for that user.
``sessions:<user key>``
    The index: session id -> expiry time, pruned of expired ids on write.
``users:<bucket>``
    User key -> expiry of their latest session, in 64 buckets by hash, so
    :meth:`CredentialsCache.users` reads 64 keys rather than scanning.
"""

from __future__ import annotations

import collections.abc as c
import dataclasses
import hashlib
import logging
import time
import typing as t

from blinker import NamedSignal
from flask import current_app
from flask import has_app_context

from . import signals
from .policy import Match
from .policy import Policy
from .records import SessionInfo
from .records import SessionRecord
from .records import new_session_id
from .stores import Lock
from .stores import Store
from .stores import StoreUnavailable
from .users import UserAdapter

logger = logging.getLogger("flask_pow")

#: Number of ``users:<bucket>`` records.
USER_BUCKETS = 64


@dataclasses.dataclass
class Authenticated:
    """What the store says about a request's token.

    :meta private:
    """

    record: SessionRecord
    user_data: dict[str, t.Any]
    #: The token the client should hold from now on, if it presented a
    #: rotated-away one inside the grace window.
    follow: str | None = None


#: How long a rotation that finds another one under way waits for it, to
#: follow the winner's token, in seconds.
FOLLOW_WAIT = 0.25

#: Sessions revoked per store operation by a revoke-all.
REVOKE_BATCH = 500


def _batches(items: list[str], size: int = REVOKE_BATCH) -> c.Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ttl(expires_at: float, now: float) -> int:
    """Whole seconds until ``expires_at``, rounded up: cachelib counts in
    seconds, and a record must not expire before its own expiry time.
    """
    return int(expires_at - now) + 1


def _send(signal: NamedSignal, **kwargs: t.Any) -> None:
    # Sent with the application as sender, when there is one: the cache can
    # be used from a bare script too.
    if has_app_context():
        signal.send(current_app._get_current_object(), **kwargs)  # type: ignore[attr-defined]


class CredentialsCache:
    """The sessions and cached users of one application, on a
    :class:`~flask_pow.stores.Store`. Reach it as ``pow.credentials``.

    :param store: where the records live.
    :param users: the user adapter.
    :param credentials_ttl: idle timeout in seconds.
    :param rotation_grace: how long a rotated-away token still works.
    :param absolute_ttl: seconds after login when a session ends, or ``None``.
    """

    #: The clock, seconds since the epoch. Tests may replace it.
    clock: c.Callable[[], float] = staticmethod(time.time)

    def __init__(
        self,
        store: Store,
        users: UserAdapter[t.Any],
        *,
        credentials_ttl: int,
        rotation_grace: int,
        absolute_ttl: int | None,
    ) -> None:
        self.store = store
        self.adapter = users
        self.policy = Policy(credentials_ttl, rotation_grace, absolute_ttl)
        self._warned: set[str] = set()

    # -- keys ---------------------------------------------------------------

    def _session_key(self, session_id: str) -> str:
        return self.store.key("session", session_id)

    def _user_key(self, user_key: str) -> str:
        return self.store.key("user", user_key)

    def _index_key(self, user_key: str) -> str:
        return self.store.key("sessions", user_key)

    def _bucket_key(self, user_key: str) -> str:
        bucket = int(hashlib.sha256(user_key.encode()).hexdigest()[:4], 16)
        return self.store.key("users", f"{bucket % USER_BUCKETS:02d}")

    def _lock(self, kind: str, name: str) -> Lock:
        return self.store.lock(kind, name)

    # -- corrupt records ----------------------------------------------------

    def _corrupt(self, kind: str, key: str) -> None:
        # Logged once per record and process, with a digest for a name: keys
        # hold session ids, which are not for logs either.
        name = hashlib.sha256(key.encode()).hexdigest()[:12]

        if name not in self._warned:
            if len(self._warned) > 10_000:
                self._warned.clear()

            self._warned.add(name)
            logger.warning(
                "Ignored a corrupt or foreign %s record in the credentials"
                " cache (key digest %s); it is treated as missing.",
                kind,
                name,
            )

    def _read_record(self, session_id: str, value: t.Any) -> SessionRecord | None:
        if value is None:
            return None

        try:
            return SessionRecord.parse(session_id, value)
        except ValueError:
            self._corrupt("session", self._session_key(session_id))
            return None

    def _get_record(self, session_id: str) -> SessionRecord | None:
        """Read and validate one session record."""
        return self._read_record(
            session_id, self.store.get(self._session_key(session_id))
        )

    def _read_map(self, key: str, value: t.Any) -> dict[str, float]:
        if value is None:
            return {}

        if not isinstance(value, dict) or not all(
            isinstance(v, (int, float)) for v in value.values()
        ):
            self._corrupt("index", key)
            return {}

        return value

    def _read_user_data(self, user_key: str, value: t.Any) -> dict[str, t.Any] | None:
        if value is None:
            return None

        if (
            not isinstance(value, dict)
            or value.get("key") != user_key
            or not isinstance(value.get("data"), dict)
        ):
            self._corrupt("user", self._user_key(user_key))
            return None

        return t.cast(dict[str, t.Any], value["data"])

    # -- the request path ---------------------------------------------------

    def authenticate(self, session_id: str, token: str) -> Authenticated | None:
        """Look up the session a client presents. ``None`` unless the token
        is the session's current one, or its previous one inside the grace
        window, and the session and its cached user are both there.

        :meta private:
        """
        record = self._get_record(session_id)

        if record is None:
            return None

        found = self._match(record, token)

        if found is None:
            return None

        user_data = self._read_user_data(
            record.user_key, self.store.get(self._user_key(record.user_key))
        )

        if user_data is None:
            return None

        return Authenticated(record, user_data, found.follow)

    def _match(self, record: SessionRecord, token: str) -> Match | None:
        """:meth:`Policy.match <flask_pow.policy.Policy.match>` now."""
        return self.policy.match(record, token, self.clock())

    def _new_record(
        self, user_key: str, metadata: dict[str, t.Any] | None, now: float
    ) -> tuple[SessionRecord, str]:
        session_id = self._new_session_id(user_key)
        return self.policy.new_session(session_id, user_key, metadata, now)

    def _new_session_id(self, user_key: str) -> str:
        return new_session_id()

    def load_user(self, user_key: str, user_data: dict[str, t.Any]) -> t.Any | None:
        """Build a user from cached data; ``None`` (logged) if it is corrupt.

        :meta private:
        """
        try:
            return self.adapter.load(user_data)
        except (ValueError, TypeError, KeyError):
            self._corrupt("user", self._user_key(user_key))
            return None

    def is_past_absolute(self, record: SessionRecord) -> bool:
        """Whether a session is past the absolute timeout.

        :meta private:
        """
        return self.policy.is_past_absolute(record, self.clock())

    # -- writes -------------------------------------------------------------

    def _acquire(self, lock: Lock) -> None:
        if not lock.acquire(blocking=True):
            raise StoreUnavailable("Timed out waiting for a session store lock.")

    def _write_user(
        self,
        user_key: str,
        user_data: dict[str, t.Any] | None,
        changes: c.Mapping[str, float | None],
        now: float,
        *,
        only_live: bool = False,
    ) -> bool:
        """Under the user's lock: rewrite the user record (unless
        ``user_data`` is ``None``), and apply ``changes`` (session id ->
        expiry, ``None`` to remove) to the index, pruning expired ids. Deletes
        the user's records when no session is left (unless ``only_live``:
        then nothing is written). Returns whether a session is left.
        """
        index_key = self._index_key(user_key)
        index = self._changed_map(index_key, changes, now)

        if not index and only_live:
            return False

        if index:
            latest = max(index.values())
            ttl = _ttl(latest, now)
            items: dict[str, tuple[t.Any, int]] = {index_key: (index, ttl)}

            if user_data is not None:
                items[self._user_key(user_key)] = (
                    {"key": user_key, "data": user_data},
                    ttl,
                )

            self.store.set_many(items)
        else:
            latest = None
            self.store.delete_many(self._user_key(user_key), index_key)

        self._write_bucket(user_key, latest, now)
        return latest is not None

    def _changed_map(
        self, key: str, changes: c.Mapping[str, float | None], now: float
    ) -> dict[str, float]:
        """Read a name -> expiry map, apply ``changes`` (``None`` removes a
        name) and drop the names that have expired.
        """
        values = self._read_map(key, self.store.get(key))

        for name, expires_at in changes.items():
            if expires_at is None:
                values.pop(name, None)
            else:
                values[name] = expires_at

        return {name: exp for name, exp in values.items() if exp > now}

    def _write_bucket(self, user_key: str, latest: float | None, now: float) -> None:
        bucket_key = self._bucket_key(user_key)
        lock = self._lock("bucket", bucket_key)
        self._acquire(lock)

        try:
            bucket = self._changed_map(bucket_key, {user_key: latest}, now)

            if bucket:
                self.store.set(bucket_key, bucket, _ttl(max(bucket.values()), now))
            else:
                self.store.delete_many(bucket_key)
        finally:
            lock.release()

    def put(
        self, user: t.Any, metadata: dict[str, t.Any] | None = None
    ) -> tuple[SessionInfo, str]:
        """Store a new session for ``user`` and return it with its token.
        This is what :func:`~flask_pow.login_user` does once the view has
        returned; call it directly to issue a session outside a request (a
        test, a login link), and hand the token to the client yourself.

        :param user: the user logging in.
        :param metadata: the session's metadata (JSON-serializable).
        :return: the session and the token the client must hold. The token
            is shown here only: the store keeps its digest.
        """
        user_key = self.adapter.key(user)
        user_data = self.adapter.dump(user)
        now = self.clock()
        record, token = self._new_record(user_key, metadata, now)
        self._store_new(record, user_data, now)
        return record.info(), token

    def _store_new(
        self, record: SessionRecord, user_data: dict[str, t.Any], now: float
    ) -> None:
        user_key = record.user_key
        lock = self._lock("user", user_key)
        self._acquire(lock)

        try:
            self.store.set(
                self._session_key(record.id),
                record.dump(),
                _ttl(record.expires_at, now),
            )
            self._write_user(user_key, user_data, {record.id: record.expires_at}, now)
        finally:
            lock.release()

    def rotate(
        self,
        session_id: str,
        token: str,
        user_data: dict[str, t.Any],
        *,
        wait: bool = False,
        record: SessionRecord | None = None,
    ) -> tuple[str, bool] | None:
        """Issue a new token for a session, keeping its id, creation time and
        metadata. The old token keeps working for the grace window.

        One caller of concurrent rotations wins, on every store: the others
        are moved to the winner's token (here, by waiting a moment for the
        winner's lock and reading the session again; a caller that still
        cannot take it carries on with its own token). With ``wait`` (a
        privilege change, which must rotate), the caller waits for the lock,
        and rotates even a session a concurrent request just rotated, so that
        the session ends on a token issued after the change.

        :param session_id: the session.
        :param token: the token the caller holds.
        :param user_data: the user's data, written if the user record is gone.
        :param record: the session's record as the caller read it. This
            implementation reads it again under the lock; a store that can
            compare and set uses it to save the read.
        :return: the token the client should hold now and whether this call
            rotated it, or ``None`` if the client keeps its own.
        """
        lock = self._lock("session", session_id)
        # A caller that cannot take the lock in time (many requests queue
        # behind the winner's) still reads the record, to follow a rotation
        # that has happened.
        locked = lock.acquire(blocking=True, timeout=None if wait else FOLLOW_WAIT)

        if not locked and wait:
            raise StoreUnavailable("Timed out waiting for a session lock.")

        try:
            key = self._session_key(session_id)
            # Read again: another request may have rotated since this one
            # looked.
            record = self._get_record(session_id)
            found = None if record is None else self._match(record, token)

            if record is None or found is None:
                return None

            if found.follow is not None:
                if not wait:
                    return found.follow, False

                # A privilege change rotates on from where the session went.
                token = found.follow

            if not locked:
                return None

            now = self.clock()
            record, fresh = self.policy.advance(record, token, now)
            user_lock = self._lock("user", record.user_key)
            self._acquire(user_lock)

            try:
                current = self._read_user_data(
                    record.user_key, self.store.get(self._user_key(record.user_key))
                )
                self.store.set(key, record.dump(), _ttl(record.expires_at, now))
                # The user record is rewritten as it is now, not as this
                # request read it, so a sync that happened meanwhile stays.
                self._write_user(
                    record.user_key,
                    user_data if current is None else current,
                    {session_id: record.expires_at},
                    now,
                )
            finally:
                user_lock.release()

            return fresh, True
        finally:
            if locked:
                lock.release()

    def _delete_records(self, session_ids: c.Iterable[str]) -> dict[str, str]:
        """Delete session records, each under its session's lock so that a
        rotation in flight cannot write one back. Returns the user key of
        each record that was there.
        """
        ended: dict[str, str] = {}

        for session_id in session_ids:
            lock = self._lock("session", session_id)
            self._acquire(lock)

            try:
                record = self._get_record(session_id)
                self.store.delete_many(self._session_key(session_id))
            finally:
                lock.release()

            if record is not None:
                ended[session_id] = record.user_key

        return ended

    def _unindex(self, user_key: str, session_ids: c.Iterable[str]) -> None:
        lock = self._lock("user", user_key)
        self._acquire(lock)

        try:
            current = self._read_user_data(
                user_key, self.store.get(self._user_key(user_key))
            )
            self._write_user(
                user_key, current, dict.fromkeys(session_ids), self.clock()
            )
        finally:
            lock.release()

    def end(self, session_id: str, user_key: str | None = None) -> str | None:
        """End a session without sending :data:`~flask_pow.session_revoked`
        (a logout, or a timeout). ``user_key``, if the caller knows it, saves
        a store that can use it a read.

        :return: the user key of the session, or ``None`` if there was none.
        :meta private:
        """
        ended = self._delete_records([session_id])

        if session_id not in ended:
            return None

        self._unindex(ended[session_id], [session_id])
        return ended[session_id]

    def delete(self, session_id: str) -> bool:
        """Revoke a session: its token stops working at once. Sends
        :data:`~flask_pow.session_revoked`.

        :return: whether there was such a session.
        """
        user_key = self.end(session_id)

        if user_key is None:
            return False

        _send(signals.session_revoked, session_id=session_id, user_key=user_key)
        return True

    def delete_user_sessions(self, user: t.Any, *, keep: str | None = None) -> int:
        """Revoke every session of a user ("log out everywhere"), for
        example after a password change or when an administrator disables
        the account. Sends :data:`~flask_pow.session_revoked` for each.

        :param user: the user.
        :param keep: a session id to leave alone (the caller's own).
        :return: how many sessions were ended.
        """
        return self.delete_sessions_by_key(self.adapter.key(user), keep=keep)

    def delete_sessions_by_key(self, user_key: str, *, keep: str | None = None) -> int:
        """:meth:`delete_user_sessions` for a user key."""
        index_key = self._index_key(user_key)
        ids = [
            session_id
            for session_id in self._read_map(index_key, self.store.get(index_key))
            if session_id != keep
        ]

        ended = 0

        # In batches, so that a user with thousands of sessions does not
        # hold their lock for long, and a failure part way keeps what is done.
        for batch in _batches(ids):
            deleted = self._delete_records(batch)
            self._unindex(user_key, batch)
            ended += len(deleted)

            for session_id in deleted:
                _send(signals.session_revoked, session_id=session_id, user_key=user_key)

        return ended

    def update_user(self, user: t.Any) -> bool:
        """Write a user's current values to the cache: the next request of
        every session of that user sees them, with no query and no rotation.
        For use outside a request (a background job, a shell); in a request,
        :func:`~flask_pow.sync_user` also rotates the current token.

        :return: whether the user had a live session to update.
        """
        return self.update_user_data(self.adapter.key(user), self.adapter.dump(user))

    def update_user_data(self, user_key: str, user_data: dict[str, t.Any]) -> bool:
        """:meth:`update_user` with values already dumped by the adapter.

        :meta private:
        """
        lock = self._lock("user", user_key)
        self._acquire(lock)

        try:
            # A user with no live session is not cached: there is nothing to
            # update, and nothing is written.
            updated = self._write_user(
                user_key, user_data, {}, self.clock(), only_live=True
            )
        finally:
            lock.release()

        _send(signals.user_synced, user_key=user_key, updated=updated)
        return updated

    # -- reading ------------------------------------------------------------

    def get(self, session_id: str) -> SessionInfo | None:
        """The session with this id, or ``None`` if it has ended."""
        record = self._get_record(session_id)

        if record is None or record.expires_at <= self.clock():
            return None

        return record.info()

    def sessions(self, user: t.Any) -> list[SessionInfo]:
        """The live sessions of a user, oldest login first. Reads the user's
        index and their session records, never the whole store.
        """
        return self.sessions_by_key(self.adapter.key(user))

    def sessions_by_key(self, user_key: str) -> list[SessionInfo]:
        """:meth:`sessions` for a user key."""
        index_key = self._index_key(user_key)
        index = self._read_map(index_key, self.store.get(index_key))
        now = self.clock()
        ids = sorted(sid for sid, exp in index.items() if exp > now)

        if not ids:
            return []

        values = self.store.get_many(*(self._session_key(sid) for sid in ids))
        records = [
            record
            for sid, value in zip(ids, values, strict=True)
            if (record := self._read_record(sid, value)) is not None
            and record.expires_at > now
            and record.user_key == user_key
        ]
        records.sort(key=lambda record: (record.created_at, record.id))
        return [record.info() for record in records]

    def users(self) -> list[t.Any]:
        """The users with a live session, loaded from the cache (no query),
        in user key order.
        """
        return list(self.users_by_key().values())

    def users_by_key(self) -> dict[str, t.Any]:
        """:meth:`users`, keyed by user key."""
        now = self.clock()
        bucket_keys = [self.store.key("users", f"{n:02d}") for n in range(USER_BUCKETS)]
        user_keys = sorted(
            user_key
            for key, value in zip(
                bucket_keys, self.store.get_many(*bucket_keys), strict=True
            )
            for user_key, exp in self._read_map(key, value).items()
            if exp > now
        )

        if not user_keys:
            return {}

        values = self.store.get_many(*(self._user_key(key) for key in user_keys))
        users = {}

        for user_key, value in zip(user_keys, values, strict=True):
            data = self._read_user_data(user_key, value)

            if (
                data is not None
                and (user := self.load_user(user_key, data)) is not None
            ):
                users[user_key] = user

        return users
