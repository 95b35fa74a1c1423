"""The IETF resumable-upload draft over raw HTTP/1.1 against real servers, line by line
of the checklist (I-01..I-34, interop version 8, and the [-05] rules for version 6).

A raw socket client (tests/draft_client.py) is used so that 104 interim responses
are seen; each test names the checklist lines it proves.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
from http_sf import parse

from tests import draft_client as d
from tests.draft_client import INTEROP, INTEROP_6, PARTIAL
from tests.support import S3_CREDENTIALS, RedisServer, TusServer


@pytest.fixture(scope="module", params=["embedded", "redis", "redis-s3"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[TusServer]:
    """One server per backend for the module (ids are random, so tests do not collide); "redis-s3"
    keeps upload data in the session's SeaweedFS bucket."""
    redis = redis_server.url if request.param != "embedded" else None
    s3 = request.getfixturevalue("s3_server").server_flags() if request.param == "redis-s3" else {}
    env = S3_CREDENTIALS if s3 else None
    server = TusServer(tmp_path_factory.mktemp("ietf"), redis_url=redis, env=env, expire_after=3600, **s3).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    server = TusServer(tmp_path_factory.mktemp("ietf-capped"), max_size=1000, expire_after=0).start()
    yield server
    server.stop()


def path_of(location: str) -> str:
    return "/files/" + location.rsplit("/", 1)[1]


def create(srv: TusServer, body: bytes = b"", *, complete: bool = False, version: dict[str, str] = INTEROP, **headers: str) -> d.Exchange:
    hdrs = {**version, "Upload-Complete": "?1" if complete else "?0"}
    hdrs.update({name.replace("_", "-"): value for name, value in headers.items()})
    return d.request(srv.port, "POST", "/files/", hdrs, body)


def append(srv: TusServer, path: str, offset: int, body: bytes = b"", *, complete: bool = False, version: dict[str, str] = INTEROP, **headers: str) -> d.Exchange:
    hdrs = {**version, "Upload-Offset": str(offset), "Upload-Complete": "?1" if complete else "?0", "Content-Type": PARTIAL}
    hdrs.update({name.replace("_", "-"): value for name, value in headers.items()})
    return d.request(srv.port, "PATCH", path, hdrs, body)


def head(srv: TusServer, path: str, version: dict[str, str] = INTEROP, **headers: str) -> d.Exchange:
    return d.request(srv.port, "HEAD", path, {**version, **{k.replace("_", "-"): v for k, v in headers.items()}})


def download(srv: TusServer, path: str) -> bytes:
    response = requests.get(srv.base + path, timeout=10)
    assert response.status_code == 200
    return response.content


def sf_dict(value: str) -> dict:
    return parse(value.encode(), tltype="dictionary")


def digest_field(algorithm: str, data: bytes) -> str:
    digest = hashlib.new(algorithm.replace("-", ""), data).digest()
    return f"{algorithm}=:{base64.b64encode(digest).decode()}:"


# -- state and header fields ------------------------------------------------------------


def test_I01_fields_are_structured_and_invalid_ones_are_ignored(srv: TusServer) -> None:
    # An invalid Upload-Complete is ignored, so the creation lacks it: a clear 400.
    for bad in ("1", "?2", "true"):
        exchange = create(srv, Upload_Complete=bad)
        assert exchange.status == 400 and b"ERR_INVALID_UPLOAD_COMPLETE" in exchange.body
    # An invalid Upload-Length is ignored: no length is recorded.
    exchange = create(srv, Upload_Length="+5")
    assert exchange.status == 201 and "upload-length" not in exchange.headers
    path = path_of(exchange.headers["location"])
    # An invalid Upload-Offset is ignored: the append lacks it.
    for bad in ("+0", "0.0", "-1", "?0"):
        assert append(srv, path, 0, b"x", Upload_Offset=bad).status == 400
    # What the server sends parses as the draft's structured types.
    state = head(srv, path)
    assert parse(state.headers["upload-offset"].encode(), tltype="item") == (0, {})
    assert parse(state.headers["upload-complete"].encode(), tltype="item") == (False, {})
    assert sf_dict(state.headers["upload-limit"])


def test_I02_offset_never_decreases_across_responses(srv: TusServer) -> None:
    exchange = create(srv, b"a" * 10, Upload_Length="30")
    path = path_of(exchange.headers["location"])
    offsets = [int(exchange.headers["upload-offset"])]
    offsets.append(int(head(srv, path).headers["upload-offset"]))
    offsets.append(int(append(srv, path, 10, b"b" * 10).headers["upload-offset"]))
    assert append(srv, path, 5, b"c").status == 409  # an old offset is refused, never rewinds
    offsets.append(int(head(srv, path).headers["upload-offset"]))
    offsets.append(int(append(srv, path, 20, b"d" * 10, complete=True).headers["upload-offset"]))
    assert offsets == sorted(offsets) == [10, 10, 20, 20, 30]


def test_I03_completeness_is_explicit_and_shared_with_the_tus_view(srv: TusServer) -> None:
    exchange = create(srv, b"hello", Upload_Length="5")
    assert exchange.status == 201 and exchange.headers["upload-complete"] == "?0"
    path = path_of(exchange.headers["location"])
    state = head(srv, path)
    assert state.headers["upload-offset"] == "5" and state.headers["upload-length"] == "5"
    assert state.headers["upload-complete"] == "?0"  # offset == length, still not complete
    tus = requests.head(srv.base + path, headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert tus.headers.get("Upload-Defer-Length") == "1" and "Upload-Length" not in tus.headers  # not finished for tus either
    done = append(srv, path, 5, complete=True)  # an empty append completes it
    assert done.status == 200 and done.headers["upload-complete"] == "?1"
    assert head(srv, path).headers["upload-complete"] == "?1"
    tus = requests.head(srv.base + path, headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert tus.headers["Upload-Length"] == "5" and tus.headers["Upload-Offset"] == "5"
    assert append(srv, path, 5, b"more", complete=True).status == 400  # no data after completion
    assert download(srv, path) == b"hello"


@pytest.mark.parametrize("version", [INTEROP, INTEROP_6], ids=["v8", "v6"])
def test_I04_inconsistent_lengths_are_400_with_the_problem_type(srv: TusServer, version: dict[str, str]) -> None:
    exchange = create(srv, b"12345", complete=True, version=version, Upload_Length="10")
    assert exchange.status == 400
    problem = json.loads(exchange.body)
    assert exchange.headers["content-type"] == "application/problem+json"
    assert problem["type"] == "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
    path = path_of(create(srv, b"12", version=version, Upload_Length="10").headers["location"])
    assert append(srv, path, 2, b"3", version=version, Upload_Length="11").status == 400  # differs from the recorded one
    assert append(srv, path, 2, b"345", complete=True, version=version).status == 400  # implies 5, recorded 10
    assert head(srv, path, version).headers["upload-offset"] == "2"  # nothing appended
    # A length announced later is recorded, and then holds (values across requests match).
    later = path_of(create(srv, b"ab", version=version).headers["location"])
    assert append(srv, later, 2, b"c", version=version, Upload_Length="6").status == 204
    assert head(srv, later, version).headers["upload-length"] == "6"
    assert append(srv, later, 3, b"d", complete=True, version=version).status == 400


def test_I05_passing_the_length_is_refused_and_ends_the_upload(srv: TusServer) -> None:
    # Said up front by Content-Length ...
    path = path_of(create(srv, b"12", Upload_Length="4").headers["location"])
    assert append(srv, path, 2, b"345").status == 400
    assert head(srv, path).status == 404  # deactivated: no further interaction
    # ... or found while the content streams (no Content-Length to rely on).
    path = path_of(create(srv, b"12", Upload_Length="4").headers["location"])
    exchange = append(srv, path, 2, d.chunked(b"34", b"56"), Transfer_Encoding="chunked")
    assert exchange.status == 400
    assert head(srv, path).status == 404
    # Draft -05 (interop 6) only rejects the request.
    path = path_of(create(srv, b"12", version=INTEROP_6, Upload_Length="4").headers["location"])
    assert append(srv, path, 2, b"345", version=INTEROP_6).status == 400
    assert head(srv, path, INTEROP_6).headers["upload-offset"] == "2"


# -- Upload-Limit ------------------------------------------------------------------------


def test_I06_I08_options_announces_the_limits(srv: TusServer, capped: TusServer) -> None:
    exchange = d.request(srv.port, "OPTIONS", "/files/", INTEROP)
    assert exchange.status == 200
    assert sf_dict(exchange.headers["upload-limit"]) == {"max-age": (3600, {})}
    assert exchange.headers["accept-patch"] == PARTIAL
    limits = sf_dict(d.request(capped.port, "OPTIONS", "/files/", INTEROP).headers["upload-limit"])
    assert limits == {"max-size": (1000, {})}  # no expiry configured: no max-age
    assert "expires" in sf_dict(d.request(srv.port, "OPTIONS", "/files/", INTEROP_6).headers["upload-limit"])  # -05 name
    plain = d.request(srv.port, "OPTIONS", "/files/", {})
    assert "upload-limit" not in plain.headers and plain.headers["tus-version"] == "1.0.0"  # tus unchanged


def test_I08_no_limits_still_sends_min_size_0(tmp_path: Path) -> None:
    server = TusServer(tmp_path / "data", expire_after=0).start()
    try:
        assert d.request(server.port, "OPTIONS", "/files/", INTEROP).headers["upload-limit"] == "min-size=0"
    finally:
        server.stop()


def test_I07_limits_do_not_tighten_during_an_upload(srv: TusServer) -> None:
    exchange = create(srv, b"x", Upload_Length="3")
    path = path_of(exchange.headers["location"])
    first = sf_dict(exchange.headers["upload-limit"])["max-age"][0]
    time.sleep(1.1)
    later = append(srv, path, 1, b"y")
    age = sf_dict(later.headers["upload-limit"])["max-age"][0]
    assert age >= first - 1  # the lifetime slides with each append, so the end never moves earlier


def test_I09_413_carries_upload_limit(capped: TusServer) -> None:
    exchange = create(capped, Upload_Length="1001")
    assert exchange.status == 413 and sf_dict(exchange.headers["upload-limit"])["max-size"] == (1000, {})
    path = path_of(create(capped).headers["location"])  # no length: the cap is found while streaming
    streamed = append(capped, path, 0, d.chunked(b"x" * 600, b"x" * 600), Transfer_Encoding="chunked")
    assert streamed.status == 413 and "upload-limit" in streamed.headers
    # min-append-size is never announced, so an empty or completing request is never refused for it.
    assert append(capped, path, 0, complete=False).status == 204


# -- creation ----------------------------------------------------------------------------


def test_I10_I11_I16_104_announces_the_upload_with_the_same_location(srv: TusServer) -> None:
    exchange = create(srv, b"0123456789", Upload_Length="20")
    assert [m.status for m in exchange.interim] == [104]
    interim = exchange.interim[0].headers
    assert interim["location"] == exchange.headers["location"]  # I-16
    assert interim["upload-draft-interop-version"] == "8" and sf_dict(interim["upload-limit"])
    v6 = create(srv, b"x", version=INTEROP_6)
    assert v6.interim[0].headers["upload-draft-interop-version"] == "6"


def test_I11_no_104_without_a_matching_interop_version(srv: TusServer) -> None:
    tus = d.request(srv.port, "POST", "/files/", {"Tus-Resumable": "1.0.0", "Upload-Length": "3", "Content-Type": "application/offset+octet-stream"}, b"abc")
    assert tus.status == 201 and tus.interim == []
    other = d.request(srv.port, "POST", "/files/", {"Upload-Draft-Interop-Version": "7", "Upload-Complete": "?1"}, b"abc")
    assert other.interim == [] and other.status == 412  # not a version served: a tus request, as tusd does


def test_no_104_to_an_http_1_0_client(srv: TusServer) -> None:
    exchange = d.request(srv.port, "POST", "/files/", {**INTEROP, "Upload-Complete": "?1", "Content-Length": "3"}, b"abc", version="HTTP/1.0")
    assert exchange.interim == [] and exchange.status == 201 and exchange.headers["upload-complete"] == "?1"


@pytest.mark.parametrize("version", [INTEROP, INTEROP_6], ids=["v8", "v6"])
def test_I12_incomplete_creation(srv: TusServer, version: dict[str, str]) -> None:
    exchange = create(srv, b"abc", version=version, Upload_Length="6")
    assert exchange.status == 201
    headers = exchange.headers
    assert headers["location"].startswith("http://") and "upload-limit" in headers
    assert headers["upload-complete"] == "?0" and headers["upload-offset"] == "3"  # [-05] MUSTs


@pytest.mark.parametrize("version", [INTEROP, INTEROP_6], ids=["v8", "v6"])
def test_I13_complete_creation_is_processed(srv: TusServer, version: dict[str, str]) -> None:
    exchange = create(srv, b"whole file", complete=True, version=version)
    assert exchange.status == 201
    assert exchange.headers["upload-complete"] == "?1" and exchange.headers["upload-offset"] == "10"
    path = path_of(exchange.headers["location"])
    assert download(srv, path) == b"whole file"
    tus = requests.head(srv.base + path, headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert tus.headers["Upload-Length"] == "10" and tus.headers["Upload-Offset"] == "10"


def test_I14_the_length_is_recorded_at_creation(srv: TusServer) -> None:
    path = path_of(create(srv, Upload_Length="12").headers["location"])
    assert head(srv, path).headers["upload-length"] == "12"
    # ?1 with a Content-Length records it too, even if the content never fully arrives.
    with d.Connection(srv.port) as connection:
        connection.send_head("POST", "/files/", {**INTEROP, "Upload-Complete": "?1", "Content-Length": "100"})
        announced = connection.read_message()
        connection.send(b"x" * 40)
        assert announced.status == 104
        path = path_of(announced.headers["location"])
        state = _wait_for_offset(srv, path, 40)  # asks the running creation to let go of the upload
    assert state.headers["upload-length"] == "100" and state.headers["upload-complete"] == "?0"


def _wait_for_offset(srv: TusServer, path: str, offset: int) -> d.Exchange:
    """HEAD until the server has committed what an abandoned request sent (bounded)."""
    for _ in range(100):
        state = head(srv, path)
        if state.status == 204 and state.headers["upload-offset"] == str(offset):
            return state
        time.sleep(0.1)
    raise AssertionError(f"offset never reached {offset}: {state.status} {state.headers}")


def test_I15_I27_progress_104s_carry_the_offset_and_no_location(srv: TusServer) -> None:
    path = path_of(create(srv, Upload_Length="8").headers["location"])
    with d.Connection(srv.port) as connection:
        connection.send_head("PATCH", path, {**INTEROP, "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL, "Content-Length": "8"})
        connection.send(b"1234")
        progress = connection.read_message("PATCH")  # a commit happens about a second into a stalled body
        connection.send(b"5678")
        exchange = connection.read_exchange("PATCH")
    assert progress.status == 104 and progress.headers["upload-offset"] == "4"
    assert "location" not in progress.headers
    assert exchange.status == 200 and exchange.headers["upload-complete"] == "?1"


def test_I17_interrupted_creation_keeps_what_arrived_and_resumes(srv: TusServer) -> None:
    data = bytes(range(256)) * 40
    with d.Connection(srv.port) as connection:
        connection.send_head("POST", "/files/", {**INTEROP, "Upload-Complete": "?1", "Content-Length": str(len(data)), "Content-Type": "application/octet-stream"})
        announced = connection.read_message()
        connection.send(data[:3000])
        # uvicorn drops bytes it buffered but the app never asked for when the client is
        # gone by then: give the server a moment to take them before hanging up.
        time.sleep(0.5)
    path = path_of(announced.headers["location"])
    state = _wait_for_offset(srv, path, 3000)
    assert state.headers["upload-complete"] == "?0"  # not complete after an interruption
    done = append(srv, path, 3000, data[3000:], complete=True)
    assert done.status == 200 and done.headers["upload-complete"] == "?1"
    assert download(srv, path) == data


def test_I18_empty_creations_and_metadata_from_the_representation(srv: TusServer) -> None:
    empty = create(srv, complete=False)
    assert empty.status == 201 and empty.headers["upload-offset"] == "0" and empty.interim == []
    zero = create(srv, complete=True, Content_Type="text/plain", Content_Disposition="inline; filename=\"empty.txt\"")
    assert zero.status == 201 and zero.headers["upload-complete"] == "?1" and zero.headers["upload-length"] == "0"
    path = path_of(zero.headers["location"])
    response = requests.get(srv.base + path, timeout=10)
    assert response.content == b"" and response.headers["Content-Type"].startswith("text/plain")
    assert 'filename="empty.txt"' in response.headers["Content-Disposition"]


# -- offset retrieval --------------------------------------------------------------------


def test_I19_head_reports_the_whole_state(srv: TusServer) -> None:
    path = path_of(create(srv, b"abc", Upload_Length="9").headers["location"])
    state = head(srv, path)
    assert state.status == 204
    assert state.headers["upload-offset"] == "3" and state.headers["upload-complete"] == "?0"
    assert state.headers["upload-length"] == "9" and state.headers["cache-control"] == "no-store"
    assert "max-age" in sf_dict(state.headers["upload-limit"])
    unknown = path_of(create(srv, b"abc").headers["location"])
    assert "upload-length" not in head(srv, unknown).headers  # the client never gave one
    # GET (draft -12+) carries the same fields, with the bytes so far.
    got = d.request(srv.port, "GET", path, INTEROP)
    assert got.status == 200 and got.body == b"abc" and got.headers["upload-offset"] == "3"


def test_I20_no_redirects(srv: TusServer) -> None:
    path = path_of(create(srv).headers["location"])
    for method in ("HEAD", "DELETE"):
        assert d.request(srv.port, method, path + "/", INTEROP).status == 404


def test_I21_draft_05_head_rules(srv: TusServer) -> None:
    path = path_of(create(srv, b"ab", version=INTEROP_6).headers["location"])
    assert head(srv, path, INTEROP_6).status == 204
    for name, value in (("Upload-Offset", "0"), ("Upload-Complete", "?0"), ("Upload-Length", "2")):
        assert head(srv, path, INTEROP_6, **{name: value}).status == 400
    assert head(srv, "/files/0123456789abcdef0123456789abcdef", INTEROP_6).status == 404


# -- append ------------------------------------------------------------------------------


def test_I22_append_needs_partial_upload_and_may_be_empty(srv: TusServer) -> None:
    path = path_of(create(srv, b"ab").headers["location"])
    wrong = append(srv, path, 2, b"c", Content_Type="application/offset+octet-stream")
    assert wrong.status == 415
    assert append(srv, path, 2, b"").status == 204
    assert append(srv, path, 2, b"c", Content_Type="application/partial-upload; x=y").status == 204


@pytest.mark.parametrize("version", [INTEROP, INTEROP_6], ids=["v8", "v6"])
def test_I23_409_with_the_right_offset(srv: TusServer, version: dict[str, str]) -> None:
    path = path_of(create(srv, b"abcd", version=version).headers["location"])
    exchange = append(srv, path, 2, b"x", version=version)
    assert exchange.status == 409
    assert exchange.headers["upload-offset"] == "4" and exchange.headers["upload-complete"] == "?0"
    problem = json.loads(exchange.body)
    assert problem["type"].endswith("#mismatching-upload-offset")
    assert problem["expected-offset"] == 4 and problem["provided-offset"] == 2


def test_I24_I25_append_responses(srv: TusServer) -> None:
    path = path_of(create(srv, b"ab").headers["location"])
    middle = append(srv, path, 2, b"cd")
    assert middle.status == 204 and middle.headers["upload-complete"] == "?0" and middle.headers["upload-offset"] == "4"
    last = append(srv, path, 4, b"ef", complete=True)
    assert last.status == 200 and last.headers["upload-complete"] == "?1" and last.headers["upload-length"] == "6"
    assert download(srv, path) == b"abcdef"


def test_I26_append_to_a_complete_upload(srv: TusServer) -> None:
    path = path_of(create(srv, b"done", complete=True).headers["location"])
    replay = append(srv, path, 4, complete=True)  # the final response was lost: answered again
    assert replay.status == 200 and replay.headers["upload-complete"] == "?1"
    more = append(srv, path, 4, b"x", complete=True)
    assert more.status == 400 and json.loads(more.body)["type"].endswith("#inconsistent-upload-length")
    v6 = path_of(create(srv, b"done", complete=True, version=INTEROP_6).headers["location"])
    refused = append(srv, v6, 4, complete=True, version=INTEROP_6)
    assert refused.status == 400 and json.loads(refused.body)["type"].endswith("#completed-upload")
    assert download(srv, path) == b"done" and download(srv, v6) == b"done"  # unchanged


def test_I28_interrupted_append_keeps_a_contiguous_prefix(srv: TusServer) -> None:
    path = path_of(create(srv, b"ab", Upload_Length="1000").headers["location"])
    with d.Connection(srv.port) as connection:
        connection.send_head("PATCH", path, {**INTEROP, "Upload-Offset": "2", "Upload-Complete": "?1", "Content-Type": PARTIAL, "Content-Length": "998"})
        connection.send(b"c" * 500)
        time.sleep(0.5)  # see test_I17
    state = _wait_for_offset(srv, path, 502)
    assert state.headers["upload-complete"] == "?0"
    assert download(srv, path) == b"ab" + b"c" * 500


# -- cancellation and concurrency --------------------------------------------------------


def test_I29_delete_cancels_and_stops_a_running_append(srv: TusServer) -> None:
    path = path_of(create(srv, Upload_Length="100").headers["location"])
    with d.Connection(srv.port) as connection:
        connection.send_head("PATCH", path, {**INTEROP, "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL, "Content-Length": "100"})
        connection.send(b"x" * 10)
        time.sleep(0.8)  # stalled: a request for the lock interrupts it at once
        deleted = d.request(srv.port, "DELETE", path, INTEROP)
        assert deleted.status == 204
        ended = connection.read_exchange("PATCH")  # the append ended instead of waiting for its body
        assert ended.status >= 400
    assert head(srv, path).status == 404
    v6 = path_of(create(srv, version=INTEROP_6).headers["location"])
    assert d.request(srv.port, "DELETE", v6, {**INTEROP_6, "Upload-Offset": "0"}).status == 400
    assert d.request(srv.port, "DELETE", v6, INTEROP_6).status == 204
    assert d.request(srv.port, "DELETE", v6, INTEROP_6).status == 404


def test_I30_offset_retrieval_during_an_append_gives_an_offset_the_next_append_takes(srv: TusServer) -> None:
    path = path_of(create(srv, Upload_Length="20").headers["location"])
    with d.Connection(srv.port) as connection:
        connection.send_head("PATCH", path, {**INTEROP, "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL, "Content-Length": "20"})
        connection.send(b"0123456789")
        time.sleep(0.8)
        state = head(srv, path)  # ends the stalled append first, then answers
        assert state.status == 204
        offset = int(state.headers["upload-offset"])
        assert offset == 10
    done = append(srv, path, offset, b"abcdefghij", complete=True)
    assert done.status == 200
    assert download(srv, path) == b"0123456789abcdefghij"


def test_I31_100_continue_is_sent_besides_the_104(srv: TusServer) -> None:
    with d.Connection(srv.port) as connection:
        connection.send_head("POST", "/files/", {**INTEROP, "Upload-Complete": "?1", "Content-Length": "3", "Expect": "100-continue"})
        first = connection.read_message()
        second = connection.read_message()
        connection.send(b"abc")
        exchange = connection.read_exchange()
    assert [first.status, second.status] == [104, 100]
    assert exchange.status == 201 and exchange.headers["upload-offset"] == "3"


# -- codings and digests -----------------------------------------------------------------


def test_I32_offsets_count_content_coded_bytes_after_transfer_decoding(srv: TusServer) -> None:
    coded = gzip.compress(b"a" * 5000)
    exchange = create(srv, d.chunked(coded[:100], coded[100:]), complete=True, Transfer_Encoding="chunked", Content_Encoding="gzip")
    assert exchange.status == 201 and exchange.headers["upload-offset"] == str(len(coded))
    path = path_of(exchange.headers["location"])
    assert gzip.decompress(download(srv, path)) == b"a" * 5000


def test_I33_content_digest_is_checked_and_a_mismatch_appends_nothing(srv: TusServer) -> None:
    path = path_of(create(srv, b"ab", Upload_Length="6").headers["location"])
    bad = append(srv, path, 2, b"cd", Content_Digest=digest_field("sha-256", b"xx"))
    assert bad.status == 400 and b"ERR_CONTENT_DIGEST_MISMATCH" in bad.body
    assert head(srv, path).headers["upload-offset"] == "2"
    good = append(srv, path, 2, b"cd", Content_Digest=digest_field("sha-512", b"cd"))
    assert good.status == 204 and good.headers["upload-offset"] == "4"
    assert create(srv, b"xy", Content_Digest="sha-256=not-bytes").status == 400
    refused = create(srv, b"xy", Content_Digest=digest_field("sha-256", b"yx"))
    assert refused.status == 400 and refused.headers["upload-offset"] == "0"  # created, nothing appended


def test_I33_repr_digest_mismatch_fails_the_upload(srv: TusServer) -> None:
    data = b"representation"
    exchange = create(srv, data[:5], Repr_Digest=digest_field("sha-256", b"something else"))
    path = path_of(exchange.headers["location"])
    failed = append(srv, path, 5, data[5:], complete=True)
    assert failed.status == 400 and b"ERR_REPR_DIGEST_MISMATCH" in failed.body
    assert failed.headers["upload-complete"] == "?1"  # about processing the representation: do not resume
    assert head(srv, path).status == 404
    ok = create(srv, data, complete=True, Repr_Digest=digest_field("sha-256", data))
    assert ok.status == 201 and ok.headers["upload-complete"] == "?1"


def test_I33_want_repr_digest_is_answered_for_the_whole_upload(srv: TusServer) -> None:
    data = bytes(range(256)) * 5000  # several read-back chunks
    exchange = create(srv, data[:1000], Want_Repr_Digest="sha-256=5")
    path = path_of(exchange.headers["location"])
    assert "repr-digest" not in exchange.headers  # not complete yet
    done = append(srv, path, 1000, data[1000:], complete=True)  # asked at creation, answered at completion
    assert sf_dict(done.headers["repr-digest"]) == {"sha-256": (hashlib.sha256(data).digest(), {})}
    again = head(srv, path, Want_Repr_Digest="sha-512=3")
    assert sf_dict(again.headers["repr-digest"]) == {"sha-512": (hashlib.sha512(data).digest(), {})}


# -- security ----------------------------------------------------------------------------


def test_I34_upload_uris_are_unguessable_and_metadata_is_sanitised(srv: TusServer) -> None:
    locations = {create(srv).headers["location"] for _ in range(3)}
    assert len(locations) == 3
    for location in locations:
        upload_id = location.rsplit("/", 1)[1]
        assert len(upload_id) == 32 and all(c in "0123456789abcdef" for c in upload_id)
    exchange = create(srv, b"x", complete=True, Content_Disposition='attachment; filename="../../etc/passwd"', Content_Type="text/html")
    response = requests.get(srv.base + path_of(exchange.headers["location"]), timeout=10)
    assert 'filename="passwd"' in response.headers["Content-Disposition"]
    assert response.headers["Content-Type"] == "application/octet-stream"  # never rendered inline


def test_the_draft_can_be_switched_off(tmp_path: Path) -> None:
    server = TusServer(tmp_path / "data", ietf_draft=False).start()
    try:
        exchange = create(server, b"abc", complete=True)
        assert exchange.status == 412 and exchange.interim == []  # a tus request without Tus-Resumable
    finally:
        server.stop()
