"""The short locks a cachelib store writes under (cachelib has no
compare-and-set): a key written with ``add``, or on a
:class:`~cachelib.FileSystemCache`, whose ``add`` checks then sets, an
``flock`` on a file beside its directory, which the kernel drops if the
holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
import typing as t

from cachelib import BaseCache

from . import StoreUnavailable
from . import unavailable

#: How long a lock lives if its holder dies without releasing it.
LOCK_TTL = 5

#: A lock held: the key and owner of a cache lock, or a lock file's descriptor.
Held = tuple[str, bytes] | int


@t.overload
def lock(
    cache: BaseCache, prefix: str, lock_dir: str, kind: str, name: str
) -> Held: ...
@t.overload
def lock(
    cache: BaseCache,
    prefix: str,
    lock_dir: str,
    kind: str,
    name: str,
    wait: float | None,
) -> Held | None: ...
def lock(
    cache: BaseCache,
    prefix: str,
    lock_dir: str,
    kind: str,
    name: str,
    wait: float | None = None,
) -> Held | None:
    """Take a short lock on ``name`` among the locks of one ``kind``
    (``"session"`` before ``"users"``): a lock file in ``lock_dir`` if there
    is one, else a key under ``prefix``. Waits up to ``wait`` seconds, then
    returns ``None``; without ``wait``, up to the lock's TTL, then raises
    :exc:`StoreUnavailable`.
    """
    deadline = time.monotonic() + (LOCK_TTL + 1 if wait is None else wait)
    delay = 0.001
    held: Held = f"{prefix}lock:{kind}:{name}", os.urandom(8).hex().encode()

    try:
        if lock_dir:
            # 64 files per kind, shared by hash: two names on one file only
            # wait for each other.
            stripe = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 64
            path = os.path.join(lock_dir, f"{kind}-{stripe:02d}")
            held = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

        # At least one try, then until the deadline.
        while delay == 0.001 or time.monotonic() < deadline:
            if isinstance(held, int):
                with contextlib.suppress(BlockingIOError):
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return held
            elif cache.add(*held, timeout=LOCK_TTL):
                return held

            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    except Exception as e:
        raise unavailable(e, _where(cache, lock_dir)) from e

    if isinstance(held, int):
        os.close(held)

    if wait is None:
        raise StoreUnavailable("Timed out waiting for a session store lock.")

    return None


def unlock(cache: BaseCache, held: Held) -> None:
    """Let a lock go."""
    if isinstance(held, int):
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)
        return

    # Not atomic (a holder stalled past the TTL may delete another's). A
    # memcached client may give the value back as text.
    try:
        if cache.get(held[0]) in (held[1], held[1].decode()):
            cache.delete(held[0])
    except Exception as e:
        # Logged, not raised over the work's own error: the lock expires.
        unavailable(e, _where(cache, ""))


def _where(cache: BaseCache, lock_dir: str) -> str:
    """The locks' store, as log lines name it: the lock folder, or the cache."""
    return f"locks at {lock_dir}" if lock_dir else type(cache).__name__
