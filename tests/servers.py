"""Real ``redis-server`` processes for the tests, on free loopback ports,
started and stopped by the test suite. No test touches a server it did not
start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(program: str) -> str:
    """The path of a program, or a skip; under CI, a failure."""
    path = shutil.which(program)

    if path is None:
        message = f"{program} is not installed (make test installs it with apt-get)"

        if os.environ.get("CI"):
            pytest.fail(message)

        pytest.skip(message)

    return path


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, in a directory of its own."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="flask-pow-redis-")
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                require("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--save",
                "",
                "--logfile",
                os.path.join(self.dir, "redis.log"),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 20

        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not start"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

        self.process = None

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
