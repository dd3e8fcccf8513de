"""Where credentials live: the few operations the credentials cache needs
from a backend, the same on every backend (``tests/stores/test_contract.py``).
Deadlines are Unix times from the caller's clock (``now``). Every failure to
reach or write the store is :exc:`StoreUnavailable`; a corrupt or foreign
record reads as missing and is logged once (:class:`CorruptLog`).
"""

from __future__ import annotations

import base64
import collections.abc as c
import dataclasses
import hashlib
import hmac
import logging
import math
import typing as t

from werkzeug.exceptions import ServiceUnavailable

from ..records import SessionRecord

if t.TYPE_CHECKING:  # pragma: no cover
    from ..config import PowConfig

logger = logging.getLogger("flask_pow")


class StoreUnavailable(ServiceUnavailable):
    """The credentials store could not be read or written. Answered as
    ``503 Service Unavailable``; the client's cookie is left alone, so the
    same session works again once the store is back.
    """

    description = "The session store is unavailable. Please try again in a moment."


def unavailable(
    error: Exception, server: str, detail: str | None = None
) -> StoreUnavailable:
    """The :exc:`StoreUnavailable` to raise for a backend's error, logged
    with the server that failed.

    :param server: where the store is (a host and port, a socket, a
        folder), never with a password.
    :param detail: what the error says, given only by a caller that knows
        it quotes no key (keys hold session ids); by default an
        :exc:`OSError`'s text for its errno, without its file name.
    """
    # Not the error's message: a cache error may quote a key.
    if detail is None and isinstance(error, OSError):
        detail = error.strerror

    what = type(error).__name__ + (f": {detail}" if detail else "")
    logger.error("The credentials store (%s) failed: %s", server, what)
    return StoreUnavailable()


@dataclasses.dataclass(frozen=True)
class Found:
    """A session as :meth:`SessionStore.read` finds it."""

    record: SessionRecord
    #: The user's cached values, or ``None`` if the user record is missing.
    user_data: dict[str, t.Any] | None
    #: Served from a copy that may lag the store (the Redis local cache).
    maybe_stale: bool = False


@dataclasses.dataclass(frozen=True)
class Swapped:
    """What :meth:`SessionStore.swap` did."""

    #: Whether the new record was written.
    ok: bool
    #: When not written: the session as it is now (``None`` if it is gone).
    current: SessionRecord | None = None
    #: Not written because another writer held the lock too long:
    #: ``current`` may be overwritten yet.
    undecided: bool = False


class SessionStore(t.Protocol):
    """What a backend provides. All of it is atomic per operation: a reader
    never sees half a write, and two writers of one session never both win.
    """

    def new_session_id(self, user_key: str, now: float) -> str:
        """An id for a new session of this user (with a routing prefix)."""

    def read(self, session_id: str, *, fresh: bool = False) -> Found | None:
        """The session with its user's cached values; ``None`` if there is
        none, or if its user's index does not list it (revocation works
        through the index). ``fresh`` skips a local copy (:attr:`Found.maybe_stale`).
        """

    def read_session(self, session_id: str) -> SessionRecord | None:
        """The session record alone."""

    def create(
        self,
        record: SessionRecord,
        user_data: dict[str, t.Any],
        now: float,
        *,
        max_sessions: int,
        keep: c.Collection[str] = (),
    ) -> list[str]:
        """Write a new session, index it, and write the user's values. If
        the user then has more than ``max_sessions`` live credentials,
        end the least recently used ones (:func:`least_recently_used`),
        never ``record`` nor the ids in ``keep``, and return their ids.
        """

    def swap(
        self,
        record: SessionRecord,
        expected: str,
        now: float,
        *,
        user_data: dict[str, t.Any],
        wait: bool,
    ) -> Swapped:
        """Write ``record`` over the session of the same id if, and only if,
        the stored one has the token digest ``expected``; ``user_data`` is
        written only where the user record is missing. Without ``wait`` a
        lock-based store may give up (:attr:`Swapped.undecided`).
        """

    def delete(
        self, user_key: str, session_ids: c.Sequence[str], now: float
    ) -> list[str]:
        """Delete and unindex sessions of one user (and the user's records
        with the last); return the ids that were there.
        """

    def session_ids(self, user_key: str) -> list[str]:
        """The ids in a user's index (live or not yet pruned)."""

    def sessions(self, user_key: str, now: float) -> list[SessionRecord]:
        """The records of a user's indexed sessions, unfiltered, in no order."""

    def write_user(
        self, user_key: str, user_data: dict[str, t.Any], now: float
    ) -> bool:
        """Replace a user's cached values if they have a live session;
        return whether they had one.
        """

    def users(self, now: float) -> list[tuple[str, dict[str, t.Any]]]:
        """``(user key, cached values)`` of every user with a live session."""

    def cleanup(self, now: float) -> int:
        """Delete records expired before ``now``; return how many."""


def store_for(
    config: PowConfig, secrets: c.Callable[[], c.Sequence[str | bytes]]
) -> SessionStore:
    """The store for ``POW_CACHE``: native on a cachelib ``RedisCache`` or
    ``ValkeyCache``, over the cachelib API for any other cache.

    :param config: the application's settings.
    :param secrets: the application's secret keys, current first; called
        at each use, as the key may be set after ``init_app``.
    """
    from cachelib.redis_base import BaseRedisCache

    if not isinstance(config.cache, BaseRedisCache):
        from .cachelib import CachelibSessionStore

        return CachelibSessionStore(config.cache, config.namespace, secrets)

    from .redis import RedisSessionStore

    store = RedisSessionStore(config.cache, config.namespace, secrets)

    if config.redis_local_cache:
        store.keep_local_copies(
            ttl=config.redis_local_cache_ttl,
            staleness=config.redis_local_cache_staleness,
            max_entries=config.redis_local_cache_max_entries,
            max_bytes=config.redis_local_cache_max_bytes,
        )

    return store


# -- for the implementations ------------------------------------------------

#: Length of a user's tag, and of the prefix it gives session ids.
TAG_LENGTH = 8
#: Length of a session id: a tag, then 22 random characters.
SESSION_ID_LENGTH = TAG_LENGTH + 22


def is_session_id(session_id: str) -> bool:
    """Whether an id has the shape a store issues: any other names nothing."""
    return len(session_id) == SESSION_ID_LENGTH


def user_tags(user_key: str, secrets: c.Iterable[str | bytes]) -> list[str]:
    """A user's tags, one per secret key, current first (see
    ``docs/security.rst``). A tag also puts one user's records in one Redis
    Cluster slot, and hides the user key from the session id.
    """
    tags = []

    for secret in secrets:
        key = secret if isinstance(secret, bytes) else str(secret).encode()
        mac = hmac.new(key, b"flask_pow.tag:" + user_key.encode(), "sha256")
        tag = base64.urlsafe_b64encode(mac.digest()).decode()[:TAG_LENGTH]

        if tag not in tags:
            tags.append(tag)

    if not tags:
        raise RuntimeError(
            "flask_pow derives the keys of each user's records from SECRET_KEY: set it."
        )

    return tags


def least_recently_used(
    ids: c.Iterable[str],
    records: c.Mapping[str, SessionRecord],
    keep: c.Collection[str],
) -> list[str]:
    """The ids a cap on a user's credentials ends first, none of ``keep``:
    ids whose record is gone, then by last use (its token's issue, or for a
    remember-me credential that of the session it last restored).
    """

    def last_used(session_id: str) -> tuple[float, str]:
        if (record := records.get(session_id)) is None:
            return -math.inf, session_id

        restored = (
            records.get(record.linked or "") if record.kind == "remember" else None
        )
        used = max(record.inserted_at, restored.inserted_at if restored else 0.0)
        return used, session_id

    return sorted((sid for sid in ids if sid not in keep), key=last_used)


def user_value(user_key: str, user_data: dict[str, t.Any]) -> dict[str, t.Any]:
    """A user record as stored: the key beside the data, so that a record
    moved under another key is refused.
    """
    return {"key": user_key, "data": user_data}


class CorruptLog:
    """Logs, once per record and process, that a record was ignored, named
    by a digest of its key (keys hold session ids, which are not for logs).
    """

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def __call__(self, kind: str, key: str) -> None:
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


class UnvouchedLog:
    """Logs, once per process, that a session was refused because its
    user's index no longer lists it.
    """

    logged = False

    def __call__(self, session_id: str) -> None:
        if not self.logged:
            self.logged = True
            logger.warning(
                "Refused a session that its user's index no longer lists: the"
                " credentials store lost keys (eviction, a flush, a failover)."
                " Its holder must log in again. Logged once per process."
            )
