"""Real ``redis-server`` processes for the tests, on free loopback ports,
started and stopped by the test suite. No test touches a server it did not
start.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis


def is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False

    return True


def free_port(*, cluster: bool = False) -> int:
    """A free loopback port. A cluster node also needs its bus port, the
    port plus 10000, so it must be below 55536 with that one free too.
    """
    if not cluster:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    for _ in range(1000):
        port = random.randint(20000, 45000)

        if is_free(port) and is_free(port + 10000):
            return port

    raise RuntimeError("no free port pair for a Redis cluster node")


#: False under ``pytest --no-servers`` (``make test-fast``): a test that
#: would start a server skips instead.
START = True


def may_start(program: str) -> None:
    """Skip the test if servers are off for this run."""
    if not START:
        pytest.skip(f"starts {program}, and this run has --no-servers")


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
        may_start("redis-server")
        self.port = free_port(cluster="--cluster-enabled" in args)
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


class RedisClusterServers:
    """A Redis Cluster of three masters (each with ``replicas`` replicas) on
    loopback ports, made with ``redis-cli --cluster create``.
    """

    def __init__(self, *, replicas: int = 0, node_timeout_ms: int = 5000) -> None:
        self.nodes = [
            RedisServer(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                # Replicas sync at once, not after Redis's 5 s wait.
                "--repl-diskless-sync-delay",
                "0",
            )
            for _ in range(3 * (1 + replicas))
        ]
        subprocess.run(
            [
                require("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        deadline = time.monotonic() + 30

        for node in self.nodes:
            client = node.client()

            try:
                while client.cluster("info").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Redis cluster did not become ready")

                    time.sleep(0.1)
            finally:
                client.close()

        # A replica can take over its master only once it has synced.
        for node in self.nodes:
            client = node.client()

            try:
                while (info := client.info("replication"))["role"] == "slave" and (
                    info.get("master_link_status") != "up"
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Redis replicas did not sync")

                    time.sleep(0.1)
            finally:
                client.close()

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class MemcachedServer:
    """One ``memcached`` on 127.0.0.1 (TCP only, no UDP)."""

    def __init__(self) -> None:
        may_start("memcached")
        self.port = free_port()
        args = [require("memcached"), "-l", "127.0.0.1", "-p", str(self.port)]
        args += ["-U", "0", "-m", "64"]

        # memcached refuses to run as root unless told which user to be.
        if os.geteuid() == 0:
            args += ["-u", "root"]

        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20

        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"memcached on port {self.port} did not start"
                    ) from None
                time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


class TCPProxy:
    """A loopback TCP forwarder whose target can be moved: the floating
    address (a DNS name, a load balancer, a managed service's primary
    endpoint) that a failover points at the new primary. Connections made
    before a move stay with the old target, as real ones do.
    """

    def __init__(self, target_port: int) -> None:
        import threading

        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._open: list[socket.socket] = []
        self._running = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        import threading

        while self._running:
            try:
                downstream, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return

            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._open += [downstream, upstream]

            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(
                    target=self._pump, args=(source, sink), daemon=True
                ).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._running = False
        self._listener.close()
        self._thread.join(timeout=5)

        for sock in self._open:
            sock.close()
