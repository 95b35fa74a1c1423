"""Issue 13 on the IETF draft's paths (items 3, 9, 13, 14, 15), through real servers on both
state backends: cancellations ask pre-terminate, whole-file digests are computed once and
kept with the record, and hostile ranges, charsets and lengths get a clear 4xx, never a 500.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
import requests
from http_sf import parse

from tests import draft_client as d
from tests.draft_client import INTEROP, PARTIAL
from tests.e2e.hookutil import metadata, of_type, read_events, wait_until
from tests.e2e.test_ietf import append as draft_append, create as draft_create, digest_field, head as draft_head, path_of
from tests.support import TUS, TusServer, create as tus_create, patch as tus_patch, upload_file

MODULE = "tests.hooks_recorder"
TOO_LONG = 10**16  # past 999999999999999, the largest sf-Integer


# -- item 3: the draft's own cancellations ask pre-terminate ------------------------------


@pytest.fixture
def hook_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("HOOKS_TEST_LOG", str(path))  # the server processes inherit it
    return path


def test_draft_cancellations_ask_pre_terminate_and_a_refusal_deletes_nothing(make_server, hook_log: Path) -> None:
    srv = make_server(hooks_module=MODULE)
    kept = metadata(keep="1")
    # A body past the length (said by Content-Length, or found while streaming), a Repr-Digest mismatch.
    overflow = path_of(draft_create(srv, b"12", Upload_Length="4", Upload_Metadata=kept).headers["location"])
    assert draft_append(srv, overflow, 2, b"345").status == 400
    streamed = path_of(draft_create(srv, b"12", Upload_Length="4", Upload_Metadata=kept).headers["location"])
    assert draft_append(srv, streamed, 2, d.chunked(b"34", b"56"), Transfer_Encoding="chunked").status == 400
    digest = path_of(draft_create(srv, b"ab", Repr_Digest=digest_field("sha-256", b"other"), Upload_Metadata=kept).headers["location"])
    refused = draft_append(srv, digest, 2, b"cd", complete=True)
    assert refused.status == 400 and b"ERR_REPR_DIGEST_MISMATCH" in refused.body and b"kept" in refused.body
    for path in (overflow, streamed, digest):
        state = draft_head(srv, path)
        assert state.status == 204 and state.headers["upload-complete"] == "?0"  # the hook said no: kept
        assert os.path.exists(upload_file(srv.data_dir, path.rsplit("/", 1)[1]))
    # Without the refusal the draft's rule stands: asked, then cancelled.
    gone = path_of(draft_create(srv, b"12", Upload_Length="4").headers["location"])
    assert draft_append(srv, gone, 2, b"345").status == 400
    assert draft_head(srv, gone).status == 404
    events = wait_until(lambda: of_type(read_events(hook_log), "post-terminate") and read_events(hook_log))
    for path in (overflow, streamed, digest, gone):
        assert len(of_type(events, "pre-terminate", path.rsplit("/", 1)[1])) == 1, path
    assert [e["upload"]["id"] for e in of_type(events, "post-terminate")] == [gone.rsplit("/", 1)[1]]


# -- item 9: a complete upload's digest, computed once and kept with its record ----------


def _overwrite(srv: TusServer, path: str) -> None:
    """Change the stored bytes behind the server's back: a digest answered afterwards that
    still matches the original bytes was not computed again."""
    file = upload_file(srv.data_dir, path.rsplit("/", 1)[1])
    file.write_bytes(b"\xff" * file.stat().st_size)


def _repr_digest(exchange: d.Exchange) -> dict:
    assert exchange.status == 204, exchange.headers
    return parse(exchange.headers["repr-digest"].encode(), tltype="dictionary")


def test_a_complete_uploads_digest_is_computed_once_and_kept_with_its_record(make_server) -> None:
    srv = make_server()
    data = os.urandom(300_000)
    on_demand = path_of(draft_create(srv, data, complete=True).headers["location"])
    assert _repr_digest(draft_head(srv, on_demand, Want_Repr_Digest="sha-256=1")) == {"sha-256": (hashlib.sha256(data).digest(), {})}
    # Asked at creation: computed at completion, and kept.
    at_completion = path_of(draft_create(srv, data[:10], Want_Repr_Digest="sha-512=1").headers["location"])
    assert "repr-digest" in draft_append(srv, at_completion, 10, data[10:], complete=True).headers
    _overwrite(srv, on_demand)
    _overwrite(srv, at_completion)
    srv.restart()  # kept with the record, not in the process's memory
    assert _repr_digest(draft_head(srv, on_demand, Want_Repr_Digest="sha-256=1"))["sha-256"][0] == hashlib.sha256(data).digest()
    # The first computation took every known algorithm in the same read.
    assert _repr_digest(draft_head(srv, on_demand, Want_Repr_Digest="sha-512=1"))["sha-512"][0] == hashlib.sha512(data).digest()
    assert _repr_digest(draft_head(srv, at_completion, Want_Repr_Digest="sha-512=1"))["sha-512"][0] == hashlib.sha512(data).digest()
    # An algorithm not computed at completion is computed once on demand (from the bytes now stored).
    assert _repr_digest(draft_head(srv, at_completion, Want_Repr_Digest="sha-256=1"))["sha-256"][0] == hashlib.sha256(b"\xff" * len(data)).digest()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def _head_request(srv: TusServer, path: str) -> d.Connection:
    connection = d.Connection(srv.port, timeout=60)
    connection.send_head("HEAD", path, {**INTEROP, "Want-Repr-Digest": "sha-256=1"})
    return connection


def test_concurrent_digest_requests_share_one_computation_and_a_hang_up_stops_nothing_else(make_server) -> None:
    srv = make_server()
    assert srv.proc is not None
    data = os.urandom(1024 * 1024) * 96  # enough hashing to measure in clock ticks
    paths = []
    for _ in range(2):
        path = path_of(draft_create(srv, complete=False).headers["location"])
        assert draft_append(srv, path, 0, data, complete=True).status == 200
        paths.append(path)
    single, shared = paths
    time.sleep(0.5)  # what the uploads left running (flushes, commits) is done
    before = _cpu_seconds(srv.proc.pid)
    assert _repr_digest(draft_head(srv, single, Want_Repr_Digest="sha-256=1"))
    one = _cpu_seconds(srv.proc.pid) - before
    # Ten clients ask at once; the one whose request started the computation hangs up.
    before = _cpu_seconds(srv.proc.pid)
    first = _head_request(srv, shared)
    time.sleep(0.05)
    others = [_head_request(srv, shared) for _ in range(9)]
    first.close()
    answers = []
    for connection in others:
        answers.append(connection.read_exchange("HEAD"))
        connection.close()
    many = _cpu_seconds(srv.proc.pid) - before
    for answer in answers:
        assert answer.status == 204, answer.headers
        assert parse(answer.headers["repr-digest"].encode(), tltype="dictionary")["sha-256"][0] == hashlib.sha256(data).digest()
    assert many < 3 * one + 0.05, (one, many)  # one computation (each would have cost `one`)


# -- item 13: a Range position of any length -------------------------------------------


def test_range_positions_of_thousands_of_digits_are_416_or_the_whole_content(make_server) -> None:
    srv = make_server()
    path = path_of(draft_create(srv, b"0123456789", complete=True).headers["location"])
    huge = "9" * 5000
    for headers in (TUS, INTEROP):  # tus's GET and the draft's
        beyond = requests.get(srv.base + path, headers={**headers, "Range": f"bytes={huge}-"}, timeout=10)
        assert beyond.status_code == 416 and beyond.headers["Content-Range"] == "bytes */10"
        to_end = requests.get(srv.base + path, headers={**headers, "Range": f"bytes=2-{huge}"}, timeout=10)
        assert to_end.status_code == 206 and to_end.content == b"23456789"
        suffix = requests.get(srv.base + path, headers={**headers, "Range": f"bytes=-{huge}"}, timeout=10)
        assert suffix.status_code == 206 and suffix.content == b"0123456789"
        padded = requests.get(srv.base + path, headers={**headers, "Range": "bytes=" + "0" * 5000 + "3-4"}, timeout=10)
        assert padded.status_code == 206 and padded.content == b"34"


# -- item 14: filename* in a charset that is none --------------------------------------


def test_a_filename_in_an_unknown_or_failing_charset_is_a_400(make_server) -> None:
    srv = make_server()
    for charset in ("idna", "punycode", "undefined", "bogus"):
        exchange = draft_create(srv, b"x", complete=True, Content_Disposition=f"attachment; filename*={charset}''%41")
        assert exchange.status == 400 and b"ERR_INVALID_CONTENT_DISPOSITION" in exchange.body, charset
        assert exchange.interim == [] and "location" not in exchange.headers  # nothing was created
    bad_utf8 = draft_create(srv, b"x", complete=True, Content_Disposition="attachment; filename*=UTF-8''%ff%fe")
    assert bad_utf8.status == 400
    # The plain filename is the fallback RFC 6266 gives for a filename* not understood.
    fallback = draft_create(srv, b"x", complete=True, Content_Disposition="attachment; filename=a.txt; filename*=idna''%41")
    assert fallback.status == 201
    got = requests.get(srv.base + path_of(fallback.headers["location"]), timeout=10)
    assert 'filename="a.txt"' in got.headers["Content-Disposition"]
    latin = draft_create(srv, b"x", complete=True, Content_Disposition="attachment; filename*=ISO-8859-1''%E4.txt")
    got = requests.get(srv.base + path_of(latin.headers["location"]), timeout=10)
    assert "filename*=UTF-8''%C3%A4.txt" in got.headers["Content-Disposition"]


# -- item 15: lengths the draft's fields cannot carry ----------------------------------


def test_lengths_past_the_largest_sf_integer_are_a_413_before_anything_happens(make_server) -> None:
    srv = make_server()
    limit = {"max-size": (999_999_999_999_999, {})}
    # Creation that implies such a length: refused before anything exists (no 104, no Location).
    with d.Connection(srv.port) as connection:
        connection.send_head("POST", "/files/", {**INTEROP, "Upload-Complete": "?1", "Content-Length": str(TOO_LONG)})
        exchange = connection.read_exchange()
    assert exchange.status == 413 and exchange.interim == [] and "location" not in exchange.headers
    assert parse(exchange.headers["upload-limit"].encode(), tltype="dictionary") == limit
    # An append that implies one: refused, nothing recorded.
    path = path_of(draft_create(srv, b"ab").headers["location"])
    with d.Connection(srv.port) as connection:
        connection.send_head("PATCH", path, {**INTEROP, "Upload-Offset": "2", "Upload-Complete": "?1", "Content-Type": PARTIAL, "Content-Length": str(TOO_LONG)})
        assert connection.read_exchange("PATCH").status == 413
    state = draft_head(srv, path)
    assert state.status == 204 and "upload-length" not in state.headers and state.headers["upload-offset"] == "2"
    # A tus upload that long, with bytes in it: every draft request is a 413, none a 500, no byte moves.
    url = tus_create(srv.url, TOO_LONG)
    assert tus_patch(url, 0, b"12345").status_code == 204
    tus_path = path_of(url)
    assert draft_head(srv, tus_path).status == 413
    assert draft_append(srv, tus_path, 5, b"678").status == 413
    assert d.request(srv.port, "GET", tus_path, INTEROP).status == 413
    assert requests.head(url, headers=TUS, timeout=10).headers["Upload-Offset"] == "5"


def test_a_max_size_past_the_largest_sf_integer_is_announced_as_that_integer(make_server) -> None:
    srv = make_server(max_size=TOO_LONG)
    exchange = d.request(srv.port, "OPTIONS", "/files/", INTEROP)
    assert exchange.status == 200
    assert parse(exchange.headers["upload-limit"].encode(), tltype="dictionary")["max-size"] == (999_999_999_999_999, {})
