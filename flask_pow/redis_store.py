"""The credentials cache on Redis (or Valkey), with native structures:
one round trip for an authenticated request, atomic scripts for every
multi-key write, and keys laid out for Redis Cluster.

Every key of one user carries the same hash tag, ``{<tag>}``, so that the
records one operation touches live in one cluster slot. The tag is 8 random
characters chosen at the user's first login and kept under
``tag:<user key>``; it is also the first 8 characters of each session id, so
a request addresses its session and its user in one slot from the cookie
alone, without the cookie revealing who the user is.

Keys, after the cache's own prefix and ``POW_NAMESPACE``:

``session:{tag}<id>``
    the session record (JSON), with a TTL.
``user:{tag}<user key>``
    the user's cached columns (JSON), TTL of their latest session.
``sessions:{tag}<user key>``
    a hash: session id -> expiry time; pruned by every write.
``tag:<user key>``
    the user's tag, outliving each of their sessions.
``users``
    a sorted set: ``<tag><user key>`` scored by latest expiry.

No path uses ``KEYS``, ``SCAN`` or ``FLUSHDB``.
"""

from __future__ import annotations

import typing as t

from cachelib.redis_base import BaseRedisCache

from . import redis_scripts as scripts
from . import serialization
from . import signals
from .credentials import Authenticated
from .credentials import CredentialsCache
from .credentials import _batches
from .credentials import _send
from .records import SessionInfo
from .records import SessionRecord
from .records import new_session_id
from .stores import Store
from .stores import StoreUnavailable
from .stores import _unavailable
from .users import UserAdapter

#: Length of a user's hash tag, and of the prefix it gives session ids.
TAG_LENGTH = 8
_T = t.TypeVar("_T")


def _error_types() -> tuple[type[Exception], ...]:
    """The client errors that mean the server cannot be reached."""
    import redis

    types: list[type[Exception]] = [
        redis.ConnectionError,
        redis.TimeoutError,
        redis.exceptions.ClusterDownError,
        redis.exceptions.TryAgainError,
        OSError,
    ]

    try:
        import valkey
    except ImportError:
        pass
    else:
        types += [valkey.ConnectionError, valkey.TimeoutError]

    return tuple(types)


def _no_script_types() -> tuple[type[Exception], ...]:
    import redis

    types: list[type[Exception]] = [redis.exceptions.NoScriptError]

    try:
        import valkey
    except ImportError:
        pass
    else:
        types.append(valkey.exceptions.NoScriptError)

    return tuple(types)


class RedisCredentialsCache(CredentialsCache):
    """:class:`~flask_pow.CredentialsCache` on a cachelib ``RedisCache`` or
    ``ValkeyCache``, using the client it holds. Chosen by
    :class:`~flask_pow.Pow` when ``POW_CACHE`` is one of those, or when
    ``POW_REDIS_URL`` is set.
    """

    def __init__(
        self,
        store: Store,
        cache: BaseRedisCache,
        namespace: str,
        users: UserAdapter[t.Any],
        *,
        credentials_ttl: int,
        rotation_grace: int,
        absolute_ttl: int | None,
    ) -> None:
        # The generic store is kept for the base class's sake; every path
        # that would use it is done natively below.
        super().__init__(
            store,
            users,
            credentials_ttl=credentials_ttl,
            rotation_grace=rotation_grace,
            absolute_ttl=absolute_ttl,
        )
        self.client: t.Any = cache._write_client
        # cachelib's public key_prefix: a string, or a function giving one.
        prefix = cache.key_prefix
        prefix = prefix if isinstance(prefix, str) else prefix()
        self.prefix = f"{prefix or ''}{namespace}:"
        self._errors = _error_types()
        # A RedisCluster (redis-py or valkey) routes by slot; it has nodes.
        self._cluster = hasattr(self.client, "get_nodes")
        self._no_script = _no_script_types()

        def register(source: str) -> t.Any:
            # Lua has no constants from Python: put the tag length in.
            return self.client.register_script(
                source.replace("TAG_END", str(TAG_LENGTH + 1))
            )

        self._read = register(scripts.READ)
        self._write = register(scripts.WRITE)
        self._delete = register(scripts.DELETE)
        self._update_user = register(scripts.UPDATE_USER)
        self._sessions = register(scripts.SESSIONS)
        self._users = register(scripts.USERS)

    # -- plumbing -----------------------------------------------------------

    def _call(self, operation: t.Callable[[], _T]) -> _T:
        try:
            return operation()
        except self._errors as e:
            raise _unavailable(e) from e

    @staticmethod
    def _tag_of(session_id: str) -> str:
        return session_id[:TAG_LENGTH]

    def _session_key(self, session_id: str) -> str:
        tag = self._tag_of(session_id)
        return f"{self.prefix}session:{{{tag}}}{session_id[TAG_LENGTH:]}"

    def _session_prefix(self, tag: str) -> str:
        # Session keys are this plus the session id without its tag.
        return f"{self.prefix}session:{{{tag}}}"

    def _user_key_of(self, tag: str, user_key: str) -> str:
        return f"{self.prefix}user:{{{tag}}}{user_key}"

    def _user_key(self, user_key: str) -> str:
        # Only used to name corrupt records in logs.
        return f"{self.prefix}user:{user_key}"

    def _index_key_of(self, tag: str, user_key: str) -> str:
        return f"{self.prefix}sessions:{{{tag}}}{user_key}"

    def _tag_key(self, user_key: str) -> str:
        return f"{self.prefix}tag:{user_key}"

    @property
    def _users_key(self) -> str:
        return f"{self.prefix}users"

    def _decode(self, kind: str, key: str, value: bytes | None) -> t.Any:
        if value is None:
            return None

        try:
            return serialization.loads(value)
        except ValueError:
            self._corrupt(kind, key)
            return None

    def _get_record(self, session_id: str) -> SessionRecord | None:
        # An id of another length has no tag: no such session, and no key.
        if len(session_id) != TAG_LENGTH + 22:
            return None

        key = self._session_key(session_id)
        value = self._call(lambda: self.client.get(key))
        return self._read_record(session_id, self._decode("session", key, value))

    def _tag(self, user_key: str) -> str | None:
        key = self._tag_key(user_key)
        return self._read_tag(key, self._call(lambda: self.client.get(key)))

    def _read_tag(self, key: str, value: bytes | None) -> str | None:
        tag = self._decode("tag", key, value)

        if tag is None:
            return None

        if not isinstance(tag, str) or len(tag) != TAG_LENGTH:
            self._corrupt("tag", key)
            return None

        return tag

    # -- the request path ---------------------------------------------------

    def authenticate(self, session_id: str, token: str) -> Authenticated | None:
        if len(session_id) != TAG_LENGTH + 22:
            return None

        tag = self._tag_of(session_id)
        key = self._session_key(session_id)
        values = self._call(
            lambda: self._read(keys=[key], args=[self._user_key_of(tag, "")])
        )
        record = self._read_record(
            session_id, self._decode("session", key, values[0] if values else None)
        )

        if record is None:
            return None

        found = self._match(record, token)

        if found is None:
            return None

        user_key = self._user_key_of(tag, record.user_key)
        user_data = self._read_user_data(
            record.user_key,
            self._decode("user", user_key, values[1] if len(values) > 1 else None),
        )

        if user_data is None:
            return None

        return Authenticated(record, user_data, found.follow)

    # -- writes -------------------------------------------------------------

    def _new_session_id(self, user_key: str) -> str:
        # The user's tag, chosen at their first login (SET NX GET: whoever
        # comes first wins, and everyone reads the winner's tag).
        candidate = new_session_id()[:TAG_LENGTH]
        ttl_ms = (self.policy.credentials_ttl + 60) * 1000
        key = self._tag_key(user_key)
        existing = self._call(
            lambda: self.client.set(
                key, serialization.dumps(candidate), nx=True, get=True, px=ttl_ms
            )
        )

        if existing is None:
            return candidate + new_session_id()

        tag = self._read_tag(key, existing)

        if tag is None:
            # A corrupt tag record: replace it. Sessions filed under it are
            # lost to listings, not to their holders.
            self._call(
                lambda: self.client.set(key, serialization.dumps(candidate), px=ttl_ms)
            )
            tag = candidate

        return tag + new_session_id()

    def _write_args(
        self,
        record: SessionRecord,
        now: float,
        user_json: bytes | str,
        expected_token: str,
    ) -> tuple[list[str], list[t.Any]]:
        tag = self._tag_of(record.id)
        keys = [
            self._session_key(record.id),
            self._index_key_of(tag, record.user_key),
            self._user_key_of(tag, record.user_key),
        ]
        args = [
            serialization.dumps(record.dump()),
            max(1, int((record.expires_at - now) * 1000)),
            repr(record.expires_at),
            repr(now),
            user_json,
            expected_token,
            record.id,
        ]
        return keys, args

    def _run_write(
        self, record: SessionRecord, now: float, user_json: bytes | str, expected: str
    ) -> list[t.Any]:
        """The write script, the users set and the tag's TTL, pipelined: one
        round trip on a single server. A cluster client cannot pipeline
        scripts, and those three keys live in different slots anyway: there
        they are three calls.
        """
        keys, args = self._write_args(record, now, user_json, expected)
        # Relative: the clock may not be the server's.
        tag_ttl_ms = int((record.expires_at - now) * 1000) + 60_000

        users_args = [
            serialization.dumps([self._tag_of(record.id), record.user_key]),
            repr(record.expires_at),
            repr(now),
        ]

        if self._cluster:
            result = self._call(lambda: self._write(keys=keys, args=args))

            if result[0] == b"ok":
                self._call(lambda: self._users(keys=[self._users_key], args=users_args))
                self._call(
                    lambda: self.client.pexpire(
                        self._tag_key(record.user_key), tag_ttl_ms, gt=True
                    )
                )

            return t.cast(list[t.Any], result)

        def run() -> list[t.Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.evalsha(self._write.sha, len(keys), *keys, *args)
            pipe.evalsha(self._users.sha, 1, self._users_key, *users_args)
            # The tag outlives every session of its user.
            pipe.pexpire(self._tag_key(record.user_key), tag_ttl_ms, gt=True)
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

    def _store_new(
        self, record: SessionRecord, user_data: dict[str, t.Any], now: float
    ) -> None:
        self._run_write(
            record,
            now,
            serialization.dumps({"key": record.user_key, "data": user_data}),
            "",
        )

    def rotate(
        self,
        session_id: str,
        token: str,
        user_data: dict[str, t.Any],
        *,
        wait: bool = False,
        record: SessionRecord | None = None,
    ) -> tuple[str, bool] | None:
        # No lock: the write script compares the token digest and swaps the
        # record in one atomic step, so of concurrent rotations exactly one
        # wins and the others learn where the session went, all in the one
        # round trip of the write. A lock would add a round trip and protect
        # nothing more.
        if record is None:
            record = self._get_record(session_id)

        for _ in range(3):
            if record is None:
                return None

            found = self._match(record, token)

            if found is None:
                return None

            if found.follow is not None:
                if not wait:
                    return found.follow, False

                # A privilege change rotates even a token rotated moments
                # ago: carry on from where the session went.
                token = found.follow
                continue

            now = self.clock()
            candidate, fresh = self.policy.advance(record, token, now)
            result = self._run_write(candidate, now, "", record.token)

            if result[0] == b"ok":
                return fresh, True

            if result[0] != b"changed":
                return None

            key = self._session_key(session_id)
            record = self._read_record(
                session_id, self._decode("session", key, result[1])
            )

        if wait:
            raise StoreUnavailable("The session kept changing during a rotation.")

        return None

    def end(self, session_id: str, user_key: str | None = None) -> str | None:
        if user_key is None:
            record = self._get_record(session_id)

            if record is None:
                return None

            user_key = record.user_key

        ended = self._delete_ids(self._tag_of(session_id), user_key, [session_id])
        return user_key if ended else None

    def _delete_ids(self, tag: str, user_key: str, args: list[str]) -> list[str]:
        """Run the delete script; returns the ids of the ended sessions."""
        ended = self._call(
            lambda: self._delete(
                keys=[
                    self._index_key_of(tag, user_key),
                    self._user_key_of(tag, user_key),
                ],
                args=[self._session_prefix(tag), repr(self.clock()), *args],
            )
        )
        return [session_id.decode() for session_id in ended]

    def delete_sessions_by_key(self, user_key: str, *, keep: str | None = None) -> int:
        tag = self._tag(user_key)

        if tag is None:
            return 0

        index_key = self._index_key_of(tag, user_key)
        ids = [
            session_id.decode()
            for session_id in self._call(lambda: self.client.hkeys(index_key))
            if session_id.decode() != keep
        ]
        ended = 0

        # In batches: a script blocks the server while it runs.
        for batch in _batches(ids):
            deleted = self._delete_ids(tag, user_key, batch)
            ended += len(deleted)

            for session_id in deleted:
                _send(signals.session_revoked, session_id=session_id, user_key=user_key)

        return ended

    def update_user_data(self, user_key: str, user_data: dict[str, t.Any]) -> bool:
        tag = self._tag(user_key)
        updated = False

        if tag is not None:
            value = serialization.dumps({"key": user_key, "data": user_data})
            updated = bool(
                self._call(
                    lambda: self._update_user(
                        keys=[
                            self._index_key_of(tag, user_key),
                            self._user_key_of(tag, user_key),
                        ],
                        args=[value, repr(self.clock())],
                    )
                )
            )

        _send(signals.user_synced, user_key=user_key, updated=updated)
        return updated

    # -- reading ------------------------------------------------------------

    def sessions_by_key(self, user_key: str) -> list[SessionInfo]:
        tag = self._tag(user_key)

        if tag is None:
            return []

        found = self._call(
            lambda: self._sessions(
                keys=[self._index_key_of(tag, user_key)],
                args=[self._session_prefix(tag), repr(self.clock())],
            )
        )
        now = self.clock()
        records = []

        for raw_id, value in zip(found[::2], found[1::2], strict=True):
            session_id = raw_id.decode()
            key = self._session_key(session_id)
            record = self._read_record(session_id, self._decode("session", key, value))

            if (
                record is not None
                and record.expires_at > now
                and record.user_key == user_key
            ):
                records.append(record)

        records.sort(key=lambda record: (record.created_at, record.id))
        return [record.info() for record in records]

    def users_by_key(self) -> dict[str, t.Any]:
        now = self.clock()
        members = self._call(
            lambda: self.client.zrangebyscore(self._users_key, f"({now!r}", "+inf")
        )
        pairs = []

        for member in members:
            pair = self._decode("users", self._users_key, member)

            if (
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(part, str) for part in pair)
            ):
                pairs.append((pair[1], pair[0]))
            else:
                self._corrupt("users", self._users_key)

        pairs.sort()

        if not pairs:
            return {}

        def read() -> list[t.Any]:
            pipe = self.client.pipeline(transaction=False)

            for user_key, tag in pairs:
                pipe.get(self._user_key_of(tag, user_key))

            return t.cast(list[t.Any], pipe.execute())

        users = {}

        for (user_key, tag), value in zip(pairs, self._call(read), strict=True):
            data = self._read_user_data(
                user_key, self._decode("user", self._user_key_of(tag, user_key), value)
            )

            if (
                data is not None
                and (user := self.load_user(user_key, data)) is not None
            ):
                users[user_key] = user

        return users
