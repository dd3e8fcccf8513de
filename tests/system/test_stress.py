"""The short form of the load and fault run (``make stress`` runs the full
one): gunicorn on Redis, clients each logged in as their own user, tokens
rotated every second, Redis stopped and restarted, workers restarted, one
worker killed.
"""

from __future__ import annotations

import pytest

from tests.apps import stress


@pytest.mark.slow
def test_load_with_faults_loses_nothing() -> None:
    report = stress.run(clients=20, seconds=15, workers=4, faults=True)
    print("\n".join(report.lines()))
    assert len(report.faults) == 3
    assert len(report.served) == 20  # every client, however slow the machine
    assert report.unavailable > 0  # Redis really was down for a while
    assert (report.errors, report.logouts, report.cross_user) == (0, 0, 0)
    assert report.unexplained == 0
    assert (report.sessions_lost, report.keys_without_ttl) == (0, 0)


@pytest.mark.slow
def test_load_with_faults_and_the_local_cache_loses_nothing() -> None:
    """The same with ``POW_REDIS_LOCAL_CACHE`` on: Redis restarts under the
    workers' copies, which must empty and fill again.
    """
    report = stress.run(
        clients=20, seconds=15, workers=4, faults=True, local_cache=True
    )
    print("\n".join(report.lines()))
    assert len(report.faults) == 3
    assert len(report.served) == 20  # every client, however slow the machine
    assert report.unavailable > 0
    assert (report.errors, report.logouts, report.cross_user) == (0, 0, 0)
    assert report.unexplained == 0
    assert (report.sessions_lost, report.keys_without_ttl) == (0, 0)
