"""Load and faults: gunicorn workers on Redis, many clients each logged in
as their own user, tokens rotated every second, and faults injected while
they run. ``make stress`` runs it in full; ``make test`` runs a short form
(tests/system/test_stress.py).

    python -m tests.apps.stress [--clients 100] [--seconds 120] [--workers 4]

Every response must show the client's own user. Counted apart: 503s while
Redis is down, and connections cut by a killed worker; anything else that is
not the client's own user (an error, an unexpected logout, another user) is
a failure. All traffic goes to 127.0.0.1, and every loop ends by a deadline.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import http.client
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import uuid

from flask_pow.stores import user_tags
from tests.support.servers import RedisServer
from tests.support.servers import free_port
from tests.support.servers import require

from .stress_app import create_users

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
#: Seconds after a fault ends during which its effects still count as its
#: own (a request that started inside the window).
FAULT_SLACK = 3.0


@dataclasses.dataclass
class Fault:
    name: str
    start: float
    end: float = 0.0


@dataclasses.dataclass
class Report:
    clients: int
    seconds: float
    workers: int
    requests: int = 0
    ok: int = 0
    #: The users whose clients were answered as themselves at least once.
    served: set[int] = dataclasses.field(default_factory=set)
    #: 503 answers while the store was down (expected, not failures).
    unavailable: int = 0
    #: Connections cut by a killed or restarted worker (expected).
    cut: int = 0
    errors: int = 0
    logouts: int = 0
    cross_user: int = 0
    #: 503s or cut connections outside any fault window.
    unexplained: int = 0
    faults: list[Fault] = dataclasses.field(default_factory=list)
    #: Sessions listed by the store at the end, and clients expected.
    sessions_listed: int = 0
    sessions_lost: int = 0
    keys_without_ttl: int = 0
    statuses: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )

    @property
    def failures(self) -> int:
        return (
            self.errors
            + self.logouts
            + self.cross_user
            + self.unexplained
            + self.sessions_lost
            + self.keys_without_ttl
        )

    def lines(self) -> list[str]:
        rate = self.requests / self.seconds if self.seconds else 0
        return [
            f"clients {self.clients}, gunicorn workers {self.workers},"
            f" {self.seconds:.0f} s, token rotation every second",
            f"requests {self.requests} ({rate:.0f}/s), own user {self.ok}",
            f"503 while Redis was down {self.unavailable},"
            f" connections cut by a killed worker {self.cut}",
            f"errors {self.errors}, unexpected logouts {self.logouts},"
            f" cross-user responses {self.cross_user},"
            f" unexplained 503s/cuts {self.unexplained}",
            "faults injected: " + (", ".join(f.name for f in self.faults) or "none"),
            f"sessions listed afterwards {self.sessions_listed}"
            f" (lost {self.sessions_lost}), keys without a TTL"
            f" {self.keys_without_ttl}",
        ]


class Gunicorn:
    """gunicorn serving tests.apps.stress_app on a free loopback port."""

    def __init__(self, workers: int, env: dict[str, str], log: str) -> None:
        self.port = free_port()
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(workers),
                "-b",
                f"127.0.0.1:{self.port}",
                "--graceful-timeout",
                "5",
                "--log-level",
                "warning",
                "tests.apps.stress_app:create_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60

        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/whoami")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        path = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
        return [int(pid) for pid in pathlib.Path(path).read_text().split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

        self.log.close()


class Client:
    """One user's browser: its own cookie, updated from every response."""

    def __init__(self, port: int, user_id: int, report: Report, lock: threading.Lock):
        self.port = port
        self.user_id = user_id
        self.cookie: str | None = None
        self.report = report
        self.lock = lock

    def send(self, method: str, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

        try:
            headers = {"Cookie": self.cookie} if self.cookie else {}
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            body = response.read().decode()
            set_cookie = response.getheader("Set-Cookie")

            if set_cookie:
                self.cookie = set_cookie.split(";", 1)[0]

            return response.status, body
        finally:
            conn.close()

    def login(self) -> None:
        status, _ = self.send("POST", f"/login/{self.user_id}")
        assert status == 200, status

    def run(self, deadline: float, in_fault: t.Callable[[float], bool]) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()

            try:
                status, body = self.send("GET", "/whoami")
            except (OSError, http.client.HTTPException):
                # A reset, or a response cut short (IncompleteRead,
                # BadStatusLine) by a worker that died.
                self.count("cut", started, in_fault)
                time.sleep(0.05)
                continue

            if status == 200 and body == str(self.user_id):
                self.count("ok", started, in_fault)

                with self.lock:
                    self.report.served.add(self.user_id)
            elif status == 200 and body == "anonymous":
                self.count("logouts", started, in_fault)
            elif status == 200:
                self.count("cross_user", started, in_fault)
            elif status == 503:
                self.count("unavailable", started, in_fault)
                time.sleep(0.05)
            else:
                self.count("errors", started, in_fault, str(status))

    def count(
        self,
        kind: str,
        started: float,
        in_fault: t.Callable[[float], bool],
        status: str = "",
    ) -> None:
        with self.lock:
            report = self.report
            report.requests += 1
            report.statuses[status or kind] += 1

            if kind in ("unavailable", "cut") and not in_fault(started):
                report.unexplained += 1
            else:
                setattr(report, kind, getattr(report, kind) + 1)


def run(
    clients: int = 100,
    seconds: float = 120.0,
    workers: int = 4,
    faults: bool = True,
    local_cache: bool = False,
) -> Report:
    """Run the load, inject the faults, and check the store afterwards;
    ``local_cache``: with ``POW_REDIS_LOCAL_CACHE`` on in the workers.
    """
    require("redis-server")
    report = Report(clients=clients, seconds=seconds, workers=workers)
    lock = threading.Lock()
    server = RedisServer("--appendonly", "yes", "--appendfsync", "everysec")
    tmp = tempfile.mkdtemp(prefix="flask-pow-stress-")
    database = os.path.join(tmp, "stress.db")
    create_users(database, clients)
    namespace = f"stress-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "POW_TEST_REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
        "POW_TEST_DATABASE": database,
        "POW_TEST_NAMESPACE": namespace,
        "POW_TEST_LOCAL_CACHE": "1" if local_cache else "",
    }
    gunicorn = Gunicorn(workers, env, os.path.join(tmp, "gunicorn.log"))

    try:
        people = [Client(gunicorn.port, n, report, lock) for n in range(1, clients + 1)]

        for person in people:
            person.login()

        start = time.monotonic()
        deadline = start + seconds

        def in_fault(moment: float) -> bool:
            return any(
                f.start - 0.5 <= moment <= (f.end or time.monotonic()) + FAULT_SLACK
                for f in report.faults
            )

        threads = [
            threading.Thread(target=p.run, args=(deadline, in_fault), daemon=True)
            for p in people
        ]

        for thread in threads:
            thread.start()

        if faults:
            inject(report, server, gunicorn, start, seconds)

        for thread in threads:
            thread.join(timeout=seconds + 60)

        report.seconds = time.monotonic() - start
        check_store(report, server, namespace, clients)
    finally:
        gunicorn.stop()
        server.close()

    return report


def inject(
    report: Report,
    server: RedisServer,
    gunicorn: Gunicorn,
    start: float,
    seconds: float,
) -> None:
    """Three faults, spread over the run: Redis stopped and started again,
    the workers restarted (SIGHUP), and one worker killed (SIGKILL) while
    rotations run every second.
    """

    def at(fraction: float) -> None:
        pause = start + seconds * fraction - time.monotonic()

        if pause > 0:
            time.sleep(pause)

    at(0.2)
    fault = Fault("redis-server stopped and restarted (AOF)", time.monotonic())
    report.faults.append(fault)
    server.stop()
    time.sleep(max(1.0, seconds * 0.05))
    server.start()
    fault.end = time.monotonic()

    at(0.5)
    fault = Fault("gunicorn workers restarted (SIGHUP)", time.monotonic())
    report.faults.append(fault)
    os.kill(gunicorn.process.pid, signal.SIGHUP)
    time.sleep(3)
    fault.end = time.monotonic()

    at(0.75)
    fault = Fault("a worker killed mid-request (SIGKILL)", time.monotonic())
    report.faults.append(fault)
    os.kill(gunicorn.worker_pids()[0], signal.SIGKILL)
    time.sleep(2)
    fault.end = time.monotonic()


def check_store(
    report: Report, server: RedisServer, namespace: str, clients: int
) -> None:
    """Every client's session is still listed, once; every key has a TTL."""
    client = server.client()

    try:
        listed = 0

        for n in range(1, clients + 1):
            # The tag is derived from the user key and the app's secret key.
            [tag] = user_tags(f"User:{n}", ["stress"])
            index = f"{namespace}:sessions:{{{tag}}}User:{n}"
            listed += min(1, client.zcard(index))

        report.sessions_listed = listed
        report.sessions_lost = clients - listed
        # SCAN is for this check only: flask_pow never lists keys.
        report.keys_without_ttl = sum(
            1 for key in client.scan_iter(match=f"{namespace}:*") if client.ttl(key) < 0
        )
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--local-cache", action="store_true")
    args = parser.parse_args()
    report = run(
        args.clients,
        args.seconds,
        args.workers,
        not args.no_faults,
        local_cache=args.local_cache,
    )

    for line in report.lines():
        print(line)

    print(f"statuses: {dict(report.statuses)}")
    print("PASS" if report.failures == 0 else f"FAIL: {report.failures} failures")
    sys.exit(0 if report.failures == 0 else 1)


if __name__ == "__main__":
    main()
