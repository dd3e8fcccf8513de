"""Tagged JSON: round trips, refusals, and the cachelib serializer."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import pickle
import uuid

import pytest

from flask_pow import JSONSerializer
from flask_pow import serialization


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        42,
        1.5,
        "text ✓",
        [1, "a", None],
        {"nested": {"list": [1, 2]}},
        dt.datetime(2026, 11, 21, 12, 30, 5, 123456, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 11, 21, 12, 30, 5),
        dt.datetime(2026, 11, 21, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.date(2026, 11, 21),
        dt.time(12, 30, 5),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        decimal.Decimal("19.99"),
        b"\x00\x01bytes",
        {1, 2, 3},
        {"when": dt.date(2026, 1, 1), "ids": [uuid.UUID(int=1)]},
    ],
)
def test_round_trip_keeps_value_and_type(value: object) -> None:
    result = serialization.loads(serialization.dumps(value))
    assert result == value
    assert type(result) is type(value)


def test_aware_datetime_keeps_its_offset() -> None:
    value = dt.datetime(2026, 1, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert serialization.loads(serialization.dumps(value)).utcoffset() == dt.timedelta(
        hours=2
    )


def test_tuple_becomes_list() -> None:
    assert serialization.loads(serialization.dumps((1, 2))) == [1, 2]


def test_unknown_type_is_refused() -> None:
    with pytest.raises(TypeError, match="'object' cannot be stored"):
        serialization.dumps({"x": object()})


def test_unknown_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="not a flask_pow record"):
        serialization.loads(b'{"\\u0000nope": 1}')


def test_bad_tag_value_is_refused() -> None:
    with pytest.raises(ValueError, match="not a flask_pow record"):
        serialization.loads(b'{"\\u0000dec": "not a number"}')


def test_dict_with_ordinary_one_key_is_kept() -> None:
    assert serialization.loads(serialization.dumps({"dt": "x"})) == {"dt": "x"}


def test_serializer_reads_miss_as_none() -> None:
    assert JSONSerializer().loads(None) is None


def test_serializer_reads_pickle_as_none() -> None:
    assert JSONSerializer().loads(pickle.dumps({"a": 1})) is None


def test_serializer_file_round_trip() -> None:
    serializer = JSONSerializer()
    buffer = io.BytesIO()
    serializer.dump({"a": dt.date(2026, 1, 1)}, buffer)
    buffer.seek(0)
    assert serializer.load(buffer) == {"a": dt.date(2026, 1, 1)}
