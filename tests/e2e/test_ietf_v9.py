"""Interop version 9 (drafts -12 and later) beside 8 and 6, over raw HTTP/1.1 (104s seen)
against real servers on both state backends: each change the draft made at -12 (issue 16),
named by its pull request in httpwg/http-extensions. The interop 8 and 6 tests in
test_ietf.py run unchanged.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import requests
from http_sf import parse

from tests import draft_client as d
from tests.draft_client import INTEROP, INTEROP_6, PARTIAL
from tests.e2e import test_ietf as draft
from tests.e2e.hookutil import metadata
from tests.e2e.test_ietf import path_of
from tests.support import TUS, TusServer

V9 = {"Upload-Draft-Interop-Version": "9"}


def create(srv: TusServer, body: bytes = b"", **kwargs: object) -> d.Exchange:
    return draft.create(srv, body, **{"version": V9, **kwargs})  # type: ignore[arg-type]


def append(srv: TusServer, path: str, offset: int, body: bytes = b"", **kwargs: object) -> d.Exchange:
    return draft.append(srv, path, offset, body, **{"version": V9, **kwargs})  # type: ignore[arg-type]


def head(srv: TusServer, path: str, version: dict[str, str] = V9, **headers: str) -> d.Exchange:
    return draft.head(srv, path, version, **headers)


def limits(exchange: d.Exchange | d.Message) -> dict:
    return {name: value for name, (value, _params) in parse(exchange.headers["upload-limit"].encode(), tltype="dictionary").items()}


@pytest.mark.files_only  # its progress 104 expects 4 stalled bytes committed: on S3 the offset moves by parts
def test_v9_is_served_on_the_same_uploads_as_8_6_and_tus(make_server) -> None:
    srv = make_server(expire_after=3600)
    exchange = create(srv, b"0123456789", Upload_Length="20")
    assert exchange.status == 201 and exchange.headers["upload-draft-interop-version"] == "9"
    assert [m.status for m in exchange.interim] == [104]  # the resource announced before the content is read
    interim = exchange.interim[0].headers
    assert interim["upload-draft-interop-version"] == "9" and interim["location"] == exchange.headers["location"]
    assert "max-age" in limits(exchange.interim[0])
    path = path_of(exchange.headers["location"])
    assert head(srv, path, INTEROP).headers["upload-offset"] == "10"  # interop 8 sees it
    assert head(srv, path, INTEROP_6).headers["upload-offset"] == "10"  # and 6
    assert append(srv, path, 10, b"abcdefghij", version=INTEROP, complete=True).status == 200  # 8 completes it
    assert head(srv, path).headers["upload-complete"] == "?1"
    tus = requests.head(srv.base + path, headers=TUS, timeout=10)
    assert tus.headers["Upload-Length"] == "20" and tus.headers["Upload-Offset"] == "20"
    # Progress 104s of an append at 9: the offset, never Location.
    stalled = path_of(create(srv, Upload_Length="8").headers["location"])
    with d.Connection(srv.port) as connection:
        connection.send_head("PATCH", stalled, {**V9, "Upload-Offset": "0", "Upload-Complete": "?1", "Content-Type": PARTIAL, "Content-Length": "8"})
        connection.send(b"1234")
        progress = connection.read_message("PATCH")
        connection.send(b"5678")
        done = connection.read_exchange("PATCH")
    assert progress.status == 104 and progress.headers["upload-offset"] == "4" and "location" not in progress.headers
    assert progress.headers["upload-draft-interop-version"] == "9"
    assert done.status == 200 and done.headers["upload-complete"] == "?1"


def test_v9_upload_complete_says_whose_semantics_a_response_carries(make_server) -> None:
    """#3404, #3472: `?1` only where the representation was processed; the protocol's errors
    are `?0`, so a client resumes after 409, 413, 429 and 5xx as the retry rules say."""
    srv = make_server(expire_after=3600, max_size=1000, max_concurrent_uploads=1, hooks_module="tests.hooks_recorder", hooks_timeout=1)
    incomplete = create(srv, b"abcd")
    assert incomplete.status == 201 and incomplete.headers["upload-complete"] == "?0"
    path = path_of(incomplete.headers["location"])
    conflict = append(srv, path, 2, b"x")  # 409: MUST ?0 with the right offset
    assert conflict.status == 409 and conflict.headers["upload-complete"] == "?0" and conflict.headers["upload-offset"] == "4"
    inconsistent = append(srv, path, 4, b"ef", complete=True, Upload_Length="9")
    assert inconsistent.status == 400 and inconsistent.headers["upload-complete"] == "?0"
    assert json.loads(inconsistent.body)["type"].endswith("#inconsistent-upload-length")
    too_large = create(srv, Upload_Length="1001")
    assert too_large.status == 413 and too_large.headers["upload-complete"] == "?0"
    bad_content = append(srv, path, 4, b"ef", Content_Digest="sha-256=:" + "A" * 43 + "=:")
    assert bad_content.status == 400 and bad_content.headers["upload-complete"] == "?0"  # nothing appended: resume
    # 429 while another body streams: ?0, retry later.
    with d.Connection(srv.port) as connection:
        connection.send_head("PATCH", path, {**V9, "Upload-Offset": "4", "Upload-Complete": "?0", "Content-Type": PARTIAL, "Content-Length": "100"})
        connection.send(b"e")
        time.sleep(0.5)
        busy = create(srv, b"zz")
    assert busy.status == 429 and busy.headers["upload-complete"] == "?0"
    # The representation processed and failed: ?1, do not resume.
    for _ in range(100):  # the abandoned body gives its slot back once the server sees it gone
        failed = create(srv, b"xyz", complete=True, Repr_Digest="sha-256=:" + "A" * 43 + "=:")
        if failed.status != 429:
            break
        time.sleep(0.1)
    assert failed.status == 400 and failed.headers["upload-complete"] == "?1"
    # 5xx (a pre-create hook that does not answer in time) and a pre-finish refusal: ?0.
    timeout = create(srv, b"ab", Upload_Metadata=metadata(slow="3"))
    assert timeout.status == 504 and timeout.headers["upload-complete"] == "?0"
    refused = create(srv, b"ab", complete=True, Upload_Metadata=metadata(**{"refuse-finish": "1"}))
    assert refused.status == 400 and refused.headers["upload-complete"] == "?0"
    assert refused.headers["location"] == refused.interim[0].headers["location"]  # where to resume, also without the 104
    assert head(srv, path_of(refused.headers["location"])).headers["upload-complete"] == "?0"  # and stays resumable
    # Interop 8 is unchanged: an append with content to a completed upload says ?1 there.
    done = path_of(create(srv, b"done", complete=True, version=INTEROP).headers["location"])
    assert append(srv, done, 4, b"x", complete=True, version=INTEROP).headers["upload-complete"] == "?1"


def test_v9_append_to_a_completed_upload(make_server) -> None:
    """#3405: no "MUST reject" and no `completed-upload` problem: the valid request gets the final
    response again; anything else is refused as a protocol error (`?0`)."""
    srv = make_server(expire_after=3600)
    exchange = create(srv, b"done", complete=True)
    assert exchange.status == 201 and exchange.headers["upload-complete"] == "?1"
    path = path_of(exchange.headers["location"])
    replay = append(srv, path, 4, complete=True)
    assert replay.status == 200 and replay.headers["upload-complete"] == "?1" and replay.headers["location"] == exchange.headers["location"]
    more = append(srv, path, 4, b"x", complete=True)
    assert more.status == 400 and more.headers["upload-complete"] == "?0"
    assert json.loads(more.body)["type"].endswith("#inconsistent-upload-length")
    not_done = append(srv, path, 4, complete=False)
    assert not_done.status == 400 and not_done.headers["upload-complete"] == "?0"
    assert not_done.headers["content-type"].startswith("text/plain") and b"completed-upload" not in not_done.body
    wrong = append(srv, path, 1, complete=True)  # the offset rule holds on a completed upload too
    assert wrong.status == 409 and wrong.headers["upload-offset"] == "4" and wrong.headers["upload-complete"] == "?0"
    assert requests.get(srv.base + path, timeout=10).content == b"done"


def test_v9_options_announces_limits_without_accept_patch_on_the_creation_uri(make_server) -> None:
    """#3440, #3439, #3444."""
    srv = make_server(expire_after=0)
    options = d.request(srv.port, "OPTIONS", "/files/", V9)
    assert options.status == 200 and "accept-patch" not in options.headers
    assert options.headers["upload-limit"] == "min-size=0"  # no limits: min-size=0, never empty
    assert options.headers["upload-draft-interop-version"] == "9"
    assert d.request(srv.port, "OPTIONS", "/files/", INTEROP).headers["accept-patch"] == PARTIAL  # 8 unchanged
    path = path_of(create(srv).headers["location"])
    on_upload = d.request(srv.port, "OPTIONS", path, V9)
    assert on_upload.headers["accept-patch"] == PARTIAL and on_upload.headers["upload-limit"] == "min-size=0"
    capped = make_server(max_size=1000, expire_after=60)
    assert limits(d.request(capped.port, "OPTIONS", "/files/", V9)) == {"max-size": 1000, "max-age": 60}


def test_v9_head_and_get_are_offset_retrieval_with_the_same_fields(make_server) -> None:
    """#3467: GET answers what HEAD does; `Upload-Complete` says a final response was produced."""
    srv = make_server(expire_after=3600)
    path = path_of(create(srv, b"abc", Upload_Length="6").headers["location"])
    names = ("upload-offset", "upload-complete", "upload-length", "upload-draft-interop-version", "cache-control")
    for complete in ("?0", "?1"):
        by_head = head(srv, path)
        by_get = d.request(srv.port, "GET", path, V9)
        assert by_head.status == 204 and by_get.status == 200
        assert {n: by_head.headers[n] for n in names} == {n: by_get.headers[n] for n in names}
        assert by_get.headers["upload-complete"] == complete and by_get.headers["cache-control"] == "no-store"
        assert limits(by_head).keys() == limits(by_get).keys()
        if complete == "?0":
            assert append(srv, path, 3, b"def", complete=True).status == 200
    assert by_get.body == b"abcdef"
    # Interop 8's GET keeps its download caching.
    assert d.request(srv.port, "GET", path, INTEROP).headers["cache-control"] == "private, max-age=0"


def test_v9_empty_creation_and_min_size(make_server) -> None:
    """#3407: an empty creation is always allowed; #3460: min-size is a threshold for offering
    resumability, and none is set here, so any size is offered it."""
    srv = make_server(max_size=1000, expire_after=3600)
    for complete in (False, True):
        empty = create(srv, complete=complete)
        assert empty.status == 201 and empty.headers["upload-offset"] == "0"
        assert empty.headers["upload-complete"] == ("?1" if complete else "?0")
    tiny = create(srv, b"x")
    assert tiny.status == 201 and [m.status for m in tiny.interim] == [104]
    assert "min-size" not in limits(tiny) and "min-append-size" not in limits(tiny)


def test_v9_max_age_counts_down_and_the_lifetime_never_ends_earlier(make_server) -> None:
    """#3408: `max-age` may count down; only the lifetime's end must not move earlier."""
    srv = make_server(expire_after=3600)
    exchange = create(srv, b"x")
    path = path_of(exchange.headers["location"])
    first_at, first = time.time(), limits(exchange)["max-age"]
    time.sleep(2.1)
    later_at, later = time.time(), limits(head(srv, path))["max-age"]
    assert later < first  # no write in between: it counted down
    assert later_at + later >= first_at + first - 1  # the end did not move (whole seconds)
    appended = append(srv, path, 1, b"y")
    assert appended.status == 204 and limits(appended)["max-age"] >= later  # a write slides it later


def test_v9_a_413_from_upload_limits_carries_the_uploads_limits(make_server) -> None:
    """#3312, #3466: the 413 carries all limits of the upload resource (its time left too)."""
    srv = make_server(max_size=1000, expire_after=3600)
    refused = create(srv, Upload_Length="1001")
    assert refused.status == 413 and limits(refused) == {"max-size": 1000, "max-age": 3600}
    path = path_of(create(srv).headers["location"])
    time.sleep(1.1)
    streamed = append(srv, path, 0, d.chunked(b"x" * 600, b"x" * 600), Transfer_Encoding="chunked")
    assert streamed.status == 413 and streamed.headers["upload-complete"] == "?0"
    assert limits(streamed)["max-size"] == 1000 and limits(streamed)["max-age"] < 3600  # this upload's
    said = append(srv, path, int(head(srv, path).headers["upload-offset"]), b"y" * 1001)
    assert said.status == 413 and limits(said)["max-age"] < 3600


def test_v9_digests_and_cancellation_as_at_8(make_server) -> None:
    srv = make_server(expire_after=3600)
    data = b"representation"
    path = path_of(create(srv, data[:4], Want_Repr_Digest="sha-256=1").headers["location"])
    done = append(srv, path, 4, data[4:], complete=True)
    assert parse(done.headers["repr-digest"].encode(), tltype="dictionary")["sha-256"][0] == hashlib.sha256(data).digest()
    chunked = create(srv, d.chunked(b"abc", b"de"), complete=True, Transfer_Encoding="chunked")  # no Content-Length
    assert chunked.status == 201 and chunked.headers["upload-length"] == "5" and chunked.headers["upload-complete"] == "?1"
    over = path_of(create(srv, b"12", Upload_Length="4").headers["location"])
    assert append(srv, over, 2, b"345").status == 400
    assert head(srv, over).status == 404  # content past the length still ends the upload
    assert d.request(srv.port, "DELETE", path, V9).status == 204
