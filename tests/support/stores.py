"""Session stores built on a cache directly, without an application."""

from __future__ import annotations

from cachelib import BaseCache
from cachelib.redis_base import BaseRedisCache

from flask_pow.stores import SessionStore
from flask_pow.stores.cachelib import CachelibSessionStore
from flask_pow.stores.redis import RedisSessionStore


def bare_store(cache: BaseCache, namespace: str) -> SessionStore:
    """The store flask_pow builds for ``cache`` (native on Redis), keyed by
    the suite's secret key, with no local copies.
    """
    if isinstance(cache, BaseRedisCache):
        return RedisSessionStore(cache, namespace, lambda: ["test secret key"])

    return CachelibSessionStore(cache, namespace, lambda: ["test secret key"])
