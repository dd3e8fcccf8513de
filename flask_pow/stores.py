"""The store seam: any cachelib :class:`~cachelib.BaseCache`, with keys put
under the namespace, values written as tagged JSON, and a short lock.

cachelib offers ``get``, ``set``, ``add`` and ``delete`` and nothing that
lists keys or compares and sets, so the credentials cache builds its index
on these operations under a lock. :class:`CacheLock` uses ``add``, which is
atomic on the in-process, Redis and Memcached caches; a
:class:`~cachelib.FileSystemCache` checks then sets in ``add``, so it gets
:class:`FileLock`, an ``flock`` that several processes on one host share.
"""

from __future__ import annotations

import collections.abc as c
import copy
import fcntl
import hashlib
import logging
import os
import secrets
import struct
import time
import typing as t
import warnings

from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import SimpleCache
from werkzeug.exceptions import ServiceUnavailable

from . import serialization
from .config import caller_stacklevel

logger = logging.getLogger("flask_pow")

#: How long a lock lives if its holder dies without releasing it.
LOCK_TTL = 5
#: Below this many items an in-process or file cache may evict live sessions.
SMALL_THRESHOLD = 10_000


class StoreUnavailable(ServiceUnavailable):
    """The credentials store could not be read or written. Answered as
    ``503 Service Unavailable``; the client's cookie is left alone, so the
    same session works again once the store is back.
    """

    description = "The session store is unavailable. Please try again in a moment."


class Lock(t.Protocol):
    """A short lock on one name."""

    def acquire(self, *, blocking: bool, timeout: float | None = None) -> bool:
        """Take the lock. Without blocking, give up at once if it is held;
        with blocking, wait up to ``timeout`` seconds (the lock's TTL if
        ``None``). Return whether it was taken.
        """

    def release(self) -> None:
        """Let the lock go."""


class CacheLock:
    """A lock held as a cache key written with ``add``, which expires by
    itself if its holder dies.
    """

    def __init__(self, cache: BaseCache, key: str, ttl: int = LOCK_TTL) -> None:
        self.cache = cache
        self.key = key
        self.ttl = ttl
        self._owner = secrets.token_hex(8)

    def acquire(self, *, blocking: bool, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (self.ttl + 1 if timeout is None else timeout)
        delay = 0.001

        while True:
            try:
                taken = self.cache.add(self.key, self._owner, timeout=self.ttl)
            except Exception as e:
                raise _unavailable(e) from e

            if taken:
                return True

            if not blocking or time.monotonic() > deadline:
                return False

            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        # Not atomic: the lock could expire and be taken by another between
        # the read and the delete. Its TTL is far longer than any holder
        # keeps it, so that takes a holder stalled for seconds.
        try:
            # A memcached client may give the value back as bytes.
            if self.cache.get(self.key) in (self._owner, self._owner.encode()):
                self.cache.delete(self.key)
        except Exception as e:
            # Logged, not raised: it would hide the error of the work done
            # under the lock, and the lock expires by itself.
            _unavailable(e)


class FileLock:
    """An ``flock`` on one of a fixed set of lock files beside a
    :class:`~cachelib.FileSystemCache` directory. The kernel drops it if the
    holder dies. Names share the files by hash, so the number of files stays
    fixed; two names on one file only wait for each other.
    """

    def __init__(
        self, directory: str, kind: str, name: str, ttl: int = LOCK_TTL
    ) -> None:
        stripe = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 64
        # Each kind has its own files, so a holder of a session lock can take
        # its user's lock without waiting on itself.
        self.path = os.path.join(directory, f"{kind}-{stripe:02d}")
        self.ttl = ttl
        self._fd: int | None = None

    def acquire(self, *, blocking: bool, timeout: float | None = None) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise _unavailable(e) from e

        deadline = time.monotonic() + (self.ttl if timeout is None else timeout)
        delay = 0.001

        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not blocking or time.monotonic() > deadline:
                    os.close(fd)
                    return False

                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            else:
                self._fd = fd
                return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Store:
    """A cachelib cache seen through flask_pow's namespace.

    flask_pow's records are written as tagged JSON
    (:mod:`~flask_pow.serialization`), so nothing is pickled, whoever built
    the cache; the application's cache object is not changed, and its own
    values keep its serializer.

    :param cache: the cachelib cache.
    :param namespace: the prefix of every key flask_pow writes.
    """

    def __init__(self, cache: BaseCache, namespace: str) -> None:
        # A copy of the application's cache object, with flask_pow's
        # serializer: the same storage (dict, directory, client), while the
        # application's own values keep the serializer it chose. cachelib
        # reads ``serializer`` from the instance for every get and set.
        own = copy.copy(cache)
        own.serializer = StoredBytes()  # type: ignore[attr-defined]
        self.cache = own
        # flask_pow encodes its records to tagged JSON itself and hands the
        # cache bytes, which every cachelib cache and client stores as they
        # are (cachelib's MemcachedCache, which has no serializer, included:
        # its clients pickle anything that is not text or bytes). Reads
        # get the bytes back, so that unchanged records need not be decoded
        # again (:mod:`flask_pow.parsed`); only bytes that decode are read.
        self.prefix = f"{namespace}:"
        self._lock_dir: str | None = None
        #: The directory of a FileSystemCache.
        self._directory: str | None = None
        #: Whether expired files must be swept: flask_pow's copy of a
        #: FileSystemCache never prunes (below).
        self.sweeps = isinstance(cache, FileSystemCache)

        if isinstance(cache, FileSystemCache):
            # A FileSystemCache with a threshold keeps a count of its files
            # in a file of its own, written with the serializer of whichever
            # object writes: the application's would not read flask_pow's,
            # nor the other way round. flask_pow's copy leaves the count (and
            # the pruning it drives) to the application's object, and sweeps
            # its own expired records (:meth:`remove_expired`).
            own._threshold = 0  # type: ignore[attr-defined]

        if isinstance(cache, FileSystemCache):
            self._directory = filesystem_path(cache)
            self._lock_dir = self._directory.rstrip(os.sep) + ".pow-locks"
            os.makedirs(self._lock_dir, mode=0o700, exist_ok=True)

        threshold = getattr(cache, "_threshold", 0)  # cachelib has no accessor

        if isinstance(cache, (SimpleCache, FileSystemCache)) and (
            0 < threshold < SMALL_THRESHOLD
        ):
            fix = (
                "threshold=0 (no limit) or a threshold"
                if isinstance(cache, FileSystemCache)
                else "a threshold"
            )
            warnings.warn(
                f"POW_CACHE is a {type(cache).__name__} with threshold={threshold}."
                " When it holds more items than that it evicts some, and live"
                f" sessions with them. Build it with {fix} of at least"
                f" {SMALL_THRESHOLD}.",
                stacklevel=caller_stacklevel(),
            )

    def key(self, *parts: str) -> str:
        """Build a namespaced key from its parts."""
        return self.prefix + ":".join(parts)

    def get_many(self, *keys: str) -> list[t.Any]:
        """Read several keys; a missing or undecodable value is ``None``.

        :raise StoreUnavailable: if the cache cannot be reached.
        """
        return [_decode(value) for value in self.get_many_raw(*keys)]

    def get_many_raw(self, *keys: str) -> list[bytes | None]:
        """Read several keys as the bytes stored; anything else (a value a
        client unpickled, a missing key) is ``None``.

        :raise StoreUnavailable: if the cache cannot be reached.
        """
        try:
            values = [
                value if isinstance(value, bytes) else None
                for value in self.cache.get_many(*keys)
            ]
        except StoreUnavailable:
            raise
        except Exception as e:
            raise _unavailable(e) from e

        # FileSystemCache reads a file it cannot open as a miss (and logs
        # it): a miss is checked against the directory, so that a volume
        # that went away is an outage, not a logout.
        if (
            self._directory is not None
            and None in values
            and not os.path.isdir(self._directory)
        ):
            raise _unavailable(NotADirectoryError(self._directory))

        return values

    def get(self, key: str) -> t.Any:
        """Read one key; see :meth:`get_many`."""
        return self.get_many(key)[0]

    def set(self, key: str, value: t.Any, ttl: int) -> None:
        """Write one key with a TTL in seconds (at least one: flask_pow never
        writes a key that lives forever).

        :raise StoreUnavailable: if the cache refused or failed the write.
        """
        ttl = max(1, ttl)

        value = serialization.dumps(value)

        try:
            ok = self.cache.set(key, value, timeout=ttl)
        except TypeError:
            raise
        except Exception as e:
            raise _unavailable(e) from e

        if not ok:
            raise StoreUnavailable("The session store refused a write.")

    def set_many(self, items: c.Mapping[str, tuple[t.Any, int]]) -> None:
        """Write several keys, each with its own TTL."""
        for key, (value, ttl) in items.items():
            self.set(key, value, ttl)

    def delete_many(self, *keys: str) -> None:
        """Delete keys; a missing key is not an error."""
        if not keys:
            return

        try:
            self.cache.delete_many(*keys)
        except Exception as e:
            raise _unavailable(e) from e

    def remove_expired(self, now: float) -> int:
        """Delete expired entries, where the cache does not do it itself
        (a FileSystemCache without a threshold); return how many.
        """
        if not self.sweeps or self._directory is None:
            return 0

        return remove_expired_files(self._directory, now)

    def sweep_due(self, interval: float) -> bool:
        """Whether a sweep of expired entries is due: the last one, by any
        process on this host, was over ``interval`` seconds ago. Kept as
        the modification time of a file beside the locks, not as a cache
        key: the store holds only session records. Two processes may both
        find it due at once; a sweep twice over does no harm.
        """
        if not self.sweeps or self._lock_dir is None:
            return False

        marker = os.path.join(self._lock_dir, "swept")

        try:
            if time.time() - os.stat(marker).st_mtime < interval:
                return False
        except FileNotFoundError:
            pass
        except OSError:
            return False

        try:
            with open(marker, "a"):
                os.utime(marker)
        except OSError:
            return False

        return True

    def lock(self, kind: str, name: str) -> Lock:
        """A short lock on ``name`` among the locks of one ``kind``. Callers
        that hold several take them in one order (session, user, bucket).
        """
        if self._lock_dir is not None:
            return FileLock(self._lock_dir, kind, name)

        return CacheLock(self.cache, self.key("lock", kind, name))


def filesystem_path(cache: FileSystemCache) -> str:
    """The directory of a FileSystemCache, for the lock files beside it.

    cachelib has no public accessor; ``_path`` is one of the two attributes
    of cachelib's that flask_pow reads (see docs/architecture.rst).
    """
    path = getattr(cache, "_path", None)

    if not isinstance(path, str):
        raise TypeError(
            "Cannot find the directory of this FileSystemCache: this cachelib"
            " version keeps it elsewhere."
        )

    return os.path.abspath(path)


def remove_expired_files(directory: str, now: float) -> int:
    """Delete the entries of a FileSystemCache directory that expired
    before ``now``; return how many. cachelib deletes expired files only
    when it prunes past a threshold, so with ``threshold=0`` (what flask_pow
    asks for) every idled-out session would stay on disk for good.

    Reads the one thing cachelib's file format puts first in every entry,
    its expiry as a 4-byte Unix time (0 for none); cachelib's own
    management files (``__wz_cache*``) are left alone.
    """
    removed = 0

    try:
        entries = list(os.scandir(directory))
    except OSError as e:
        raise _unavailable(e) from e

    for entry in entries:
        if entry.name.startswith("__wz_cache") or not entry.is_file():
            continue

        try:
            with open(entry.path, "rb") as f:
                header = f.read(4)

            if len(header) != 4:
                continue

            (expires,) = struct.unpack("I", header)

            if expires != 0 and expires <= now:
                os.remove(entry.path)
                removed += 1
        except FileNotFoundError:
            # Rewritten or removed by another process meanwhile.
            continue
        except OSError as e:
            raise _unavailable(e) from e

    return removed


class StoredBytes:
    """The serializer of flask_pow's copy of a cachelib cache: the JSON
    bytes flask_pow encodes are stored as they are, and read back as bytes;
    nothing is pickled or unpickled, whatever the store holds.
    """

    def dumps(self, value: bytes | str) -> bytes:
        """Bytes as they are; text (a lock's owner) as UTF-8."""
        if isinstance(value, str):
            return value.encode("utf-8")

        if not isinstance(value, bytes):
            raise TypeError(f"flask_pow stores bytes, not {type(value).__name__}")

        return value

    def loads(self, value: t.Any) -> t.Any:
        """What the cache holds, as it is."""
        return value

    def dump(self, value: bytes | str, f: t.IO[bytes]) -> None:
        """Into a file (:class:`cachelib.FileSystemCache`)."""
        f.write(self.dumps(value))

    def load(self, f: t.IO[bytes]) -> bytes:
        """From a file (:class:`cachelib.FileSystemCache`)."""
        return f.read()


def _decode(value: t.Any) -> t.Any:
    """A value flask_pow encoded itself; anything else (a value the client
    unpickled, text that is not tagged JSON) reads as a miss.
    """
    if not isinstance(value, bytes):
        return None

    try:
        return serialization.loads(value)
    except ValueError:
        return None


def _unavailable(error: Exception) -> StoreUnavailable:
    # Only the type is logged: a cache error message may quote a key, and
    # keys hold session ids.
    logger.error("The credentials store failed: %s", type(error).__name__)
    return StoreUnavailable()
