"""The Redis local cache under many sessions: hit rate and memory of each
worker's copy, with gunicorn workers and ``wrk`` on loopback.

    python -m benchmarks.local_cache [--sessions 100000] [--workers 4]
                                     [--seconds 20] [--max-entries N]

Logs in ``--sessions`` users (one session each) through the credentials
API, writes their cookies to a file, and serves the benchmark app
(``pow-redis-local``) with gunicorn. ``wrk`` then asks ``/me`` with a random
cookie per request, in two patterns, each against freshly started workers:

- uniform: every session alike;
- hot: 90% of requests from the first 10% of the sessions (a busy minority,
  as on most sites), 10% from all of them.

Each worker writes its counters when it exits; the report gives, per
pattern, requests per second, the share of lookups answered from the copy,
and per worker the entries and bytes held and the resident memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t

import sqlalchemy as sa

from tests.support.servers import RedisServer
from tests.support.servers import free_port

from . import harness
from .apps import build

#: Picks a cookie per request; counts answers that are not the user.
WRK_SCRIPT = """
local cookies = {}
local hot = 0
local threads = {}
anonymous = 0

setup = function(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

init = function(args)
  for line in io.lines(args[1]) do cookies[#cookies + 1] = line end
  hot = tonumber(args[2])
  math.randomseed(os.time() * 100 + id)
end

request = function()
  local i
  if hot > 0 and math.random() < 0.9 then
    i = math.random(1, hot)
  else
    i = math.random(1, #cookies)
  end
  return wrk.format("GET", "/me", {["Cookie"] = cookies[i]})
end

response = function(status, headers, body)
  if status ~= 200 or body == "anonymous" then anonymous = anonymous + 1 end
end

done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("anonymous") end
  io.write("not-the-user: " .. total .. "\\n")
end
"""


@dataclasses.dataclass
class Pattern:
    name: str
    rps: float
    not_the_user: int
    workers: list[dict[str, t.Any]]

    @property
    def hit_rate(self) -> float:
        hits = sum(w["hits"] for w in self.workers)
        lookups = hits + sum(w["misses"] + w["bypassed"] for w in self.workers)
        return hits / lookups if lookups else 0.0


def make_sessions(database: str, redis_url: str, count: int, path: str) -> None:
    """``count`` users, logged in once each; their cookies, one a line."""
    engine = sa.create_engine(database)

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM bench_user"))
        conn.execute(
            sa.text(
                "INSERT INTO bench_user (id, email, plan, password_hash)"
                " VALUES (:id, :email, 'pro', 'x')"
            ),
            [{"id": n, "email": f"user{n}@example.com"} for n in range(1, count + 1)],
        )

    engine.dispose()
    app, db = build("pow-redis", database, redis_url)
    state = app.extensions["pow"].get_state(app)
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    User = state.users.model

    with app.test_request_context(), open(path, "w") as f:
        for n in range(1, count + 1):
            user = User(
                id=n, email=f"user{n}@example.com", plan="pro", password_hash="x"
            )
            info, token = state.credentials.put(user, {})
            value = serializer.dumps({"pow_auth": state.signer.sign(info.id, token)})
            f.write(f"session={value}\n")

    with app.app_context():
        db.engine.dispose()


def run_pattern(
    name: str,
    hot: int,
    env: dict[str, str],
    workers: int,
    seconds: float,
    cookies: str,
    script: str,
) -> Pattern:
    stats_dir = tempfile.mkdtemp(prefix="flask-pow-local-stats-")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers),
         "-b", f"127.0.0.1:{port}", "--log-level", "warning",
         "benchmarks.apps:create_app()"],
        env={**env, "BENCH_STATS_DIR": stats_dir},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    try:
        _wait_for(port)
        wrk = shutil.which("wrk")
        assert wrk is not None, "wrk is needed (apt-get install wrk)"
        out = subprocess.run(
            [wrk, "-t2", "-c16", f"-d{max(1, int(seconds))}s", "-s", script,
             f"http://127.0.0.1:{port}/me", "--", cookies, str(hot)],
            capture_output=True, text=True, timeout=seconds + 120,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    wrong = re.search(r"not-the-user: (\d+)", out.stdout)
    assert rps is not None and wrong is not None, out.stdout + out.stderr
    found = []

    for path in sorted(glob.glob(os.path.join(stats_dir, "*.json"))):
        with open(path) as f:
            found.append(json.load(f))

    shutil.rmtree(stats_dir, ignore_errors=True)
    return Pattern(name, float(rps[1]), int(wrong[1]), found)


def _wait_for(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)


def run(sessions: int, workers: int, seconds: float, max_entries: int | None) -> str:
    redis_server = RedisServer()
    tmp = tempfile.mkdtemp(prefix="flask-pow-local-")
    database = f"sqlite:///{tmp}/bench.db"
    cookies = os.path.join(tmp, "cookies")
    script = os.path.join(tmp, "pick.lua")
    redis_url = f"redis://127.0.0.1:{redis_server.port}/0"

    with open(script, "w") as f:
        f.write(WRK_SCRIPT)

    try:
        from .apps import create_users

        create_users(database)
        started = time.perf_counter()
        make_sessions(database, redis_url, sessions, cookies)
        made = time.perf_counter() - started
        env = {
            **os.environ,
            "BENCH_SETUP": "pow-redis-local",
            "BENCH_DATABASE": database,
            "BENCH_REDIS_URL": redis_url,
        }

        if max_entries is not None:
            env["BENCH_LOCAL_MAX_ENTRIES"] = str(max_entries)

        patterns = [
            run_pattern(name, hot, env, workers, seconds, cookies, script)
            for name, hot in (("uniform", 0), ("hot 10%", max(1, sessions // 10)))
        ]
        keys = redis_server.client().dbsize()
    finally:
        redis_server.close()
        shutil.rmtree(tmp, ignore_errors=True)

    return report(patterns, sessions, workers, seconds, made, keys)


def report(
    patterns: list[Pattern],
    sessions: int,
    workers: int,
    seconds: float,
    made: float,
    keys: int,
) -> str:
    lines = [
        f"{sessions:,} sessions ({keys:,} keys in Redis, made in {made:.0f} s),"
        f" {workers} gunicorn workers, wrk -t2 -c16 for {seconds:.0f} s per"
        " pattern, a random session per request:",
        "",
    ]
    header = ["pattern", "req/s", "hit rate", "entries/worker", "MB held/worker",
              "RSS MB/worker", "not the user"]  # fmt: skip
    rows = []

    for p in patterns:
        n = max(1, len(p.workers))
        rows.append([
            p.name,
            f"{p.rps:.0f}",
            f"{p.hit_rate:.0%}",
            f"{sum(w['entries'] for w in p.workers) / n:,.0f}",
            f"{sum(w['bytes'] for w in p.workers) / n / 1e6:.1f}",
            f"{sum(w['rss'] for w in p.workers) / n / 1e6:.0f}",
            str(p.not_the_user),
        ])  # fmt: skip

    return "\n".join(lines + harness.rst_table(header, rows)) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-entries", type=int, default=None)
    args = parser.parse_args(argv)
    print(run(args.sessions, args.workers, args.seconds, args.max_entries), end="")


if __name__ == "__main__":
    main()
