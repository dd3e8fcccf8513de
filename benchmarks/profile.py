"""Where an authenticated request's time goes, for one setup of
``benchmarks/apps.py``: cProfile over in-process WSGI calls, grouped into
the parts the performance page names.

    python -m benchmarks.profile [SETUP] [--requests N] [--top K]

SETUP is one of the setup names (default ``pow-memory``). Prints each part's
share of the profiled time, then the ``--top`` functions of flask_pow by
cumulative time. Shares are what to compare between two versions;
cProfile's own overhead inflates every absolute figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import typing as t

from tests.support.servers import RedisServer

from . import harness
from .apps import SETUPS
from .apps import build
from .apps import create_users

#: Part of a request -> the functions whose cumulative time it is.
PARTS = {
    "Flask's session cookie (open and save)": (
        "flask/sessions.py:open_session",
        "flask/sessions.py:save_session",
    ),
    "verifying flask_pow's signed value": ("flask_pow/signing.py:read",),
    "reading the session and building the user": (
        "flask_pow/credentials.py:authenticate",
    ),
    "building the user instance": ("flask_pow/orm.py:load",),
    "flask_pow after the view": (
        "flask_pow/effects.py:apply",
        "flask_pow/lifecycle.py:end_request",
    ),
    "flask_pow in all": (
        "flask_pow/lifecycle.py:load",
        "flask_pow/lifecycle.py:begin_request",
        "flask_pow/effects.py:apply",
        "flask_pow/lifecycle.py:end_request",
    ),
}


def profile(setup: str, requests: int) -> pstats.Stats:
    tmp = tempfile.mkdtemp(prefix="flask-pow-profile-")
    database = f"sqlite:///{tmp}/bench.db"
    create_users(database)
    server = RedisServer() if "redis" in setup else None

    try:
        url = f"redis://127.0.0.1:{server.port}/0" if server else None
        app, _ = build(setup, database, url)
        environ = harness.environ(harness.login_cookie(app))

        for _ in range(200):  # warm: connections, memo, tracking
            harness.call(app, environ)

        profiler = cProfile.Profile()
        profiler.enable()

        for _ in range(requests):
            harness.call(app, environ)

        profiler.disable()
    finally:
        if server is not None:
            server.close()

    return pstats.Stats(profiler, stream=io.StringIO())


def shares(stats: pstats.Stats) -> dict[str, float]:
    """Each part's cumulative time as a share of the whole."""
    table: dict[tuple[str, int, str], t.Any] = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    found = {}

    for part, names in PARTS.items():
        cumulative = 0.0

        for (path, _, function), (_, _, _, cum, _) in table.items():
            for name in names:
                where, _, wanted = name.partition(":")

                if path.endswith(where) and function == wanted:
                    cumulative += cum

        found[part] = cumulative / total if total else 0.0

    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("setup", nargs="?", default="pow-memory", choices=SETUPS)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    stats = profile(args.setup, args.requests)

    print(f"{args.setup}: {args.requests} requests, share of profiled time")

    for part, share in shares(stats).items():
        print(f"  {share:6.1%}  {part}")

    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats("flask_pow", args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
