"""A TCP proxy on 127.0.0.1 for tests that need a bad network: slow uploads, a flipped byte.

Requests from the client are parsed just enough (request line, Content-Length) to
find PATCH bodies; everything else is relayed as it comes. It counts what it passed
on: the method of every request, and the PATCH body bytes sent to the server. Every
thread it starts ends when `stop()` closes its sockets.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.support import free_port


class Proxy:
    def __init__(self, upstream_port: int, *, rate: float | None = None, corrupt_patches: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.rate = rate  # bytes per second from client to server, per connection; None = as fast as it goes
        self.corrupt_patches = corrupt_patches  # how many PATCH bodies get one byte flipped
        self.patches = 0  # PATCH requests seen
        self.patch_bytes = 0  # PATCH body bytes passed on to the server
        self.methods: list[str] = []  # of every request seen, in order
        self.corrupted = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/files/"

    def start(self) -> Proxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._close(sock)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                self._close(client)  # the server is down: the client sees the connection drop
                continue
            self._track(upstream)
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client), daemon=True).start()

    def _relay(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(target)

    def _send(self, target: socket.socket, data: bytes) -> None:
        rate = self.rate
        if not rate:
            target.sendall(data)
            return
        piece = max(1024, int(rate / 20))
        for start in range(0, len(data), piece):
            chunk = data[start : start + piece]
            target.sendall(chunk)
            time.sleep(len(chunk) / rate)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to server: headers are passed on whole, bodies in pieces (slowed, maybe corrupted)."""
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = client.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method = lines[0].split(b" ", 1)[0].upper()
                with self._lock:
                    self.methods.append(method.decode("latin-1"))
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                    if name.strip().lower() == b"transfer-encoding":
                        length = -1
                upstream.sendall(head + b"\r\n\r\n")
                if length < 0:  # chunked: no more parsing, just relay
                    self._send(upstream, buffer)
                    while data := client.recv(65536):
                        self._send(upstream, data)
                    return
                flip_at = -1
                if method == b"PATCH":
                    with self._lock:
                        self.patches += 1
                        if length > 0 and self.corrupted < self.corrupt_patches:
                            self.corrupted += 1
                            flip_at = length // 2
                sent = 0
                while sent < length:
                    if not buffer:
                        buffer = client.recv(65536)
                        if not buffer:
                            return
                    piece, buffer = buffer[: length - sent], buffer[length - sent :]
                    if sent <= flip_at < sent + len(piece):
                        mutable = bytearray(piece)
                        mutable[flip_at - sent] ^= 0xFF
                        piece = bytes(mutable)
                    self._send(upstream, piece)
                    sent += len(piece)
                    if method == b"PATCH":
                        with self._lock:
                            self.patch_bytes += len(piece)
        except OSError:
            pass
        finally:
            self._close(client)
            self._close(upstream)
