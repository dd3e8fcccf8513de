"""The store protocol over any cachelib cache (in-process, file,
Memcached, or any other :class:`~cachelib.BaseCache`).

cachelib has no compare-and-set and cannot list keys, so every multi-key
write runs under short locks (:mod:`~flask_pow.stores.locks`): a
session's, then its user's bucket's. Records, under the namespace (the tag:
:func:`~flask_pow.stores.user_tags`): ``session:<session id>``, a
:class:`~flask_pow.records.SessionRecord`; ``user:<tag>:<user key>``, the
user's cached values; ``sessions:<tag>:<user key>``, the index (session id
-> expiry); ``users:<bucket>``, ``<tag>:<user key>`` -> expiry of the user's
latest session, in 64 buckets by hash, so that listing users reads 64 keys.
A user's records live as long as their latest session.
"""

from __future__ import annotations

import collections.abc as c
import copy
import hashlib
import logging
import os
import threading
import time
import typing as t
import warnings

from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import SimpleCache

from .. import serialization
from ..config import caller_stacklevel
from ..records import SessionRecord
from ..records import new_session_id
from . import SESSION_ID_LENGTH
from . import TAG_LENGTH
from . import CorruptLog
from . import Found
from . import StoreUnavailable
from . import Swapped
from . import UnvouchedLog
from . import filesystem
from . import is_session_id
from . import least_recently_used
from . import locks
from . import unavailable
from . import user_tags
from .parsed import ParsedRecords

logger = logging.getLogger("flask_pow")

#: Below this many items an in-process or file cache may evict live sessions.
SMALL_THRESHOLD = 10_000
#: Number of ``users:<bucket>`` records.
USER_BUCKETS = 64
#: Seconds a rotation that finds the session locked waits before it follows
#: the holder's token (see ``docs/lifecycle.rst``).
FOLLOW_WAIT = 2.0

_T = t.TypeVar("_T")


class StoredBytes:
    """The serializer of flask_pow's copy of a cachelib cache: the tagged
    JSON it is handed is stored and read back as bytes, never unpickled.
    """

    # ``bytes`` of bytes is that same object, and a C call.
    dumps = loads = bytes

    def dump(self, value: bytes, f: t.IO[bytes]) -> None:
        f.write(value)

    def load(self, f: t.IO[bytes]) -> bytes:
        return f.read()


class CachelibSessionStore:
    """:class:`~flask_pow.stores.SessionStore` on a cachelib cache.

    Records go, as tagged JSON, through a copy of the cache object with its
    serializer swapped: the application's values keep the one it chose.

    :param cache: the cachelib cache.
    :param namespace: the prefix of every key flask_pow writes.
    :param secrets: the application's secret keys, current first.
    """

    def __init__(
        self,
        cache: BaseCache,
        namespace: str,
        secrets: c.Callable[[], c.Sequence[str | bytes]],
    ) -> None:
        own = copy.copy(cache)
        own.serializer = StoredBytes()  # type: ignore[attr-defined]
        self.cache = own
        self.prefix = f"{namespace}:"
        self._secrets = secrets
        self.unvouched = UnvouchedLog()
        self.parsed = ParsedRecords(CorruptLog(), report_undecodable=False)
        #: Whether expired records must be swept (a FileSystemCache).
        self.sweeps = isinstance(cache, FileSystemCache)
        #: The directory of a FileSystemCache, and of its lock files.
        self._directory = self._lock_dir = ""
        self._next_sweep = 0.0
        #: Whether reads open the files themselves (filesystem.read_files).
        self._reads_files = isinstance(
            cache, FileSystemCache
        ) and filesystem.reads_directly(cache)
        threshold = getattr(cache, "_threshold", 0)
        fix = "a threshold"

        if isinstance(cache, FileSystemCache):
            # The file count (written with the writer's serializer) and the
            # pruning it drives are the application's object's.
            own._threshold = 0  # type: ignore[attr-defined]
            self._directory = filesystem.path(cache)
            self._lock_dir = self._directory + ".pow-locks"
            os.makedirs(self._lock_dir, mode=0o700, exist_ok=True)
            fix = "threshold=0 (no limit) or a threshold"

        #: Where this store's locks live: :func:`flask_pow.stores.locks.lock`.
        self._locking = (own, self.prefix, self._lock_dir)
        #: The store, as log lines name it: the cache's class, and its folder.
        self.server = type(cache).__name__ + (
            f" at {self._directory}" if self._directory else ""
        )

        if isinstance(cache, (SimpleCache, FileSystemCache)) and (
            0 < threshold < SMALL_THRESHOLD
        ):
            warnings.warn(
                f"POW_CACHE is a {type(cache).__name__} with threshold={threshold}."
                " When it holds more items than that it evicts some, and live"
                f" sessions with them. Build it with {fix} of at least"
                f" {SMALL_THRESHOLD}.",
                stacklevel=caller_stacklevel(),
            )

    def _fetch(self, *keys: str) -> list[bytes | None]:
        """The bytes under keys; anything else (a value unpickled) is ``None``."""
        try:
            if self._reads_files:
                values = filesystem.read_files(self.cache, keys, time.time())  # type: ignore[arg-type]
            else:
                values = list(self.cache.get_many(*keys))
        except StoreUnavailable:
            raise
        except Exception as e:
            raise unavailable(e, self.server) from e

        for n, value in enumerate(values):
            if type(value) is not bytes:
                values[n] = None

        # A FileSystemCache misses a file it cannot open: a volume gone is
        # an outage, not a logout.
        if self._directory and None in values and not os.path.isdir(self._directory):
            raise unavailable(NotADirectoryError(), self.server, "no such folder")

        return values

    def _put(
        self, items: c.Mapping[str, tuple[t.Any, float]], gone: c.Sequence[str] = ()
    ) -> None:
        """Write ``items`` (value, TTL) in their order, then delete ``gone``.
        Items in a row that share a TTL (a login's four records, mostly) go
        in one ``set_many``: one round trip to a Memcached.
        """
        batch: dict[str, bytes] = {}
        timeout = 0

        for key, (value, ttl) in items.items():
            # TTLs rounded up: no key lives forever, none expires before its time.
            this = max(1, int(ttl) + 1)

            if batch and this != timeout:
                self._set_many(batch, timeout)
                batch = {}

            batch[key], timeout = serialization.dumps(value), this

        if batch:
            self._set_many(batch, timeout)

        if gone:
            try:
                self.cache.delete_many(*gone)
            except Exception as e:
                raise unavailable(e, self.server) from e

    def _set_many(self, values: dict[str, bytes], timeout: int) -> None:
        try:
            if len(values) == 1:
                ((key, data),) = values.items()
                ok = bool(self.cache.set(key, data, timeout=timeout))
            else:
                ok = len(self.cache.set_many(values, timeout=timeout)) == len(values)
        except TypeError:
            raise
        except Exception as e:
            raise unavailable(e, self.server) from e

        if not ok:
            raise StoreUnavailable("The session store refused a write.")

    def _tags(self, user_key: str) -> list[str]:
        return user_tags(user_key, self._secrets())

    def _read_session(self, session_id: str) -> SessionRecord | None:
        return self._records([session_id]).get(session_id)

    def read_session(self, session_id: str) -> SessionRecord | None:
        # Another application's record (or an untagged old one) reads as missing.
        record = self._read_session(session_id)

        if record is None or session_id[:TAG_LENGTH] not in self._tags(record.user_key):
            return None

        return record

    def read(self, session_id: str, *, fresh: bool = False) -> Found | None:
        # The request path, inline. The id comes from a cookie signed with
        # our secret key: the session is ours (no tag check).
        if len(session_id) != SESSION_ID_LENGTH:
            return None

        key = f"{self.prefix}session:{session_id}"
        record = self.parsed.session(session_id, self._fetch(key)[0], key)

        if record is None:
            return None

        # The index must still list the session: a lost index fails closed.
        owner = f"{session_id[:TAG_LENGTH]}:{record.user_key}"
        keys = f"{self.prefix}user:{owner}", f"{self.prefix}sessions:{owner}"
        listed, user_data = self.parsed.listed_user(
            session_id, record.user_key, self._fetch(*keys), keys
        )

        if not listed:
            self.unvouched(session_id)
            return None

        return Found(record, user_data)

    def new_session_id(self, user_key: str, now: float) -> str:
        return self._tags(user_key)[0] + new_session_id()

    def _records(self, session_ids: c.Iterable[str]) -> dict[str, SessionRecord]:
        ids = [sid for sid in session_ids if is_session_id(sid)]
        keys = [f"{self.prefix}session:{sid}" for sid in ids]
        return self._parsed(self.parsed.session, ids, keys)

    def _parsed(
        self,
        parse: c.Callable[[str, bytes | None, str], _T | None],
        names: list[str],
        keys: list[str],
    ) -> dict[str, _T]:
        """What ``parse`` makes of each name's record (``keys``), if anything."""
        found = {}

        for name, key, value in zip(
            names, keys, self._fetch(*keys) if keys else [], strict=True
        ):
            if (item := parse(name, value, key)) is not None:
                found[name] = item

        return found

    def _index(self, user_key: str) -> dict[str, float]:
        keys = [
            f"{self.prefix}sessions:{tag}:{user_key}" for tag in self._tags(user_key)
        ]
        index = {}

        for key, value in zip(keys, self._fetch(*keys), strict=True):
            index.update(self.parsed.expiries(value, key))

        return index

    def session_ids(self, user_key: str) -> list[str]:
        return list(self._index(user_key))

    def sessions(self, user_key: str, now: float) -> list[SessionRecord]:
        ids = sorted(sid for sid, exp in self._index(user_key).items() if exp > now)
        return list(self._records(ids).values())

    def users(self, now: float) -> list[tuple[str, dict[str, t.Any]]]:
        keys = [f"{self.prefix}users:{n:02d}" for n in range(USER_BUCKETS)]
        # Owners are "<tag>:<user key>"; another application's are not listed.
        owners: dict[str, str] = {}

        for key, value in zip(keys, self._fetch(*keys), strict=True):
            for owner, exp in self.parsed.expiries(value, key).items():
                tag, _, user_key = owner.partition(":")

                if exp > now and user_key and tag in self._tags(user_key):
                    owners.setdefault(user_key, owner)

        user_keys = sorted(owners)
        keys = [f"{self.prefix}user:{owners[user_key]}" for user_key in user_keys]
        return list(self._parsed(self.parsed.user, user_keys, keys).items())

    def _write_user(
        self,
        tag: str,
        user_key: str,
        now: float,
        *,
        user_data: dict[str, t.Any] | None = None,
        session: SessionRecord | None = None,
        ended: c.Iterable[str] = (),
        keep_cached: bool = False,
        only_live: bool = False,
        max_sessions: int | None = None,
        keep: c.Collection[str] = (),
    ) -> tuple[bool, list[str]]:
        """Under the bucket's lock: index ``session`` and unindex ``ended``
        and the least recently used past ``max_sessions`` (none of ``keep``);
        write them, and ``user_data`` unless ``keep_cached`` finds values. No
        session left: delete the user's records (``only_live``: write
        nothing). Returns whether one is left, and the ids over the cap.
        """
        owner = f"{tag}:{user_key}"
        index_key = f"{self.prefix}sessions:{owner}"
        user_record_key = f"{self.prefix}user:{owner}"
        number = int(hashlib.sha256(user_key.encode()).hexdigest()[:4], 16)
        bucket_key = f"{self.prefix}users:{number % USER_BUCKETS:02d}"
        changes: dict[str, float | None] = dict.fromkeys(ended)

        if session is not None:
            changes[session.id] = session.expires_at

        lock = locks.lock(*self._locking, "users", bucket_key)

        try:
            keys = index_key, bucket_key, user_record_key
            raw = self._fetch(*keys[: 3 if keep_cached else 2])
            index = _changed(self.parsed.expiries(raw[0], index_key), changes, now)
            over: list[str] = []

            if not index and only_live:
                return False, over

            if max_sessions is not None and len(index) > max_sessions:
                over = least_recently_used(index, self._records(index), keep)
                over = over[: len(index) - max_sessions]

                for session_id in over:
                    del index[session_id]

            if keep_cached:
                cached = self.parsed.user(user_key, raw[2], user_record_key)
                user_data = user_data if cached is None else cached

            latest = max(index.values()) if index else None
            bucket = self.parsed.expiries(raw[1], bucket_key)
            bucket = _changed(bucket, {owner: latest}, now)
            gone = [] if bucket else [bucket_key]
            # The session first: a reader that finds it indexed finds it.
            items: dict[str, tuple[t.Any, float]] = {}

            if session is not None:
                key = f"{self.prefix}session:{session.id}"
                items[key] = session.dump(), session.expires_at - now

            if latest is None:
                gone += [user_record_key, index_key]
            else:
                items[index_key] = index, latest - now

                if user_data is not None:
                    # The key beside the data: a record moved is refused.
                    value = {"key": user_key, "data": user_data}
                    items[user_record_key] = value, latest - now

            if bucket:
                items[bucket_key] = bucket, max(bucket.values()) - now

            self._put(items, gone)
        finally:
            locks.unlock(self.cache, lock)

        return latest is not None, over

    def create(
        self,
        record: SessionRecord,
        user_data: dict[str, t.Any],
        now: float,
        *,
        max_sessions: int,
        keep: c.Collection[str] = (),
    ) -> list[str]:
        _, over = self._write_user(
            record.id[:TAG_LENGTH],
            record.user_key,
            now,
            user_data=user_data,
            session=record,
            max_sessions=max_sessions,
            keep={record.id, *keep},
        )

        if self.sweeps and time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + filesystem.CLEANUP_INTERVAL

            if filesystem.sweep_due(self._lock_dir):
                threading.Thread(
                    target=filesystem.sweep,
                    args=(self._directory,),
                    name="flask_pow cleanup",
                    daemon=True,
                ).start()

        # Unindexed already; their records go under their own locks, taken
        # after the bucket's is let go (session locks come first).
        return self._delete_records(over) if over else []

    def swap(
        self,
        record: SessionRecord,
        expected: str,
        now: float,
        *,
        user_data: dict[str, t.Any],
        wait: bool,
    ) -> Swapped:
        # Requests queued behind a rotation that cannot take the lock in a
        # moment follow the winner.
        lock = locks.lock(
            *self._locking, "session", record.id, None if wait else FOLLOW_WAIT
        )

        if lock is None:
            return Swapped(False, self._read_session(record.id), undecided=True)

        try:
            current = self._read_session(record.id)

            if current is None or current.token != expected:
                return Swapped(False, current)

            # keep_cached: a sync since the caller read the values stays.
            self._write_user(
                record.id[:TAG_LENGTH],
                record.user_key,
                now,
                user_data=user_data,
                session=record,
                keep_cached=True,
            )
            return Swapped(True)
        finally:
            locks.unlock(self.cache, lock)

    def delete(
        self, user_key: str, session_ids: c.Sequence[str], now: float
    ) -> list[str]:
        tags = self._tags(user_key)
        ours = [s for s in session_ids if is_session_id(s) and s[:TAG_LENGTH] in tags]
        ended = self._delete_records(ours)

        for tag in tags:
            if ids := [s for s in ours if s[:TAG_LENGTH] == tag]:
                self._write_user(tag, user_key, now, ended=ids, keep_cached=True)

        return ended

    def _delete_records(self, session_ids: c.Iterable[str]) -> list[str]:
        """Delete session records, each under its lock (so that a rotation in
        flight cannot write one back); return those that were there.
        """
        ended = []

        for session_id in session_ids:
            lock = locks.lock(*self._locking, "session", session_id)

            try:
                if self._read_session(session_id) is not None:
                    ended.append(session_id)

                self._put({}, [f"{self.prefix}session:{session_id}"])
            finally:
                locks.unlock(self.cache, lock)

        return ended

    def write_user(
        self, user_key: str, user_data: dict[str, t.Any], now: float
    ) -> bool:
        written = [
            self._write_user(tag, user_key, now, user_data=user_data, only_live=True)[0]
            for tag in self._tags(user_key)
        ]
        return any(written)

    def cleanup(self, now: float) -> int:
        """Delete expired records where the cache keeps them (a
        FileSystemCache); return how many. ``flask pow cleanup`` runs it.
        """
        if not self._directory:
            return 0

        return filesystem.remove_expired_files(self._directory, now)


def _changed(
    values: dict[str, float], changes: c.Mapping[str, float | None], now: float
) -> dict[str, float]:
    """``values`` with ``changes`` (``None`` removes), less the expired."""
    for name, expires_at in changes.items():
        if expires_at is None:
            values.pop(name, None)
        else:
            values[name] = expires_at

    # A loop, not a comprehension: no call of its own.
    for name, expires_at in list(values.items()):
        if expires_at <= now:
            del values[name]

    return values
