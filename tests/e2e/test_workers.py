"""--workers N: several processes serve one port, sharing state in Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.test_resilience import open_patch
from tests.support import ROOT, TusServer, create, head, patch


def children(pid: int) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            for child in (task / "children").read_text().split():
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
        except OSError:
            pass
    return found


def wait_for_workers(pid: int, count: int, exclude: set[int] = frozenset(), timeout: float = 30.0) -> list[int]:
    """The supervisor's workers, once there are `count` of them (besides those in `exclude`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [child for child in children(pid) if child not in exclude]
        if len(pids) == count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"supervisor {pid} has workers {children(pid)}, wanted {count} new ones")


def upload_round(server: TusServer, count: int) -> None:
    """Uploads whose requests each use a new connection (so any worker may get each)."""
    for index in range(count):
        data = os.urandom(1000 + index)
        url = create(server.url, len(data))
        assert patch(url, 0, data[:500]).status_code == 204
        assert head(url).headers["Upload-Offset"] == "500"
        assert patch(url, 500, data[500:]).status_code == 204
        assert requests.get(url, timeout=10).content == data


@pytest.fixture
def workers_server(tmp_path: Path, redis_url: str):  # type: ignore[no-untyped-def]
    server = TusServer(tmp_path / "data", redis_url=redis_url, workers=2).start()
    yield server
    server.stop()
    assert server.proc is None


def test_several_workers_need_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_PY_")}
    result = subprocess.run(
        [sys.executable, "-m", "tusd_py", "--workers", "2", "--dir", str(tmp_path)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "--workers above 1 needs --redis-url" in result.stderr


def test_every_worker_serves_and_a_dead_one_is_replaced(workers_server: TusServer) -> None:
    supervisor = workers_server.proc.pid  # type: ignore[union-attr]
    first, second = wait_for_workers(supervisor, 2)
    upload_round(workers_server, 10)
    # /metrics of whichever worker answers counts the uploads of both (shared multiprocess files).
    for _ in range(3):
        metrics = requests.get(workers_server.base + "/metrics", timeout=10).text
        assert "tusd_py_uploads_created_total 10.0" in metrics, metrics[:2000]
    # Only `second` is left: it alone serves, while the supervisor starts a replacement.
    os.kill(first, signal.SIGKILL)
    upload_round(workers_server, 5)
    third = wait_for_workers(supervisor, 1, exclude={first, second})[0]
    # Only the replacement is left: it serves too.
    os.kill(second, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while second in children(supervisor) and time.monotonic() < deadline:
        time.sleep(0.1)
    upload_round(workers_server, 5)
    assert third in children(supervisor)


def test_sigterm_stops_every_worker_gracefully(workers_server: TusServer) -> None:
    supervisor = workers_server.proc
    assert supervisor is not None
    workers = wait_for_workers(supervisor.pid, 2)
    data = b"w" * 1_000_000
    url = create(workers_server.url, len(data))
    sock = open_patch(workers_server.port, url, 0, len(data))
    sock.sendall(data[:400_000])
    time.sleep(0.5)
    sock.settimeout(15)
    supervisor.send_signal(signal.SIGTERM)
    reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 503"), reply  # the worker holding the body stopped it and committed
    sock.close()
    assert supervisor.wait(timeout=20) == 0
    workers_server.proc = None
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    workers_server.start()
    assert head(url).headers["Upload-Offset"] == "400000"
    assert patch(url, 400_000, data[400_000:]).status_code == 204


def test_workers_exit_with_a_killed_supervisor(tmp_path: Path, redis_url: str) -> None:
    server = TusServer(tmp_path / "data", redis_url=redis_url, workers=2).start()
    assert server.proc is not None
    workers = wait_for_workers(server.proc.pid, 2)
    server.stop(signal.SIGKILL)
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    for pid in left:  # never leave one behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left


def test_workers_keep_the_request_head_guard(workers_server: TusServer) -> None:
    """The guarded protocol (431 past --max-header-size) runs in the workers too."""
    from tests.e2e.test_hardening import send_oversized_head

    reply = send_oversized_head(workers_server.port)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:100]
