"""What the Redis store needs from the client library: the client a
cachelib cache holds, and which of its errors mean the server is away.
redis-py and valkey-py are both accepted; valkey is optional.
"""

from __future__ import annotations

import typing as t

from cachelib.redis_base import BaseRedisCache


def error_types() -> tuple[type[Exception], ...]:
    """The client errors that mean the server cannot be reached."""
    import redis

    types: list[type[Exception]] = [
        redis.ConnectionError,
        redis.TimeoutError,
        redis.exceptions.ClusterDownError,
        redis.exceptions.TryAgainError,
        OSError,
    ]

    try:
        import valkey
    except ImportError:
        pass
    else:
        types += [valkey.ConnectionError, valkey.TimeoutError]

    return tuple(types)


def no_script_types() -> tuple[type[Exception], ...]:
    import redis

    types: list[type[Exception]] = [redis.exceptions.NoScriptError]

    try:
        import valkey
    except ImportError:
        pass
    else:
        types.append(valkey.exceptions.NoScriptError)

    return tuple(types)


def client_of(cache: BaseRedisCache) -> t.Any:
    """The Redis client a cachelib ``RedisCache`` or ``ValkeyCache`` holds.

    cachelib has no public accessor for it; ``_write_client`` is the one
    attribute of cachelib's that flask_pow reads (see docs/architecture.rst),
    checked here so that a cachelib that renames it gives a clear error.
    """
    client = getattr(cache, "_write_client", None)

    if client is None or not hasattr(client, "register_script"):
        raise TypeError(
            f"Cannot find the Redis client of {type(cache).__name__}: this"
            " cachelib version keeps it elsewhere. Set POW_REDIS_URL instead."
        )

    return client
