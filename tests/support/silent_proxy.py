"""A TCP proxy on 127.0.0.1 that can cut its path silently: it stops
relaying bytes in both directions and keeps every socket open, as a network
that drops packets does (no reset, no end of stream).
"""

from __future__ import annotations

import selectors
import socket
import threading

from tests.support.servers import free_port


class SilentProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._sockets: list[socket.socket] = [self._listener]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """From now on nothing gets through, and nothing is closed."""
        self._cut.set()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)

        for sock in self._sockets:
            sock.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                if key.fileobj is self._listener:
                    self._accept()
                elif not self._cut.is_set():
                    self._relay(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target_port))
        self._sockets += [client, server]
        self._selector.register(client, selectors.EVENT_READ, server)
        self._selector.register(server, selectors.EVENT_READ, client)

    def _relay(self, source: socket.socket, target: socket.socket) -> None:
        try:
            data = source.recv(65536)
        except OSError:
            data = b""

        if not data:
            self._selector.unregister(source)
            return

        target.sendall(data)
