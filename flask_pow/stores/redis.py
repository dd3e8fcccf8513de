"""The store protocol on Redis (or Valkey), with native structures: one
round trip for an authenticated request, atomic scripts for every
multi-key write, and keys laid out for Redis Cluster.

Every key of one user carries the same hash tag, ``{<tag>}``, so that the
records one operation touches live in one cluster slot. The tag is 8
characters of an HMAC of the user key under the application's secret key:
never stored, so revocation finds a user's sessions from the user key alone
whatever the store lost, and meaningless to whoever reads a cookie. It is
also the first 8 characters of each session id, so a request addresses its
session, its user and their index in one slot from the cookie alone.

Keys, after the cache's own prefix and ``POW_NAMESPACE``:

``session:{tag}<id>``
    the session record (JSON), with a TTL.
``user:{tag}<user key>``
    the user's cached columns (JSON), TTL of their latest session.
``sessions:{tag}<user key>``
    a sorted set: session ids scored by expiry; every write prunes the
    expired ones, at a cost that does not grow with the user's sessions. A
    session is honoured only while it is in it: a lost index fails closed.
``users``
    a sorted set: ``[tag, user key]`` (JSON) scored by latest expiry.

No path uses ``KEYS``, ``SCAN`` or ``FLUSHDB``.
"""

from __future__ import annotations

import collections.abc as c
import functools
import logging
import time
import typing as t

from cachelib.redis_base import BaseRedisCache

from .. import serialization
from ..records import SessionRecord
from ..records import new_session_id
from . import TAG_LENGTH
from . import CorruptLog
from . import Found
from . import Swapped
from . import UnvouchedLog
from . import is_session_id
from . import redis_scripts as scripts
from . import tag_of
from . import unavailable
from . import user_tags
from . import user_value
from .parsed import ParsedRecords
from .redis_local import LocalCache

logger = logging.getLogger("flask_pow")

_T = t.TypeVar("_T")


#: The oldest server flask_pow works with (Valkey reports 7.2.4).
MINIMUM_VERSION = (7, 0)


def _version(info: t.Mapping[str, t.Any]) -> tuple[int, ...]:
    text = str(info.get("redis_version", "0"))
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


#: Error replies of a healthy server that refuses for now: out of memory
#: under ``maxmemory`` with ``noeviction``, a replica after a failover, a
#: primary cut off from its replicas or its disk, a server still loading,
#: a script running too long. Each is a 503, not a 500.
REFUSALS = frozenset(
    {"OOM", "READONLY", "MASTERDOWN", "LOADING", "BUSY", "NOREPLICAS", "MISCONF"}
)


class _Errors(t.NamedTuple):
    #: The client errors that mean the server cannot be reached.
    unreachable: tuple[type[Exception], ...]
    #: What a server that answered with an error reply raises.
    reply: tuple[type[Exception], ...]
    #: A script called by SHA that the server does not have (a restart).
    no_script: tuple[type[Exception], ...]


@functools.cache
def _errors() -> _Errors:
    """The error types of redis-py and, where installed, valkey-py (a fork
    of it, with the same names).
    """
    import redis

    clients: list[t.Any] = [redis]

    try:
        import valkey
    except ImportError:
        pass
    else:
        clients.append(valkey)

    unreachable: list[type[Exception]] = [OSError]

    for client in clients:
        errors = client.exceptions
        unreachable += [
            errors.ConnectionError,
            errors.TimeoutError,
            errors.ClusterDownError,
            errors.TryAgainError,
        ]

    return _Errors(
        tuple(unreachable),
        tuple(client.exceptions.ResponseError for client in clients),
        tuple(client.exceptions.NoScriptError for client in clients),
    )


def _code(error: Exception) -> str:
    """The code of an error reply."""
    # The client turns some replies into classes of their own and drops the
    # code from the message (OutOfMemoryError, ReadOnlyError,
    # MasterDownError); the others keep it as the message's first word.
    name = type(error).__name__
    return {
        "OutOfMemoryError": "OOM",
        "ReadOnlyError": "READONLY",
        "MasterDownError": "MASTERDOWN",
    }.get(name, str(error).split(" ", 1)[0])


def client_of(cache: BaseRedisCache) -> t.Any:
    """The Redis client a cachelib ``RedisCache`` or ``ValkeyCache`` holds,
    from its ``_write_client`` (cachelib has no public accessor), checked so
    that a cachelib that renames it gives a clear error.
    """
    client = getattr(cache, "_write_client", None)

    if client is None or not hasattr(client, "register_script"):
        raise TypeError(
            f"Cannot find the Redis client of {type(cache).__name__}: this"
            " cachelib version keeps it elsewhere. Set POW_REDIS_URL instead."
        )

    return client


class RedisSessionStore:
    """:class:`~flask_pow.stores.SessionStore` on a cachelib
    ``RedisCache`` or ``ValkeyCache``, using the client it holds. Chosen by
    :class:`~flask_pow.Pow` when ``POW_CACHE`` is one of those, or when
    ``POW_REDIS_URL`` is set.
    """

    def __init__(
        self,
        cache: BaseRedisCache,
        namespace: str,
        secrets: t.Callable[[], c.Sequence[str | bytes]],
    ) -> None:
        self.client: t.Any = client_of(cache)
        self._secrets = secrets
        # cachelib's public key_prefix: a string, or a function giving one.
        prefix = cache.key_prefix
        prefix = prefix if isinstance(prefix, str) else prefix()
        self.prefix = f"{prefix or ''}{namespace}:"
        self.corrupt = CorruptLog()
        self.parsed = ParsedRecords(self.corrupt, report_undecodable=True)
        self.unvouched = UnvouchedLog()
        self._version_checked = False
        errors = _errors()
        self._errors = errors.unreachable
        self._responses = errors.reply
        self._no_script = errors.no_script
        # A RedisCluster (redis-py or valkey) routes by slot; it has nodes.
        self._cluster = hasattr(self.client, "get_nodes")

        def register(source: str) -> t.Any:
            # Lua has no constants from Python: put the tag length in.
            return self.client.register_script(
                source.replace("TAG_END", str(TAG_LENGTH + 1))
            )

        #: The server's clock minus this worker's, from the last read.
        self._offset: float | None = None
        self._read = register(scripts.READ)
        self._write = register(scripts.WRITE)
        self._delete = register(scripts.DELETE)
        self._update_user = register(scripts.UPDATE_USER)
        self._sessions = register(scripts.SESSIONS)
        self._users = register(scripts.USERS)

    # -- plumbing -----------------------------------------------------------

    def _call(self, operation: t.Callable[[], _T]) -> _T:
        if not self._version_checked:
            self._check_version()

        try:
            return operation()
        except self._errors as e:
            raise unavailable(e) from e
        except self._responses as e:
            code = _code(e)

            if code not in REFUSALS:
                raise

            if code == "READONLY":
                # A failover: the connections reach a replica now. Drop
                # them, so that the next request connects again (to the new
                # primary, behind the same address), and so do the local
                # copy's channels.
                self._disconnect()

                if self.local is not None:
                    self.local.close()

            raise unavailable(e) from e

    def _check_version(self) -> None:
        """Refuse a server older than :data:`MINIMUM_VERSION`, once, with
        what to do: logins use ``SET ... NX GET`` and writes ``PEXPIRE ...
        GT``, and the read scripts declare ``no-writes``, all Redis 7.0.
        """
        self._version_checked = True

        try:
            version = self._server_version()
        except self._errors as e:
            self._version_checked = False
            raise unavailable(e) from e

        self._check_eviction()

        if version < MINIMUM_VERSION:
            self._version_checked = False
            raise RuntimeError(
                f"flask_pow needs Redis {'.'.join(map(str, MINIMUM_VERSION))} or"
                f" later (or Valkey); this server is"
                f" {'.'.join(map(str, version))}. Upgrade it, or use another"
                " POW_CACHE."
            )

    def _check_eviction(self) -> None:
        """Warn, once, when the server may evict flask_pow's keys: every
        key has a TTL, so even the ``volatile-*`` policies take them. A lost
        key logs its user out (sessions fail closed), and under memory
        pressure that is many users at once. Managed services that refuse
        ``CONFIG GET`` are not asked again.
        """
        try:
            found = self.client.config_get("maxmemory-policy")
        except (*self._errors, *self._responses):
            return

        policies = {
            str(value)
            for value in (
                found.values()
                if not any(isinstance(v, dict) for v in found.values())
                else (p for node in found.values() for p in node.values())
            )
        }

        evicting = sorted(policies - {"noeviction"})

        if evicting:
            logger.warning(
                "Redis may evict flask_pow's keys (maxmemory-policy %s): under"
                " memory pressure users would be logged out. Set"
                " maxmemory-policy noeviction on the server that holds"
                " sessions (a full server then answers 503 to logins, and"
                " logged-in users stay logged in).",
                ", ".join(evicting),
            )

    def _server_version(self) -> tuple[int, ...]:
        info = self.client.info("server")

        # A cluster client answers for every node: the oldest counts.
        if info and all(isinstance(value, dict) for value in info.values()):
            return min(_version(node) for node in info.values())

        return _version(info)

    def _disconnect(self) -> None:
        pool = getattr(self.client, "connection_pool", None)

        if pool is not None:
            pool.disconnect()

    def _session_key(self, session_id: str) -> str:
        tag = tag_of(session_id)
        return f"{self.prefix}session:{{{tag}}}{session_id[TAG_LENGTH:]}"

    def _session_prefix(self, tag: str) -> str:
        # Session keys are this plus the session id without its tag.
        return f"{self.prefix}session:{{{tag}}}"

    def _user_key(self, tag: str, user_key: str) -> str:
        return f"{self.prefix}user:{{{tag}}}{user_key}"

    def _index_key(self, tag: str, user_key: str) -> str:
        return f"{self.prefix}sessions:{{{tag}}}{user_key}"

    @property
    def _users_key(self) -> str:
        return f"{self.prefix}users"

    def _parse_session(
        self, session_id: str, value: bytes | None
    ) -> SessionRecord | None:
        return self.parsed.session(session_id, value, self._session_key(session_id))

    def _tags(self, user_key: str) -> list[str]:
        return user_tags(user_key, self._secrets())

    # -- the clock ----------------------------------------------------------

    #: This worker's clock. Tests may replace it (a worker whose clock is
    #: off).
    local_clock: t.Callable[[], float] = staticmethod(time.time)

    def clock(self) -> float:
        """The server's time, as this worker estimates it: its own clock
        plus the offset measured by the last read (every read asks the
        server for ``TIME`` in the same round trip). Every deadline of a
        session (expiry, grace, absolute timeout) is written and compared in
        this clock, so workers whose clocks disagree still agree on them.
        """
        if self._offset is None:
            sent = self.local_clock()
            seconds, micros = self._call(lambda: self.client.time())
            self._note_time(seconds, micros, sent)

        assert self._offset is not None
        return self.local_clock() + self._offset

    def _note_time(self, seconds: t.Any, micros: t.Any, sent: float) -> None:
        # The server read its clock somewhere between sending and receiving:
        # the midpoint is off by at most half a round trip.
        received = self.local_clock()
        server = int(seconds) + int(micros) / 1_000_000
        self._offset = server - (sent + received) / 2

    # -- reading a session --------------------------------------------------

    def read_session(self, session_id: str) -> SessionRecord | None:
        if not is_session_id(session_id):
            return None

        key = self._session_key(session_id)
        record = self._parse_session(
            session_id, self._call(lambda: self.client.get(key))
        )

        # Another application's session (other secret keys) is not ours to
        # read, list or end.
        if record is None or tag_of(session_id) not in self._tags(record.user_key):
            return None

        return record

    def read(self, session_id: str, *, fresh: bool = False) -> Found | None:
        if not is_session_id(session_id):
            return None

        local = self.local

        if local is not None and not fresh:
            held = local.get(session_id)

            if held is not None:
                return self._found(session_id, held[0], held[1], maybe_stale=True)

        # Taken before the read: see LocalCache.put.
        epoch = local.epoch if local is not None else 0
        tag = tag_of(session_id)
        key = self._session_key(session_id)
        sent = self.local_clock()
        args = [self._user_key(tag, ""), self._index_key(tag, ""), session_id]
        values = self._call(lambda: self._read(keys=[key], args=args))
        self._note_time(values[0], values[1], sent)
        values = values[2:]

        if not values:
            return None

        if len(values) > 2 and not int(values[2]):
            if self._parse_session(session_id, values[0]) is not None:
                self.unvouched(session_id)

            return None

        user_value = values[1] if len(values) > 1 else None
        found = self._found(session_id, values[0], user_value)

        if local is not None and found is not None and found.user_data is not None:
            user_key = found.record.user_key
            keys = [key, self._user_key(tag, user_key), self._index_key(tag, user_key)]
            local.put(session_id, (values[0], user_value), keys, epoch)

        return found

    def _found(
        self,
        session_id: str,
        session: bytes | None,
        user: bytes | None,
        *,
        maybe_stale: bool = False,
    ) -> Found | None:
        record = self._parse_session(session_id, session)

        if record is None:
            return None

        user_key = self._user_key(tag_of(session_id), record.user_key)
        user_data = self.parsed.user(record.user_key, user, user_key)
        return Found(record, user_data, maybe_stale=maybe_stale)

    # -- the local cache ----------------------------------------------------

    #: The worker's invalidated copy of the sessions it read, or ``None``
    #: (``POW_REDIS_LOCAL_CACHE``).
    local: LocalCache | None = None

    def keep_local_copies(
        self,
        *,
        ttl: float,
        max_entries: int,
        max_bytes: int,
        staleness: float = 0.25,
    ) -> None:
        """Serve repeat reads from a :class:`~flask_pow.stores.redis_local.LocalCache`
        that the server keeps true (``POW_REDIS_LOCAL_CACHE``).
        """
        self.local = LocalCache(
            self.client,
            self.prefix,
            ttl=ttl,
            max_entries=max_entries,
            max_bytes=max_bytes,
            staleness=staleness,
        )

    def _forget(self, user_key: str, *session_ids: str) -> None:
        """After a write: drop this worker's copies of what it touched at
        once (the server's message about it is on its way).
        """
        if self.local is None:
            return

        keys = [self._session_key(s) for s in session_ids if is_session_id(s)]

        for tag in self._tags(user_key):
            keys += [self._user_key(tag, user_key), self._index_key(tag, user_key)]

        self.local.forget(keys)

    # -- writes -------------------------------------------------------------

    def new_session_id(self, user_key: str, now: float) -> str:
        return self._tags(user_key)[0] + new_session_id()

    def _run_write(
        self,
        record: SessionRecord,
        now: float,
        user_data: dict[str, t.Any],
        expected: str,
        max_sessions: int = 0,
        keep: c.Collection[str] = (),
    ) -> list[t.Any]:
        """The write script and the users set, pipelined: one round trip on
        a single server. A cluster client cannot pipeline scripts, and the
        two live in different slots anyway: there they are two calls.
        """
        try:
            return self._write_record(
                record, now, user_data, expected, max_sessions, keep
            )
        finally:
            self._forget(record.user_key, record.id)

    def _write_record(
        self,
        record: SessionRecord,
        now: float,
        user_data: dict[str, t.Any],
        expected: str,
        max_sessions: int,
        keep: c.Collection[str],
    ) -> list[t.Any]:
        tag = tag_of(record.id)
        keys = [
            self._session_key(record.id),
            self._index_key(tag, record.user_key),
            self._user_key(tag, record.user_key),
        ]
        args = [
            serialization.dumps(record.dump()),
            max(1, int((record.expires_at - now) * 1000)),
            repr(record.expires_at),
            repr(now),
            serialization.dumps(user_value(record.user_key, user_data)),
            expected,
            record.id,
            max_sessions,
            self._session_prefix(tag),
            " ".join(keep),
        ]
        users_args = [
            serialization.dumps([tag, record.user_key]),
            repr(record.expires_at),
            repr(now),
        ]

        if self._cluster:
            result = self._call(lambda: self._write(keys=keys, args=args))

            if result[0] == b"ok":
                self._call(lambda: self._users(keys=[self._users_key], args=users_args))

            return t.cast(list[t.Any], result)

        def run() -> list[t.Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.evalsha(self._write.sha, len(keys), *keys, *args)
            pipe.evalsha(self._users.sha, 1, self._users_key, *users_args)
            return t.cast(list[t.Any], pipe.execute()[0])

        return self._call(lambda: self._with_scripts(run))

    def _with_scripts(self, run: t.Callable[[], _T]) -> _T:
        """Run a pipeline that calls scripts by SHA; if the server lost them
        (a restart), load them and run it again. redis-py's own pipeline
        scripts would ask ``SCRIPT EXISTS`` first, a round trip on every
        call.
        """
        try:
            return run()
        except self._no_script:
            for script in (self._write, self._users):
                self.client.script_load(script.script)

            return run()

    def create(
        self,
        record: SessionRecord,
        user_data: dict[str, t.Any],
        now: float,
        *,
        max_sessions: int,
        keep: c.Collection[str] = (),
    ) -> list[str]:
        result = self._run_write(record, now, user_data, "", max_sessions, keep)
        return [session_id.decode() for session_id in result[2:]]

    def swap(
        self,
        record: SessionRecord,
        expected: str,
        now: float,
        *,
        user_data: dict[str, t.Any],
        wait: bool,
    ) -> Swapped:
        # No lock, so never undecided: the script compares the token digest and
        # swaps the record in one atomic step, and a loser learns where the
        # session went in the same round trip.
        result = self._run_write(record, now, user_data, expected)

        if result[0] == b"ok":
            return Swapped(True)

        if result[0] == b"changed":
            return Swapped(False, self._parse_session(record.id, result[1]))

        return Swapped(False)

    def delete(
        self, user_key: str, session_ids: c.Sequence[str], now: float
    ) -> list[str]:
        by_tag: dict[str, list[str]] = {}
        tags = self._tags(user_key)

        for session_id in session_ids:
            if is_session_id(session_id) and tag_of(session_id) in tags:
                by_tag.setdefault(tag_of(session_id), []).append(session_id)

        return [
            session_id
            for tag, ids in by_tag.items()
            for session_id in self._delete_ids(tag, user_key, ids, now)
        ]

    def _delete_ids(
        self, tag: str, user_key: str, ids: list[str], now: float
    ) -> list[str]:
        keys = [self._index_key(tag, user_key), self._user_key(tag, user_key)]
        args = [self._session_prefix(tag), repr(now), *ids]

        try:
            ended = self._call(lambda: self._delete(keys=keys, args=args))
        finally:
            self._forget(user_key, *ids)

        return [session_id.decode() for session_id in ended]

    def write_user(
        self, user_key: str, user_data: dict[str, t.Any], now: float
    ) -> bool:
        value = serialization.dumps(user_value(user_key, user_data))
        updated = False

        try:
            for tag in self._tags(user_key):
                keys = [self._index_key(tag, user_key), self._user_key(tag, user_key)]
                args = [value, repr(now)]
                updated |= bool(
                    self._call(
                        functools.partial(self._update_user, keys=keys, args=args)
                    )
                )
        finally:
            self._forget(user_key)

        return updated

    def cleanup(self, now: float) -> int:
        # Every key has a TTL: Redis deletes them itself.
        return 0

    # -- listing ------------------------------------------------------------

    def session_ids(self, user_key: str) -> list[str]:
        found = []

        for tag in self._tags(user_key):
            index_key = self._index_key(tag, user_key)
            found += [
                session_id.decode()
                for session_id in self._call(
                    functools.partial(self.client.zrange, index_key, 0, -1)
                )
            ]

        return found

    def sessions(self, user_key: str, now: float) -> list[SessionRecord]:
        records = []

        for tag in self._tags(user_key):
            keys = [self._index_key(tag, user_key)]
            args = [self._session_prefix(tag), repr(now)]
            found = self._call(functools.partial(self._sessions, keys=keys, args=args))
            records += [
                record
                for raw_id, value in zip(found[::2], found[1::2], strict=True)
                if (record := self._parse_session(raw_id.decode(), value)) is not None
            ]

        return records

    def users(self, now: float) -> list[tuple[str, dict[str, t.Any]]]:
        members = self._call(
            lambda: self.client.zrangebyscore(self._users_key, f"({now!r}", "+inf")
        )
        pairs = []

        for member in members:
            pair = self.parsed.decode("users", self._users_key, member)

            if (
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(part, str) for part in pair)
            ):
                # Another application's users (other secret keys) share the
                # set when they share the namespace: not listed.
                if pair[0] in self._tags(pair[1]):
                    pairs.append((pair[1], pair[0]))
            else:
                self.corrupt("users", self._users_key)

        pairs.sort()

        if not pairs:
            return []

        def read() -> list[t.Any]:
            pipe = self.client.pipeline(transaction=False)

            for user_key, tag in pairs:
                pipe.get(self._user_key(tag, user_key))

            return t.cast(list[t.Any], pipe.execute())

        found = []

        for (user_key, tag), value in zip(pairs, self._call(read), strict=True):
            data = self.parsed.user(user_key, value, self._user_key(tag, user_key))

            if data is not None:
                found.append((user_key, data))

        return found
