"""Tagged JSON for everything flask_pow stores, so that no backend ever
pickles a value.

Plain JSON is written as it is (tuples as lists); a type of :data:`_TYPES`
as a one-key object, ``{"\\u0000dt": "<ISO 8601>"}`` (NUL and the tag); any
other type raises :exc:`TypeError`. An application's dict key starting with
NUL gets one more NUL, dropped on reading, so no value can pass for a tag.
"""

from __future__ import annotations

import base64
import collections.abc as c
import datetime as dt
import decimal
import json
import operator
import typing as t
import uuid

_TAG = "\x00"
_Codec = c.Callable[[t.Any], t.Any]

# Type, tag, encoder, decoder; datetime before date, its base class.
_TYPES: tuple[tuple[t.Any, str, _Codec, _Codec], ...] = (
    (dt.datetime, "dt", dt.datetime.isoformat, dt.datetime.fromisoformat),
    (dt.date, "d", dt.date.isoformat, dt.date.fromisoformat),
    (dt.time, "tm", dt.time.isoformat, dt.time.fromisoformat),
    (uuid.UUID, "u", operator.attrgetter("hex"), uuid.UUID),
    (decimal.Decimal, "dec", str, decimal.Decimal),
    (
        (bytes, bytearray, memoryview),
        "b",
        lambda value: base64.b64encode(bytes(value)).decode("ascii"),
        lambda value: base64.b64decode(value, validate=True),
    ),
    ((set, frozenset), "set", list, set),
)
_DECODERS = {tag: decode for _, tag, _, decode in _TYPES}
_CONTAINERS = (dict, list, tuple)


def _encode(value: t.Any) -> dict[str, t.Any]:
    for types, tag, encode, _ in _TYPES:
        if isinstance(value, types):
            return {_TAG + tag: encode(value)}

    raise TypeError(
        f"Values of type {type(value).__name__!r} cannot be stored by flask_pow."
    )


def _escape(value: dict[t.Any, t.Any] | list[t.Any] | tuple[t.Any, ...]) -> t.Any:
    """A copy with one more NUL on each dict key starting with NUL (loops: fast)."""
    if isinstance(value, dict):
        escaped: dict[t.Any, t.Any] = {}

        for key, item in value.items():
            if isinstance(key, str) and key[:1] == _TAG:
                key = _TAG + key

            escaped[key] = _escape(item) if isinstance(item, _CONTAINERS) else item

        return escaped

    items: list[t.Any] = []

    for item in value:
        items.append(_escape(item) if isinstance(item, _CONTAINERS) else item)

    return items


def _decode(obj: dict[str, t.Any]) -> t.Any:
    if _TAG not in "".join(obj):  # most objects: one join tells
        return obj

    # Only a tag starts with one NUL, and a tag is alone in its object.
    tags = [key for key in obj if key[:1] == _TAG and key[1:2] != _TAG]

    if tags:
        decoder = _DECODERS.get(tags[0][1:]) if len(obj) == 1 else None

        if decoder is None:
            raise ValueError("a bad tag, or a key starting with NUL")

        return decoder(obj[tags[0]])

    return {key[1:] if key[:1] == _TAG else key: value for key, value in obj.items()}


def dumps(value: t.Any) -> bytes:
    """Compact tagged JSON; :exc:`TypeError` for a type that cannot be stored."""
    return json.dumps(
        _escape(value) if isinstance(value, _CONTAINERS) else value,
        default=_encode,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def loads(data: str | bytes) -> t.Any:
    """Read what :func:`dumps` wrote; :exc:`ValueError` for anything else."""
    try:
        return json.loads(data, object_hook=_decode)
    except (TypeError, ValueError, ArithmeticError, RecursionError) as e:
        # A bad tag value can raise TypeError or decimal.InvalidOperation.
        raise ValueError(f"not a flask_pow record: {type(e).__name__}") from None


class JSONSerializer:
    """A cachelib serializer writing tagged JSON instead of pickles, for an
    application's own cache: ``cache.serializer = JSONSerializer()``.

    A value it cannot decode, such as a planted pickle, reads as ``None``
    (a miss); it is never unpickled.
    """

    def dumps(self, value: t.Any) -> bytes:
        """Serialize for caches that store bytes (Redis, Simple)."""
        return dumps(value)

    def loads(self, value: bytes | None) -> t.Any:
        """Deserialize what :meth:`dumps` wrote; ``None`` for anything else."""
        try:
            return None if value is None else loads(value)
        except ValueError:
            return None

    def dump(self, value: t.Any, f: t.IO[bytes]) -> None:
        """Serialize into a file (:class:`cachelib.FileSystemCache`)."""
        f.write(dumps(value))

    def load(self, f: t.IO[bytes]) -> t.Any:
        """Deserialize from a file (:class:`cachelib.FileSystemCache`)."""
        return self.loads(f.read())
