"""Hostile and broken clients, and storage that fails: every answer is a clear 4xx
(or 507/503 for storage), the server keeps serving, and no stored byte is lost."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.e2e.test_resilience import open_patch
from tests.support import OCTET, TUS, TusServer, create, head, patch, raw_request


def read_reply(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply


def send_oversized_head(port: int) -> bytes:
    """100 x 1 KiB headers, in separate writes (past the 64 KiB default); returns the reply."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"HEAD /files/x HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n")
    for _ in range(100):
        try:
            sock.sendall(b"X-Filler: " + b"a" * 1014 + b"\r\n")
        except OSError:
            break
    reply = read_reply(sock)
    sock.close()
    return reply


def test_oversized_request_head_is_431(server) -> None:
    reply = send_oversized_head(server.port)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:100]
    assert head(server.url + "0" * 32).status_code == 404  # still serving


def test_request_head_timeout_closes_slowloris(make_server) -> None:
    server = make_server(network_timeout=1)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"HEAD /files/x HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    sock.settimeout(10)
    assert sock.recv(4096) == b""  # closed without an answer
    assert time.monotonic() - started < 8
    sock.close()


def test_metadata_limits(make_server) -> None:
    server = make_server(max_metadata_size=100, max_metadata_keys=3)
    ok = requests.post(server.url, headers={**TUS, "Upload-Length": "1", "Upload-Metadata": "a,b,c"}, timeout=5)
    assert ok.status_code == 201
    too_many = requests.post(server.url, headers={**TUS, "Upload-Length": "1", "Upload-Metadata": "a,b,c,d"}, timeout=5)
    assert too_many.status_code == 400 and too_many.text.startswith("ERR_METADATA_TOO_LARGE")
    too_big = requests.post(server.url, headers={**TUS, "Upload-Length": "1", "Upload-Metadata": "k " + "QUFB" * 30}, timeout=5)
    assert too_big.status_code == 400


def test_concurrent_upload_cap_is_429_with_retry_after(make_server) -> None:
    server = make_server(max_concurrent_uploads=1)
    first = create(server.url, 10)
    second = create(server.url, 10)
    sock = open_patch(server.port, first, 0, 10)
    sock.sendall(b"abc")
    time.sleep(0.3)
    response = patch(second, 0, b"0123456789")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    sock.sendall(b"defghij")
    assert read_reply(sock).startswith(b"HTTP/1.1 204")
    sock.close()
    assert patch(second, 0, b"0123456789").status_code == 204


def test_slow_clients_do_not_slow_others_and_are_cut_after_the_idle_timeout(make_server) -> None:
    server = make_server(network_timeout=2)
    trickling, stalled = create(server.url, 1000), create(server.url, 1000)
    trickler = open_patch(server.port, trickling, 0, 1000)
    staller = open_patch(server.port, stalled, 0, 1000)
    staller.sendall(b"s" * 10)
    stop = threading.Event()

    def trickle() -> None:
        for _ in range(200):
            if stop.is_set():
                return
            trickler.sendall(b"t")
            time.sleep(0.05)

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        # Meanwhile a normal upload goes through at full speed.
        data = os.urandom(8 * 1024 * 1024)
        url = create(server.url, len(data))
        started = time.monotonic()
        assert patch(url, 0, data).status_code == 204
        assert time.monotonic() - started < 5
        assert requests.get(url, timeout=10).content == data
        # The stalled one is cut by the idle timeout: its bytes committed, its lock released.
        assert read_reply(staller).startswith(b"HTTP/1.1 408")
        assert head(stalled).headers["Upload-Offset"] == "10"
        assert patch(stalled, 10, b"S" * 990).status_code == 204
    finally:
        stop.set()
        thread.join(15)
        trickler.close()
        staller.close()
    # The trickling one kept its lock while it kept sending, and kept every byte.
    assert int(head(trickling).headers["Upload-Offset"]) > 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs, mounted by the test itself (needs root, as CI has)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write until the disk says no (bounded by the disk's size)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    block = b"\0" * (64 * 1024)
    try:
        while os.write(fd, block):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def test_full_disk_mid_patch_commits_what_fit_and_stays_resumable(small_disk: Path, state_backend: str, request) -> None:
    redis_url = request.getfixturevalue("redis_url") if state_backend == "redis" else None
    server = TusServer(small_disk / "data", redis_url=redis_url).start()
    try:
        data = os.urandom(20 * 1024 * 1024)
        url = create(server.url, len(data))
        assert patch(url, 0, data[: 4 * 1024 * 1024]).status_code == 204
        fill(small_disk / "ballast")  # the disk is now full
        response = patch(url, 4 * 1024 * 1024, data[4 * 1024 * 1024 :])
        assert response.status_code == 507, response.text
        offset = int(head(url).headers["Upload-Offset"])
        assert offset >= 4 * 1024 * 1024
        assert requests.get(url, timeout=10).content == data[:offset]  # what was committed is intact
        assert head(server.url + "0" * 32).status_code == 404  # still answering
        (small_disk / "ballast").unlink()  # space is back
        assert patch(url, offset, data[offset:]).status_code == 204
        assert requests.get(url, timeout=10).content == data
    finally:
        server.stop()


def test_read_only_data_directory(small_disk: Path, state_backend: str, request) -> None:
    redis_url = request.getfixturevalue("redis_url") if state_backend == "redis" else None
    data_dir = small_disk / "data"
    server = TusServer(data_dir, redis_url=redis_url).start()
    try:
        url = create(server.url, 10)
        assert patch(url, 0, b"abc").status_code == 204
        # A read-only bind mount over the data directory: every new open there fails with EROFS.
        subprocess.run(["mount", "--bind", str(data_dir), str(data_dir)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(data_dir)], check=True)
            response = patch(url, 3, b"defg")
            assert response.status_code == 503, response.text
            assert "Retry-After" in response.headers
            assert requests.post(server.url, headers={**TUS, "Upload-Length": "5"}, timeout=5).status_code == 503
            assert head(url).headers["Upload-Offset"] == "3"
            assert requests.get(url, timeout=5).content == b"abc"
        finally:
            subprocess.run(["umount", str(data_dir)], check=True)
        assert patch(url, 3, b"defghij").status_code == 204
        assert requests.get(url, timeout=5).content == b"abcdefghij"
    finally:
        server.stop()


TRAVERSALS = [
    "..", "%2e%2e", "%2E%2E", "..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%5c..%5cwindows",
    "%252e%252e%252f", "%00", "a%00b", "/etc/passwd", "%2fetc%2fpasswd", "x" * 300, "tusd-py.sqlite3",
    "tusd-py.sqlite3-wal", ".", "%2e", "~root", "a/../b", "..;", "%c0%ae%c0%ae",
]


@pytest.mark.parametrize("suffix", TRAVERSALS)
def test_path_traversal_table(server, suffix: str) -> None:
    victim = create(server.url, 3)
    assert patch(victim, 0, b"abc").status_code == 204
    for method in ("HEAD", "GET", "PATCH", "DELETE", "POST", "OPTIONS"):
        headers = {**OCTET, "Upload-Offset": "0", "Upload-Length": "1"}
        status, response_headers, body = raw_request(server.port, method, "/files/" + suffix, headers, b"x")
        if method == "OPTIONS":
            assert status in (200, 404), (method, suffix, status)
        else:
            assert status in (404, 405), (method, suffix, status)
        assert b"root:" not in body and b"SQLite" not in body
        assert status < 500
    assert requests.get(victim, timeout=5).content == b"abc"  # nobody else's bytes were touched


def test_concat_limits_and_header_safety(make_server) -> None:
    server = make_server(max_concat_parts=2)
    parts = [create(server.url, 1, Upload_Concat="partial") for _ in range(3)]
    response = requests.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(parts)}, timeout=5)
    assert response.status_code == 400 and response.text.startswith("ERR_TOO_MANY_PARTS")
    # Only printable ASCII may come back through HEAD's Upload-Concat.
    status, _, _ = raw_request(server.port, "POST", "/files/", {**TUS, "Upload-Concat": "final;/files/\x01abc"})
    assert status == 400
    response = requests.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(parts[:2])}, timeout=5)
    assert response.status_code == 201
