"""What every in-process benchmark shares: a WSGI call without a server,
the login cookie of a setup, interleaved timing rounds, and reST tables.
"""

from __future__ import annotations

import collections.abc as c
import time
import typing as t

from werkzeug.test import EnvironBuilder


def environ(cookie: str | None, path: str = "/me") -> dict[str, t.Any]:
    """A ``GET`` environ carrying ``cookie`` (``name=value``), if any."""
    headers = [("Cookie", cookie)] if cookie else []
    return EnvironBuilder(path=path, headers=headers).get_environ()


def call(app: t.Any, env: dict[str, t.Any]) -> bytes:
    """The body of one request, straight through the WSGI app."""

    def start_response(*args: t.Any) -> t.Callable[[bytes], object]:
        return lambda data: None

    return b"".join(app.wsgi_app(dict(env), start_response))


def login_cookie(app: t.Any) -> str:
    """The ``Cookie`` header of a client after ``POST /login``."""
    client = app.test_client()
    assert client.post("/login").status_code == 200
    cookie = client.get_cookie("session")
    return f"session={cookie.value}" if cookie else ""


def fastest(
    runs: c.Mapping[str, c.Callable[[], object]], requests: int, rounds: int
) -> dict[str, float]:
    """Seconds per call of each of ``runs``, the fastest of ``rounds``.

    Rounds are interleaved, so that drift on a shared machine hits every
    run alike, and the least disturbed round of each is kept.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}

    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()

            for _ in range(requests):
                run()

            times[name].append((time.perf_counter() - start) / requests)

    return {name: min(found) for name, found in times.items()}


def rst_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a simple reST table."""
    widths = [
        max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))
    ]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    return [rule, line(header), rule, *(line(r) for r in rows), rule]
