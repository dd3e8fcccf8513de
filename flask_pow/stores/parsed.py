"""Stored records, decoded and validated: the one parser of both stores,
with a memo by the bytes they were read from.

Most requests read records that have not changed since the last request:
the same bytes. Parsing them again would give the same result, so it is
kept in a bounded memo, keyed by the exact bytes and the name the record is
read under (which validation checks). A changed record is other bytes,
parsed anew: nothing here can serve an old value. Each caller gets its own
copy of the mutable parts (a view may change ``current_user``'s JSON column
in place, or code a record's metadata): a shared value is never handed out.
"""

from __future__ import annotations

import collections
import copy
import threading
import typing as t

from .. import serialization
from ..records import SessionRecord
from . import CorruptLog

#: Stored bytes the memo keeps at most (the parsed values cost a few times
#: more); the least recently used go first.
MAX_BYTES = 2 * 1024 * 1024
#: Longer values are parsed every time (a user record with big columns).
MAX_VALUE_BYTES = 4096

_CONTAINERS = (dict, list, set)


def thaw(value: t.Any) -> t.Any:
    """A copy of a decoded value whose containers are new: the scalars
    tagged JSON decodes to (str, numbers, dates, UUID, Decimal, bytes) are
    immutable and shared.
    """
    kind = type(value)

    if kind is dict:
        value = value.copy()

        # Replacing the value of a key does not disturb the iteration.
        for key, item in value.items():
            if type(item) in _CONTAINERS:
                value[key] = thaw(item)
    elif kind is list:
        value = value.copy()

        for n, item in enumerate(value):
            if type(item) in _CONTAINERS:
                value[n] = thaw(item)
    elif kind is set:
        value = value.copy()

    return value


def _is_flat(value: dict[str, t.Any]) -> bool:
    """Whether a dict holds no container, so ``dict.copy`` thaws it."""
    for item in value.values():
        if type(item) in _CONTAINERS:
            return False

    return True


class ParsedRecords:
    """A store's parser: session, user and index records from their
    stored bytes, through a bounded memo.

    :param corrupt: where a record that does not parse is reported.
    :param report_undecodable: whether bytes that are not tagged JSON are
        reported too, or read as a miss (what cachelib does with a value
        its serializer cannot read).
    """

    def __init__(self, corrupt: CorruptLog, *, report_undecodable: bool) -> None:
        self.corrupt = corrupt
        self.report_undecodable = report_undecodable
        self._memo: collections.OrderedDict[tuple[str, str, bytes], t.Any] = (
            collections.OrderedDict()
        )
        self._bytes = 0
        self._lock = threading.Lock()

    def decode(self, kind: str, key: str, raw: bytes | None) -> t.Any:
        """Tagged JSON as stored under ``key``; ``None`` if missing or not
        tagged JSON.
        """
        if raw is None:
            return None

        try:
            return serialization.loads(raw)
        except ValueError:
            if self.report_undecodable:
                self.corrupt(kind, key)

            return None

    def _remember(self, key: tuple[str, str, bytes], value: t.Any) -> None:
        size = len(key[2]) + len(key[1])

        if size > MAX_VALUE_BYTES:
            return

        with self._lock:
            if key in self._memo:
                return

            self._memo[key] = value
            self._bytes += size

            while self._bytes > MAX_BYTES:
                old, _ = self._memo.popitem(last=False)
                self._bytes -= len(old[2]) + len(old[1])

    # Each of the three below is one call on the request path when the
    # bytes are known: the memo is read inline, and flat values are copied
    # by ``dict.copy``.

    def session(
        self, session_id: str, raw: bytes | None, key: str
    ) -> SessionRecord | None:
        """The session record stored as ``raw`` under ``key``; ``None`` if
        missing or corrupt.
        """
        if raw is None:
            return None

        memo_key = ("session", session_id, raw)

        with self._lock:
            held = self._memo.get(memo_key)

            if held is not None:
                self._memo.move_to_end(memo_key)

        if held is None:
            value = self.decode("session", key, raw)

            if value is None:
                return None

            try:
                record = SessionRecord.parse(session_id, value)
            except ValueError:
                self.corrupt("session", key)
                return None

            held = record, _is_flat(record.metadata)
            self._remember(memo_key, held)

        record, flat = held
        own = copy.copy(record)
        own.metadata = record.metadata.copy() if flat else thaw(record.metadata)
        return t.cast(SessionRecord, own)

    def user(
        self, user_key: str, raw: bytes | None, key: str
    ) -> dict[str, t.Any] | None:
        """The cached values of ``user_key`` stored as ``raw`` under
        ``key`` (as :func:`~flask_pow.stores.user_value` wrote them);
        ``None`` if missing or corrupt.
        """
        if raw is None:
            return None

        memo_key = ("user", user_key, raw)

        with self._lock:
            held = self._memo.get(memo_key)

            if held is not None:
                self._memo.move_to_end(memo_key)

        if held is None:
            value = self.decode("user", key, raw)

            if (
                not isinstance(value, dict)
                or value.get("key") != user_key
                or not isinstance(value.get("data"), dict)
            ):
                # Bytes that are not tagged JSON: the decoder decided.
                if value is not None:
                    self.corrupt("user", key)

                return None

            held = value["data"], _is_flat(value["data"])
            self._remember(memo_key, held)

        data, flat = held
        return t.cast(dict[str, t.Any], data.copy() if flat else thaw(data))

    def expiries(self, raw: bytes | None, key: str) -> dict[str, float]:
        """A stored name -> expiry map (an index, a bucket of users); empty
        if missing or corrupt. Not kept: it changes with every login.
        """
        if raw is None:
            return {}

        # Decoded here, not by decode(): this runs twice per login.
        try:
            value = serialization.loads(raw)
        except ValueError:
            if self.report_undecodable:
                self.corrupt("index", key)

            return {}

        if isinstance(value, dict):
            for expiry in value.values():
                if type(expiry) not in (int, float):
                    break
            else:
                return value

        self.corrupt("index", key)
        return {}

    def lists(self, raw: bytes | None, key: str, session_id: str) -> bool:
        """Whether the name -> expiry map stored as ``raw`` lists
        ``session_id``.
        """
        if raw is None:
            return False

        memo_key = ("map", "", raw)

        with self._lock:
            names = self._memo.get(memo_key)

            if names is not None:
                self._memo.move_to_end(memo_key)

        if names is None:
            names = frozenset(self.expiries(raw, key))
            self._remember(memo_key, names)

        return session_id in names
