"""A Redis Cluster with one replica per master loses a master under load:
its replica is promoted, possibly without the last writes. Every answer
during and after is "logged out" or "yourself", never another user, and
after "log out everywhere" no session works. Real servers on loopback; the
load is bounded in time.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
import typing as t
import uuid

import pytest
import redis
from cachelib import RedisCache

from flask_pow import Pow
from flask_pow import StoreUnavailable
from tests.support.env import Env
from tests.support.env import make_app
from tests.support.servers import RedisClusterServers

USERS = 40
#: The load's bound, if the failover never ends.
LOAD_SECONDS = 120.0


@pytest.fixture
def cluster() -> t.Iterator[RedisClusterServers]:
    servers = RedisClusterServers(replicas=1, node_timeout_ms=1000)
    yield servers
    servers.close()


def masters(cluster: RedisClusterServers) -> list[int]:
    """The ports of the nodes that serve slots now."""
    for node in cluster.nodes:
        if node.process is None:
            continue

        try:
            shards = node.client().cluster("nodes")
        except redis.ConnectionError:
            continue

        return sorted(
            int(address.split(":")[1].split("@")[0])
            for address, info in shards.items()
            if "master" in info["flags"] and "fail" not in info["flags"]
            and info["slots"]
        )  # fmt: skip

    raise AssertionError("no node answers")


def wait_until_healthy(cluster: RedisClusterServers, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout

    while True:
        live = [node for node in cluster.nodes if node.process is not None]

        try:
            if all(
                node.client().cluster("info").get("cluster_state") == "ok"
                for node in live
            ):
                return
        except redis.ConnectionError:
            pass

        assert time.monotonic() < deadline, "the cluster did not recover"
        time.sleep(0.1)


def retrying(operation: t.Callable[[], t.Any], timeout: float = 30) -> t.Any:
    """Run an operation until the cluster answers it (a 503 until then)."""
    deadline = time.monotonic() + timeout

    while True:
        try:
            return operation()
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the cluster never answered"
            time.sleep(0.1)


@pytest.mark.parametrize("local_cache", [False, True], ids=["", "local-cache"])
def test_a_master_killed_under_load_never_mixes_users_or_leaves_a_session(
    cluster: RedisClusterServers, tmp_path: t.Any, local_cache: bool
) -> None:
    """With ``local_cache``, the workers keep copies (POW_REDIS_LOCAL_CACHE):
    the killed master's channel is lost, every copy is emptied, and after
    the failover a second worker's copy still sees the revocations.
    """
    client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    prefix = f"failover-{uuid.uuid4().hex[:6]}:"
    cache = RedisCache(host=client, key_prefix=prefix)
    database = f"sqlite:///{tmp_path / 'failover.db'}"
    app, db, User = make_app(cache, database, POW_REDIS_LOCAL_CACHE=local_cache)
    env = Env(app, db, User, Pow(app, db=db, user_model=User))
    held: list[tuple[str, str, str]] = []
    crossed: list[str] = []
    answered = {"yourself": 0, "logged out": 0, "503": 0}

    with app.app_context():
        credentials = env.pow.credentials

        for n in range(1, USERS + 1):
            user = User(id=n, email=f"u{n}@example.com", name="U", plan="free",
                        password_hash="x")  # fmt: skip

            for _ in range(2):
                info, token = credentials.put(user)
                held.append((f"User:{n}", info.id, token))

    deadline = time.monotonic() + LOAD_SECONDS
    done = threading.Event()
    passes = [0]

    def load() -> None:
        with app.app_context():
            while not done.is_set() and time.monotonic() < deadline:
                for user_key, session_id, token in held:
                    try:
                        found = credentials.authenticate(session_id, token)
                    except StoreUnavailable:
                        answered["503"] += 1
                        continue

                    if found is None:
                        answered["logged out"] += 1
                    elif found.record.user_key != user_key:
                        crossed.append(session_id)
                    else:
                        answered["yourself"] += 1

                passes[0] += 1

    def after_passes(count: int) -> None:
        # The load's passes, not a time: a slow machine makes fewer of them.
        goal = passes[0] + count

        while passes[0] < goal:
            assert worker.is_alive(), "the load stopped"
            time.sleep(0.01)

    worker = threading.Thread(target=load)
    worker.start()
    after_passes(2)
    victim = next(node for node in cluster.nodes if node.port == masters(cluster)[0])
    assert victim.process is not None
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    victim.process = None
    # Under load through the failover, and for two passes after it.
    wait_until_healthy(cluster)
    after_passes(2)
    done.set()
    worker.join(timeout=60)

    # Another worker, with a copy of its own (when local_cache), which
    # reads every session twice after the failover: the second from its
    # copy where it can.
    reader_client = redis.RedisCluster(host="127.0.0.1", port=masters(cluster)[0])
    reader_app, reader_db, ReaderUser = make_app(
        RedisCache(host=reader_client, key_prefix=prefix),
        database,
        POW_REDIS_LOCAL_CACHE=local_cache,
    )
    reader = Env(reader_app, reader_db, ReaderUser, Pow(reader_app, db=reader_db,
                 user_model=ReaderUser)).pow  # fmt: skip

    with reader_app.app_context():
        reading = reader.credentials

        for _ in range(2):
            for _, session_id, token in held:
                retrying(functools.partial(reading.authenticate, session_id, token))
                time.sleep(0.002)  # the channels' heartbeats get answered

    with app.app_context():
        for n in range(1, USERS + 1):
            retrying(functools.partial(credentials.delete_sessions_by_key, f"User:{n}"))

        survivors = [
            session_id
            for _, session_id, token in held
            if retrying(functools.partial(credentials.authenticate, session_id, token))
        ]

    with reader_app.app_context():
        survivors += [
            session_id
            for _, session_id, token in held
            if retrying(functools.partial(reading.authenticate, session_id, token))
        ]

        if local_cache:
            local = reading.store.local  # type: ignore[attr-defined]
            print(f"reader's copy: {local.stats}")
            assert local.stats.hits > 0

    if local_cache:
        with app.app_context():
            assert credentials.store.local.stats.flushes >= 1  # type: ignore[attr-defined]

    # The figures, for docs/reliability.rst (shown with pytest -s).
    print(f"failover under load: {answered}, crossed {len(crossed)},"
          f" survivors {len(survivors)}")  # fmt: skip
    assert crossed == []
    assert survivors == []
    assert answered["yourself"] > 0
