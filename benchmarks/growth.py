"""Growth: what one write costs as a user's sessions pile up, and what is
left on disk after sessions idle out, on the stores this script starts
(Redis on a free loopback port, a FileSystemCache in a temporary
directory).

    python -m benchmarks.growth [--sizes 1,100,10000] [--idled 10000]

For each size n, one user gets n sessions, then the median time of a login
(write + index) and a rotation (compare-and-set + index) is printed, with
the ratio to n = 1. Then ``--idled`` sessions of distinct users are written
to a FileSystemCache and left to expire: the files on disk before and after
``flask pow cleanup`` (run here as ``cleanup`` at a time past their expiry).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import RedisCache

from flask_pow.credentials import CredentialsCache
from flask_pow.stores import SessionStore
from flask_pow.stores.cachelib import CachelibSessionStore
from flask_pow.stores.redis import RedisSessionStore
from tests.support.dict_users import DictUsers
from tests.support.servers import RedisServer


def credentials(cache: BaseCache, namespace: str) -> CredentialsCache:
    store: SessionStore = (
        RedisSessionStore(cache, namespace, lambda: ["bench"])
        if isinstance(cache, RedisCache)
        else CachelibSessionStore(cache, namespace, lambda: ["bench"])
    )
    return CredentialsCache(
        store,
        DictUsers(),
        credentials_ttl=1800,
        rotation_grace=30,
        absolute_ttl=None,
        max_sessions=1_000_000,
    )


def per_write(
    cache: BaseCache, sizes: list[int], rounds: int
) -> dict[int, tuple[float, float]]:
    """Median microseconds of a login and of a rotation at each size."""
    found = {}

    for n in sizes:
        cache_of = credentials(cache, f"growth-{n}")
        user = {"id": n, "email": "ada@example.com"}

        for _ in range(n - 1):
            cache_of.put(user)

        logins, rotations = [], []

        for _ in range(rounds):
            start = time.perf_counter()
            info, token = cache_of.put(user)
            logins.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert cache_of.rotate(info.id, token, user) is not None
            rotations.append(time.perf_counter() - start)
            cache_of.end(info.id, info.user_key)

        found[n] = (statistics.median(logins) * 1e6, statistics.median(rotations) * 1e6)

    return found


def idled_out(count: int) -> tuple[int, int, float]:
    """Files on disk after ``count`` sessions idled out, before and after a
    cleanup, and how long the cleanup took.
    """
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "cache")
        cache_of = credentials(FileSystemCache(path, threshold=0), "idle")

        for n in range(count):
            cache_of.put({"id": n})

        before = len(os.listdir(path))
        start = time.perf_counter()
        cache_of.store.cleanup(time.time() + 1800 + 5)
        took = time.perf_counter() - start
        return before, len(os.listdir(path)), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,100,10000")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--idled", type=int, default=10_000)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    server = RedisServer()

    try:
        with tempfile.TemporaryDirectory() as directory:
            stores: list[tuple[str, BaseCache]] = [
                ("Redis (loopback)", RedisCache(host=server.client())),
                ("FileSystemCache", FileSystemCache(directory, threshold=0)),
            ]

            print("One write as a user's sessions pile up (median us, ratio to n=1)")

            for name, cache in stores:
                found = per_write(cache, sizes, args.rounds)
                login_1, rotation_1 = found[sizes[0]]

                for n, (login, rotation) in found.items():
                    print(
                        f"{name:17} n={n:<6} login {login:8.0f} us"
                        f" ({login / login_1:5.2f}x)  rotation {rotation:8.0f} us"
                        f" ({rotation / rotation_1:5.2f}x)"
                    )
    finally:
        server.close()

    before, after, took = idled_out(args.idled)
    print(
        f"FileSystemCache after {args.idled} idled-out sessions: {before} files;"
        f" after cleanup: {after} ({took:.2f} s)"
    )


if __name__ == "__main__":
    main()
