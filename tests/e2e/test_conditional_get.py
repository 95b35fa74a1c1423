"""Validators and conditional GETs of finished uploads (issue 15 item 6), over real HTTP
against real servers on both state backends: ETag and Last-Modified, 304s for
If-None-Match and If-Modified-Since, If-Range with a current and a stale validator,
412s for If-Match and If-Unmodified-Since, and no validators on unfinished uploads.
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from pathlib import Path

import pytest
import requests

from tests import support
from tests.e2e.test_concat import create_final, create_partial
from tests.support import S3_CREDENTIALS, S3Server, TusServer, create, patch

BODY = b"0123456789" * 100
STRONG_TAG = re.compile(r'"[\x21\x23-\x7e]+"')


def finished(server: TusServer, body: bytes = BODY) -> str:
    url = create(server.url, len(body))
    assert patch(url, 0, body).status_code == 204
    return url


def get(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers={name.replace("_", "-"): value for name, value in headers.items()}, timeout=10)


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def timestamp(value: str) -> float:
    return email.utils.parsedate_to_datetime(value).timestamp()


def test_a_finished_upload_has_a_strong_etag_and_last_modified(server: TusServer) -> None:
    url = finished(server)
    first, again = get(url), get(url)
    assert first.status_code == 200 and first.content == BODY
    etag = first.headers["ETag"]
    assert STRONG_TAG.fullmatch(etag), etag  # quoted, not W/
    assert again.headers["ETag"] == etag and again.headers["Last-Modified"] == first.headers["Last-Modified"]
    assert first.headers["Cache-Control"] == "private, max-age=0"  # kept, and revalidated with the validators
    assert get(finished(server, BODY[::-1])).headers["ETag"] != etag  # other bytes: another tag


@pytest.mark.files_only  # the upload's file in --dir
def test_last_modified_is_the_files_mtime(server: TusServer) -> None:
    url = finished(server)
    upload_file = support.upload_file(server.data_dir, url.rsplit("/", 1)[1])
    assert get(url).headers["Last-Modified"] == http_date(int(upload_file.stat().st_mtime))


def test_if_none_match_answers_304_without_the_body(server: TusServer) -> None:
    url = finished(server)
    full = get(url)
    etag = full.headers["ETag"]
    for field in (etag, f'"other", {etag}', f"W/{etag}", "*", f'"a,b", {etag}'):
        response = get(url, If_None_Match=field)
        assert response.status_code == 304, field
        assert response.content == b""
        assert response.headers["ETag"] == etag and response.headers["Last-Modified"] == full.headers["Last-Modified"]
        assert response.headers["Cache-Control"] == "private, max-age=0"
        assert "Content-Length" not in response.headers and "Content-Disposition" not in response.headers
    for field in ('"other"', 'W/"other"', etag[:-1] + 'x"', "not-a-tag " + etag):
        response = get(url, If_None_Match=field)
        assert response.status_code == 200 and response.content == BODY, field


def test_if_modified_since_answers_304_unless_if_none_match_says_otherwise(server: TusServer) -> None:
    url = finished(server)
    full = get(url)
    modified = timestamp(full.headers["Last-Modified"])
    assert get(url, If_Modified_Since=full.headers["Last-Modified"]).status_code == 304
    assert get(url, If_Modified_Since=http_date(modified + 3600)).status_code == 304
    for obsolete in ("%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"):  # RFC 850 and asctime: read too
        assert get(url, If_Modified_Since=time.strftime(obsolete, time.gmtime(modified))).status_code == 304, obsolete
    assert get(url, If_Modified_Since=http_date(modified - 1)).content == BODY  # changed since: the bytes
    assert get(url, If_Modified_Since="yesterday").content == BODY  # not a date: ignored
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3)
    assert get(url, If_None_Match='"other"', If_Modified_Since=full.headers["Last-Modified"]).content == BODY


def test_if_range_serves_the_range_only_while_the_validator_is_current(server: TusServer) -> None:
    url = finished(server)
    full = get(url)
    etag, modified = full.headers["ETag"], full.headers["Last-Modified"]
    for current in (etag, modified):
        response = get(url, Range="bytes=10-19", If_Range=current)
        assert response.status_code == 206 and response.content == BODY[10:20], current
        assert response.headers["Content-Range"] == f"bytes 10-19/{len(BODY)}"
        assert response.headers["ETag"] == etag
    stale = ('"stale"', f"W/{etag}", http_date(timestamp(modified) - 60), "garbage")
    for validator in stale:
        response = get(url, Range="bytes=10-19", If_Range=validator)
        assert response.status_code == 200 and response.content == BODY, validator  # the whole, current content
        assert "Content-Range" not in response.headers
    # the range is not looked at when the validator is stale: a 200, not a 416
    assert get(url, Range="bytes=5000-", If_Range='"stale"').status_code == 200
    assert get(url, Range="bytes=5000-", If_Range=etag).status_code == 416
    assert get(url, If_Range='"stale"').status_code == 200  # no Range: If-Range is ignored


def test_if_match_and_if_unmodified_since_fail_with_412(server: TusServer) -> None:
    url = finished(server)
    full = get(url)
    etag, modified = full.headers["ETag"], timestamp(full.headers["Last-Modified"])
    for field in (etag, f'"other", {etag}', "*"):
        assert get(url, If_Match=field).content == BODY, field
    for field in ('"other"', f"W/{etag}"):  # If-Match compares strongly
        response = get(url, If_Match=field)
        assert response.status_code == 412, field
        assert response.text.startswith("ERR_PRECONDITION_FAILED")
    assert get(url, If_Unmodified_Since=http_date(modified)).content == BODY
    assert get(url, If_Unmodified_Since=http_date(modified - 60)).status_code == 412
    assert get(url, If_Unmodified_Since="not a date").status_code == 200  # ignored
    # If-Match wins over If-Unmodified-Since (RFC 9110 13.1.4), and comes before If-None-Match
    assert get(url, If_Match=etag, If_Unmodified_Since=http_date(modified - 60)).status_code == 200
    assert get(url, If_Match='"other"', If_None_Match=etag).status_code == 412


def test_validators_come_only_once_the_upload_is_finished(server: TusServer) -> None:
    url = create(server.url, len(BODY))
    assert patch(url, 0, BODY[:100]).status_code == 204
    with requests.get(url, stream=True, timeout=10) as response:  # the headers: what an unfinished GET serves is the store's rule
        assert "ETag" not in response.headers and "Last-Modified" not in response.headers
    assert patch(url, 100, BODY[100:]).status_code == 204
    done = get(url)
    assert done.content == BODY and STRONG_TAG.fullmatch(done.headers["ETag"]) and "Last-Modified" in done.headers
    assert get(url, If_None_Match=done.headers["ETag"]).status_code == 304


@pytest.mark.files_only  # on S3 an unfinished upload has no object yet: its GET is the S3 store's rule (issue 15 item 6)
def test_an_unfinished_upload_is_served_without_validators(server: TusServer) -> None:
    url = create(server.url, len(BODY))
    assert patch(url, 0, BODY[:100]).status_code == 204
    response = get(url)
    assert response.content == BODY[:100] and response.headers["Cache-Control"] == "no-store"
    assert "ETag" not in response.headers and "Last-Modified" not in response.headers
    far = http_date(4102444800)  # 2100: would be a 304 for a finished upload
    assert get(url, If_Modified_Since=far).content == BODY[:100]  # no date to compare: ignored
    assert get(url, If_None_Match='"anything"').content == BODY[:100]
    # a client resuming its download of growing bytes gets them whole, whatever validator it has
    response = get(url, Range="bytes=50-", If_Range=far)
    assert response.status_code == 200 and response.content == BODY[:100]
    assert get(url, Range="bytes=50-").content == BODY[50:100]  # without If-Range: the range
    assert get(url, If_Match='"anything"').status_code == 412


def test_the_drafts_get_has_the_same_validators(server: TusServer) -> None:
    url = finished(server)
    etag = get(url).headers["ETag"]
    for version in ("6", "8", "9"):
        draft = get(url, Upload_Draft_Interop_Version=version)
        assert draft.status_code == 200 and draft.headers["ETag"] == etag, version
        assert get(url, Upload_Draft_Interop_Version=version, If_None_Match=etag).status_code == 304


def test_a_page_on_another_origin_can_read_the_etag(server: TusServer) -> None:
    url = finished(server)
    response = get(url, Origin="https://uploader.example")
    assert "ETag" in [name.strip() for name in response.headers["Access-Control-Expose-Headers"].split(",")]  # Last-Modified is safelisted
    revalidated = get(url, Origin="https://uploader.example", If_None_Match=response.headers["ETag"])
    assert revalidated.status_code == 304 and revalidated.headers["Access-Control-Allow-Origin"] in ("*", "https://uploader.example")


def test_a_final_upload_has_validators_of_its_own(server: TusServer) -> None:
    """Concatenation: the final upload's bytes are assembled (a new file, or a new object on S3)."""
    parts = [create_partial(server.url, BODY[:300]), create_partial(server.url, BODY[300:])]
    final = create_final(server.url, parts)
    response = get(final)
    assert response.content == BODY and STRONG_TAG.fullmatch(response.headers["ETag"])
    assert response.headers["ETag"] not in {get(part).headers["ETag"] for part in parts}
    assert get(final, If_None_Match=response.headers["ETag"]).status_code == 304
    ranged = get(final, Range="bytes=290-309", If_Range=response.headers["ETag"])
    assert ranged.status_code == 206 and ranged.content == BODY[290:310]


def test_an_empty_upload_has_validators(server: TusServer) -> None:
    url = create(server.url, 0)
    response = get(url)
    assert response.status_code == 200 and response.content == b""
    assert get(url, If_None_Match=response.headers["ETag"]).status_code == 304


@pytest.mark.parametrize("storage", ["files", "s3"])
def test_instances_send_the_same_validators(tmp_path: Path, redis_url: str, storage: str, request: pytest.FixtureRequest) -> None:
    """Scale-out (Redis state; one directory, or one bucket): a cache revalidates at any instance.
    On S3 the validators are the object's own."""
    flags: dict[str, object] = {}
    if storage == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        flags = s3.server_flags()
    servers = [TusServer(tmp_path / ("shared" if storage == "files" else f"dir{n}"), redis_url=redis_url, env=S3_CREDENTIALS, **flags) for n in range(2)]
    try:
        one, two = (server.start() for server in servers)
        url = finished(one)
        there = url.replace(one.base, two.base)
        first = get(url)
        assert get(there).headers["ETag"] == first.headers["ETag"]
        assert get(there).headers["Last-Modified"] == first.headers["Last-Modified"]
        assert get(there, If_None_Match=first.headers["ETag"]).status_code == 304
        if storage == "s3":
            stored = s3.client().head_object(Bucket=s3.bucket, Key=f"{flags['s3_prefix']}{url.rsplit('/', 1)[1]}")
            assert first.headers["ETag"] == stored["ETag"]
            assert first.headers["Last-Modified"] == http_date(stored["LastModified"].timestamp())
    finally:
        for server in servers:
            server.stop()


@pytest.mark.files_only  # changes the upload's file in --dir
@pytest.mark.parametrize("step", ["replaced", "touched"])
def test_the_etag_changes_when_the_file_could_have(server: TusServer, step: str) -> None:
    """Bytes changed behind the server's back (a restore, an edit) must not be served as the cached ones."""
    url = finished(server)
    before = get(url).headers["ETag"]
    path = support.upload_file(server.data_dir, url.rsplit("/", 1)[1])
    if step == "replaced":
        replacement = path.with_name("replacement")
        replacement.write_bytes(BODY[::-1])
        os.replace(replacement, path)  # another inode, the same size
        stat = path.stat()
    else:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a nanosecond later
    after = get(url)
    assert after.headers["ETag"] != before
    assert get(url, If_None_Match=before).status_code == 200
