"""What a :class:`~cachelib.FileSystemCache` needs beyond cachelib: its
directory (cachelib has no public accessor), and the sweep of its expired
files (cachelib removes them only when it prunes).
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import logging
import os
import struct
import time

from cachelib import FileSystemCache

from . import StoreUnavailable
from . import unavailable

logger = logging.getLogger("flask_pow")

#: Seconds between sweeps of expired records, among all processes.
CLEANUP_INTERVAL = 3600
#: Bytes asked for per read: most records take one.
_CHUNK = 16384
#: cachelib's header of each file: when it expires, a Unix time (0: never).
_EXPIRY = struct.Struct("I")


def path(cache: FileSystemCache) -> str:
    """The directory of a FileSystemCache."""
    directory = getattr(cache, "_path", None)

    if not isinstance(directory, str):
        raise TypeError(
            "Cannot find the directory of this FileSystemCache: this cachelib"
            " version keeps it elsewhere."
        )

    return os.path.abspath(directory)


def reads_directly(cache: FileSystemCache) -> bool:
    """Whether :func:`read_files` may stand in for the cache's ``get``: it
    is cachelib's own, not a subclass's, and names files as cachelib does.
    """
    return type(cache).get is FileSystemCache.get and callable(
        getattr(cache, "_get_filename", None)
    )


def read_files(
    cache: FileSystemCache, keys: c.Iterable[str], now: float
) -> list[bytes | None]:
    """The values under ``keys``, as cachelib's ``get`` reads them with a
    serializer that keeps bytes as they are, in half its time: one
    unbuffered ``os.open`` and ``read`` per file where cachelib builds a
    file object and reads it twice (the authenticated request's three
    files, on the default store).

    A file is cachelib's format: a 4-byte expiry (0: none), then the value.
    A missing, expired or truncated file is ``None``. A file that is there
    and cannot be read raises :exc:`OSError` (cachelib would log it, and
    read it as missing: a logout).
    """
    found: list[bytes | None] = []

    for key in keys:
        try:
            fd = os.open(cache._get_filename(key), os.O_RDONLY)
        except FileNotFoundError:
            found.append(None)
            continue

        try:
            data = os.read(fd, _CHUNK)

            # Until the end of the file: a read may return less (NFS).
            while more := os.read(fd, _CHUNK):
                data += more
        finally:
            os.close(fd)

        if len(data) < 4:
            found.append(None)
            continue

        expires = _EXPIRY.unpack_from(data)[0]
        found.append(data[4:] if expires == 0 or expires >= now else None)

    return found


def sweep_due(lock_dir: str) -> bool:
    """Whether to sweep now: at most once per :data:`CLEANUP_INTERVAL` among
    the processes sharing the directory, by a marker file's time, touched
    here (in the caller's thread: the sweep itself runs in one of its own).
    """
    marker = os.path.join(lock_dir, "swept")

    try:
        if os.path.exists(marker) and (
            time.time() - os.path.getmtime(marker) < CLEANUP_INTERVAL
        ):
            return False

        with open(marker, "a"):
            os.utime(marker)
    except OSError:
        return False

    return True


def sweep(directory: str) -> None:
    """Remove expired files, and log how many."""
    try:
        removed = remove_expired_files(directory, time.time())
    except StoreUnavailable:
        return

    if removed:
        logger.info("Removed %d expired records from the store.", removed)


def remove_expired_files(directory: str, now: float) -> int:
    """Delete a FileSystemCache's entries that expired before ``now``, by
    the 4-byte expiry its file format puts first (0: none), but not its own
    ``__wz_cache*`` files; return how many.
    """
    removed = 0

    try:
        for entry in list(os.scandir(directory)):
            if entry.name.startswith("__wz_cache") or not entry.is_file():
                continue

            # Rewritten or removed by another process meanwhile: skipped.
            with contextlib.suppress(FileNotFoundError):
                with open(entry.path, "rb") as f:
                    header = f.read(4)

                if len(header) == 4 and 0 != struct.unpack("I", header)[0] <= now:
                    os.remove(entry.path)
                    removed += 1
    except OSError as e:
        raise unavailable(e, f"FileSystemCache at {directory}") from e

    return removed
