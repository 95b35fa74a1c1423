"""A tiny HTTP/1.1 client on a raw socket that shows interim (1xx) responses.

http.client (so requests and tuspy) takes any 1xx but 100 for the final response,
so the draft's `104 Upload Resumption Supported` needs this to be seen at all.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

INTEROP = {"Upload-Draft-Interop-Version": "8"}
INTEROP_6 = {"Upload-Draft-Interop-Version": "6"}
PARTIAL = "application/partial-upload"


@dataclass
class Message:
    status: int
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes = b""


@dataclass
class Exchange:
    interim: list[Message] = field(default_factory=list)
    final: Message | None = None

    @property
    def status(self) -> int:
        assert self.final is not None
        return self.final.status

    @property
    def headers(self) -> dict[str, str]:
        assert self.final is not None
        return self.final.headers

    @property
    def body(self) -> bytes:
        assert self.final is not None
        return self.final.body


class Connection:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_head(self, method: str, path: str, headers: dict[str, str], *, version: str = "HTTP/1.1") -> None:
        lines = [f"{method} {path} {version}", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the server")
        self.buffer += data

    def read_message(self, method: str = "POST") -> Message:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines:
            name, value = line.split(":", 1)
            name = name.strip().lower()
            headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
        body = b""
        if status >= 200 and method != "HEAD" and status not in (204, 304):
            if "content-length" in headers:
                size = int(headers["content-length"])
                while len(self.buffer) < size:
                    self._fill()
                body, self.buffer = self.buffer[:size], self.buffer[size:]
            elif headers.get("transfer-encoding") == "chunked":
                body = self._read_chunked()
        return Message(status, headers, body)

    def _read_chunked(self) -> bytes:
        body = b""
        for _ in range(1_000_000):
            while b"\r\n" not in self.buffer:
                self._fill()
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(self.buffer) < size + 2:
                self._fill()
            body += self.buffer[:size]
            self.buffer = self.buffer[size + 2:]
            if size == 0:
                return body
        raise AssertionError("endless chunked body")

    def read_exchange(self, method: str = "POST") -> Exchange:
        exchange = Exchange()
        for _ in range(10_000):
            message = self.read_message(method)
            if message.status < 200:
                exchange.interim.append(message)
                continue
            exchange.final = message
            return exchange
        raise AssertionError("too many interim responses")


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"", *, version: str = "HTTP/1.1"
) -> Exchange:
    """One request on its own connection; Content-Length is set unless Transfer-Encoding is given."""
    hdrs = dict(headers or {})
    if "Transfer-Encoding" not in hdrs and "Content-Length" not in hdrs and (body or method in ("POST", "PATCH")):
        hdrs["Content-Length"] = str(len(body))
    with Connection(port) as connection:
        connection.send_head(method, path, hdrs, version=version)
        if body:
            connection.send(body)
        return connection.read_exchange(method)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts if part) + b"0\r\n\r\n"
