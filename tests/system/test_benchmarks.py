"""The benchmark scripts run here with tiny sizes, so that they cannot rot.
They are timed with ``make bench``, not in the test suite."""

from __future__ import annotations

import pytest
from cachelib import SimpleCache

from benchmarks import floors
from benchmarks import redis_memory
from benchmarks import request_cost
from benchmarks import run
from benchmarks.apps import SETUPS
from tests.support.servers import RedisServer


def test_request_cost_runs(capsys: pytest.CaptureFixture[str]) -> None:
    request_cost.measure("SimpleCache", SimpleCache(threshold=100_000), 5, 1)
    assert "SQL/request 0" in capsys.readouterr().out


def test_floors_run_and_every_floor_knows_its_user() -> None:
    report = floors.measure(requests=3, rounds=1)

    for floor in floors.FLOORS.values():
        assert floor in report

    assert "x its floor" in report
    assert "pure Python" in report
    assert "A login on a cachelib store:" in report


def test_redis_memory_runs(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_memory.measure(redis_server, 20, 5)

    assert "B per session" in capsys.readouterr().out


@pytest.mark.slow
def test_side_by_side_benchmark_runs() -> None:
    """Every setup (PostgreSQL included under CI), both harnesses, the scale
    runs and the memory figures, in tiny sizes.
    """
    import os

    report = run.run(run.TINY, require_postgres=bool(os.environ.get("CI")))

    for setup in SETUPS.values():
        if "PostgreSQL" not in setup or os.environ.get("CI"):
            assert setup in report

    assert "sessions(user), 20 sessions" in report
    assert "B per session" in report
    assert "with local cache" in report
    assert "The physical floors" in report
    # Every answer of the local cache run was the user whose cookie it was.
    local = report.split("The Redis local cache under many sessions:")[1]
    assert [line.split()[-1] for line in local.splitlines() if "%" in line] == [
        "0",
        "0",
    ]
