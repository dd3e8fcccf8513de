"""Tagged JSON: round trips, refusals, and the cachelib serializer."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import pickle
import uuid

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

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


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            # Keys an application may hold, NUL-prefixed ones included: a JSON
            # column holds whatever a user typed.
            st.text() | st.sampled_from(["\x00dt", "\x00set", "\x00", "\x00\x00b"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(JSON)
@settings(max_examples=300, deadline=None)
def test_any_json_value_round_trips_exactly(value: object) -> None:
    assert serialization.loads(serialization.dumps(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        {"\x00dt": "2026-01-01T00:00:00"},
        {"\x00set": [1, 2]},
        {"\x00b": "not base64!"},
        {"\x00nope": 1},
        {"theme": {"\x00d": "2026-01-01"}},
    ],
)
def test_application_dict_shaped_like_a_tag_keeps_its_type(value: object) -> None:
    """Without escaping, the first became a datetime, the third and fourth
    made the whole record undecodable.
    """
    assert serialization.loads(serialization.dumps(value)) == value


def test_object_with_a_one_nul_key_among_others_is_refused() -> None:
    with pytest.raises(ValueError):
        serialization.loads(b'{"\\u0000dt": "2026-01-01", "x": 1}')
