"""A worker's local copy of the session records it read from Redis, kept
true by the server: server-assisted client-side caching (``CLIENT
TRACKING``).

One connection per worker asks the server to track every key under
flask_pow's prefix (``BCAST``) and to send it an invalidation whenever one
of them changes or expires (``REDIRECT`` to itself, subscribed to
``__redis__:invalidate``: RESP2, so Redis 6 and later, Valkey, and the
oldest redis-py flask_pow supports). A request whose session was read before
is then answered from memory, with no round trip; any change to its session,
its user or its user's index, by any process, drops the copy.

The copy is used only while the channel is known to deliver:

- the connection is checked (a non-blocking ``poll``) at every lookup, and
  what arrived is applied first;
- a ``PING`` goes out every :data:`HEARTBEAT` seconds on that connection,
  and the copy is trusted only while the last answer came back within
  :data:`HEARTBEAT_LIMIT`: the answer proves, by TCP's ordering, that every
  invalidation sent before it has been read;
- any error, end of stream or late answer closes the connection and empties
  the copy; a new connection is tried at most every :data:`RECONNECT`
  seconds, and the copy fills again only once it is tracked and answered;
- an entry also expires ``ttl`` seconds after it was read, whatever arrives;
- a fork (a pre-forking server) leaves the parent's connection to the parent.

Reads race with changes: an entry is stored only if no invalidation was
applied since its read began (:attr:`LocalCache.epoch`), so a change that
landed while the read was in flight cannot leave an old value behind.
"""

from __future__ import annotations

import collections
import collections.abc as c
import dataclasses
import logging
import os
import select
import threading
import time
import typing as t

logger = logging.getLogger("flask_pow")

#: Seconds between two heartbeats on the tracking connection.
HEARTBEAT = 0.5
#: The copy is trusted only if a heartbeat was answered this recently.
HEARTBEAT_LIMIT = 2.0
#: Seconds between two attempts to connect the tracking connection again.
RECONNECT = 1.0
#: The channel tracking invalidations arrive on (RESP2 redirect).
CHANNEL = b"__redis__:invalidate"
#: What an entry costs beside its values: keys, tuple, dict and LRU slots.
ENTRY_OVERHEAD = 400


@dataclasses.dataclass
class Stats:
    """Counters of a :class:`LocalCache`, for benchmarks and logs."""

    #: Lookups answered from memory.
    hits: int = 0
    #: Lookups not held (or expired).
    misses: int = 0
    #: Lookups made while the channel was not trusted.
    bypassed: int = 0
    #: Invalidation messages applied (a flush counts as one).
    invalidations: int = 0
    #: Times the copy was emptied because the channel was lost.
    flushes: int = 0


class _Entry(t.NamedTuple):
    values: tuple[bytes | None, ...]
    keys: tuple[str, ...]
    deadline: float
    size: int


class LocalCache:
    """A bounded, invalidated copy of what :meth:`RedisSessionStore.read
    <flask_pow.redis_store.RedisSessionStore.read>` fetched, per session id.

    :param client: the store's redis-py (or valkey) client; its pool's
        connection settings (address, TLS, password, timeouts) are used for
        the tracking connection.
    :param prefix: every key flask_pow writes starts with it.
    :param ttl: seconds an entry is served at most, invalidated or not.
    :param max_entries: entries kept at most (least recently used go first).
    :param max_bytes: bytes of values (plus a fixed cost per entry) kept at
        most.
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
    ) -> None:
        self._pool = client.connection_pool
        self.prefix = prefix
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.stats = Stats()
        #: Bumped by every invalidation applied and every flush.
        self.epoch = 0
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._by_key: dict[str, set[str]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._conn: t.Any = None
        self._poller: t.Any = None
        self._pid = 0
        self._next_connect = 0.0
        #: When the ping whose answer came last was sent (everything the
        #: server sent before it has been applied).
        self._confirmed_at = -HEARTBEAT_LIMIT
        #: When the unanswered ping went out, or ``None``.
        self._ping_sent_at: float | None = None
        self._warned = False

    # -- lookups ------------------------------------------------------------

    def get(self, session_id: str) -> tuple[bytes | None, ...] | None:
        """The values held for a session, or ``None`` (not held, expired,
        or the channel is not trusted now). Applies what the server sent
        first.
        """
        with self._lock:
            trusted = self._check()

            if not trusted:
                self.stats.bypassed += 1
                return None

            entry = self._entries.get(session_id)

            if entry is not None:
                if entry.deadline > self.clock():
                    self._entries.move_to_end(session_id)
                    self.stats.hits += 1
                    return entry.values

                self._drop(session_id)

            self.stats.misses += 1
            return None

    def begin(self) -> int:
        """The epoch to give :meth:`put`, taken before reading from the
        server.
        """
        return self.epoch

    def put(
        self,
        session_id: str,
        values: tuple[bytes | None, ...],
        keys: c.Sequence[str],
        epoch: int,
    ) -> None:
        """Keep what a read from the server returned, unless an
        invalidation was applied since it began (``epoch``), which may be of
        a change that landed after the server answered.
        """
        size = ENTRY_OVERHEAD + sum(len(v) for v in values if v) + sum(map(len, keys))

        with self._lock:
            if epoch != self.epoch or size > self.max_bytes or self._conn is None:
                return

            self._drop(session_id)
            self._entries[session_id] = _Entry(
                values, tuple(keys), self.clock() + self.ttl, size
            )
            self._bytes += size

            for key in keys:
                self._by_key.setdefault(key, set()).add(session_id)

            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def forget(self, keys: c.Iterable[str]) -> None:
        """Drop every entry that depends on one of ``keys``: this worker
        wrote them, and must not wait for the server's message to see it.
        """
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

    # -- entries --------------------------------------------------------------

    def _drop(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)

        if entry is None:
            return

        self._bytes -= entry.size

        for key in entry.keys:
            ids = self._by_key.get(key)

            if ids is not None:
                ids.discard(session_id)

                if not ids:
                    del self._by_key[key]

    def _invalidate(self, keys: c.Iterable[str]) -> None:
        self.epoch += 1

        for key in keys:
            for session_id in list(self._by_key.get(key, ())):
                self._drop(session_id)

    def _flush(self) -> None:
        self.epoch += 1
        self._entries.clear()
        self._by_key.clear()
        self._bytes = 0

    # -- the tracking connection --------------------------------------------

    def _check(self) -> bool:
        """Apply what the server sent, keep the heartbeat going, and say
        whether the copy can be trusted now. Never blocks on a healthy
        connection; (re)connects at most every :data:`RECONNECT` seconds.
        """
        now = self.clock()

        if self._conn is not None and self._pid != os.getpid():
            # Forked: the connection is the parent's. Let go of it
            # without a word on it (redis-py does not shut down a socket
            # another process opened).
            self._lose(None)

        if self._conn is None:
            if now < self._next_connect:
                return False

            self._next_connect = now + RECONNECT

            if not self._connect():
                return False

        try:
            if self._poller.poll(0):
                self._receive()

            if self._ping_sent_at is None:
                if now - self._confirmed_at >= HEARTBEAT:
                    self._conn.send_command("PING")
                    self._ping_sent_at = now
            elif now - self._ping_sent_at > HEARTBEAT_LIMIT:
                raise TimeoutError("no answer to the heartbeat")
        except Exception as e:  # noqa: BLE001 - any failure: stop trusting.
            self._lose(e)
            return False

        return now - self._confirmed_at < HEARTBEAT_LIMIT

    def _receive(self) -> None:
        conn = self._conn

        while conn.can_read(timeout=0):
            message = conn.read_response()

            if not isinstance(message, list) or not message:
                continue

            kind = message[0]

            if kind == b"message" and len(message) == 3 and message[1] == CHANNEL:
                self.stats.invalidations += 1

                if message[2] is None:
                    # FLUSHALL / FLUSHDB: everything is gone.
                    self._flush()
                else:
                    self._invalidate(
                        key.decode("utf-8", "replace") for key in message[2]
                    )
            elif kind == b"pong" and self._ping_sent_at is not None:
                self._confirmed_at = self._ping_sent_at
                self._ping_sent_at = None

    def _connect(self) -> bool:
        # The pool's address, TLS and credentials; RESP2 (redis-py's
        # maintenance notifications need RESP3, and are the pool's
        # business), and no retries: a failure here only means "later".
        kwargs = {
            key: value
            for key, value in self._pool.connection_kwargs.items()
            if not key.startswith(("maint_notifications", "orig_"))
        }
        kwargs.update(protocol=2, retry=None)
        conn = self._pool.connection_class(**kwargs)

        try:
            conn.connect()
            conn.send_command("CLIENT", "ID")
            client_id = conn.read_response()
            conn.send_command(
                "CLIENT", "TRACKING", "ON", "REDIRECT", client_id,
                "BCAST", "PREFIX", self.prefix,
            )  # fmt: skip

            if conn.read_response() not in (b"OK", "OK"):
                raise ConnectionError("CLIENT TRACKING was refused")

            conn.send_command("SUBSCRIBE", CHANNEL)
            conn.read_response()
            # The first heartbeat: trusted once it is answered.
            conn.send_command("PING")
        except Exception as e:  # noqa: BLE001 - any failure: try later.
            conn.disconnect()
            self._warn(e)
            return False

        self._conn = conn
        self._pid = os.getpid()
        self._poller = select.poll()
        self._poller.register(conn._sock.fileno(), select.POLLIN)
        self._ping_sent_at = self.clock()
        self._confirmed_at = -HEARTBEAT_LIMIT
        # Whatever was held was not tracked by this connection.
        self._flush()
        self._warned = False
        return True

    def _lose(self, error: Exception | None) -> None:
        if self._conn is not None:
            try:
                self._conn.disconnect()
            except Exception:  # noqa: BLE001, S110 - closing a broken socket.
                pass

        self._conn = None
        self._poller = None
        self._ping_sent_at = None
        self._confirmed_at = -HEARTBEAT_LIMIT
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
