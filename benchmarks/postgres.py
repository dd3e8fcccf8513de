"""A throwaway PostgreSQL server on a free loopback port, for the
benchmark's Flask-Login-on-PostgreSQL setup. Debian's ``postgresql``
package provides the binaries; as root the server runs as the ``postgres``
user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time

from tests.support.servers import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))

    if found:
        return found[-1]

    path = shutil.which(name)

    if path is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed (apt-get install postgresql)"
        )

    return path


def available() -> bool:
    try:
        _bin("postgres")
    except RuntimeError:
        return False

    return True


class PostgresServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="flask-pow-pg-")
        self.data = os.path.join(self.dir, "data")
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")

        self._run(_bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres")
        self.process = subprocess.Popen(
            [
                *self._as,
                _bin("postgres"),
                "-D",
                self.data,
                "-p",
                str(self.port),
                "-k",
                self.dir,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30

        while subprocess.run(
            [_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            check=False,
        ).returncode:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start")

            time.sleep(0.2)

    def _run(self, *command: str) -> None:
        subprocess.run([*self._as, *command], check=True, capture_output=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

        shutil.rmtree(self.dir, ignore_errors=True)
