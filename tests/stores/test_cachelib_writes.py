"""How a cachelib store spends its cache operations: a login is one lock,
one read and one write, and records in a row that share a lifetime go in
one ``set_many`` (one round trip to a Memcached).
"""

from __future__ import annotations

import typing as t

import pytest
from cachelib import SimpleCache

from flask_pow import StoreUnavailable
from flask_pow.policy import Policy
from flask_pow.stores.cachelib import CachelibSessionStore
from tests.support.recording_cache import RecordingCache

NOW = 1_800_000_000.0
POLICY = Policy(credentials_ttl=1800, rotation_grace=30)


class RefusingCache(SimpleCache):
    def __init__(self) -> None:
        super().__init__(threshold=100_000)

    def set(self, *args: t.Any, **kwargs: t.Any) -> bool:
        return False


def store_on(cache: SimpleCache) -> CachelibSessionStore:
    return CachelibSessionStore(cache, "pow", lambda: ["test secret key"])


def login(store: CachelibSessionStore) -> None:
    session_id = store.new_session_id("User:1", NOW)
    record, _ = POLICY.new_session(session_id, "User:1", {}, NOW)
    store.create(record, {"name": "Ada"}, NOW, max_sessions=100)


def test_a_login_is_a_lock_a_read_and_one_write() -> None:
    cache = RecordingCache()
    store = store_on(cache)
    login(store)
    cache.calls.clear()

    login(store)

    assert cache.names == [
        "add",  # the lock of the user's bucket
        "get_many",  # the user's index and the bucket
        "set_many",  # the session, the index, the user and the bucket
        "get",  # the lock's release: still ours?
        "delete",
    ]
    assert len(cache.calls[2][1]) == 4


def test_records_with_other_lifetimes_are_written_with_their_own() -> None:
    cache = RecordingCache()
    store = store_on(cache)

    store._put({"a": ("1", 10.0), "b": ("2", 10.5), "c": ("3", 100.0), "d": ("4", 10)})

    assert cache.calls == [
        ("set_many", ["a", "b"], 11),
        ("set", ["c"], 101),
        ("set", ["d"], 11),
    ]


def test_a_write_the_cache_refuses_is_store_unavailable() -> None:
    store = store_on(RefusingCache())

    with pytest.raises(StoreUnavailable, match="refused a write"):
        login(store)
