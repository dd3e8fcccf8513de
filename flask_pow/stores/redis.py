"""The store protocol on Redis (or Valkey), natively: one round trip for an
authenticated request, an atomic script for every multi-key write, and keys
laid out for Redis Cluster, each under its user's tag (docs/redis.rst, "Keys").
A session is honoured only while its user's index holds it: a lost index fails
closed. No path uses ``KEYS``, ``SCAN`` or ``FLUSHDB``.
"""

from __future__ import annotations

import collections.abc as c
import contextlib
import functools
import logging
import time
import typing as t

from cachelib.redis_base import BaseRedisCache

from .. import serialization
from ..records import SessionRecord
from ..records import new_session_id
from . import SESSION_ID_LENGTH
from . import TAG_LENGTH
from . import CorruptLog
from . import Found
from . import StoreUnavailable
from . import Swapped
from . import UnvouchedLog
from . import is_session_id
from . import redis_scripts as scripts
from . import unavailable
from . import user_tags
from . import user_value
from .parsed import ParsedRecords
from .redis_local import LocalCache

logger = logging.getLogger("flask_pow")

_T = t.TypeVar("_T")
_Errors = tuple[type[Exception], ...]

#: The oldest server flask_pow works with (Valkey reports 7.2.4).
MINIMUM_VERSION = (7, 0)

#: Error replies of a healthy server that refuses for now (out of memory, a
#: replica after a failover, ...: docs/redis.rst): a 503, not a 500.
REFUSALS = frozenset(
    {"OOM", "READONLY", "MASTERDOWN", "LOADING", "BUSY", "NOREPLICAS", "MISCONF"}
)
#: Replies raised as classes of their own, without the code in the message.
_CODES = {
    "OutOfMemoryError": "OOM",
    "ReadOnlyError": "READONLY",
    "MasterDownError": "MASTERDOWN",
}


@functools.cache
def _errors() -> tuple[_Errors, _Errors, _Errors, _Errors]:
    """What redis-py and valkey-py raise: server away, error reply, lost
    script, and the connection errors among the first.
    """
    import redis

    clients: list[t.Any] = [redis]

    with contextlib.suppress(ImportError):
        import valkey

        clients.append(valkey)

    def each(*names: str) -> _Errors:
        return tuple(getattr(m.exceptions, n) for m in clients for n in names)

    connection = each("ConnectionError", "TimeoutError")
    away: _Errors = (OSError, *connection, *each("ClusterDownError", "TryAgainError"))
    return away, each("ResponseError"), each("NoScriptError"), connection


def _per_node(answer: t.Mapping[str, t.Any]) -> list[t.Mapping[str, t.Any]]:
    # A cluster client answers for every node, by node.
    nodes = list(answer.values())
    return nodes if nodes and all(isinstance(n, dict) for n in nodes) else [answer]


def describe_server(client: t.Any) -> str:
    """Where a client connects, for log lines: its host and port, its
    socket, or a cluster's nodes; never its password.
    """
    kind = "Valkey" if type(client).__module__.startswith("valkey") else "Redis"

    if hasattr(client, "get_nodes"):
        names = sorted(node.name for node in client.get_nodes())
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return f"{kind} Cluster at {', '.join(names[:3])}{more}"

    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}

    if kwargs.get("path"):
        return f"{kind} at unix:{kwargs['path']}"

    if kwargs.get("host"):
        return f"{kind} at {kwargs['host']}:{kwargs.get('port', 6379)}"

    return kind


class RedisSessionStore:
    """:class:`~flask_pow.stores.SessionStore` on a cachelib
    ``RedisCache`` or ``ValkeyCache``, using the client it holds. Chosen by
    :class:`~flask_pow.Pow` when ``POW_CACHE`` is one of those, or when
    ``POW_REDIS_URL`` is set.
    """

    #: The worker's copy of the sessions it read (``POW_REDIS_LOCAL_CACHE``).
    local: LocalCache | None = None

    def __init__(
        self,
        cache: BaseRedisCache,
        namespace: str,
        secrets: t.Callable[[], c.Sequence[str | bytes]],
    ) -> None:
        # cachelib has no public accessor of its client: check what it holds.
        client = getattr(cache, "_write_client", None)

        if client is None or not hasattr(client, "register_script"):
            raise TypeError(
                f"Cannot find the Redis client of {type(cache).__name__} in this"
                " cachelib version: set POW_REDIS_URL instead."
            )

        self.client: t.Any = client
        self._secrets = secrets
        prefix = cache.key_prefix  # a string, or a function giving one
        prefix = prefix if isinstance(prefix, str) else prefix()
        self.prefix = f"{prefix or ''}{namespace}:"
        self._users_key = f"{self.prefix}users"
        self.parsed = ParsedRecords(CorruptLog(), report_undecodable=True)
        self.unvouched = UnvouchedLog()
        self._version_checked = False
        errors = _errors()
        self._unreachable, self._replies, self._no_script = errors[:3]
        self._connection_errors = errors[3]
        self._cluster = hasattr(client, "get_nodes")
        #: The server, as log lines name it.
        self.server = describe_server(client)
        #: The server's clock minus this worker's, from the last read.
        self._offset: float | None = None
        self._read = client.register_script(scripts.READ)
        self._write = client.register_script(scripts.WRITE)
        self._delete = client.register_script(scripts.DELETE)
        self._update_user = client.register_script(scripts.UPDATE_USER)
        self._sessions = client.register_script(scripts.SESSIONS)
        self._users = client.register_script(scripts.USERS)

    def _call(self, operation: c.Callable[..., _T], *args: t.Any, **kw: t.Any) -> _T:
        if not self._version_checked:
            self._check_version()

        try:
            return operation(*args, **kw)
        except self._unreachable as e:
            raise self._unavailable(e) from e
        except self._replies as e:
            # A pipelined command's reply comes after what redis-py adds.
            reply = str(e).rpartition(" of pipeline caused error: ")[2]
            code = _CODES.get(type(e).__name__) or reply.split(" ", 1)[0]

            if code not in REFUSALS:
                raise

            if code == "READONLY":
                # A failover: reconnect (the copy too) to reach the new primary.
                if (pool := getattr(self.client, "connection_pool", None)) is not None:
                    pool.disconnect()

                if self.local is not None:
                    self.local.close()

            # The code alone: a reply to a pipeline quotes its commands' keys.
            raise unavailable(e, self.server, code) from e

    def _unavailable(self, error: Exception) -> StoreUnavailable:
        """:func:`~flask_pow.stores.unavailable` for a server out of reach."""
        # redis-py's and valkey-py's connection errors say which server and
        # what failed (the errno's text), never a key or a password; a
        # cluster's error replies are named by their type alone.
        connection = isinstance(error, self._connection_errors)
        return unavailable(error, self.server, str(error) if connection else None)

    def _check_version(self) -> None:
        """Once: warn if the server may evict keys, refuse one too old."""
        try:
            version = self._server_version()
        except self._unreachable as e:
            raise self._unavailable(e) from e

        # Every key has a TTL: even volatile-* policies take them.
        try:
            found = self.client.config_get("maxmemory-policy")
        except (*self._unreachable, *self._replies):
            found = {}

        policies = {str(p) for node in _per_node(found) for p in node.values()}

        if evicting := sorted(policies - {"noeviction"}):
            logger.warning(
                "Redis may evict flask_pow's keys (maxmemory-policy %s), logging"
                " users out under memory pressure: set maxmemory-policy"
                " noeviction on the server that holds sessions.",
                ", ".join(evicting),
            )

        if version < MINIMUM_VERSION:
            needed, have = (".".join(map(str, v)) for v in (MINIMUM_VERSION, version))
            raise RuntimeError(
                f"flask_pow needs Redis {needed} or later (or Valkey); this server"
                f" is {have}. Upgrade it, or use another POW_CACHE."
            )

        self._version_checked = True

    def _server_version(self) -> tuple[int, ...]:
        # On a cluster, the oldest node counts.
        nodes = _per_node(self.client.info("server"))
        versions = [str(node.get("redis_version", "0")).split(".") for node in nodes]
        return min(tuple(int(n) for n in v[:2] if n.isdigit()) for v in versions)

    def _keys(self, tag: str, user_key: str = "") -> tuple[str, str, str]:
        """A tag's session key prefix, then a user's index and record keys."""
        return (
            f"{self.prefix}session:{{{tag}}}",
            f"{self.prefix}sessions:{{{tag}}}{user_key}",
            f"{self.prefix}user:{{{tag}}}{user_key}",
        )

    def _session_key(self, session_id: str) -> str:
        return self._keys(session_id[:TAG_LENGTH])[0] + session_id[TAG_LENGTH:]

    def _session(self, session_id: str, raw: bytes | None) -> SessionRecord | None:
        return self.parsed.session(session_id, raw, self._session_key(session_id))

    def _tags(self, user_key: str) -> list[str]:
        return user_tags(user_key, self._secrets())

    def clock(self) -> float:
        """The server's time (from the last read): every worker's deadlines agree."""
        if self._offset is None:
            sent = time.time()
            seconds, micros = self._call(self.client.time)
            server = int(seconds) + int(micros) / 1_000_000
            self._offset = server - (sent + time.time()) / 2

        return time.time() + self._offset

    def read_session(self, session_id: str) -> SessionRecord | None:
        if not is_session_id(session_id):
            return None

        key = self._session_key(session_id)
        record = self._session(session_id, self._call(self.client.get, key))

        # Another application's session (other secret keys) is not ours.
        if record is None or session_id[:TAG_LENGTH] not in self._tags(record.user_key):
            return None

        return record

    def read(self, session_id: str, *, fresh: bool = False) -> Found | None:
        # The hot path: is_session_id and the keys inline.
        if len(session_id) != SESSION_ID_LENGTH:
            return None

        sessions, indexes, users = self._keys(session_id[:TAG_LENGTH])
        key = sessions + session_id[TAG_LENGTH:]
        local = self.local
        held = None if local is None or fresh else local.get(session_id)
        stale = held is not None
        vouched = True

        if held is None:
            # Taken before the read: see LocalCache.put.
            epoch = 0 if local is None else local.epoch
            sent = time.time()
            values = self._call(self._run_read, key, users, indexes, session_id)
            # The server read its clock at about the midpoint of the round trip.
            server = int(values[0]) + int(values[1]) / 1_000_000
            self._offset = server - (sent + time.time()) / 2

            if len(values) == 2:
                return None

            # The session, its user and whether the index holds it.
            held = values[2], values[3] if len(values) > 3 else None
            vouched = len(values) < 5 or bool(int(values[4]))

        record = self.parsed.session(session_id, held[0], key)

        if record is None:
            return None

        if not vouched:
            self.unvouched(session_id)
            return None

        user_key = record.user_key
        user_data = self.parsed.user(user_key, held[1], users + user_key)

        if local is not None and not stale and user_data is not None:
            keys = [key, users + user_key, indexes + user_key]
            local.put(session_id, held, keys, epoch)

        return Found(record, user_data, maybe_stale=stale)

    def _run_read(self, key: str, *args: str) -> list[t.Any]:
        # EVALSHA by hand: what the Script does, less the import and the
        # type checks it makes on every call (the hot path). A server that
        # lost its scripts (a restart, a failover, SCRIPT FLUSH) gets it
        # from the Script, which loads it again.
        try:
            return t.cast(
                list[t.Any], self.client.evalsha(self._read.sha, 1, key, *args)
            )
        except self._no_script:
            return t.cast(list[t.Any], self._read(keys=[key], args=args))

    def keep_local_copies(self, **settings: t.Any) -> None:
        """Serve repeat reads from a :class:`~.redis_local.LocalCache`."""
        self.local = LocalCache(self.client, self.prefix, **settings)

    def _forget(self, user_key: str, *session_ids: str) -> None:
        # After a write, not waiting for the server's message about it.
        if self.local is not None:
            keys = [self._session_key(session_id) for session_id in session_ids]

            for tag in self._tags(user_key):
                keys += self._keys(tag, user_key)[1:]

            self.local.forget(keys)

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
        tag = record.id[:TAG_LENGTH]
        sessions, index, user = self._keys(tag, record.user_key)
        keys = [sessions + record.id[TAG_LENGTH:], index, user]
        args = [
            serialization.dumps(record.dump()),
            max(1, int((record.expires_at - now) * 1000)),
            repr(record.expires_at),
            repr(now),
            serialization.dumps(user_value(record.user_key, user_data)),
            expected,
            record.id,
            max_sessions,
            sessions,
            " ".join(keep),
        ]
        member = serialization.dumps([tag, record.user_key])
        users_args = [member, repr(record.expires_at), repr(now)]

        # The write script and the users set in one pipelined round trip; on a
        # cluster (no scripts in pipelines, two slots) two calls.
        def run(load: bool = False) -> list[t.Any]:
            pipe = self.client.pipeline(transaction=False)

            for script in (self._write, self._users) if load else ():
                pipe.script_load(script.script)

            pipe.evalsha(self._write.sha, len(keys), *keys, *args)
            pipe.evalsha(self._users.sha, 1, self._users_key, *users_args)
            return t.cast(list[t.Any], pipe.execute()[-2])

        try:
            if not self._cluster:
                try:
                    return self._call(run)
                except self._no_script:
                    # A restart lost the scripts: load them in the same trip.
                    return self._call(run, load=True)

            result: list[t.Any] = self._call(self._write, keys=keys, args=args)

            if result[0] == b"ok":
                self._call(self._users, keys=[self._users_key], args=users_args)

            return result
        finally:
            self._forget(record.user_key, record.id)

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
        # Never undecided: a loser learns where the session went at once.
        result = self._run_write(record, now, user_data, expected)

        if result[0] == b"changed":
            return Swapped(False, self._session(record.id, result[1]))

        return Swapped(result[0] == b"ok")

    def delete(
        self, user_key: str, session_ids: c.Sequence[str], now: float
    ) -> list[str]:
        ids = [session_id for session_id in session_ids if is_session_id(session_id)]
        ended: list[bytes] = []

        try:
            for tag in self._tags(user_key):
                if own := [sid for sid in ids if sid.startswith(tag)]:
                    sessions, *keys = self._keys(tag, user_key)
                    args = [sessions, repr(now), *own]
                    ended += self._call(self._delete, keys=keys, args=args)
        finally:
            self._forget(user_key, *ids)

        return [session_id.decode() for session_id in ended]

    def write_user(
        self, user_key: str, user_data: dict[str, t.Any], now: float
    ) -> bool:
        args = [serialization.dumps(user_value(user_key, user_data)), repr(now)]
        updated = False

        try:
            for tag in self._tags(user_key):
                keys = self._keys(tag, user_key)[1:]
                updated |= bool(self._call(self._update_user, keys=keys, args=args))
        finally:
            self._forget(user_key)

        return updated

    def cleanup(self, now: float) -> int:
        return 0  # Every key has a TTL: Redis deletes them itself.

    def session_ids(self, user_key: str) -> list[str]:
        return [
            session_id.decode()
            for tag in self._tags(user_key)
            for session_id in self._call(
                self.client.zrange, self._keys(tag, user_key)[1], 0, -1
            )
        ]

    def sessions(self, user_key: str, now: float) -> list[SessionRecord]:
        records = []

        for tag in self._tags(user_key):
            sessions, index, _ = self._keys(tag, user_key)
            found = self._call(self._sessions, keys=[index], args=[sessions, repr(now)])
            records += [
                record
                for raw_id, value in zip(found[::2], found[1::2], strict=True)
                if (record := self._session(raw_id.decode(), value)) is not None
            ]

        return records

    def users(self, now: float) -> list[tuple[str, dict[str, t.Any]]]:
        key = self._users_key
        pairs = []

        for member in self._call(self.client.zrangebyscore, key, f"({now!r}", "+inf"):
            pair = self.parsed.decode("users", key, member)

            if not isinstance(pair, list) or list(map(type, pair)) != [str, str]:
                self.parsed.corrupt("users", key)
            # Not another application's (other secret keys, same namespace).
            elif pair[0] in self._tags(pair[1]):
                pairs.append((pair[1], self._keys(pair[0], pair[1])[2]))

        pairs.sort()
        get = self.client.mget_nonatomic if self._cluster else self.client.mget
        values = self._call(get, [user for _, user in pairs]) if pairs else []
        return [
            (user_key, data)
            for (user_key, user), value in zip(pairs, values, strict=True)
            if (data := self.parsed.user(user_key, value, user)) is not None
        ]
