"""A minimal HTTP/1.1 client for benchmarks: keep-alive connections, no parsing
beyond the status line and Content-Length, bodies sent from files with sendfile.
It is here so that the client is never what a benchmark measures."""

from __future__ import annotations

import asyncio
import os
import socket
import time


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, str]]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        return await read_response(self.reader, method)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def read_response(reader: asyncio.StreamReader, method: str = "GET") -> tuple[int, dict[str, str]]:
    status, headers = _parse_head((await reader.readuntil(b"\r\n\r\n"))[:-4])
    if method == "HEAD":
        return status, headers
    if headers.get("transfer-encoding", "").lower() == "chunked":  # @tus/server answers so
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return status, headers
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)
    return status, headers


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers


class FileConnection:
    """A blocking keep-alive connection whose request bodies are ranges of a file,
    sent by the kernel (sendfile): the client spends next to no CPU per byte.
    Blocking calls release the GIL, so one thread per connection runs in parallel."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self._buffer = b""

    def request(
        self, method: str, path: str, headers: dict[str, str], file_path: str | None = None, offset: int = 0, count: int = 0
    ) -> tuple[int, dict[str, str]]:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port))
            self._buffer = b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {count}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        if count:
            assert file_path is not None
            with open(file_path, "rb") as body:
                sent = 0
                while sent < count:
                    done = os.sendfile(self.sock.fileno(), body.fileno(), offset + sent, count - sent)
                    if done == 0:
                        raise ConnectionError("sendfile sent nothing")
                    sent += done
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection before answering")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status, response_headers = _parse_head(head)
        if method != "HEAD":
            if response_headers.get("transfer-encoding", "").lower() == "chunked":  # @tus/server answers so
                while True:
                    size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                    self._read_exactly(size + 2)
                    if size == 0:
                        break
            else:
                self._read_exactly(int(response_headers.get("content-length", "0")))
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, response_headers

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-answer")
        self._buffer += chunk

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        line, self._buffer = self._buffer.split(marker, 1)
        return line

    def _read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._fill()
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def send_file_request(host: str, port: int, method: str, path: str, headers: dict[str, str], file_path: str, offset: int, count: int) -> tuple[int, dict[str, str]]:
    """One request on a new connection whose body is `count` bytes of a file, sent by the kernel."""
    connection = FileConnection(host, port)
    try:
        return connection.request(method, path, {**headers, "Connection": "close"}, file_path, offset, count)
    finally:
        connection.close()


TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


async def upload(conn: Connection, body: bytes) -> str:
    """POST a tus upload of `body`, then PATCH it whole; returns its path."""
    status, headers = await conn.request("POST", "/files/", {**TUS, "Upload-Length": str(len(body))})
    assert status == 201, status
    path = "/files/" + headers["location"].rsplit("/", 1)[1]
    status, headers = await conn.request("PATCH", path, {**OCTET, "Upload-Offset": "0"}, body)
    assert status == 204 and headers["upload-offset"] == str(len(body)), (status, headers)
    return path


def many_uploads(port: int, count: int, body: bytes, concurrency: int) -> tuple[float, list[str]]:
    """`count` uploads of `body` over `concurrency` keep-alive connections; (seconds, paths)."""
    paths: list[str] = []

    async def worker(queue: asyncio.Queue[int]) -> None:
        conn = Connection("127.0.0.1", port)
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            paths.append(await upload(conn, body))
        await conn.close()

    async def run() -> float:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(count):
            queue.put_nowait(index)
        started = time.perf_counter()
        await asyncio.gather(*(worker(queue) for _ in range(concurrency)))
        return time.perf_counter() - started

    return asyncio.run(run()), paths
