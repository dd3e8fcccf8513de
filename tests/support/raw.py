"""Reading and writing a store's raw bytes, below flask_pow and cachelib, as
an operator (or an attacker with access to the store) would.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import struct
import time
import urllib.parse

from cachelib import BaseCache
from cachelib import FileSystemCache
from cachelib import MemcachedCache
from cachelib import SimpleCache
from cachelib.redis_base import BaseRedisCache


@dataclasses.dataclass
class RawItem:
    key: str
    #: The stored bytes: one value, or one per field of a Redis hash or
    #: member of a sorted set.
    values: list[bytes]
    #: Expiry as a Unix time, 0 for never.
    expires: int


def plant(cache: BaseCache, key: str, raw: bytes) -> None:
    """Write raw bytes under a flask_pow key, bypassing the serializer."""
    expires = int(time.time()) + 600

    if isinstance(cache, SimpleCache):
        cache._cache[key] = (expires, raw)
    elif isinstance(cache, BaseRedisCache):
        cache._write_client.set(cache._get_prefix() + key, raw, ex=600)
    elif isinstance(cache, MemcachedCache):
        # MemcachedCache hands values to the client as they are, and the
        # suite's client stores bytes as bytes.
        cache.set(key, raw, timeout=600)
    else:
        assert isinstance(cache, FileSystemCache)

        with open(cache._get_filename(key), "wb") as f:
            f.write(struct.pack("I", expires) + raw)


def read(cache: BaseCache, key: str) -> bytes:
    """The raw bytes stored under a flask_pow key, bypassing the serializer."""
    if isinstance(cache, FileSystemCache):
        with open(cache._get_filename(key), "rb") as f:
            return f.read()[4:]

    [item] = [item for item in items(cache) if item.key.endswith(key)]
    return item.values[0]


def items(cache: BaseCache) -> list[RawItem]:
    """Every item in the store (for Redis, those under the cache's prefix)."""
    if isinstance(cache, SimpleCache):
        return [RawItem(k, [raw], exp) for k, (exp, raw) in cache._cache.items()]

    if isinstance(cache, BaseRedisCache):
        return _redis_items(cache)

    if isinstance(cache, MemcachedCache):
        return _memcached_items(cache)

    assert isinstance(cache, FileSystemCache)
    found = []

    for name in os.listdir(cache._path):
        if name.startswith("__wz_cache"):
            continue

        with open(os.path.join(cache._path, name), "rb") as f:
            data = f.read()

        found.append(RawItem(name, [data[4:]], struct.unpack("I", data[:4])[0]))

    return found


def _redis_items(cache: BaseRedisCache) -> list[RawItem]:
    client = cache._read_client
    found = []
    now = int(time.time())

    # SCAN is for the tests only: flask_pow itself never lists keys.
    for raw_key in client.scan_iter(match=cache._get_prefix() + "*", count=1000):
        key = raw_key.decode()
        kind = client.type(raw_key).decode()

        if kind == "string":
            values = [client.get(raw_key)]
        elif kind == "hash":
            values = list(client.hgetall(raw_key).values())
        elif kind == "zset":
            values = [
                member for member, _ in client.zrange(raw_key, 0, -1, withscores=True)
            ]
        else:
            raise AssertionError(f"unexpected {kind} at {key}")

        ttl = client.ttl(raw_key)
        found.append(RawItem(key, values, 0 if ttl < 0 else now + ttl))

    return found


def _memcached_items(cache: MemcachedCache) -> list[RawItem]:
    # memcached cannot list keys through a client; its LRU crawler can dump
    # the metadata of every item (for the tests only).
    client = cache._client
    host, port = client.server
    found = []

    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"lru_crawler metadump all\r\n")
        data = b""

        while not data.endswith(b"END\r\n"):
            chunk = conn.recv(65536)
            assert chunk, "memcached closed the metadump"
            data += chunk

    prefix = cache.key_prefix or ""

    for line in data.decode().splitlines():
        if not line.startswith("key="):
            continue

        fields = dict(part.split("=", 1) for part in line.split())
        key = urllib.parse.unquote(fields["key"])

        if not key.startswith(prefix):
            continue

        value = client.get(key)

        if value is not None:
            expires = int(fields["exp"])
            found.append(RawItem(key, [value], 0 if expires < 0 else expires))

    return found


def session_record_key(cache: BaseCache, session_id: str) -> str:
    """The key of a session record under the default namespace: on Redis
    the id's tag is the hash tag.
    """
    if isinstance(cache, BaseRedisCache):
        return f"credentials:session:{{{session_id[:8]}}}{session_id[8:]}"

    return f"credentials:session:{session_id}"


def user_record_key(cache: BaseCache, session_id: str, user_key: str) -> str:
    """The key of the user record a session reads, under the default
    namespace: the session id's tag and the user key.
    """
    if isinstance(cache, BaseRedisCache):
        return f"credentials:user:{{{session_id[:8]}}}{user_key}"

    return f"credentials:user:{session_id[:8]}:{user_key}"
