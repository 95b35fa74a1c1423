"""Broken connections, competing requests, restarts and graceful shutdown.

Nothing here may lose a byte that reached the server, and nothing may corrupt an upload.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support import TUS, create, head, patch


def open_patch(port: int, url: str, offset: int, length: int, extra: str = "") -> socket.socket:
    """Send a PATCH's headers announcing `length` body bytes; the caller sends (some of) the body."""
    path = url.split(f":{port}", 1)[1]
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    )
    sock.sendall(request.encode())
    return sock


def wait_offset(url: str, expected: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    offset = -1
    while time.monotonic() < deadline:
        offset = int(head(url).headers["Upload-Offset"])
        if offset == expected:
            return offset
        time.sleep(0.05)
    return offset


def test_connection_closed_mid_body_keeps_received_bytes(server) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    url = create(server.url, len(data))
    sock = open_patch(server.port, url, 0, len(data))
    sock.sendall(data[:300_000])
    time.sleep(0.3)
    sock.close()
    assert wait_offset(url, 300_000) == 300_000  # C-30: every received byte is kept
    assert patch(url, 300_000, data[300_000:]).status_code == 204
    assert requests.get(url, timeout=10).content == data


def test_connection_reset_mid_body_keeps_received_bytes(server) -> None:
    data = b"x" * 200_000
    url = create(server.url, len(data))
    sock = open_patch(server.port, url, 0, len(data))
    sock.sendall(data[:123_456])
    time.sleep(0.3)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    sock.close()
    assert wait_offset(url, 123_456) == 123_456
    assert patch(url, 123_456, data[123_456:]).status_code == 204


def test_checksummed_patch_cut_short_commits_nothing(server) -> None:
    url = create(server.url, 100_000)
    sock = open_patch(server.port, url, 0, 100_000, "Upload-Checksum: sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n")
    sock.sendall(b"y" * 50_000)
    time.sleep(0.3)
    sock.close()
    time.sleep(0.5)
    assert head(url).headers["Upload-Offset"] == "0"  # CK-05: an unverifiable chunk is discarded


def test_simultaneous_patches_one_wins_content_intact(server) -> None:
    size = 2_000_000
    bodies = [bytes([65 + i]) * size for i in range(2)]
    for _ in range(3):
        url = create(server.url, size)
        results: list[int] = []

        def send(body: bytes) -> None:
            results.append(patch(url, 0, body).status_code)  # noqa: B023  (joined within the iteration)

        threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 2
        # One wins with 204, or an interrupted holder (400) lets the other finish or conflict; never both 204.
        assert results.count(204) <= 1, results
        assert all(code in (204, 400, 409, 423) for code in results), results
        offset = int(head(url).headers["Upload-Offset"])
        content = requests.get(url, timeout=10).content
        assert len(content) == offset
        if 204 in results:
            assert offset == size
        # whatever was committed is one racer's bytes, never a mix
        assert content in (bodies[0][:offset], bodies[1][:offset]), results


def test_second_patch_waits_for_a_short_one(server) -> None:
    url = create(server.url, 10)
    sock = open_patch(server.port, url, 0, 5)
    sock.sendall(b"ab")

    def finish() -> None:
        time.sleep(0.3)
        sock.sendall(b"cde")

    threading.Thread(target=finish).start()
    time.sleep(0.1)
    # While the first holds the lock and keeps sending, the second waits, then sees the new offset.
    response = patch(url, 0, b"zzzzz")
    assert response.status_code == 409
    assert response.headers["Upload-Offset"] == "5"
    sock.close()
    assert requests.get(url, timeout=5).content == b"abcde"


def test_stalled_patch_is_cut_when_another_request_needs_the_upload(server) -> None:
    url = create(server.url, 10)
    sock = open_patch(server.port, url, 0, 10)
    sock.sendall(b"abcd")
    time.sleep(1.0)  # the first request stalls: its client is gone but the socket stays open
    started = time.monotonic()
    response = patch(url, 4, b"efghij")
    assert response.status_code == 204, response.text
    assert time.monotonic() - started < 2.5
    sock.close()
    assert requests.get(url, timeout=5).content == b"abcdefghij"


def test_delete_during_stalled_patch(server) -> None:
    url = create(server.url, 10)
    sock = open_patch(server.port, url, 0, 10)
    sock.sendall(b"abc")
    time.sleep(1.0)
    assert requests.delete(url, headers=TUS, timeout=10).status_code == 204
    sock.close()
    assert head(url).status_code == 404


def test_idle_timeout_commits_and_releases(make_server) -> None:
    server = make_server(network_timeout=1)
    url = create(server.url, 10)
    sock = open_patch(server.port, url, 0, 10)
    sock.sendall(b"abc")
    sock.settimeout(10)
    reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 408"), reply
    sock.close()
    assert head(url).headers["Upload-Offset"] == "3"


def test_restart_between_patches(make_server, state_backend) -> None:
    server = make_server()
    url = create(server.url, 8, Upload_Metadata="filename YS50eHQ=")
    assert patch(url, 0, b"1234").status_code == 204
    server.restart()
    response = head(url)
    assert response.headers["Upload-Offset"] == "4"
    assert response.headers["Upload-Metadata"] == "filename YS50eHQ="
    assert patch(url, 4, b"5678").status_code == 204
    assert requests.get(url, timeout=5).content == b"12345678"


def test_graceful_shutdown_commits_in_flight_patch(make_server) -> None:
    server = make_server()
    data = b"z" * 1_000_000
    url = create(server.url, len(data))
    sock = open_patch(server.port, url, 0, len(data))
    sock.sendall(data[:400_000])
    time.sleep(0.5)
    sock.settimeout(10)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 503"), reply
    sock.close()
    assert server.proc.wait(timeout=15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    server.proc = None
    server.start()
    assert head(url).headers["Upload-Offset"] == "400000"
    assert patch(url, 400_000, data[400_000:]).status_code == 204


def test_crash_loses_at_most_the_last_second(make_server) -> None:
    """kill -9 mid-PATCH: offsets were committed while the body streamed in."""
    server = make_server()
    size = 4_000_000
    url = create(server.url, size)
    sock = open_patch(server.port, url, 0, size)
    sock.sendall(b"q" * 1_000_000)
    time.sleep(2.5)  # more than the commit interval
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    server.proc = None
    sock.close()
    server.start()
    # With Redis the dead process's lease still runs (8 s): HEAD and PATCH answer 423 until it
    # ends (HEAD goes through the lock too), and clients retry 423 as they would any.
    deadline = time.monotonic() + 20
    while (answer := head(url)).status_code == 423 and time.monotonic() < deadline:
        time.sleep(0.5)
    offset = int(answer.headers["Upload-Offset"])
    assert offset == 1_000_000
    while (response := patch(url, offset, b"q" * (size - offset))).status_code == 423 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert response.status_code == 204
    assert requests.get(url, timeout=10).content == b"q" * size


def test_every_answered_write_survives_a_crash(make_server) -> None:
    """kill -9 right after concurrent requests were answered: every creation and PATCH that was
    answered is there after the restart (the embedded store commits a batch before it answers)."""
    server = make_server()
    with ThreadPoolExecutor(max_workers=16) as pool:
        urls = list(pool.map(lambda _: create(server.url, 10), range(64)))
        answers = list(pool.map(lambda url: patch(url, 0, b"12345").status_code, urls))
    assert answers == [204] * 64
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)  # at once: no graceful shutdown, no closing checkpoint
    server.proc.wait(timeout=10)
    server.proc = None
    server.start()
    assert [head(url).headers.get("Upload-Offset") for url in urls] == ["5"] * 64
