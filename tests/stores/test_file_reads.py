"""The file store reads cachelib's files itself (stores/filesystem.py,
``read_files``): the same values as cachelib's ``get``, in half its time,
and a file that is there but cannot be read is an outage, never a logout.
"""

from __future__ import annotations

import os
import time
import typing as t

import pytest
from cachelib import FileSystemCache

from flask_pow.stores import StoreUnavailable
from flask_pow.stores.cachelib import CachelibSessionStore
from flask_pow.stores.cachelib import StoredBytes
from flask_pow.stores.filesystem import read_files
from flask_pow.stores.filesystem import reads_directly
from tests.support.env import add_routes
from tests.support.env import make_pow_app
from tests.support.raw import session_record_key
from tests.support.sessions import session_ids


@pytest.fixture
def cache(tmp_path: t.Any) -> FileSystemCache:
    files = FileSystemCache(str(tmp_path / "files"), threshold=0)
    files.serializer = StoredBytes()  # type: ignore[assignment]
    return files


def test_direct_reads_give_what_cachelib_reads(cache: FileSystemCache) -> None:
    values = {
        "small": (b'{"u": "User:1"}', 600),
        "large": (b"x" * 100_000, 600),  # more than one read's worth
        "forever": (b"kept", 0),
        "expired": (b"gone", -1),
    }

    for key, (value, timeout) in values.items():
        cache.set(key, value, timeout=timeout)

    keys = [*values, "missing"]
    assert read_files(cache, keys, time.time()) == [cache.get(key) for key in keys]
    assert read_files(cache, keys, time.time())[:3] == [
        b'{"u": "User:1"}',
        b"x" * 100_000,
        b"kept",
    ]


def test_a_truncated_file_reads_as_missing(cache: FileSystemCache) -> None:
    cache.set("key", b"value")

    with open(cache._get_filename("key"), "wb") as f:
        f.write(b"\x01\x02")

    assert read_files(cache, ["key"], time.time()) == [None]


def test_a_subclass_with_a_get_of_its_own_is_read_through_it(
    cache: FileSystemCache, tmp_path: t.Any
) -> None:
    class Sealed(FileSystemCache):
        def get(self, key: str) -> t.Any:
            return super().get(key)

    sealed = Sealed(str(tmp_path / "sealed"), threshold=0)
    assert reads_directly(cache)
    assert not reads_directly(sealed)
    assert not CachelibSessionStore(sealed, "pow", lambda: ["k"])._reads_files


def test_a_session_file_that_cannot_be_read_is_a_503_not_a_logout(
    tmp_path: t.Any,
) -> None:
    cache = FileSystemCache(str(tmp_path / "store"), threshold=0)
    env = make_pow_app(tmp_path, cache)
    add_routes(env)
    client = env.app.test_client()
    env.login(client, env.add_user())
    [sid] = session_ids(env)
    name = cache._get_filename(session_record_key(cache, sid))
    os.rename(name, name + ".aside")
    os.mkdir(name)  # opens, and then cannot be read (EISDIR)

    with pytest.raises(StoreUnavailable):
        env.pow.get_state(env.app).credentials.store.read(sid)

    assert client.get("/me").status_code == 503
    os.rmdir(name)
    os.rename(name + ".aside", name)
    assert env.me(client) == "ada@example.com free"
