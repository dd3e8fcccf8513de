"""Where credentials live: the few operations the credentials cache needs
from a backend, with the same meaning on every backend.

:class:`~flask_pow.CredentialsCache` applies the session rules
(:mod:`flask_pow.policy`) over a :class:`SessionStore`; it never sees keys,
locks or scripts. Two implementations: one over any cachelib cache
(:mod:`flask_pow.stores.cachelib`), one native for Redis and Valkey
(:mod:`flask_pow.stores.redis`); :func:`store_for` picks one.
``tests/test_store_contract.py`` runs the same tests against both, on every
backend the suite can start.

A store holds three kinds of record: sessions, each user's cached values,
and each user's index of sessions (session id -> expiry), plus whatever it
needs to list users. Every deadline it is given is a Unix time from the
caller's clock (``now``), so that a test can move time for both at once.
Every failure to reach or write the store is :exc:`StoreUnavailable`; a
corrupt or foreign record reads as missing and is logged once
(:class:`CorruptLog`); both implementations parse records with
:mod:`flask_pow.stores.parsed`.
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


def unavailable(error: Exception) -> StoreUnavailable:
    """The :exc:`StoreUnavailable` to raise for a backend's error, logged.

    :meta private:
    """
    # Only the type is logged: a cache error message may quote a key, and
    # keys hold session ids.
    logger.error("The credentials store failed: %s", type(error).__name__)
    return StoreUnavailable()


@dataclasses.dataclass(frozen=True)
class Found:
    """A session as :meth:`SessionStore.read` finds it."""

    record: SessionRecord
    #: The user's cached values, or ``None`` if the user record is missing.
    user_data: dict[str, t.Any] | None
    #: Served from a copy that may lag the store (the Redis local cache): a
    #: token that does not match it is checked against the store before it
    #: is refused.
    maybe_stale: bool = False


@dataclasses.dataclass(frozen=True)
class Swapped:
    """What :meth:`SessionStore.swap` did."""

    #: Whether the new record was written.
    ok: bool
    #: When not written: the session as it is now (``None`` if it is gone).
    current: SessionRecord | None = None
    #: Not written because another writer held the session and did not
    #: finish in time, so ``current`` may be overwritten yet (lock-based
    #: stores only, never when waiting).
    undecided: bool = False


class SessionStore(t.Protocol):
    """What a backend provides. All of it is atomic per operation: a reader
    never sees half a write, and two writers of one session never both win.
    """

    def new_session_id(self, user_key: str, now: float) -> str:
        """An id for a new session of this user (a backend may put a
        routing prefix in it).
        """

    def read(self, session_id: str, *, fresh: bool = False) -> Found | None:
        """The session with its user's cached values; ``None`` if there is
        no such session, or if its user's index does not list it (the
        store lost keys: refused, so that revocation, which works through
        the index, never misses a live session). One round trip where the
        backend allows, none where it keeps a local copy that the server
        invalidates (:attr:`Found.maybe_stale`); ``fresh`` skips that copy.
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
        the stored one still has the token digest ``expected`` (a
        compare-and-set), and refresh the index. The user's values are kept
        as they are; ``user_data`` is written only where the user record is
        missing. Without ``wait`` a lock-based store gives up after a short
        wait for a concurrent writer and says :attr:`Swapped.undecided`.
        """

    def delete(
        self, user_key: str, session_ids: c.Sequence[str], now: float
    ) -> list[str]:
        """Delete sessions of one user and unindex them; the user's records
        go when no session is left. Returns the ids that were there.
        """

    def session_ids(self, user_key: str) -> list[str]:
        """The ids in a user's index (live or not yet pruned)."""

    def sessions(self, user_key: str, now: float) -> list[SessionRecord]:
        """The records of a user's indexed sessions, in no order; the
        caller filters them.
        """

    def write_user(
        self, user_key: str, user_data: dict[str, t.Any], now: float
    ) -> bool:
        """Replace a user's cached values if they have a live session;
        return whether they had one (nothing is written otherwise).
        """

    def users(self, now: float) -> list[tuple[str, dict[str, t.Any]]]:
        """``(user key, cached values)`` of every user with a live session."""

    def cleanup(self, now: float) -> int:
        """Delete records that expired before ``now`` where the backend
        keeps them; return how many (0 where it expires keys by itself).
        """


def store_for(
    config: PowConfig, secrets: c.Callable[[], c.Sequence[str | bytes]]
) -> SessionStore:
    """The store for ``POW_CACHE``: native on a cachelib ``RedisCache`` or
    ``ValkeyCache`` (with its local cache if ``POW_REDIS_LOCAL_CACHE``),
    over the cachelib API for any other cache.

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


# -- keys and caps, for the implementations --------------------------------

#: Length of a user's tag, and of the prefix it gives session ids.
TAG_LENGTH = 8
#: Length of a session id: a tag, then 22 random characters.
SESSION_ID_LENGTH = TAG_LENGTH + 22


def tag_of(session_id: str) -> str:
    """The tag a session id starts with: its user's, under the secret key
    that issued it.
    """
    return session_id[:TAG_LENGTH]


def is_session_id(session_id: str) -> bool:
    """Whether a session id has the shape a store issues. Any other (one
    from before ids carried a tag included) names no session, and no key is
    read for it.
    """
    return len(session_id) == SESSION_ID_LENGTH


def user_tags(user_key: str, secrets: c.Iterable[str | bytes]) -> list[str]:
    """A user's tags: derived from the user key and the application's
    secret key (and each of its fallbacks, whose sessions may still be
    live), never stored. Every key of a user's records carries one, and
    every session id starts with one, so that:

    - two applications with different secret keys that share a store never
      read, list or end each other's records;
    - revocation finds a user's sessions from the user key alone, so no
      lost key can hide them;
    - on Redis Cluster, one user's records live in one slot (the tag is
      the hash tag);
    - the tag at the start of a session id does not tell who the user is.
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
    """The ids a cap on a user's credentials ends first: least recently
    used first, none of ``keep``. A credential was last used when its
    current token was issued (a login, a rotation, a restore); a
    remember-me credential also counts as used when the session it last
    restored was. An indexed id whose record is gone goes first.
    """
    issued = {sid: record.inserted_at for sid, record in records.items()}

    def last_used(session_id: str) -> tuple[float, str]:
        record = records.get(session_id)

        if record is None:
            return -math.inf, session_id

        used = record.inserted_at

        if record.kind == "remember" and record.linked in issued:
            used = max(used, issued[record.linked])

        return used, session_id

    return sorted((sid for sid in ids if sid not in keep), key=last_used)


def user_value(user_key: str, user_data: dict[str, t.Any]) -> dict[str, t.Any]:
    """A user record as stored: the key is kept beside the data, so a
    record moved under another key is refused.
    """
    return {"key": user_key, "data": user_data}


# -- what is logged ---------------------------------------------------------


class CorruptLog:
    """Logs, once per record and process, that a record was ignored.

    A record is named by a digest of its key: keys hold session ids, which
    are not for logs.
    """

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def __call__(self, kind: str, key: str) -> None:
        name = hashlib.sha256(key.encode()).hexdigest()[:12]

        if name in self._warned:
            return

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
    user's index no longer holds it: the store lost keys (eviction, a
    flush, a failover). Refusing is what keeps revocation from failing
    open: a session that "log out everywhere" cannot find must not work.
    """

    def __init__(self) -> None:
        self.logged = False

    def __call__(self, session_id: str) -> None:
        if not self.logged:
            self.logged = True
            logger.warning(
                "Refused a session that its user's index no longer lists: the"
                " credentials store lost keys (eviction under maxmemory, a"
                " flush, a failover). Its holder must log in again. Logged"
                " once per process."
            )
