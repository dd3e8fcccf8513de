"""A test application on Redis with ``POW_REDIS_LOCAL_CACHE`` on, served in
its own process: ``python -m tests.apps.redis_local_server CLIENT REDIS_PORT
PREFIX DATABASE PORT_FILE``, CLIENT being ``redis``, ``valkey`` or
``cluster`` (REDIS_PORT is then one node's). It writes
the port it listens on to PORT_FILE, and serves until it is terminated.
``GET /local-stats`` answers the local cache's counters as JSON.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing as t

from cachelib import RedisCache
from cachelib.redis_base import BaseRedisCache
from werkzeug.serving import make_server

from flask_pow import Pow
from tests.support.env import Env
from tests.support.env import add_routes
from tests.support.env import make_app


def redis_cache(kind: str, port: int, prefix: str) -> BaseRedisCache:
    """cachelib's cache for ``kind`` (``redis``, ``valkey``, or ``cluster``:
    a Redis Cluster one of whose nodes listens on ``port``) on loopback.
    """
    if kind == "cluster":
        import redis

        cluster = redis.RedisCluster(host="127.0.0.1", port=port, socket_timeout=2)
        return RedisCache(host=cluster, key_prefix=prefix)

    if kind == "valkey":
        import valkey
        from cachelib import ValkeyCache

        valkey_client = valkey.Valkey(host="127.0.0.1", port=port, socket_timeout=2)
        return ValkeyCache(host=valkey_client, key_prefix=prefix)

    import redis

    redis_client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    return RedisCache(host=redis_client, key_prefix=prefix)


def main() -> None:
    kind, port, prefix, database, port_file = sys.argv[1:6]
    app, db, User = make_app(
        redis_cache(kind, int(port), prefix),
        f"sqlite:///{database}",
        POW_REDIS_LOCAL_CACHE=True,
    )
    env = Env(app, db, User, Pow(app, db=db, user_model=User))

    # Real time in this process: the clock the tests move by hand is not used.
    with app.app_context():
        credentials = env.pow.credentials
        credentials.clock = credentials.store.clock  # type: ignore[attr-defined]

    add_routes(env)

    @app.get("/local-stats")
    def local_stats() -> dict[str, t.Any]:
        local = credentials.store.local  # type: ignore[attr-defined]
        return dataclasses.asdict(local.stats)

    server = make_server("127.0.0.1", 0, app, threaded=True)

    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_port))

    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
