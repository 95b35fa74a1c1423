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
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.support import ROOT, TUS, head, stop_process, stub_server, upload_file

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


# -- defaults for big files: chunks, so a killed run resumes mid-file (issue 17, item 5) ---------


def test_default_run_of_a_big_file_killed_mid_way_resends_less_than_a_quarter(server, client: Client, proxies, tmp_path: Path) -> None:
    """No --chunk-size: a 300 MB file with checksums goes in chunks, so the run after a kill
    goes on from the last whole chunk. The proxy counts the PATCH bytes the server got."""
    size = 300_000_000
    proxy = proxies(server.port, rate=100 * MiB)  # ~3 s for the file: "mid-way" is a state to wait for
    data = make_file(tmp_path / "big.iso", size)
    args = (tmp_path / "big.iso", "--endpoint", proxy.url, "--json")
    first = client.start(*args)
    try:
        deadline = time.monotonic() + 60
        while proxy.patch_bytes < size * 0.4 and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()
            time.sleep(0.02)
        assert proxy.patch_bytes >= size * 0.4
    finally:
        stop_process(first, signal.SIGKILL)
    sent_first = proxy.patch_bytes
    assert sent_first < size  # killed mid-way
    proxy.rate = None
    result = client.run(*args)
    assert result.returncode == 0, result.stderr
    [record] = lines(result)
    assert record["resumed_from"] > 0 and record["verified"] == "digest"
    sent_again = proxy.patch_bytes - size  # bytes beyond one copy of the file
    assert 0 <= sent_again < size * 0.25, (sent_first, record["resumed_from"], proxy.patch_bytes)
    assert proxy.patches > 2  # in chunks
    with open(upload_file(server.data_dir, record["url"].rsplit("/", 1)[1]), "rb") as stored:
        assert hashlib.file_digest(stored, "sha256").digest() == hashlib.sha256(data).digest()


def test_chunks_only_above_the_threshold_and_whole_keeps_one_patch(server, client: Client, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port)
    make_file(tmp_path / "small.bin", 64 * MiB)  # at the threshold: one PATCH
    make_file(tmp_path / "big.bin", 65 * MiB + 1)  # above: chunks of an eighth, rounded up to MiB (9 MiB)
    result = client.run(tmp_path / "small.bin", tmp_path / "big.bin", "--endpoint", proxy.url, "--json")
    assert result.returncode == 0, result.stderr
    assert proxy.patches == 1 + 8
    whole = client.run(tmp_path / "big.bin", "--endpoint", proxy.url, "--chunk-size", "whole", "--json")
    assert whole.returncode == 0, whole.stderr
    assert proxy.patches == 1 + 8 + 1  # the single-PATCH mode
    no_checksum = client.run(tmp_path / "big.bin", "--endpoint", proxy.url, "--no-checksum", "--json")
    assert no_checksum.returncode == 0 and proxy.patches == 1 + 8 + 1 + 1  # the server keeps what arrived anyway


# -- verification by the server's digest, download only as a fallback (item 6) -------------------


def test_verification_uses_the_servers_digest_and_downloads_nothing(server, client: Client, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port)
    data = make_file(tmp_path / "a.bin", 3 * MiB + 7)
    make_file(tmp_path / "b.bin", 1000, 1)
    result = client.run(tmp_path / "a.bin", tmp_path / "b.bin", "--endpoint", proxy.url, "--json")
    assert result.returncode == 0, result.stderr
    records = lines(result)
    assert [r["verified"] for r in records] == ["digest", "digest"]
    assert "GET" not in proxy.methods  # not one byte read back
    assert proxy.methods.count("HEAD") == 2  # one digest question per file
    assert "by its digest, nothing downloaded" in result.stderr

    md5 = client.run(tmp_path / "b.bin", "--endpoint", proxy.url, "--json", "--digest", "md5")
    assert md5.returncode == 0 and lines(md5)[0]["verified"] == "digest"  # compared by sha-256 all the same
    assert "GET" not in proxy.methods
    assert_uploaded(records[0], data)  # the test's own GET, last


def test_a_digest_that_does_not_match_fails_without_downloading(server, client: Client, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port, corrupt_patches=1)
    make_file(tmp_path / "data.csv", MiB)
    result = client.run(tmp_path / "data.csv", "--endpoint", proxy.url, "--no-checksum", "--json")
    assert result.returncode == 1
    assert "VERIFICATION FAILED for data.csv: the server reports 1048576 bytes with sha256" in result.stderr
    assert "GET" not in proxy.methods


def test_a_server_without_digests_is_verified_by_download(make_server, client: Client, proxies, tmp_path: Path) -> None:
    """tusd-py with --no-ietf-draft: a tus 1.0.0 server with no way to report a digest."""
    server = make_server(ietf_draft=False)
    proxy = proxies(server.port)
    data = make_file(tmp_path / "c.bin", 2 * MiB)
    result = client.run(tmp_path / "c.bin", "--endpoint", proxy.url, "--json")
    assert result.returncode == 0, result.stderr
    [record] = lines(result)
    assert record["verified"] == "download" and proxy.methods[-1] == "GET"
    assert_uploaded(record, data)

    strict = client.run(tmp_path / "c.bin", "--endpoint", proxy.url, "--json", "--verify", "digest")
    assert strict.returncode == 1
    assert "the server reports no digest of the upload" in lines(strict)[0]["error"]


def test_verify_download_and_off(server, client: Client, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port)
    make_file(tmp_path / "d.bin", 100_000)
    download = client.run(tmp_path / "d.bin", "--endpoint", proxy.url, "--json", "--verify", "download")
    assert download.returncode == 0 and lines(download)[0]["verified"] == "download"
    assert proxy.methods.count("GET") == 1
    before = len(proxy.methods)
    for flag in (("--verify", "off"), ("--no-verify",)):
        off = client.run(tmp_path / "d.bin", "--endpoint", proxy.url, "--json", *flag)
        assert off.returncode == 0 and lines(off)[0]["verified"] == "off"
        assert "not verified" in off.stderr
    assert "GET" not in proxy.methods[before:] and "HEAD" not in proxy.methods[before:]


# -- output: one line per file off a terminal, bars on one (item 7) -----------------------------


def test_without_a_terminal_one_line_per_file_and_a_total(server, client: Client, tmp_path: Path) -> None:
    make_file(tmp_path / "one.bin", 2 * MiB)
    make_file(tmp_path / "two.bin", 3 * MiB, 1)
    result = client.run(tmp_path / "one.bin", tmp_path / "two.bin", "--endpoint", server.url)
    assert result.returncode == 0, result.stderr
    output = result.stderr.splitlines()
    assert len(output) == 3, result.stderr
    assert output[0].startswith("uploaded one.bin -> ") and "2.0 MiB in " in output[0] and "MiB/s" in output[0]
    assert output[1].startswith("uploaded two.bin -> ") and "3.0 MiB in " in output[1]
    assert output[2].startswith("total: 2 file(s), 5.0 MiB in ")
    assert "\r" not in result.stderr and "\x1b" not in result.stderr and "━" not in result.stderr  # no bars


def test_on_a_terminal_bars_are_drawn(server, client: Client, tmp_path: Path) -> None:
    import pty
    import select

    make_file(tmp_path / "tty.bin", 2 * MiB)
    leader, follower = pty.openpty()
    env = dict(client.env, COLUMNS="120", TERM="xterm")
    proc = subprocess.Popen(client.args(tmp_path / "tty.bin", "--endpoint", server.url), env=env, cwd=ROOT,
                            stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=30) == 0, seen
    finally:
        stop_process(proc, signal.SIGKILL)
        os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert "━" in text and "uploaded tty.bin" in text  # rich's bars, then the note


# -- text from a server is escaped before it is printed (issue 13, item 19) ---------------------


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u009b31m\r\nforged line\u202e"


class HostileServer(BaseHTTPRequestHandler):
    """A tus server whose answers carry terminal escapes: in a Location, and in error bodies."""

    patches = 0

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in {"Tus-Resumable": "1.0.0", "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)  # latin-1 on the wire: ESC, BEL and C1 CSI pass as they are
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self) -> None:
        self._answer(204, {"Tus-Version": "1.0.0", "Tus-Extension": "creation"})

    def do_POST(self) -> None:
        if "ZXZpbA" in self.headers.get("Upload-Metadata", ""):  # the file named "evil" is refused
            return self._answer(403, body=HOSTILE.encode())
        self._answer(201, {"Location": "/files/x\x1b[2J\x07\x9by"})

    def do_HEAD(self) -> None:
        self._answer(200, {"Upload-Offset": "0", "Upload-Length": "1000"})

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        HostileServer.patches += 1
        if HostileServer.patches == 1:  # once: a retry whose reason is printed
            return self._answer(500, body=HOSTILE.encode())
        self._answer(204, {"Upload-Offset": "1000"})


@pytest.fixture
def hostile_server() -> Iterator[str]:
    HostileServer.patches = 0
    with stub_server(HostileServer) as url:
        yield url


def test_control_characters_from_the_server_are_escaped_before_printing(hostile_server: str, client: Client, tmp_path: Path) -> None:
    make_file(tmp_path / "good.bin", 1000)
    make_file(tmp_path / "evil", 10)
    result = client.run(tmp_path / "good.bin", tmp_path / "evil", "--endpoint", hostile_server, "--verify", "off",
                        "--retry-delay", "0", "--json")
    assert result.returncode == 1  # evil was refused
    for raw in ("\x1b", "\x07", "\x9b", "\r", "\u202e"):
        assert raw not in result.stderr and raw not in result.stdout
    lines_ = result.stderr.splitlines()
    [uploaded] = [line for line in lines_ if line.startswith("uploaded good.bin")]
    assert "/files/x\\x1b[2J\\x07\\x9by" in uploaded  # the Location, escaped
    [retry] = [line for line in lines_ if line.startswith("retrying in")]
    [failed] = [line for line in lines_ if line.startswith("FAILED evil")]
    for line in (retry, failed):  # the body, escaped, and on the same line: nothing forged
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\x9b31m\\x0d\\x0aforged line\\u202e" in line
    assert not any(line.startswith("forged") for line in lines_)
