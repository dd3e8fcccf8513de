"""The store protocol over any cachelib cache (in-process, file,
Memcached, or any other :class:`~cachelib.BaseCache`).

cachelib offers get, set, add and delete, and nothing that compares and
sets or lists keys, so every multi-key write here runs under a short lock
(:meth:`~flask_pow.stores.Store.lock`), taken in one order: session, user,
bucket. Records, under the namespace:

``session:<session id>``
    One login on one device (:class:`~flask_pow.records.SessionRecord`).
``user:<tag>:<user key>``
    The user's cached values, shared by all of their sessions; TTL of their
    latest session.
``sessions:<tag>:<user key>``
    The index: session id -> expiry time, pruned of expired ids on write.
``users:<bucket>``
    ``<tag>:<user key>`` -> expiry of that user's latest session, in 64
    buckets by hash, so that listing users reads 64 keys rather than
    scanning.

The tag is derived from the user key and the application's secret key
(:func:`~flask_pow.protocol.user_tags`), and starts every session id: two
applications with different secret keys that share one cache directory or
one memcached never read, list or end each other's records, and a session
issued before ``SECRET_KEY`` was rotated (the old key in
``SECRET_KEY_FALLBACKS``) keeps its records where they are.
"""

from __future__ import annotations

import collections.abc as c
import hashlib
import logging
import threading
import time
import typing as t

from .parsed import ParsedRecords
from .protocol import CorruptLog
from .protocol import Found
from .protocol import Swapped
from .protocol import UnvouchedLog
from .protocol import is_session_id
from .protocol import least_recently_used
from .protocol import parse_map
from .protocol import tag_of
from .protocol import user_tags
from .protocol import user_value
from .records import SessionRecord
from .records import new_session_id
from .stores import Lock
from .stores import Store
from .stores import StoreUnavailable

logger = logging.getLogger("flask_pow")

#: Number of ``users:<bucket>`` records.
USER_BUCKETS = 64

#: How often expired records are swept from a FileSystemCache, by one
#: process (the first to log someone in after the interval), in seconds.
CLEANUP_INTERVAL = 3600

#: How long a rotation that finds the session locked waits for the holder,
#: in seconds, so that it can follow the token the holder issues. A holder
#: keeps the lock for a few writes; the wait is long enough for a queue of
#: parallel requests to drain, so that each response carries the newest
#: token (a permanent Flask session re-sends the cookie with every
#: response, and the one the browser applies last is the one it keeps).
FOLLOW_WAIT = 2.0


def _ttl(expires_at: float, now: float) -> int:
    """Whole seconds until ``expires_at``, rounded up: cachelib counts in
    seconds, and a record must not expire before its own expiry time.
    """
    return int(expires_at - now) + 1


class CachelibSessionStore:
    """:class:`~flask_pow.protocol.SessionStore` on a
    :class:`~flask_pow.stores.Store` (a cachelib cache seen through the
    namespace).
    """

    def __init__(
        self, store: Store, secrets: c.Callable[[], c.Sequence[str | bytes]]
    ) -> None:
        self.store = store
        self._secrets = secrets
        self.corrupt = CorruptLog()
        self.unvouched = UnvouchedLog()
        self.parsed = ParsedRecords(self.corrupt, report_undecodable=False)
        self._next_sweep = 0.0

    # -- keys ---------------------------------------------------------------

    def _session_key(self, session_id: str) -> str:
        return self.store.key("session", session_id)

    # A user's records are addressed by a tag and the user key, "owner"
    # below: ``<tag>:<user key>``.

    def _user_key(self, owner: str) -> str:
        return self.store.key("user", owner)

    def _index_key(self, owner: str) -> str:
        return self.store.key("sessions", owner)

    def _bucket_key(self, user_key: str) -> str:
        bucket = int(hashlib.sha256(user_key.encode()).hexdigest()[:4], 16)
        return self.store.key("users", f"{bucket % USER_BUCKETS:02d}")

    def _tags(self, user_key: str) -> list[str]:
        return user_tags(user_key, self._secrets())

    def _owners(self, user_key: str) -> list[str]:
        """Where a user's records may be: one place per secret key."""
        return [f"{tag}:{user_key}" for tag in self._tags(user_key)]

    @staticmethod
    def _owner_of(session_id: str, user_key: str) -> str:
        return f"{tag_of(session_id)}:{user_key}"

    def _is_ours(self, record: SessionRecord) -> bool:
        """Whether a session record is this application's: its id starts
        with a tag of its user under one of our secret keys. Another
        application's record (or one from before records were tagged)
        reads as missing.
        """
        return tag_of(record.id) in self._tags(record.user_key)

    def _locked(self, kind: str, name: str) -> Lock:
        lock = self.store.lock(kind, name)

        if not lock.acquire(blocking=True):
            raise StoreUnavailable("Timed out waiting for a session store lock.")

        return lock

    # -- reading records ----------------------------------------------------

    def read_session(self, session_id: str) -> SessionRecord | None:
        record = self._read_session(session_id)
        return record if record is not None and self._is_ours(record) else None

    def _read_session(self, session_id: str) -> SessionRecord | None:
        if not is_session_id(session_id):
            return None

        key = self._session_key(session_id)
        raw = self.store.get_many_raw(key)[0]
        return self.parsed.session(session_id, raw, key)

    def _read_user(self, owner: str, user_key: str) -> dict[str, t.Any] | None:
        key = self._user_key(owner)
        return self.parsed.user(user_key, self.store.get_many_raw(key)[0], key)

    def _read_map(self, key: str) -> dict[str, float]:
        return parse_map(self.store.get(key), key, self.corrupt)

    def read(self, session_id: str, *, fresh: bool = False) -> Found | None:
        # The request path: the id comes from a cookie signed with our
        # secret key, so the session is ours (no tag check).
        record = self._read_session(session_id)

        if record is None:
            return None

        # The user and their index in one call: the index must still list
        # the session (a lost index fails closed).
        owner = self._owner_of(session_id, record.user_key)
        user_key = self._user_key(owner)
        index_key = self._index_key(owner)
        user, index = self.store.get_many_raw(user_key, index_key)

        if not self.parsed.lists(index, index_key, session_id):
            self.unvouched(session_id)
            return None

        return Found(record, self.parsed.user(record.user_key, user, user_key))

    def new_session_id(self, user_key: str, now: float) -> str:
        return self._tags(user_key)[0] + new_session_id()

    # -- writes -------------------------------------------------------------

    def _changed_map(
        self, key: str, changes: c.Mapping[str, float | None], now: float
    ) -> dict[str, float]:
        """Read a name -> expiry map, apply ``changes`` (``None`` removes a
        name) and drop the names that have expired.
        """
        values = self._read_map(key)

        for name, expires_at in changes.items():
            if expires_at is None:
                values.pop(name, None)
            else:
                values[name] = expires_at

        return {name: exp for name, exp in values.items() if exp > now}

    def _write_user(
        self,
        owner: str,
        user_key: str,
        user_data: dict[str, t.Any] | None,
        changes: c.Mapping[str, float | None],
        now: float,
        *,
        only_live: bool = False,
        max_sessions: int | None = None,
        keep: c.Collection[str] = (),
    ) -> tuple[bool, list[str]]:
        """Under the user's lock: rewrite the user record (unless
        ``user_data`` is ``None``), and apply ``changes`` to the index,
        keeping at most ``max_sessions`` (ending the least recently used,
        never those in ``keep``). Deletes the user's records when no
        session is left (unless ``only_live``: then nothing is written).
        Returns whether a session is left, and the ids dropped over
        ``max_sessions``.
        """
        index_key = self._index_key(owner)
        index = self._changed_map(index_key, changes, now)
        over: list[str] = []

        if not index and only_live:
            return False, over

        if max_sessions is not None and len(index) > max_sessions:
            over = self._least_used(index, keep)[: len(index) - max_sessions]

            for session_id in over:
                del index[session_id]

        if index:
            latest = max(index.values())
            ttl = _ttl(latest, now)
            items: dict[str, tuple[t.Any, int]] = {index_key: (index, ttl)}

            if user_data is not None:
                items[self._user_key(owner)] = (user_value(user_key, user_data), ttl)

            self.store.set_many(items)
        else:
            latest = None
            self.store.delete_many(self._user_key(owner), index_key)

        self._write_bucket(owner, user_key, latest, now)
        return latest is not None, over

    def _least_used(self, ids: c.Collection[str], keep: c.Collection[str]) -> list[str]:
        """:func:`~flask_pow.protocol.least_recently_used` over the records
        of ``ids``; read only when a login goes past the cap.
        """
        records = {
            record.id: record
            for record in map(self._read_session, ids)
            if record is not None
        }
        return least_recently_used(ids, records, keep)

    def _write_bucket(
        self, owner: str, user_key: str, latest: float | None, now: float
    ) -> None:
        bucket_key = self._bucket_key(user_key)
        lock = self._locked("bucket", bucket_key)

        try:
            bucket = self._changed_map(bucket_key, {owner: latest}, now)

            if bucket:
                self.store.set(bucket_key, bucket, _ttl(max(bucket.values()), now))
            else:
                self.store.delete_many(bucket_key)
        finally:
            lock.release()

    def create(
        self,
        record: SessionRecord,
        user_data: dict[str, t.Any],
        now: float,
        *,
        max_sessions: int,
        keep: c.Collection[str] = (),
    ) -> list[str]:
        over = self._write_session(
            record,
            user_data,
            now,
            keep_user=False,
            max_sessions=max_sessions,
            keep={record.id, *keep},
        )
        self._sweep_now_and_then()

        # Unindexed already; their records go under their own locks, taken
        # after the user's lock is let go (locks are taken session first).
        return self._delete_records(over) if over else []

    def _write_session(
        self,
        record: SessionRecord,
        user_data: dict[str, t.Any],
        now: float,
        *,
        keep_user: bool,
        max_sessions: int | None = None,
        keep: c.Collection[str] = (),
    ) -> list[str]:
        """Under the user's lock: write the session, index it, and write the
        user's values (with ``keep_user``, only if the user record is gone:
        a sync since the caller read it stays). Returns the ids unindexed
        over ``max_sessions``.
        """
        owner = self._owner_of(record.id, record.user_key)
        lock = self._locked("user", owner)

        try:
            self.store.set(
                self._session_key(record.id),
                record.dump(),
                _ttl(record.expires_at, now),
            )
            cached = self._read_user(owner, record.user_key) if keep_user else None
            return self._write_user(
                owner,
                record.user_key,
                user_data if cached is None else cached,
                {record.id: record.expires_at},
                now,
                max_sessions=max_sessions,
                keep=keep,
            )[1]
        finally:
            lock.release()

    def swap(
        self,
        record: SessionRecord,
        expected: str,
        now: float,
        *,
        user_data: dict[str, t.Any],
        wait: bool,
    ) -> Swapped:
        lock = self.store.lock("session", record.id)

        # Many requests may queue behind a rotation; the ones that cannot
        # take the lock in a moment read the record and follow the winner.
        if not lock.acquire(blocking=True, timeout=None if wait else FOLLOW_WAIT):
            if wait:
                raise StoreUnavailable("Timed out waiting for a session lock.")

            return Swapped(False, self._read_session(record.id), busy=True)

        try:
            current = self._read_session(record.id)

            if current is None or current.token != expected:
                return Swapped(False, current)

            self._write_session(record, user_data, now, keep_user=True)
            return Swapped(True)
        finally:
            lock.release()

    def delete(
        self, user_key: str, session_ids: c.Sequence[str], now: float
    ) -> list[str]:
        tags = self._tags(user_key)
        ours = [
            sid for sid in session_ids if is_session_id(sid) and tag_of(sid) in tags
        ]
        ended = self._delete_records(ours)
        owners: dict[str, list[str]] = {}

        for session_id in ours:
            owners.setdefault(self._owner_of(session_id, user_key), []).append(
                session_id
            )

        for owner, ids in owners.items():
            lock = self._locked("user", owner)

            try:
                self._write_user(
                    owner,
                    user_key,
                    self._read_user(owner, user_key),
                    dict.fromkeys(ids),
                    now,
                )
            finally:
                lock.release()

        return ended

    def _delete_records(self, session_ids: c.Iterable[str]) -> list[str]:
        """Delete session records, each under its session's lock so that a
        rotation in flight cannot write one back; returns the ids that were
        there.
        """
        ended = []

        for session_id in session_ids:
            lock = self._locked("session", session_id)

            try:
                if self._read_session(session_id) is not None:
                    ended.append(session_id)

                self.store.delete_many(self._session_key(session_id))
            finally:
                lock.release()

        return ended

    def write_user(
        self, user_key: str, user_data: dict[str, t.Any], now: float
    ) -> bool:
        written = False

        for owner in self._owners(user_key):
            lock = self._locked("user", owner)

            try:
                written |= self._write_user(
                    owner, user_key, user_data, {}, now, only_live=True
                )[0]
            finally:
                lock.release()

        return written

    # -- expired records ----------------------------------------------------

    def cleanup(self, now: float) -> int:
        """Delete the records that expired before ``now``, where the cache
        keeps them (a FileSystemCache without a threshold; the others drop
        them by themselves); return how many. ``flask pow cleanup`` runs it.
        """
        return self.store.remove_expired(now)

    def _sweep_now_and_then(self) -> None:
        """Sweep expired records in the background, at most once per
        :data:`CLEANUP_INTERVAL` across the processes sharing the cache's
        directory, so that no cron job is needed.
        """
        if not self.store.sweeps or time.monotonic() < self._next_sweep:
            return

        self._next_sweep = time.monotonic() + CLEANUP_INTERVAL

        if self.store.sweep_due(CLEANUP_INTERVAL):
            threading.Thread(
                target=self._sweep, name="flask_pow cleanup", daemon=True
            ).start()

    def _sweep(self) -> None:
        try:
            removed = self.cleanup(time.time())
        except StoreUnavailable:
            return

        if removed:
            logger.info("Removed %d expired records from the store.", removed)

    # -- listing ------------------------------------------------------------

    def session_ids(self, user_key: str) -> list[str]:
        return [
            session_id
            for owner in self._owners(user_key)
            for session_id in self._read_map(self._index_key(owner))
        ]

    def sessions(self, user_key: str, now: float) -> list[SessionRecord]:
        ids = sorted(
            session_id
            for owner in self._owners(user_key)
            for session_id, exp in self._read_map(self._index_key(owner)).items()
            if exp > now
        )

        if not ids:
            return []

        keys = [self._session_key(sid) for sid in ids]
        return [
            record
            for sid, key, value in zip(
                ids, keys, self.store.get_many_raw(*keys), strict=True
            )
            if (record := self.parsed.session(sid, value, key)) is not None
        ]

    def users(self, now: float) -> list[tuple[str, dict[str, t.Any]]]:
        bucket_keys = [self.store.key("users", f"{n:02d}") for n in range(USER_BUCKETS)]
        # Owners are "<tag>:<user key>"; another application's (a tag not
        # derived from our secret keys) are not listed.
        owners: dict[str, str] = {}

        for key, value in zip(
            bucket_keys, self.store.get_many(*bucket_keys), strict=True
        ):
            for owner, exp in parse_map(value, key, self.corrupt).items():
                tag, _, user_key = owner.partition(":")

                if exp > now and user_key and tag in self._tags(user_key):
                    owners.setdefault(user_key, owner)

        if not owners:
            return []

        user_keys = sorted(owners)
        keys = [self._user_key(owners[user_key]) for user_key in user_keys]
        return [
            (user_key, data)
            for user_key, key, value in zip(
                user_keys, keys, self.store.get_many_raw(*keys), strict=True
            )
            if (data := self.parsed.user(user_key, value, key)) is not None
        ]
