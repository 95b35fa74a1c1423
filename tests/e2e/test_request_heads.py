"""`--max-header-size` counts the request head's own bytes, whatever the reads it came
in (issue 13, item 11): one read may hold a whole head, or a head and a body's start."""

from __future__ import annotations

import socket
import time

from tests.e2e.test_hardening import read_reply
from tests.support import head, raw_request

KiB = 1024
LIMIT = 64 * KiB


def filler(size: int) -> bytes:
    """Headers of about 1 KiB each, `size` bytes in all."""
    line = b"X-Filler: " + b"a" * (KiB - 12) + b"\r\n"
    return line * (size // len(line))


def send(port: int, *writes: bytes) -> bytes:
    """Each write in one `sendall`, a moment apart (so that each tends to be one read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    try:
        for index, data in enumerate(writes):
            if index:
                time.sleep(0.3)
            try:
                sock.sendall(data)
            except OSError:
                break
        return read_reply(sock)
    finally:
        sock.close()


START = b"HEAD /files/x HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"


def test_a_70_kib_head_in_one_write_is_431(make_server) -> None:
    server = make_server()
    reply = send(server.port, START + filler(70 * KiB) + b"\r\n")
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert b"ERR_HEADERS_TOO_LARGE" in reply
    assert head(server.url + "0" * 32).status_code == 404  # still serving


def test_a_128_kib_head_in_two_writes_is_431(make_server) -> None:
    server = make_server()
    headers = filler(128 * KiB)
    reply = send(server.port, START + headers[: 63 * KiB], headers[63 * KiB :] + b"\r\n")
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]


def test_one_huge_header_value_is_431(make_server) -> None:
    server = make_server()
    reply = send(server.port, START + b"X-Big: " + b"b" * (80 * KiB) + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]


def test_a_head_under_the_limit_with_a_body_in_the_same_write_passes(make_server) -> None:
    """The control: 60 KiB of head and 100 KiB of body in one write is a request like any other."""
    server = make_server()
    status, _, _ = raw_request(server.port, "POST", "/files/", {"Tus-Resumable": "1.0.0", "Upload-Length": "1", "X-Pad": "p" * (60 * KiB)})
    assert status == 201
    body = b"z" * (100 * KiB)
    request = (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: " + str(len(body)).encode() + b"\r\n"
        b"Content-Type: application/offset+octet-stream\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        + filler(60 * KiB) + b"\r\n" + body
    )
    reply = send(server.port, request)
    assert reply.startswith(b"HTTP/1.1 201 "), reply[:200]
    assert b"upload-offset: 102400" in reply.lower()
