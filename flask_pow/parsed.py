"""Validated records by the bytes they were read from.

Most requests read records that have not changed since the last request:
the same bytes. Decoding the JSON and validating the record again would
give the same result, so the result is kept, keyed by the exact bytes (and
by the id the record is read under, which validation checks against). A
changed record is other bytes, so it is parsed anew: nothing here can serve
an old value.

Each caller gets its own copy of the mutable parts (a view may change
``current_user``'s JSON column in place, or code a record's metadata): a
shared value is never handed out.
"""

from __future__ import annotations

import collections
import copy
import threading
import typing as t

from . import serialization
from .protocol import CorruptLog
from .protocol import parse_map
from .protocol import parse_session
from .protocol import parse_user
from .records import SessionRecord

#: Stored bytes kept at most (the parsed values cost a few times more);
#: the least recently used go first.
MAX_BYTES = 2 * 1024 * 1024
#: Longer values are parsed every time (a user record with big columns).
MAX_VALUE_BYTES = 4096


def thaw(value: t.Any) -> t.Any:
    """A copy of a decoded value whose containers are new: the scalars
    tagged JSON decodes to (str, numbers, dates, UUID, Decimal, bytes) are
    immutable and shared.
    """
    kind = type(value)

    if kind is dict:
        return {key: thaw(item) for key, item in value.items()}

    if kind is list:
        return [thaw(item) for item in value]

    if kind is set:
        return set(value)

    return value


class ParsedRecords:
    """A bounded memo of parsed session, user and index records.

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

    def _decode(self, kind: str, key: str, value: bytes) -> t.Any:
        try:
            return serialization.loads(value)
        except ValueError:
            if self.report_undecodable:
                self.corrupt(kind, key)

            return None

    def _recall(self, key: tuple[str, str, bytes]) -> t.Any:
        with self._lock:
            value = self._memo.get(key)

            if value is not None:
                self._memo.move_to_end(key)

            return value

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

    def session(
        self, session_id: str, raw: bytes | None, key: str
    ) -> SessionRecord | None:
        """The session record stored as ``raw`` under ``key``; ``None`` if
        missing or corrupt.
        """
        if raw is None:
            return None

        memo_key = ("session", session_id, raw)
        record = self._recall(memo_key)

        if record is None:
            value = self._decode("session", key, raw)
            record = parse_session(session_id, value, key, self.corrupt)

            if record is None:
                return None

            self._remember(memo_key, record)

        own = copy.copy(record)
        own.metadata = thaw(record.metadata)
        return t.cast(SessionRecord, own)

    def user(
        self, user_key: str, raw: bytes | None, key: str
    ) -> dict[str, t.Any] | None:
        """The cached values of ``user_key`` stored as ``raw`` under
        ``key``; ``None`` if missing or corrupt.
        """
        if raw is None:
            return None

        memo_key = ("user", user_key, raw)
        data = self._recall(memo_key)

        if data is None:
            data = parse_user(
                user_key, self._decode("user", key, raw), key, self.corrupt
            )

            if data is None:
                return None

            self._remember(memo_key, data)

        return t.cast(dict[str, t.Any], thaw(data))

    def lists(self, raw: bytes | None, key: str, session_id: str) -> bool:
        """Whether the name -> expiry map stored as ``raw`` lists
        ``session_id``.
        """
        if raw is None:
            return False

        memo_key = ("map", "", raw)
        names = self._recall(memo_key)

        if names is None:
            value = self._decode("index", key, raw)
            names = frozenset(parse_map(value, key, self.corrupt))
            self._remember(memo_key, names)

        return session_id in names
