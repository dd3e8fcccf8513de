"""A worker's copy of the session records it read from Redis, kept true by
``CLIENT TRACKING`` (BCAST, RESP2 REDIRECT to a connection per primary) and
trusted while a PING is answered in time (docs/redis.rst, "The local cache").
"""

from __future__ import annotations

import collections
import collections.abc as c
import contextlib
import dataclasses
import logging
import os
import select
import threading
import time
import typing as t

logger = logging.getLogger("flask_pow")

#: Seconds between two checks of a cluster's primaries.
HEARTBEAT = 0.5
#: A heartbeat left unanswered this long closes the channel.
HEARTBEAT_LIMIT = 2.0
#: Seconds between two attempts to connect the tracking connection again.
RECONNECT = 1.0
#: The channel tracking invalidations arrive on (RESP2 redirect).
CHANNEL = b"__redis__:invalidate"
#: What an entry costs beside its values (keys, tuple, dict and LRU slots).
ENTRY_OVERHEAD = 400

#: What is held for a session: its record's and its user's stored bytes.
_Values = tuple[bytes | None, ...]


@dataclasses.dataclass
class Stats:
    """Counters of a :class:`LocalCache` (docs/redis.rst, "The local cache")."""

    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    #: Invalidation messages applied (a flush counts as one).
    invalidations: int = 0
    flushes: int = 0


class _Entry(t.NamedTuple):
    values: _Values
    keys: tuple[str, ...]
    deadline: float
    size: int


class LocalCache:
    """A bounded copy of what ``RedisSessionStore.read`` fetched, by session
    id, invalidated for every key under ``prefix``: an entry is served ``ttl``
    seconds at most, the least recently used go past ``max_entries`` or bytes.
    """

    #: Monotonic clock; tests may replace it.
    clock: t.Callable[[], float] = staticmethod(time.monotonic)

    def __init__(
        self,
        client: t.Any,
        prefix: str,
        *,
        ttl: float,
        max_entries: int,
        max_bytes: int,
        staleness: float = 0.25,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.staleness = staleness
        self._cluster = hasattr(client, "get_primaries")
        self.stats = Stats()
        #: Bumped by every invalidation and flush: see :meth:`put`.
        self.epoch = 0
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._by_key: dict[str, set[str]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        # The tracking channels, the servers they reach, the process of both.
        self._channels: list[_Channel] = []
        self._names: frozenset[str] = frozenset()
        self._pid = 0
        self._next_connect = 0.0
        # The process opening channels now (outside the lock), or 0.
        self._connecting = 0
        self._next_topology = 0.0
        self._warned = False

    def get(self, session_id: str) -> _Values | None:
        """A session's values, if held and trusted once what arrived is applied."""
        pid = os.getpid()

        with self._lock:
            now = self.clock()

            if self._channels and self._pid != pid:
                self._lose(None)  # forked: let go of the parent's

            trusted = bool(self._channels)

            try:
                for channel in self._channels:
                    trusted &= channel.check(now, self._apply, self.staleness)

                if self._channels and self._cluster and now >= self._next_topology:
                    self._next_topology = now + HEARTBEAT

                    if frozenset(self._pools()) != self._names:
                        raise ConnectionError("the cluster's primaries changed")
            except Exception as e:  # noqa: BLE001 - any failure: stop trusting.
                self._lose(e)
                trusted = False

            if trusted:
                entry = self._entries.get(session_id)

                if entry is not None and entry.deadline > now:
                    self._entries.move_to_end(session_id)
                    self.stats.hits += 1
                    return entry.values

                self._drop(session_id)
                self.stats.misses += 1
                return None

            self.stats.bypassed += 1

            # This thread opens the channels unless open, opening, or tried just now.
            if self._channels or self._connecting == pid or now < self._next_connect:
                return None

            self._connecting = pid

        # Outside the lock: the other threads bypass the copy meanwhile.
        self._connect()
        return None

    def put(
        self, session_id: str, values: _Values, keys: c.Sequence[str], epoch: int
    ) -> None:
        """Keep what a read returned, unless an invalidation came since ``epoch``."""
        size = ENTRY_OVERHEAD + sum(len(v) for v in values if v) + sum(map(len, keys))
        node = ""

        # On a cluster, only what a tracked primary serves (not a slot just moved).
        if self._cluster and keys:
            try:
                node = str(self._client.get_node_from_key(keys[0]).name)
            except Exception:  # noqa: BLE001 - no slot map now: keep nothing.
                return

        with self._lock:
            if epoch != self.epoch or size > self.max_bytes or node not in self._names:
                return

            self._drop(session_id)
            deadline = self.clock() + self.ttl
            self._entries[session_id] = _Entry(values, tuple(keys), deadline, size)
            self._bytes += size

            for key in keys:
                self._by_key.setdefault(key, set()).add(session_id)

            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def forget(self, keys: c.Iterable[str]) -> None:
        """Drop the entries that depend on ``keys``, which this worker wrote."""
        with self._lock:
            self._invalidate(keys)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held, as counted against ``max_bytes``."""
        return self._bytes

    def close(self) -> None:
        """Close the tracking connection and empty the copy."""
        with self._lock:
            self._lose(None)

    def _connect(self) -> None:
        """Open a channel to every server to track, or none."""
        channels: list[_Channel] = []
        error: Exception | None = None

        try:
            pools = self._pools()

            for pool in pools.values():
                channels.append(_Channel.open(pool, self.prefix, self.clock()))

            if not channels:
                error = ConnectionError("no server to track")
        except Exception as e:  # noqa: BLE001 - any failure: try later.
            error = e

        with self._lock:
            self._connecting = 0
            self._next_connect = self.clock() + RECONNECT

            if error is not None or self._channels:
                for channel in channels:
                    channel.close()

                if error is not None:
                    self._warn(error)

                return

            self._channels = channels
            self._names = frozenset(pools)
            self._pid = os.getpid()
            self._next_topology = self.clock() + HEARTBEAT
            self._flush()  # what was held was not tracked by these channels
            self._warned = False

    # -- under the lock -------------------------------------------------------

    def _drop(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)

        if entry is not None:
            self._bytes -= entry.size

            for key in entry.keys:
                ids = self._by_key.get(key, set())
                ids.discard(session_id)

                if not ids:
                    self._by_key.pop(key, None)

    def _invalidate(self, keys: c.Iterable[str]) -> None:
        self.epoch += 1

        for session_id in {i for key in keys for i in self._by_key.get(key, ())}:
            self._drop(session_id)

    def _flush(self) -> None:
        self.epoch += 1
        self._entries.clear()
        self._by_key.clear()
        self._bytes = 0

    def _apply(self, message: t.Any) -> None:
        match message:
            case [b"message", channel, keys] if channel == CHANNEL:
                self.stats.invalidations += 1

                if keys is None:  # FLUSHALL / FLUSHDB
                    self._flush()
                else:
                    self._invalidate(key.decode("utf-8", "replace") for key in keys)

    def _pools(self) -> dict[str, t.Any]:
        if not self._cluster:
            return {"": self._client.connection_pool}

        return {
            node.name: node.redis_connection.connection_pool
            for node in self._client.get_primaries()
            if node.redis_connection is not None
        }

    def _lose(self, error: Exception | None) -> None:
        for channel in self._channels:
            channel.close()

        self._channels = []
        self._names = frozenset()
        self._flush()
        self.stats.flushes += 1

        if error is not None:
            self._warn(error)

    def _warn(self, error: Exception) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "The Redis local cache lost its invalidation channel (%s):"
                " every request reads from Redis until it is back.",
                type(error).__name__,
            )


class _Channel:
    """One tracking connection (to a server, or a cluster's primary)."""

    def __init__(self, conn: t.Any, now: float) -> None:
        self.conn = conn
        self.poller = select.poll()
        self.poller.register(conn._sock.fileno(), select.POLLIN)
        #: When the unanswered ping went out, and when the last answered one did.
        self.ping_sent_at: float | None = now
        self.confirmed_at = -HEARTBEAT_LIMIT

    @classmethod
    def open(cls, pool: t.Any, prefix: str, now: float) -> _Channel:
        """Connect with ``pool``'s settings, tracking every key under ``prefix``."""
        # RESP2 (maintenance notifications need RESP3), no retry, short timeouts,
        # and no health check: its PING would meet a subscribed connection's answer.
        kwargs = {
            key: value
            for key, value in pool.connection_kwargs.items()
            if not key.startswith(("maint_notifications", "orig_"))
        }
        kwargs.update(
            protocol=2, retry=None, health_check_interval=0,
            socket_timeout=HEARTBEAT_LIMIT,
        )  # fmt: skip

        if "socket_connect_timeout" in kwargs:
            given = kwargs["socket_connect_timeout"] or HEARTBEAT_LIMIT
            kwargs["socket_connect_timeout"] = min(given, HEARTBEAT_LIMIT)

        conn = pool.connection_class(**kwargs)

        try:
            conn.connect()
            conn.send_command("CLIENT", "ID")
            client_id = conn.read_response()
            conn.send_command(
                "CLIENT", "TRACKING", "ON", "REDIRECT", client_id,
                "BCAST", "PREFIX", prefix,
            )  # fmt: skip

            if conn.read_response() not in (b"OK", "OK"):
                raise ConnectionError("CLIENT TRACKING was refused")

            conn.send_command("SUBSCRIBE", CHANNEL)
            conn.read_response()
            conn.send_command("PING")  # the first heartbeat
            return cls(conn, now)
        except BaseException:
            conn.disconnect()
            raise

    def check(
        self, now: float, apply: c.Callable[[t.Any], None], staleness: float
    ) -> bool:
        """Apply what arrived, send a heartbeat if due; whether the last answered
        one went out less than ``staleness`` ago. Raise on any failure.
        """
        if self.poller.poll(0):
            while self.conn.can_read(timeout=0):
                message = self.conn.read_response()
                pong = isinstance(message, list) and message[:1] == [b"pong"]

                if pong and self.ping_sent_at is not None:
                    self.confirmed_at = self.ping_sent_at
                    self.ping_sent_at = None
                else:
                    apply(message)

        if self.ping_sent_at is None:
            if now - self.confirmed_at >= staleness / 4:
                self.conn.send_command("PING")
                self.ping_sent_at = now
        elif now - self.ping_sent_at > HEARTBEAT_LIMIT:
            raise TimeoutError("no answer to the heartbeat")

        return now - self.confirmed_at < staleness

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken socket
            self.conn.disconnect()
