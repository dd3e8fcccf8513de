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


def response_error_types() -> tuple[type[Exception], ...]:
    """The error a server that answered with an error reply raises."""
    import redis

    types: list[type[Exception]] = [redis.ResponseError]

    try:
        import valkey
    except ImportError:
        pass
    else:
        types.append(valkey.ResponseError)

    return tuple(types)


#: Error replies of a healthy server that refuses for now: out of memory
#: under ``maxmemory`` with ``noeviction``, a replica after a failover, a
#: primary cut off from its replicas or its disk, a server still loading,
#: a script running too long. Each is a 503, not a 500.
REFUSALS = frozenset(
    {"OOM", "READONLY", "MASTERDOWN", "LOADING", "BUSY", "NOREPLICAS", "MISCONF"}
)


def _code(error: Exception) -> str:
    # The client turns some replies into classes of their own and drops the
    # code from the message (OutOfMemoryError, ReadOnlyError,
    # MasterDownError); the others keep it as the message's first word.
    name = type(error).__name__
    return {
        "OutOfMemoryError": "OOM",
        "ReadOnlyError": "READONLY",
        "MasterDownError": "MASTERDOWN",
    }.get(name, str(error).split(" ", 1)[0])


def is_refusal(error: Exception) -> bool:
    """Whether an error reply is a refusal (:data:`REFUSALS`)."""
    return _code(error) in REFUSALS


def is_read_only(error: Exception) -> bool:
    """Whether the server answered as a replica: the address now reaches
    one (a failover moved the primary), so the connections must be made
    again.
    """
    return _code(error) == "READONLY"


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
