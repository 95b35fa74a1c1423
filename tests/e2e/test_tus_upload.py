"""`tus-upload` (the tuspy-based command-line client) against real tusd-py servers.

The client runs as its own process, so it can be killed by PID; a proxy on
127.0.0.1 slows uploads down (to interrupt them mid-way) or flips a byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, TUS, head, stop_process

MiB = 1024 * 1024


@pytest.fixture
def state_backend() -> str:
    """The client does not care where the server keeps its state: one backend is enough here."""
    return "embedded"



class Client:
    """Runs `python -m tus_upload` with its own state directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("TUS_UPLOAD_")}
        self.env["XDG_STATE_HOME"] = str(self.state)
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "clients"), str(ROOT)])

    @property
    def state_file(self) -> Path:
        return self.state / "tus-upload" / "uploads.json"

    def args(self, *args: object) -> list[str]:
        return [sys.executable, "-m", "tus_upload", *map(str, args)]

    def run(self, *args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args(*args), env=self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def start(self, *args: object) -> subprocess.Popen[str]:
        return subprocess.Popen(self.args(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def entries(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())["uploads"]
        except (OSError, ValueError, KeyError):
            return {}


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return Client(tmp_path)


def make_file(path: Path, size: int, seed: int = 0) -> bytes:
    data = hashlib.shake_256(f"{seed}:{size}".encode()).digest(size) if size else b""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def lines(result: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def assert_uploaded(record: dict, data: bytes) -> None:
    assert record["ok"], record
    assert record["bytes"] == len(data)
    assert record["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    got = requests.get(record["url"], timeout=30)
    assert got.status_code == 200
    assert got.content == data  # byte for byte


def metadata(url: str) -> dict[str, str]:
    raw = head(url).headers.get("Upload-Metadata", "")
    pairs = (item.strip().split(" ") for item in raw.split(",") if item.strip())
    return {pair[0]: base64.b64decode(pair[1]).decode() if len(pair) > 1 else "" for pair in pairs}


def wait_for_offset(client: Client, proc: subprocess.Popen, at_least: int, timeout: float = 30) -> str:
    """The client's upload URL (from its state file) once the server has committed `at_least` bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        urls = [url for entry in client.entries().values() for url in entry["urls"] if url]
        if urls:
            response = head(urls[0])
            if int(response.headers.get("Upload-Offset", "0")) >= at_least:
                return urls[0]
        time.sleep(0.1)
    raise TimeoutError(f"the upload did not reach {at_least} bytes in {timeout}s")


def test_single_file_upload_is_verified_with_metadata(server, client: Client, tmp_path: Path) -> None:
    data = make_file(tmp_path / "report.pdf", 3 * MiB + 5)
    result = client.run(tmp_path / "report.pdf", "--endpoint", server.url, "--json", "--meta", "project=tus py")
    assert result.returncode == 0, result.stderr
    [record] = lines(result)
    assert_uploaded(record, data)
    assert record["resumed_from"] == 0 and record["parts"] == 1
    assert metadata(record["url"]) == {"filename": "report.pdf", "filetype": "application/pdf", "project": "tus py"}
    assert "verified against the server's bytes" in result.stderr
    assert client.entries() == {}  # a finished upload is never resumed again

    again = client.run(tmp_path / "report.pdf", "--endpoint", server.url, "--json")
    [second] = lines(again)
    assert second["url"] != record["url"] and second["resumed_from"] == 0


def test_chunked_upload_sends_checksummed_patches(server, client: Client, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port)
    data = make_file(tmp_path / "big.bin", MiB + 100)
    result = client.run(tmp_path / "big.bin", "--endpoint", proxy.url, "--chunk-size", "256KiB", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # --quiet
    [record] = lines(result)
    assert_uploaded(record, data)
    assert proxy.patches == 5  # 4 x 256 KiB + 100 bytes


def test_directory_upload_needs_recursive_and_sends_every_file(server, client: Client, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    files = {
        "a.txt": make_file(root / "a.txt", 1000, 1),
        "sub/b.png": make_file(root / "sub" / "b.png", 200_000, 2),
        "sub/deeper/empty.bin": make_file(root / "sub" / "deeper" / "empty.bin", 0),
    }
    refused = client.run(root, "--endpoint", server.url)
    assert refused.returncode == 2
    assert "--recursive" in refused.stderr

    result = client.run(root, "--recursive", "--endpoint", server.url, "--json")
    assert result.returncode == 0, result.stderr
    records = {Path(r["path"]).relative_to(root).as_posix(): r for r in lines(result)}
    assert set(records) == set(files)
    for name, data in files.items():
        assert_uploaded(records[name], data)
    assert metadata(records["sub/b.png"]["url"]) == {
        "filename": "b.png",
        "filetype": "image/png",
        "relativePath": "photos/sub/b.png",
    }


def test_usage_errors_exit_2(server, client: Client, tmp_path: Path) -> None:
    make_file(tmp_path / "f", 10)
    assert client.run(tmp_path / "missing", "--endpoint", server.url).returncode == 2
    assert client.run(tmp_path / "f").returncode == 2  # no endpoint
    assert client.run(tmp_path / "f", "--endpoint", server.url, "--meta", "novalue").returncode == 2
    assert client.run(tmp_path / "f", "--endpoint", server.url, "--meta", "bad key=1").returncode == 2
    assert client.run(tmp_path / "f", "--endpoint", server.url, "--chunk-size", "lots").returncode == 2


def test_client_error_fails_at_once_with_the_servers_message(make_server, client: Client, tmp_path: Path) -> None:
    server = make_server(max_size=1000)
    make_file(tmp_path / "small", 10)
    make_file(tmp_path / "large", 5000)
    started = time.monotonic()
    result = client.run(tmp_path / "small", tmp_path / "large", "--endpoint", server.url, "--json")
    assert time.monotonic() - started < 30  # no retries for a 413
    assert result.returncode == 1
    small, large = lines(result)
    assert small["ok"] and not large["ok"]
    assert "413" in large["error"] and "ERR_MAX_SIZE_EXCEEDED" in large["error"]
    assert "FAILED large" in result.stderr


def test_killed_run_resumes_from_the_servers_offset(server, client: Client, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port, rate=MiB)
    data = make_file(tmp_path / "movie.mp4", 4 * MiB)
    args = (tmp_path / "movie.mp4", "--endpoint", proxy.url, "--chunk-size", "256KiB", "--json")
    first = client.start(*args)
    try:
        url = wait_for_offset(client, first, MiB)
    finally:
        stop_process(first, signal.SIGKILL)
    offset = int(head(url).headers["Upload-Offset"])
    assert 0 < offset < len(data)

    proxy.rate = None
    result = client.run(*args)
    assert result.returncode == 0, result.stderr
    [record] = lines(result)
    assert record["url"] == url
    assert record["resumed_from"] >= offset
    assert f"resuming movie.mp4 at offset {record['resumed_from']} of {len(data)}" in result.stderr
    assert_uploaded(record, data)


def test_killed_run_without_checksum_resumes_inside_a_single_patch(server, client: Client, proxies, tmp_path: Path) -> None:
    """Default whole-file PATCH: the server keeps what arrived (C-30), the re-run goes on from there."""
    proxy = proxies(server.port, rate=MiB)
    data = make_file(tmp_path / "disk.img", 4 * MiB)
    args = (tmp_path / "disk.img", "--endpoint", proxy.url, "--no-checksum", "--json")
    first = client.start(*args)
    try:
        url = wait_for_offset(client, first, 1)  # the server commits a long PATCH every second or so
    finally:
        stop_process(first, signal.SIGKILL)
    proxy.rate = None
    result = client.run(*args)
    assert result.returncode == 0, result.stderr
    [record] = lines(result)
    assert record["url"] == url and record["resumed_from"] > 0
    assert_uploaded(record, data)


def test_server_restart_mid_upload_is_retried(server, client: Client, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port, rate=2 * MiB)
    data = make_file(tmp_path / "backup.tar", 6 * MiB)
    proc = client.start(tmp_path / "backup.tar", "--endpoint", proxy.url, "--chunk-size", "512KiB", "--json")
    try:
        wait_for_offset(client, proc, MiB)
        server.restart()  # same port: the proxy reaches the new process
        out, err = proc.communicate(timeout=120)
    finally:
        stop_process(proc, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "retrying in" in err
    [record] = [json.loads(line) for line in out.splitlines()]
    assert_uploaded(record, data)


def test_corrupted_chunk_is_caught_by_the_checksum_and_resent(server, client: Client, proxies, tmp_path: Path) -> None:
    options = requests.options(server.url, timeout=5).headers
    assert "sha256" in options["Tus-Checksum-Algorithm"]
    proxy = proxies(server.port, corrupt_patches=1)
    data = make_file(tmp_path / "data.csv", 2 * MiB)
    result = client.run(tmp_path / "data.csv", "--endpoint", proxy.url, "--chunk-size", "512KiB", "--json")
    assert result.returncode == 0, result.stderr
    assert proxy.corrupted == 1
    assert proxy.patches == 5  # 4 chunks, the corrupted one twice
    assert "460" in result.stderr and "retrying in" in result.stderr
    [record] = lines(result)
    assert_uploaded(record, data)


def test_corruption_without_checksums_fails_verification_loudly(server, client: Client, proxies, tmp_path: Path) -> None:
    """No Upload-Checksum: the flipped byte reaches the disk, and the final GET comparison catches it."""
    proxy = proxies(server.port, corrupt_patches=1)
    make_file(tmp_path / "data.csv", MiB)
    args = (tmp_path / "data.csv", "--endpoint", proxy.url, "--no-checksum", "--json")
    result = client.run(*args)
    assert result.returncode == 1
    assert proxy.corrupted == 1
    assert "VERIFICATION FAILED for data.csv" in result.stderr
    [record] = lines(result)
    assert not record["ok"] and "VERIFICATION FAILED" in record["error"]
    assert client.entries() == {}  # the corrupt upload is never resumed
    again = client.run(*args)  # the proxy corrupts no more: a new, good upload
    assert again.returncode == 0, again.stderr
    assert lines(again)[0]["resumed_from"] == 0


def test_changed_file_does_not_resume_a_stale_upload(server, client: Client, proxies, tmp_path: Path) -> None:
    """Same size, same first 64 KiB (so the same tuspy fingerprint), different content."""
    proxy = proxies(server.port, rate=MiB)
    path = tmp_path / "log.txt"
    old = make_file(path, 3 * MiB, 1)
    args = (path, "--endpoint", proxy.url, "--chunk-size", "256KiB", "--json")
    first = client.start(*args)
    try:
        stale = wait_for_offset(client, first, 512 * 1024)
    finally:
        stop_process(first, signal.SIGKILL)
    new = old[: 2 * MiB] + make_file(tmp_path / "tail", MiB, 2)
    path.write_bytes(new)

    proxy.rate = None
    result = client.run(*args)
    assert result.returncode == 0, result.stderr
    [record] = lines(result)
    assert "changed since its last upload began" in result.stderr
    assert record["url"] != stale and record["resumed_from"] == 0
    assert_uploaded(record, new)


def test_upload_gone_from_the_server_starts_anew(server, client: Client, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port, rate=MiB)
    data = make_file(tmp_path / "x.bin", 2 * MiB)
    args = (tmp_path / "x.bin", "--endpoint", proxy.url, "--chunk-size", "256KiB", "--json")
    first = client.start(*args)
    try:
        stale = wait_for_offset(client, first, 256 * 1024)
    finally:
        stop_process(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while requests.delete(stale, headers=TUS, timeout=5).status_code == 423 and time.monotonic() < deadline:
        time.sleep(0.2)  # the killed client's PATCH may still hold the upload for a moment
    proxy.rate = None
    result = client.run(*args)
    assert result.returncode == 0, result.stderr
    [record] = lines(result)
    assert record["url"] != stale and record["resumed_from"] == 0
    assert_uploaded(record, data)


def test_no_resume_ignores_and_keeps_no_state(server, client: Client, tmp_path: Path) -> None:
    data = make_file(tmp_path / "f.bin", 1000)
    result = client.run(tmp_path / "f.bin", "--endpoint", server.url, "--no-resume", "--json")
    assert result.returncode == 0, result.stderr
    assert_uploaded(lines(result)[0], data)
    assert not client.state_file.exists()


def test_parallel_upload_joins_four_partial_uploads(server, client: Client, tmp_path: Path) -> None:
    extensions = requests.options(server.url, timeout=5).headers.get("Tus-Extension", "").split(",")
    if "concatenation" not in extensions:
        pytest.skip("the server does not advertise concatenation (yet)")
    data = make_file(tmp_path / "huge.iso", 5 * MiB + 3)
    result = client.run(tmp_path / "huge.iso", "--endpoint", server.url, "--parallel", "4", "--chunk-size", "1MiB", "--json")
    assert result.returncode == 0, result.stderr
    [record] = lines(result)
    assert record["parts"] == 4
    assert_uploaded(record, data)
    final = head(record["url"])
    concat = final.headers["Upload-Concat"]
    assert concat.startswith("final;") and len(concat[len("final;"):].split()) == 4
    assert final.headers["Upload-Offset"] == final.headers["Upload-Length"] == str(len(data))
    assert metadata(record["url"])["filename"] == "huge.iso"


def test_parallel_upload_killed_then_resumed_part_by_part(server, client: Client, proxies, tmp_path: Path) -> None:
    extensions = requests.options(server.url, timeout=5).headers.get("Tus-Extension", "").split(",")
    if "concatenation" not in extensions:
        pytest.skip("the server does not advertise concatenation (yet)")
    proxy = proxies(server.port, rate=MiB)  # per connection: 4 parts at 1 MiB/s each
    data = make_file(tmp_path / "parts.bin", 12 * MiB)
    args = (tmp_path / "parts.bin", "--endpoint", proxy.url, "--parallel", "4", "--chunk-size", "256KiB", "--json")
    first = client.start(*args)
    try:
        wait_for_offset(client, first, 512 * 1024)
    finally:
        stop_process(first, signal.SIGKILL)
    [entry] = client.entries().values()
    assert len(entry["urls"]) == 4
    proxy.rate = None
    result = client.run(*args)
    assert result.returncode == 0, result.stderr
    [record] = lines(result)
    assert record["parts"] == 4 and record["resumed_from"] >= 512 * 1024
    assert "resuming parts.bin at offset" in result.stderr
    assert_uploaded(record, data)
