"""tus-upload's parts, and its parallel mode against the concatenation protocol.

The parallel mode talks to a small in-memory tus server here that does what the
spec's concatenation section says (CC-02..CC-05) and records every request, so
the headers the client sends are checked exactly. The same mode runs against
tusd-py itself in tests/e2e/test_tus_upload.py once tusd-py has concatenation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from tusclient.exceptions import TusCommunicationError

from tests.support import stub_server
from tus_upload.cli import main, parse_size
from tus_upload.files import FileRange, split
from tus_upload.resume import Entry, ResumeStore
from tus_upload.uploader import RetryPolicy, choose_checksum, encode_metadata


def test_parse_size() -> None:
    assert parse_size("100") == 100
    assert parse_size("512k") == 512 * 1024
    assert parse_size("4MiB") == parse_size("4M") == 4 * 1024 * 1024
    assert parse_size("1 GiB") == 1024**3
    with pytest.raises(ValueError):
        parse_size("lots")


def test_split_covers_the_file_in_order() -> None:
    assert split(10, 4) == [(0, 3), (3, 3), (6, 3), (9, 1)]
    assert split(3, 8) == [(0, 1), (1, 1), (2, 1)]  # never an empty part
    assert split(0, 4) == [(0, 0)]
    assert split(100, 1) == [(0, 100)]
    for size in (1, 7, 1000, 1001):
        spans = split(size, 4)
        assert sum(length for _, length in spans) == size
        assert all(start == sum(length for _, length in spans[:i]) for i, (start, _) in enumerate(spans))


def test_file_range_looks_like_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(range(100)))
    view = FileRange(path, 10, 20)
    assert view.seek(0, 2) == 20 and view.tell() == 20
    view.seek(5)
    assert view.read(3) == bytes([15, 16, 17])
    assert view.read() == bytes(range(18, 30))
    assert view.read(5) == b""
    with view as stream:  # tuspy's fingerprinting closes what it opens; this one survives
        stream.seek(0)
    assert view.read(1) == bytes([10])
    view.release()


def test_checksum_choice_and_retryable_statuses() -> None:
    assert choose_checksum(["md5", "sha1", "sha256"]) == "sha256"
    assert choose_checksum(["sha1", "crc32"]) == "sha1"
    assert choose_checksum(["md5"]) is None
    retryable = RetryPolicy.retryable
    assert retryable(TusCommunicationError("no answer"))
    for status in (500, 503, 409, 423, 460):
        assert retryable(TusCommunicationError("x", status))
    for status in (400, 403, 404, 410, 412, 413):
        assert not retryable(TusCommunicationError("x", status))


def test_retry_policy_backs_off_exponentially_then_gives_up() -> None:
    delays: list[float] = []
    policy = RetryPolicy(retries=4, delay=0.001, max_delay=0.004, on_retry=lambda why, delay: delays.append(delay))
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        raise TusCommunicationError("busy", 503, b"ERR_X: try later")

    with pytest.raises(Exception, match="503: ERR_X: try later"):
        policy.call(flaky)
    assert calls == 5 and delays == [0.001, 0.002, 0.004, 0.004]


def test_metadata_encoding() -> None:
    assert encode_metadata({"filename": "ä.txt", "empty": ""}) == "filename w6QudHh0,empty "
    with pytest.raises(ValueError):
        encode_metadata({"a b": "x"})


def test_resume_store_is_shared_safely(tmp_path: Path) -> None:
    store = ResumeStore(tmp_path / "state" / "uploads.json")
    assert store.get("k") is None
    store.put("k", Entry(["", ""], 10, "sha256:ab"))

    def set_part(index: int) -> None:
        ResumeStore(store.path).set_part("k", index, f"http://x/{index}")

    threads = [threading.Thread(target=set_part, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("k") == Entry(["http://x/0", "http://x/1"], 10, "sha256:ab")
    assert store.get_item("k") == "http://x/0"  # tuspy's Storage interface
    store.remove_item("k")
    assert store.get("k") is None
    store.path.write_text("{not json")
    assert store.get("k") is None  # a broken store costs resuming, nothing else


class ConcatServer(BaseHTTPRequestHandler):
    """creation, checksum (sha256), concatenation and GET, in memory; every request recorded."""

    uploads: dict[str, dict] = {}
    requests: list[tuple[str, str, dict[str, str]]] = []
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in {"Tus-Resumable": "1.0.0", "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> dict[str, str]:
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.lock:
            self.requests.append((self.command, self.path, headers))
        return headers

    def do_OPTIONS(self) -> None:
        self._record()
        self._answer(204, {"Tus-Extension": "creation,checksum,concatenation", "Tus-Checksum-Algorithm": "sha1,sha256"})

    def do_POST(self) -> None:
        headers = self._record()
        concat = headers.get("upload-concat", "")
        upload_id = uuid.uuid4().hex
        if concat.startswith("final;"):
            assert "upload-length" not in headers  # CC-04
            parts = [self.uploads[url.rsplit("/", 1)[1]] for url in concat[len("final;"):].split()]
            if any(len(part["data"]) != part["length"] for part in parts):
                return self._answer(400, body=b"ERR_UPLOAD_NOT_FINISHED")
            data = b"".join(bytes(part["data"]) for part in parts)
            self.uploads[upload_id] = {"length": len(data), "data": bytearray(data), "concat": concat}
        else:
            self.uploads[upload_id] = {"length": int(headers["upload-length"]), "data": bytearray(), "concat": concat}
        self._answer(201, {"Location": f"/files/{upload_id}"})

    def do_HEAD(self) -> None:
        self._record()
        upload = self.uploads[self.path.rsplit("/", 1)[1]]
        self._answer(200, {"Upload-Offset": str(len(upload["data"])), "Upload-Length": str(upload["length"])})

    def do_PATCH(self) -> None:
        headers = self._record()
        upload = self.uploads[self.path.rsplit("/", 1)[1]]
        body = self.rfile.read(int(headers["content-length"]))
        algorithm, digest = headers["upload-checksum"].split(" ")
        assert algorithm == "sha256"
        if base64.b64decode(digest) != hashlib.sha256(body).digest():
            return self._answer(460, body=b"ERR_CHECKSUM_MISMATCH")
        if int(headers["upload-offset"]) != len(upload["data"]):
            return self._answer(409, {"Upload-Offset": str(len(upload["data"]))})
        upload["data"] += body
        self._answer(204, {"Upload-Offset": str(len(upload["data"]))})

    def do_GET(self) -> None:
        self._record()
        self._answer(200, body=bytes(self.uploads[self.path.rsplit("/", 1)[1]]["data"]))


@pytest.fixture
def concat_server() -> Iterator[str]:
    ConcatServer.uploads = {}
    ConcatServer.requests = []
    with stub_server(ConcatServer) as url:
        yield url


def test_parallel_sends_partials_then_a_final_concatenation(concat_server: str, tmp_path: Path) -> None:
    data = hashlib.shake_256(b"p").digest(1_000_003)
    (tmp_path / "big.iso").write_bytes(data)
    args = [str(tmp_path / "big.iso"), "--endpoint", concat_server, "--parallel", "4", "--chunk-size", "100k"]
    result = CliRunner().invoke(main, [*args, "--json", "--state-file", str(tmp_path / "state.json"), "--meta", "k=v"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["ok"] and record["parts"] == 4 and record["bytes"] == len(data)

    posts = [headers for method, _, headers in ConcatServer.requests if method == "POST"]
    partials, final = posts[:4], posts[4]
    assert len(posts) == 5
    for headers in partials:  # CC-02: partial, with a length; no metadata on parts (CC-09)
        assert headers["upload-concat"] == "partial" and "upload-metadata" not in headers
    assert sorted(int(h["upload-length"]) for h in partials) == [250_000, 250_001, 250_001, 250_001]
    urls = final["upload-concat"][len("final;"):].split(" ")  # CC-03: in the file's order
    parts = [ConcatServer.uploads[url.rsplit("/", 1)[1]] for url in urls]
    assert [bytes(part["data"]) for part in parts] == [data[s : s + n] for s, n in split(len(data), 4)]
    assert all(url.startswith(concat_server) for url in urls)
    meta = dict(pair.split(" ") for pair in final["upload-metadata"].split(","))
    assert base64.b64decode(meta["filename"]) == b"big.iso" and base64.b64decode(meta["k"]) == b"v"
    final_upload = ConcatServer.uploads[record["url"].rsplit("/", 1)[1]]
    assert bytes(final_upload["data"]) == data
    patches = [h for method, _, h in ConcatServer.requests if method == "PATCH"]
    assert len(patches) == 12 and all(int(h["content-length"]) <= 100 * 1024 for h in patches)
    assert ConcatServer.requests[-1][0] == "GET"  # verified by downloading
    assert json.loads((tmp_path / "state.json").read_text())["uploads"] == {}


def test_parallel_resumes_each_part(concat_server: str, tmp_path: Path) -> None:
    """A run that stopped with parts half sent: the next run goes on with each part from its offset."""
    data = hashlib.shake_256(b"r").digest(400)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    store = ResumeStore(tmp_path / "state.json")
    from tus_upload.resume import fingerprint

    urls = []
    for i, (start, length) in enumerate(split(len(data), 2)):
        upload_id = f"part{i}"
        ConcatServer.uploads[upload_id] = {"length": length, "data": bytearray(data[start : start + 50]), "concat": "partial"}
        urls.append(f"{concat_server}{upload_id}")
    store.put(f"{concat_server} parts=2 {fingerprint(path)}", Entry(urls, len(data), "sha256:" + hashlib.sha256(data).hexdigest()))
    result = CliRunner().invoke(main, [str(path), "-e", concat_server, "-p", "2", "--json", "--state-file", str(store.path)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["resumed_from"] == 100
    assert "resuming f.bin at offset 100 of 400" in result.output
    patches = [(path_, h["upload-offset"]) for method, path_, h in ConcatServer.requests if method == "PATCH"]
    assert sorted(patches) == [("/files/part0", "50"), ("/files/part1", "50")]
    assert bytes(ConcatServer.uploads[record["url"].rsplit("/", 1)[1]]["data"]) == data


def test_chunk_size_for_big_checksummed_uploads() -> None:
    from tus_upload.transfer import MAX_CHUNK, WHOLE, Uploader, chunk_size_for

    MiB = 1 << 20
    whole = Uploader.DEFAULT_CHUNK_SIZE
    assert chunk_size_for(64 * MiB, None, True) == whole  # up to the threshold: one PATCH
    assert chunk_size_for(64 * MiB + 1, None, True) == 9 * MiB  # an eighth, rounded up to MiB
    assert chunk_size_for(300_000_000, None, True) == 36 * MiB
    assert chunk_size_for(10 << 30, None, True) == MAX_CHUNK == 64 * MiB
    assert chunk_size_for(10 << 30, None, False) == whole  # without checksums the server keeps what arrived
    assert chunk_size_for(10 << 30, WHOLE, True) == whole
    assert chunk_size_for(10 << 30, 8 * MiB, True) == 8 * MiB


def test_printable_escapes_every_control_character() -> None:
    from tus_upload.display import printable

    assert printable("plain text, ünïcode ✓") == "plain text, ünïcode ✓"
    assert printable("a\x1b[2Jb\x07\x00\x7f\x9b\r\n\t\u202e") == "a\\x1b[2Jb\\x07\\x00\\x7f\\x9b\\x0d\\x0a\\x09\\u202e"
    assert all(printable(chr(code)).startswith("\\x") for code in [*range(0x20), *range(0x7F, 0xA0)])


def test_parse_repr_digest() -> None:
    from tus_upload.verify import parse_repr_digest

    digest = hashlib.sha256(b"x").digest()
    value = f"sha-256=:{base64.b64encode(digest).decode()}:"
    assert parse_repr_digest(value) == ("sha256", digest)
    assert parse_repr_digest(f"md5=:AAAA:, {value}") == ("sha256", digest)  # unknown algorithms are skipped
    assert parse_repr_digest("sha-256=notbytes") is None
    assert parse_repr_digest("((garbage") is None
