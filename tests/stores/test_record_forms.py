"""The session record's two stored forms: the compact one every store
writes, and the long one written before it, which every store (and the Redis
scripts) still reads, rotates and orders, so that an upgrade logs nobody out.
"""

from __future__ import annotations

import json
import typing as t

import pytest
from cachelib import BaseCache

from flask_pow import serialization
from flask_pow.policy import Policy
from flask_pow.records import SessionRecord
from flask_pow.stores import SessionStore
from tests.support.raw import plant
from tests.support.raw import read
from tests.support.raw import session_record_key
from tests.support.stores import bare_store

pytestmark = pytest.mark.backends

NOW = 1_800_000_000.0
POLICY = Policy(credentials_ttl=1800, rotation_grace=30)


@pytest.fixture
def store(cache: BaseCache) -> SessionStore:
    # The default namespace, which tests.support.raw's keys assume.
    return bare_store(cache, "credentials")


def login(store: SessionStore, now: float = NOW) -> tuple[SessionRecord, str]:
    session_id = store.new_session_id("User:1", now)
    record, token = POLICY.new_session(session_id, "User:1", {"ip": "::1"}, now)
    store.create(record, {"name": "Ada"}, now, max_sessions=100)
    return record, token


def stored(cache: BaseCache, session_id: str) -> dict[str, t.Any]:
    value: dict[str, t.Any] = json.loads(
        read(cache, session_record_key(cache, session_id))
    )
    return value


def long_form(record: SessionRecord) -> bytes:
    """The record as flask_pow wrote it before the compact form."""
    value = {
        "user": record.user_key,
        "token": record.token,
        "created_at": record.created_at,
        "inserted_at": record.inserted_at,
        "expires_at": record.expires_at,
        "metadata": record.metadata,
        "fresh_at": record.fresh_at,
    }

    if record.previous is not None:
        value.update(
            previous=record.previous,
            previous_until=record.previous_until,
            rotated_to=record.rotated_to,
        )

    return serialization.dumps(value)


def test_a_new_session_is_stored_with_short_keys_and_no_repeated_times(
    store: SessionStore, cache: BaseCache
) -> None:
    record, _ = login(store)
    # inserted_at and fresh_at equal created_at at a login: left out.
    assert sorted(stored(cache, record.id)) == ["c", "e", "m", "t", "u"]


def test_a_rotated_session_stores_its_issue_time_and_rotation(
    store: SessionStore, cache: BaseCache
) -> None:
    record, token = login(store)
    advanced, _ = POLICY.advance(record, token, NOW + 10)
    assert store.swap(advanced, record.token, NOW + 10, user_data={}, wait=False).ok
    value = stored(cache, record.id)
    assert (value["i"], value["p"], value["pu"]) == (NOW + 10, record.token, NOW + 40)
    assert "f" not in value
    assert store.read_session(record.id) == advanced


def test_a_long_form_record_reads_as_the_same_session(
    store: SessionStore, cache: BaseCache
) -> None:
    record, _ = login(store)
    plant(cache, session_record_key(cache, record.id), long_form(record))
    found = store.read(record.id)
    assert found is not None
    assert (found.record, found.user_data) == (record, {"name": "Ada"})


def test_a_long_form_record_is_rotated_into_the_compact_form(
    store: SessionStore, cache: BaseCache
) -> None:
    record, token = login(store)
    plant(cache, session_record_key(cache, record.id), long_form(record))
    advanced, _ = POLICY.advance(record, token, NOW + 10)
    # The compare-and-set reads the long form's token digest.
    assert store.swap(advanced, record.token, NOW + 10, user_data={}, wait=False).ok
    assert "u" in stored(cache, record.id)
    assert store.read_session(record.id) == advanced


def test_long_form_records_are_ended_least_recently_used_first(
    store: SessionStore, cache: BaseCache
) -> None:
    first, _ = login(store, NOW)
    second, token = login(store, NOW + 10)
    # Rotated after the third login: used more recently than it.
    rotated, _ = POLICY.advance(second, token, NOW + 25)
    third, _ = login(store, NOW + 20)

    for record in (first, rotated, third):
        plant(cache, session_record_key(cache, record.id), long_form(record))

    newest_id = store.new_session_id("User:1", NOW + 30)
    newest, _ = POLICY.new_session(newest_id, "User:1", {}, NOW + 30)
    ended = store.create(newest, {"name": "Ada"}, NOW + 30, max_sessions=2)
    assert sorted(ended) == sorted([first.id, third.id])
