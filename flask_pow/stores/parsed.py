"""Stored records, decoded and validated: the one parser of both stores.

What bytes parse to is kept in a bounded memo keyed by the bytes and the
name they are read under (a changed record is other bytes, parsed anew).
Each caller gets its own copy of the mutable parts: a view may change
``current_user``'s JSON column in place.
"""

from __future__ import annotations

import collections
import collections.abc as c
import threading
import typing as t

from .. import serialization
from ..records import SessionRecord
from . import CorruptLog

#: Stored bytes the memo keeps at most; the least recently used go first.
MAX_BYTES = 2 * 1024 * 1024
#: Longer values are parsed every time (a user record with big columns).
MAX_VALUE_BYTES = 4096

_CONTAINERS = (dict, list, set)

#: A memo key: the kind of record, the name it is read under, its bytes.
MemoKey = tuple[str, str, bytes]


def thaw(value: t.Any) -> t.Any:
    """A copy of a decoded value with new containers (scalars are shared)."""
    kind = type(value)

    if kind in _CONTAINERS:
        value = value.copy()

    if kind is dict or kind is list:
        # Replacing an item does not disturb the iteration.
        for key, item in value.items() if kind is dict else enumerate(value):
            if type(item) in _CONTAINERS:
                value[key] = thaw(item)

    return value


class ParsedRecords:
    """A store's parser, through a bounded memo, read inline: :meth:`session`
    and :meth:`listed_user` are one call each on the request path.

    :param corrupt: where a record that does not parse is reported.
    :param report_undecodable: whether bytes that are not tagged JSON are
        reported too, or read as a miss (what cachelib does with a value
        its serializer cannot read).
    """

    #: Stored bytes the memo holds at most; 0 holds none (each read parses).
    max_bytes = MAX_BYTES

    def __init__(self, corrupt: CorruptLog, *, report_undecodable: bool) -> None:
        self.corrupt = corrupt
        self.report_undecodable = report_undecodable
        self._memo: collections.OrderedDict[MemoKey, t.Any] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def decode(self, kind: str, key: str, raw: bytes | None) -> t.Any:
        """Tagged JSON stored under ``key``; ``None`` if missing or not."""
        if raw is None:
            return None

        try:
            return serialization.loads(raw)
        except ValueError:
            if self.report_undecodable:
                self.corrupt(kind, key)

            return None

    def _remember(self, key: MemoKey, value: t.Any) -> None:
        size = len(key[2]) + len(key[1])

        if size > MAX_VALUE_BYTES or size > self.max_bytes:
            return

        with self._lock:
            if key in self._memo:
                return

            self._memo[key] = value
            self._bytes += size

            while self._bytes > self.max_bytes:
                old, _ = self._memo.popitem(last=False)
                self._bytes -= len(old[2]) + len(old[1])

    def session(
        self, session_id: str, raw: bytes | None, key: str
    ) -> SessionRecord | None:
        """The session stored as ``raw``, or ``None``."""
        if raw is None:
            return None

        memo_key = ("session", session_id, raw)

        with self._lock:
            if (held := self._memo.get(memo_key)) is not None:
                self._memo.move_to_end(memo_key)

        if held is None:
            if (value := self.decode("session", key, raw)) is None:
                return None

            try:
                record = SessionRecord.parse(session_id, value)
            except ValueError:
                self.corrupt("session", key)
                return None

            held = record, _is_flat(record.metadata)
            self._remember(memo_key, held)

        record, flat = held
        own = record.copy()
        own.metadata = record.metadata.copy() if flat else thaw(record.metadata)
        return own

    def user(
        self, user_key: str, raw: bytes | None, key: str
    ) -> dict[str, t.Any] | None:
        """The values of ``user_key`` stored as ``raw``, or ``None``."""
        if raw is None:
            return None

        memo_key = ("user", user_key, raw)

        with self._lock:
            if (held := self._memo.get(memo_key)) is not None:
                self._memo.move_to_end(memo_key)

        if held is None and (held := self._parse_user(memo_key, key)) is None:
            return None

        data, flat = held
        return t.cast(dict[str, t.Any], data.copy() if flat else thaw(data))

    def listed_user(
        self,
        session_id: str,
        user_key: str,
        raw: c.Sequence[bytes | None],
        keys: c.Sequence[str],
    ) -> tuple[bool, dict[str, t.Any] | None]:
        """Whether the index ``raw[1]`` lists ``session_id``, and
        :meth:`user` of ``raw[0]`` (``keys``: where they are stored).
        """
        user, index = raw
        index_memo = ("map", "", index or b"")
        user_memo = ("user", user_key, user or b"")

        with self._lock:
            if (names := self._memo.get(index_memo)) is not None:
                self._memo.move_to_end(index_memo)

            if (held := self._memo.get(user_memo)) is not None:
                self._memo.move_to_end(user_memo)

        if names is None:
            names = frozenset(self.expiries(index, keys[1]))

            if index is not None:
                self._remember(index_memo, names)

        if session_id not in names:
            return False, None

        if held is None and (
            user is None or (held := self._parse_user(user_memo, keys[0])) is None
        ):
            return True, None

        data, flat = held
        return True, data.copy() if flat else thaw(data)

    def _parse_user(self, memo_key: MemoKey, key: str) -> t.Any:
        value = self.decode("user", key, memo_key[2])

        if (
            not isinstance(value, dict)
            or value.get("key") != memo_key[1]
            or not isinstance(value.get("data"), dict)
        ):
            if value is not None:  # else decode() decided
                self.corrupt("user", key)

            return None

        held = value["data"], _is_flat(value["data"])
        self._remember(memo_key, held)
        return held

    def expiries(self, raw: bytes | None, key: str) -> dict[str, float]:
        """A name -> expiry map (an index, a bucket), not memoized; empty if
        missing or corrupt.
        """
        if (value := self.decode("index", key, raw)) is None:
            return {}

        if isinstance(value, dict):
            for expiry in value.values():
                if type(expiry) not in (int, float):
                    break
            else:
                return value

        self.corrupt("index", key)
        return {}


def _is_flat(value: dict[str, t.Any]) -> bool:
    return all(type(item) not in _CONTAINERS for item in value.values())
