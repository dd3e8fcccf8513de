"""The store protocol's contract: the same tests on every backend the suite
starts (in-process, file, Memcached, Redis, Redis Cluster, Valkey's
client), against the store itself and then through the session policy.
"""

from __future__ import annotations

import shutil
import threading
import typing as t

import pytest
from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import MemcachedCache
from cachelib import RedisCache

from flask_pow import StoreUnavailable
from flask_pow.credentials import CredentialsCache
from flask_pow.policy import Policy
from flask_pow.records import SessionRecord
from flask_pow.stores import SessionStore
from tests.support.dict_users import DictUsers
from tests.support.servers import free_port
from tests.support.stores import bare_store

#: The contract: every test on every store.
pytestmark = pytest.mark.backends

NOW = 1_800_000_000.0
POLICY = Policy(credentials_ttl=1800, rotation_grace=30)


def build(cache: BaseCache) -> SessionStore:
    return bare_store(cache, "pow")


@pytest.fixture
def store(cache: BaseCache) -> SessionStore:
    return build(cache)


def login(
    store: SessionStore, user_key: str = "User:1", now: float = NOW
) -> tuple[SessionRecord, str]:
    session_id = store.new_session_id(user_key, now)
    record, token = POLICY.new_session(session_id, user_key, {"ip": "::1"}, now)
    assert store.create(record, {"name": user_key}, now, max_sessions=100) == []
    return record, token


# -- the store ----------------------------------------------------------------


def test_read_of_an_unknown_session_is_none(store: SessionStore) -> None:
    session_id = store.new_session_id("User:1", NOW)
    assert store.read(session_id) is None
    assert store.read_session(session_id) is None


def test_created_session_reads_back_with_its_user(store: SessionStore) -> None:
    record, _ = login(store)
    found = store.read(record.id)
    assert found is not None
    assert found.record == record
    assert found.user_data == {"name": "User:1"}
    assert store.read_session(record.id) == record


def test_new_session_ids_are_distinct(store: SessionStore) -> None:
    ids = {store.new_session_id("User:1", NOW) for _ in range(20)}
    assert len(ids) == 20


def test_swap_writes_when_the_token_is_still_expected(store: SessionStore) -> None:
    record, token = login(store)
    advanced, _ = POLICY.advance(record, token, NOW + 10)
    swapped = store.swap(advanced, record.token, NOW + 10, user_data={}, wait=False)
    assert swapped.ok
    assert store.read_session(record.id) == advanced


def test_swap_refuses_a_stale_token_and_returns_the_current_record(
    store: SessionStore,
) -> None:
    record, token = login(store)
    first, _ = POLICY.advance(record, token, NOW + 10)
    assert store.swap(first, record.token, NOW + 10, user_data={}, wait=False).ok
    second, _ = POLICY.advance(record, token, NOW + 11)
    swapped = store.swap(second, record.token, NOW + 11, user_data={}, wait=False)
    assert not swapped.ok
    assert swapped.current == first
    assert store.read_session(record.id) == first


def test_swap_of_a_deleted_session_writes_nothing(store: SessionStore) -> None:
    record, token = login(store)
    assert store.delete(record.user_key, [record.id], NOW) == [record.id]
    advanced, _ = POLICY.advance(record, token, NOW + 10)
    swapped = store.swap(advanced, record.token, NOW + 10, user_data={}, wait=True)
    assert not swapped.ok
    assert swapped.current is None
    assert store.read_session(record.id) is None


def test_swap_keeps_the_users_values_written_meanwhile(store: SessionStore) -> None:
    record, token = login(store)
    assert store.write_user(record.user_key, {"name": "synced"}, NOW + 5)
    advanced, _ = POLICY.advance(record, token, NOW + 10)
    stale = {"name": "as the request read it"}
    assert store.swap(advanced, record.token, NOW + 10, user_data=stale, wait=False).ok
    found = store.read(record.id)
    assert found is not None and found.user_data == {"name": "synced"}


def test_of_concurrent_swaps_exactly_one_wins(store: SessionStore) -> None:
    record, token = login(store)
    results: list[bool] = []
    start = threading.Barrier(6)

    def swap() -> None:
        advanced, _ = POLICY.advance(record, token, NOW + 10)
        start.wait()
        swapped = store.swap(advanced, record.token, NOW + 10, user_data={}, wait=True)
        results.append(swapped.ok)

    threads = [threading.Thread(target=swap) for _ in range(6)]

    for thread in threads:
        thread.start()

    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results) == [False] * 5 + [True]


def test_delete_returns_the_ids_that_were_there(store: SessionStore) -> None:
    first, _ = login(store)
    second, _ = login(store)
    unknown = store.new_session_id("User:1", NOW)
    ended = store.delete("User:1", [first.id, unknown], NOW)
    assert ended == [first.id]
    assert store.read(first.id) is None
    assert store.read(second.id) is not None
    assert store.session_ids("User:1") == [second.id]


def test_deleting_the_last_session_drops_the_user(store: SessionStore) -> None:
    record, _ = login(store)
    store.delete(record.user_key, [record.id], NOW)
    assert store.users(NOW) == []
    assert store.session_ids(record.user_key) == []
    assert not store.write_user(record.user_key, {"name": "x"}, NOW)


def test_write_user_without_a_live_session_writes_nothing(
    store: SessionStore,
) -> None:
    assert not store.write_user("User:9", {"name": "nobody"}, NOW)
    assert store.users(NOW) == []


def test_write_user_reaches_every_session(store: SessionStore) -> None:
    first, _ = login(store)
    second, _ = login(store)
    assert store.write_user("User:1", {"name": "renamed"}, NOW + 1)

    for record in (first, second):
        found = store.read(record.id)
        assert found is not None and found.user_data == {"name": "renamed"}


def test_sessions_lists_a_users_records_only(store: SessionStore) -> None:
    first, _ = login(store)
    second, _ = login(store)
    login(store, "User:2")
    records = store.sessions("User:1", NOW)
    assert sorted(r.id for r in records) == sorted([first.id, second.id])
    assert sorted(store.session_ids("User:1")) == sorted([first.id, second.id])


def test_users_lists_each_user_with_a_live_session(store: SessionStore) -> None:
    login(store, "User:1")
    login(store, "User:1")
    login(store, "User:2")
    assert sorted(store.users(NOW)) == [
        ("User:1", {"name": "User:1"}),
        ("User:2", {"name": "User:2"}),
    ]


def test_a_login_past_max_sessions_ends_the_least_recently_used(
    store: SessionStore,
) -> None:
    first, _ = login(store, now=NOW)
    second, _ = login(store, now=NOW + 10)
    third, _ = login(store, now=NOW + 20)
    session_id = store.new_session_id("User:1", NOW + 30)
    newest, _ = POLICY.new_session(session_id, "User:1", {}, NOW + 30)
    ended = store.create(newest, {"name": "User:1"}, NOW + 30, max_sessions=2)
    assert sorted(ended) == sorted([first.id, second.id])
    assert store.read(first.id) is None and store.read(second.id) is None
    assert sorted(store.session_ids("User:1")) == sorted([third.id, newest.id])


def test_expired_sessions_are_not_listed(store: SessionStore) -> None:
    login(store, "User:1")
    later = NOW + POLICY.credentials_ttl + 1
    assert store.sessions("User:1", later) == []
    assert store.users(later) == []


# -- through the policy -------------------------------------------------------


@pytest.fixture
def credentials(store: SessionStore) -> CredentialsCache:
    cache = CredentialsCache(
        store, DictUsers(), credentials_ttl=1800, rotation_grace=30, absolute_ttl=None
    )
    cache.clock = lambda: NOW
    return cache


def test_losers_of_a_rotation_race_follow_the_winner(
    credentials: CredentialsCache,
) -> None:
    info, token = credentials.put({"id": 1})
    results: list[tuple[str, bool] | None] = []
    start = threading.Barrier(6)

    def rotate() -> None:
        start.wait()
        results.append(credentials.rotate(info.id, token, {}))

    threads = [threading.Thread(target=rotate) for _ in range(6)]

    for thread in threads:
        thread.start()

    for thread in threads:
        thread.join(timeout=30)

    winners = [r for r in results if r is not None and r[1]]
    assert len(winners) == 1
    # Every other caller was moved to the winner's token (a lock-based
    # store may leave one that could not tell in time on its own token).
    followers = [r for r in results if r is not None and not r[1]]
    assert followers and all(r[0] == winners[0][0] for r in followers)
    assert len(followers) + results.count(None) == 5


def test_a_privilege_change_after_a_rotation_ends_on_a_newer_token(
    credentials: CredentialsCache,
) -> None:
    info, token = credentials.put({"id": 1})
    routine = credentials.rotate(info.id, token, {})
    assert routine is not None and routine[1]
    forced = credentials.rotate(info.id, token, {}, wait=True)
    assert forced is not None and forced[1]
    assert forced[0] != routine[0]
    assert credentials.authenticate(info.id, forced[0]) is not None
    # A privilege change keeps no grace window: every earlier token is dead.
    assert credentials.authenticate(info.id, routine[0]) is None
    assert credentials.authenticate(info.id, token) is None


def test_revoke_all_ends_every_session_of_a_user(
    credentials: CredentialsCache,
) -> None:
    infos = [credentials.put({"id": 1}) for _ in range(3)]
    other, other_token = credentials.put({"id": 2})
    assert credentials.delete_sessions_by_key("User:1") == 3

    for info, token in infos:
        assert credentials.authenticate(info.id, token) is None

    assert credentials.authenticate(other.id, other_token) is not None


# -- errors -------------------------------------------------------------------


def unreachable(backend: str, cache: BaseCache) -> SessionStore:
    """A store of the same kind whose server is not there."""
    port = free_port()

    if backend == "filesystem":
        assert isinstance(cache, FileSystemCache)
        store = build(cache)
        path = cache._path
        shutil.rmtree(path)

        # Root ignores permissions: the directory becomes a file.
        with open(path, "w") as f:
            f.write("not a directory")

        shutil.rmtree(path + ".pow-locks")

        with open(path + ".pow-locks", "w") as f:
            f.write("not a directory")

        return store

    if backend == "memcached":
        from pymemcache.client.base import PooledClient

        client = PooledClient(("127.0.0.1", port), default_noreply=False, timeout=1)
        return build(MemcachedCache(servers=client))

    if backend == "valkey":
        import valkey
        from cachelib import ValkeyCache

        return build(ValkeyCache(host=valkey.Valkey(host="127.0.0.1", port=port)))

    import redis

    return build(RedisCache(host=redis.Redis(host="127.0.0.1", port=port)))


OPERATIONS: dict[str, t.Callable[[SessionStore, SessionRecord], object]] = {
    "read": lambda s, r: s.read(r.id),
    "read_session": lambda s, r: s.read_session(r.id),
    "create": lambda s, r: s.create(r, {}, NOW, max_sessions=100),
    "swap": lambda s, r: s.swap(r, r.token, NOW, user_data={}, wait=True),
    "delete": lambda s, r: s.delete("User:1", [r.id], NOW),
    "session_ids": lambda s, r: s.session_ids("User:1"),
    "sessions": lambda s, r: s.sessions("User:1", NOW),
    "write_user": lambda s, r: s.write_user("User:1", {}, NOW),
    "users": lambda s, r: s.users(NOW),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_every_operation_on_an_unreachable_store_is_store_unavailable(
    backend: str, cache: BaseCache, store: SessionStore, operation: str
) -> None:
    if backend == "simple":
        pytest.skip("an in-process cache cannot be unreachable")

    if backend == "redis-cluster":
        pytest.skip("a cluster client needs its nodes to be built; see test_redis")

    record, _ = login(store)
    broken = unreachable(backend, cache)

    with pytest.raises(StoreUnavailable):
        OPERATIONS[operation](broken, record)
