"""The benchmark scripts run here with tiny sizes, so that they cannot rot.
They are timed with ``make bench``, not in the test suite."""

from __future__ import annotations

import pytest
from cachelib import SimpleCache

from benchmarks import redis_memory
from benchmarks import request_cost

from .servers import RedisServer


def test_request_cost_runs(capsys: pytest.CaptureFixture[str]) -> None:
    request_cost.measure("SimpleCache", SimpleCache(threshold=100_000), 5, 1)
    assert "SQL/request 0" in capsys.readouterr().out


def test_redis_memory_runs(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_memory.measure(redis_server, 20, 5)

    assert "B per session" in capsys.readouterr().out
