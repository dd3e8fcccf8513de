"""The store protocol on Redis (or Valkey), natively: one round trip for an
authenticated request, an atomic script for every multi-key write, and keys
laid out for Redis Cluster. Every key of one user has the user's tag
(:func:`~flask_pow.stores.user_tags`) as its hash tag, so one operation
touches one slot; session ids start with it, so a request finds its slot
from the cookie alone. Keys, after the cache's prefix and ``POW_NAMESPACE``:

``session:{tag}<id>``
    the session record (JSON), with a TTL.
``user:{tag}<user key>``
    the user's cached columns (JSON), TTL of their latest session.
``sessions:{tag}<user key>``
    the user's index: session ids scored by expiry, pruned by every write.
    A session is honoured only while it is in it: a lost index fails closed.
``users``
    a sorted set: ``[tag, user key]`` (JSON) scored by latest expiry.

No path uses ``KEYS``, ``SCAN`` or ``FLUSHDB``.
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

#: Error replies of a healthy server that refuses for now: out of memory
#: under ``maxmemory`` with ``noeviction``, a replica after a failover, a
#: primary cut off from its replicas or its disk, a server still loading,
#: a script running too long. Each is a 503, not a 500.
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
def _errors() -> tuple[_Errors, _Errors, _Errors]:
    """What redis-py and valkey-py (a fork, where installed) raise for a
    server out of reach, an error reply, and a script the server lost.
    """
    import redis

    clients: list[t.Any] = [redis]

    with contextlib.suppress(ImportError):
        import valkey

        clients.append(valkey)

    def each(*names: str) -> _Errors:
        return tuple(getattr(m.exceptions, n) for m in clients for n in names)

    away = each("ConnectionError", "TimeoutError", "ClusterDownError", "TryAgainError")
    return (OSError, *away), each("ResponseError"), each("NoScriptError")


def _per_node(answer: t.Mapping[str, t.Any]) -> list[t.Mapping[str, t.Any]]:
    # A cluster client answers for every node, by node.
    nodes = list(answer.values())
    return nodes if nodes and all(isinstance(n, dict) for n in nodes) else [answer]


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
                f"Cannot find the Redis client of {type(cache).__name__}: this"
                " cachelib version keeps it elsewhere. Set POW_REDIS_URL instead."
            )

        self.client: t.Any = client
        self._secrets = secrets
        # cachelib's public key_prefix: a string, or a function giving one.
        prefix = cache.key_prefix
        prefix = prefix if isinstance(prefix, str) else prefix()
        self.prefix = f"{prefix or ''}{namespace}:"
        self._users_key = f"{self.prefix}users"
        self.parsed = ParsedRecords(CorruptLog(), report_undecodable=True)
        self.unvouched = UnvouchedLog()
        self._version_checked = False
        self._unreachable, self._replies, self._no_script = _errors()
        # A RedisCluster (redis-py or valkey) routes by slot; it has nodes.
        self._cluster = hasattr(client, "get_nodes")
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
            raise unavailable(e) from e
        except self._replies as e:
            code = _CODES.get(type(e).__name__) or str(e).split(" ", 1)[0]

            if code not in REFUSALS:
                raise

            if code == "READONLY":
                # A failover: the connections reach a replica now. Drop
                # them (and the local copy's) to reach the new primary.
                pool = getattr(self.client, "connection_pool", None)

                if pool is not None:
                    pool.disconnect()

                if self.local is not None:
                    self.local.close()

            raise unavailable(e) from e

    def _check_version(self) -> None:
        """Once: warn if the server may evict keys, refuse one too old."""
        try:
            version = self._server_version()
        except self._unreachable as e:
            raise unavailable(e) from e

        # Every key has a TTL, so even volatile-* policies take them: a lost
        # key logs its user out, and under memory pressure many at once.
        try:
            found = self.client.config_get("maxmemory-policy")
        except (*self._unreachable, *self._replies):
            found = {}

        policies = {str(p) for node in _per_node(found) for p in node.values()}

        if evicting := sorted(policies - {"noeviction"}):
            logger.warning(
                "Redis may evict flask_pow's keys (maxmemory-policy %s): under"
                " memory pressure users would be logged out. Set"
                " maxmemory-policy noeviction on the server that holds"
                " sessions (a full server then answers 503 to logins, and"
                " logged-in users stay logged in).",
                ", ".join(evicting),
            )

        if version < MINIMUM_VERSION:
            raise RuntimeError(
                f"flask_pow needs Redis {'.'.join(map(str, MINIMUM_VERSION))} or"
                f" later (or Valkey); this server is"
                f" {'.'.join(map(str, version))}. Upgrade it, or use another"
                " POW_CACHE."
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
        # The tag's prefix and the id past the tag.
        return self._keys(session_id[:TAG_LENGTH])[0] + session_id[TAG_LENGTH:]

    def _session(self, session_id: str, raw: bytes | None) -> SessionRecord | None:
        return self.parsed.session(session_id, raw, self._session_key(session_id))

    def _tags(self, user_key: str) -> list[str]:
        return user_tags(user_key, self._secrets())

    # -- reading ------------------------------------------------------------

    def clock(self) -> float:
        """The server's time, from the offset the last read measured: every
        deadline is in it, so workers whose clocks disagree agree on them.
        """
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

        # Another application's session (other secret keys) is not ours to
        # read, list or end.
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
            args = [users, indexes, session_id]
            values = self._call(self._read, keys=[key], args=args)
            # The server read its clock between sending and receiving: the
            # midpoint is off by at most half a round trip.
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

        # The write script and the users set, pipelined: one round trip on a
        # single server. A cluster client cannot pipeline scripts, and the
        # two live in different slots anyway: there they are two calls.
        def run(load: bool = False) -> list[t.Any]:
            pipe = self.client.pipeline(transaction=False)

            if load:
                pipe.script_load(self._write.script)
                pipe.script_load(self._users.script)

            pipe.evalsha(self._write.sha, len(keys), *keys, *args)
            pipe.evalsha(self._users.sha, 1, self._users_key, *users_args)
            return t.cast(list[t.Any], pipe.execute()[-2])

        try:
            if not self._cluster:
                try:
                    return self._call(run)
                except self._no_script:
                    # A restart lost the scripts: load them in the same
                    # round trip (redis-py's would ask SCRIPT EXISTS first,
                    # on every call).
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
        # Never undecided: the script compares and swaps in one atomic step,
        # and a loser learns where the session went in the same round trip.
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
                if own := [
                    session_id for session_id in ids if session_id.startswith(tag)
                ]:
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
        # Every key has a TTL: Redis deletes them itself.
        return 0

    # -- listing ------------------------------------------------------------

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
            # Another application's users (other secret keys) share the set
            # when they share the namespace: not listed.
            elif pair[0] in self._tags(pair[1]):
                pairs.append((pair[1], self._keys(pair[0], pair[1])[2]))

        pairs.sort()
        pipe = self.client.pipeline(transaction=False)

        for _, user in pairs:
            pipe.get(user)

        values = self._call(pipe.execute)
        return [
            (user_key, data)
            for (user_key, user), value in zip(pairs, values, strict=True)
            if (data := self.parsed.user(user_key, value, user)) is not None
        ]
