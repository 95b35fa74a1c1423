"""tus core, creation, defer-length, checksum, termination and expiration over real HTTP.

Each test runs three times: against the embedded state, a real redis-server and a 3-master Redis Cluster.
"""

from __future__ import annotations

import base64
import hashlib
import time
import zlib

import pytest
import requests

from tests.conftest import state_backend_or_cluster as state_backend  # noqa: F401  (also on a Redis Cluster)
from tests.support import OCTET, TUS, create, head, patch, raw_request


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_options_advertises_versions_extensions_and_algorithms(make_server) -> None:
    server = make_server(max_size=1000)
    response = requests.options(server.url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Tus-Max-Size"] == "1000"
    extensions = response.headers["Tus-Extension"].split(",")
    for name in ("creation", "creation-with-upload", "creation-defer-length", "termination", "checksum", "expiration"):
        assert name in extensions
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) >= {"sha1", "md5", "sha256", "sha512", "crc32"}


def test_options_ignores_tus_resumable(server) -> None:
    response = requests.options(server.url, headers={"Tus-Resumable": "0.0.1"}, timeout=5)
    assert response.status_code == 200  # C-04


def test_unsupported_version_is_412_with_tus_version(server) -> None:
    response = requests.post(server.url, headers={"Tus-Resumable": "0.2.2", "Upload-Length": "5"}, timeout=5)
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    missing = requests.post(server.url, headers={"Upload-Length": "5"}, timeout=5)
    assert missing.status_code == 412
    # nothing was created: the data directory holds no upload file
    assert [p.name for p in server.data_dir.iterdir() if "." not in p.name] == []


def test_create_head_patch_get_roundtrip(server) -> None:
    metadata = f"filename {b64('hello.txt'.encode())},filetype {b64(b'text/plain')},empty"
    url = create(server.url, 11, Upload_Metadata=metadata)
    assert url.startswith(server.url)
    response = head(url)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Length"] == "11"
    assert response.headers["Upload-Metadata"] == metadata  # MD-08: exactly as sent
    assert response.headers["Cache-Control"] == "no-store"
    assert "Upload-Defer-Length" not in response.headers

    first = patch(url, 0, b"hello ")
    assert first.status_code == 204
    assert first.headers["Upload-Offset"] == "6"
    assert "Upload-Expires" in first.headers
    second = patch(url, 6, b"world")
    assert second.status_code == 204
    assert second.headers["Upload-Offset"] == "11"
    assert "Upload-Expires" not in second.headers  # finished uploads do not expire

    done = head(url)
    assert done.headers["Upload-Offset"] == "11"
    got = requests.get(url, timeout=5)
    assert got.status_code == 200
    assert got.content == b"hello world"
    assert got.headers["Content-Type"].startswith("text/plain")
    assert got.headers["Content-Disposition"] == 'inline; filename="hello.txt"'


def test_offset_mismatch_is_409_with_current_offset_and_writes_nothing(server) -> None:
    url = create(server.url, 10)
    assert patch(url, 0, b"abc").status_code == 204
    response = patch(url, 1, b"XYZ")
    assert response.status_code == 409
    assert response.headers["Upload-Offset"] == "3"
    response = patch(url, 5, b"XYZ")
    assert response.status_code == 409
    assert head(url).headers["Upload-Offset"] == "3"
    assert patch(url, 3, b"defghij").status_code == 204
    assert requests.get(url, timeout=5).content == b"abcdefghij"


@pytest.mark.parametrize("value", ["-1", "+5", "5_0", "5 x", "1e3", "0x10", "", "99999999999999999999"])
def test_malformed_upload_offset_is_400(server, value: str) -> None:
    url = create(server.url, 10)
    response = requests.patch(url, data=b"abc", headers={**OCTET, "Upload-Offset": value}, timeout=5)
    assert response.status_code == 400, value
    assert head(url).headers["Upload-Offset"] == "0"


def test_missing_upload_offset_is_400(server) -> None:
    url = create(server.url, 10)
    assert requests.patch(url, data=b"abc", headers=OCTET, timeout=5).status_code == 400


@pytest.mark.parametrize("value", ["-1", "+5", "5_0", "abc", "1.5", ""])
def test_malformed_upload_length_is_400(server, value: str) -> None:
    response = requests.post(server.url, headers={**TUS, "Upload-Length": value}, timeout=5)
    assert response.status_code == 400, value
    assert response.text.startswith("ERR_INVALID_UPLOAD_LENGTH")


def test_creation_length_rules(server) -> None:
    assert requests.post(server.url, headers=TUS, timeout=5).status_code == 400  # neither
    both = {**TUS, "Upload-Length": "5", "Upload-Defer-Length": "1"}
    assert requests.post(server.url, headers=both, timeout=5).status_code == 400
    bad_defer = {**TUS, "Upload-Defer-Length": "2"}
    assert requests.post(server.url, headers=bad_defer, timeout=5).status_code == 400


def test_max_size_is_413(make_server) -> None:
    server = make_server(max_size=100)
    response = requests.post(server.url, headers={**TUS, "Upload-Length": "101"}, timeout=5)
    assert response.status_code == 413
    assert create(server.url, 100)


def test_wrong_content_type_is_415(server) -> None:
    url = create(server.url, 3)
    response = requests.patch(url, data=b"abc", headers={**TUS, "Upload-Offset": "0", "Content-Type": "text/plain"}, timeout=5)
    assert response.status_code == 415
    assert head(url).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize(
    "metadata",
    ["key", "key dmFsdWU=,key dmFsdWU=", "k v a", "ke y", "key not_base64!", "key dmFsdWU", "é dmFsdWU=", ",", "key ===="],
)
def test_metadata_validation(server, metadata: str) -> None:
    response = requests.post(server.url, headers={**TUS, "Upload-Length": "1", "Upload-Metadata": metadata}, timeout=5)
    if metadata == "key":  # a key with an empty value is valid (MD-05)
        assert response.status_code == 201
    else:
        assert response.status_code == 400, metadata
        assert response.text.startswith("ERR_INVALID_METADATA")


def test_body_beyond_length_is_413_and_changes_nothing(server) -> None:
    url = create(server.url, 5)
    assert patch(url, 0, b"ab").status_code == 204
    response = patch(url, 2, b"cdefgh")
    assert response.status_code == 413
    assert head(url).headers["Upload-Offset"] == "2"

    def chunked():  # no Content-Length: the overflow is found while reading
        yield b"cd"
        yield b"efgh"

    response = requests.patch(url, data=chunked(), headers={**OCTET, "Upload-Offset": "2"}, timeout=5)
    assert response.status_code == 413
    assert head(url).headers["Upload-Offset"] == "2"
    assert patch(url, 2, b"cde").status_code == 204
    assert requests.get(url, timeout=5).content == b"abcde"


def test_patch_on_complete_upload_is_204_unchanged(server) -> None:
    url = create(server.url, 3)
    assert patch(url, 0, b"abc").status_code == 204
    response = patch(url, 3, b"")
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "3"


def test_zero_length_upload_is_complete_at_creation(server) -> None:
    url = create(server.url, 0)
    response = head(url)
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Length"] == "0"
    assert "Upload-Expires" not in response.headers
    assert requests.get(url, timeout=5).content == b""


def test_creation_with_upload(server) -> None:
    response = requests.post(
        server.url, data=b"hello", headers={**OCTET, "Upload-Length": "8"}, timeout=5
    )
    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "5"
    assert "Upload-Expires" in response.headers
    url = response.headers["Location"]
    assert patch(url, 5, b"!!!").status_code == 204
    assert requests.get(url, timeout=5).content == b"hello!!!"


def test_creation_with_upload_wrong_content_type_ignores_body(server) -> None:
    response = requests.post(server.url, data=b"hello", headers={**TUS, "Upload-Length": "5", "Content-Type": "text/plain"}, timeout=5)
    assert response.status_code == 201
    assert "Upload-Offset" not in response.headers
    assert head(response.headers["Location"]).headers["Upload-Offset"] == "0"


def test_creation_with_upload_too_large_is_413_without_creating(server) -> None:
    response = requests.post(server.url, data=b"hello!", headers={**OCTET, "Upload-Length": "5"}, timeout=5)
    assert response.status_code == 413
    assert "Location" not in response.headers


def test_defer_length(server) -> None:
    url = create(server.url, None, Upload_Defer_Length="1")
    response = head(url)
    assert response.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in response.headers
    assert patch(url, 0, b"abc").status_code == 204
    assert head(url).headers["Upload-Defer-Length"] == "1"
    # the length is declared with the last chunk, which finishes the upload (DL-08)
    response = patch(url, 3, b"def", Upload_Length="6")
    assert response.status_code == 204
    response = head(url)
    assert response.headers["Upload-Length"] == "6"
    assert response.headers["Upload-Offset"] == "6"
    assert "Upload-Defer-Length" not in response.headers
    # the length never changes once set
    assert patch(url, 6, b"", Upload_Length="6").status_code == 400


def test_defer_length_declared_after_last_chunk_and_limits(make_server) -> None:
    server = make_server(max_size=10)
    url = create(server.url, None, Upload_Defer_Length="1")
    assert patch(url, 0, b"abcd").status_code == 204
    assert patch(url, 4, b"", Upload_Length="3").status_code == 400  # below the offset
    assert patch(url, 4, b"", Upload_Length="11").status_code == 413  # above max-size
    assert patch(url, 4, b"0123456").status_code == 413  # more than max-size while deferred
    response = patch(url, 4, b"", Upload_Length="4")
    assert response.status_code == 204
    assert head(url).headers["Upload-Length"] == "4"
    assert requests.get(url, timeout=5).content == b"abcd"


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256", "sha512", "crc32"])
def test_checksum_match_and_mismatch(server, algorithm: str) -> None:
    def digest(data: bytes) -> bytes:
        if algorithm == "crc32":
            return zlib.crc32(data).to_bytes(4, "big")
        return hashlib.new(algorithm, data).digest()

    url = create(server.url, 8)
    response = patch(url, 0, b"abcd", Upload_Checksum=f"{algorithm} {b64(digest(b'abcX'))}")
    assert response.status_code == 460
    assert head(url).headers["Upload-Offset"] == "0"  # CK-05: discarded
    response = patch(url, 0, b"abcd", Upload_Checksum=f"{algorithm} {b64(digest(b'abcd'))}")
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "4"
    assert patch(url, 4, b"efgh").status_code == 204
    assert requests.get(url, timeout=5).content == b"abcdefgh"


@pytest.mark.parametrize("header", ["sha3 AAAA", "sha1", "sha1 not-base64", "sha1 AAA", "sha1  AAAA"])
def test_bad_checksum_header_is_400_and_commits_nothing(server, header: str) -> None:
    url = create(server.url, 4)
    response = patch(url, 0, b"abcd", Upload_Checksum=header)
    assert response.status_code == 400, header
    assert head(url).headers["Upload-Offset"] == "0"


def test_large_checksummed_patch(server) -> None:
    data = bytes(range(256)) * 16384  # 4 MiB: several write batches, hashed off the loop
    url = create(server.url, len(data))
    response = patch(url, 0, data, Upload_Checksum=f"sha256 {b64(hashlib.sha256(data).digest())}")
    assert response.status_code == 204
    assert requests.get(url, timeout=10).content == data


def test_termination(server) -> None:
    url = create(server.url, 10)
    assert patch(url, 0, b"abc").status_code == 204
    response = requests.delete(url, headers=TUS, timeout=5)
    assert response.status_code == 204
    assert head(url).status_code == 404
    assert "Upload-Offset" not in head(url).headers
    assert patch(url, 3, b"def").status_code == 404
    assert requests.delete(url, headers=TUS, timeout=5).status_code == 404
    assert not (server.data_dir / url.rsplit("/", 1)[1]).exists()


def test_terminate_finished_upload(server) -> None:
    url = create(server.url, 3)
    assert patch(url, 0, b"abc").status_code == 204
    assert requests.delete(url, headers=TUS, timeout=5).status_code == 204
    assert requests.get(url, timeout=5).status_code == 404


def test_unknown_and_invalid_ids_are_404(server) -> None:
    for upload_id in ["0" * 32, "nope", "a.b", "x" * 129]:
        url = server.url + upload_id
        assert head(url).status_code == 404, upload_id
        assert patch(url, 0, b"x").status_code == 404, upload_id
        assert requests.get(url, timeout=5).status_code == 404, upload_id
        assert requests.delete(url, headers=TUS, timeout=5).status_code == 404, upload_id
    for path in ["/files/..", "/files/%2e%2e", "/files/..%2f..%2fetc%2fpasswd", "/files/../../etc/passwd", "/files/%00"]:
        for method in ("HEAD", "GET", "PATCH", "DELETE"):
            headers = {**OCTET, "Upload-Offset": "0"}
            status, _, body = raw_request(server.port, method, path, headers)
            assert status == 404, (method, path, status)
            assert b"root:" not in body


def test_method_override(server) -> None:
    url = create(server.url, 3)
    response = requests.post(
        url, data=b"abc", headers={**OCTET, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}, timeout=5
    )
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "3"
    response = requests.post(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"}, timeout=5)
    assert response.status_code == 204
    assert head(url).status_code == 404


def test_methods_not_allowed(server) -> None:
    url = create(server.url, 3)
    response = requests.post(url, headers={**TUS, "Upload-Length": "3"}, timeout=5)
    assert response.status_code == 405
    assert "PATCH" in response.headers["Allow"]
    response = requests.patch(server.url, headers={**OCTET, "Upload-Offset": "0"}, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"].startswith("POST")


@pytest.mark.files_only  # looks for the upload's file in --dir
def test_expiration_headers_and_sweeper(make_server) -> None:
    server = make_server(expire_after=1, sweep_interval=0.5)
    url = create(server.url, 10)
    response = patch(url, 0, b"abc")
    expires = response.headers["Upload-Expires"]
    assert expires.endswith(" GMT") and len(expires) == 29  # IMF-fixdate
    finished = create(server.url, 1)
    assert patch(finished, 0, b"x").status_code == 204
    upload_file = server.data_dir / url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 10
    while upload_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not upload_file.exists()
    assert head(url).status_code == 410
    assert patch(url, 3, b"d").status_code == 410
    assert head(finished).status_code == 200  # finished uploads never expire


def test_cors(server) -> None:
    origin = {"Origin": "https://uploader.example"}
    preflight = requests.options(
        server.url,
        headers={
            **origin,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "upload-offset,tus-resumable,content-type,x-http-method-override",
        },
        timeout=5,
    )
    assert preflight.status_code == 200
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "upload-offset" in allowed and "x-http-method-override" in allowed  # C-35
    response = requests.post(server.url, headers={**TUS, **origin, "Upload-Length": "1"}, timeout=5)
    exposed = response.headers["Access-Control-Expose-Headers"]
    for name in ("Location", "Upload-Offset", "Upload-Length", "Upload-Defer-Length", "Upload-Metadata", "Upload-Expires",
                 "Upload-Concat", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size"):
        assert name in exposed
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://uploader.example")
    assert "origin" in response.headers["Vary"].lower()
    # Requests without Origin skip the CORS layer but keep the header it adds (caches key on it).
    plain = requests.post(server.url, headers={**TUS, "Upload-Length": "1"}, timeout=5)
    assert plain.headers["Vary"] == "Origin" and "Access-Control-Allow-Origin" not in plain.headers


def test_cors_named_origins(make_server) -> None:
    server = make_server(cors_origins="https://uploader.example")
    allowed = requests.post(server.url, headers={**TUS, "Origin": "https://uploader.example", "Upload-Length": "1"}, timeout=5)
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://uploader.example"
    assert allowed.headers["Vary"] == "Origin"
    other = requests.post(server.url, headers={**TUS, "Origin": "https://evil.example", "Upload-Length": "1"}, timeout=5)
    assert other.status_code == 201 and "Access-Control-Allow-Origin" not in other.headers
    preflight = requests.options(
        server.url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PATCH"}, timeout=5
    )
    assert preflight.status_code == 400


def test_location_behind_proxy(make_server) -> None:
    server = make_server(behind_proxy=True)
    headers = {**TUS, "Upload-Length": "1", "X-Forwarded-Host": "uploads.example.com", "X-Forwarded-Proto": "https"}
    response = requests.post(server.url, headers=headers, timeout=5)
    assert response.headers["Location"].startswith("https://uploads.example.com/files/")
    headers = {**TUS, "Upload-Length": "1", "Forwarded": 'for=1.2.3.4;host="up.example:8443";proto=https'}
    response = requests.post(server.url, headers=headers, timeout=5)
    assert response.headers["Location"].startswith("https://up.example:8443/files/")
    plain = make_server()
    response = requests.post(plain.url, headers={**TUS, "Upload-Length": "1", "X-Forwarded-Host": "evil.example"}, timeout=5)
    assert response.headers["Location"].startswith(plain.url)


def test_get_range_and_unsafe_types(server) -> None:
    evil_name = b64(b'../../x"evil.html')
    metadata = f"filename {evil_name},filetype {b64(b'text/html')}"
    url = create(server.url, 10, Upload_Metadata=metadata)
    assert patch(url, 0, b"0123456789").status_code == 204
    response = requests.get(url, timeout=5)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == 'attachment; filename="xevil.html"'
    response = requests.get(url, headers={"Range": "bytes=2-4"}, timeout=5)
    assert response.status_code == 206
    assert response.content == b"234"
    assert response.headers["Content-Range"] == "bytes 2-4/10"
    assert requests.get(url, headers={"Range": "bytes=-3"}, timeout=5).content == b"789"
    assert requests.get(url, headers={"Range": "bytes=7-"}, timeout=5).content == b"789"
    response = requests.get(url, headers={"Range": "bytes=10-"}, timeout=5)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */10"


@pytest.mark.files_only  # an object store reads finished uploads only: 409 (test_s3_engine_http.py)
def test_get_unfinished_upload_serves_committed_bytes(server) -> None:
    url = create(server.url, 10)
    assert patch(url, 0, b"abcd").status_code == 204
    assert requests.get(url, timeout=5).content == b"abcd"


def test_every_response_carries_tus_resumable(server) -> None:
    url = create(server.url, 3)
    responses = [
        requests.options(server.url, timeout=5),
        head(url),
        patch(url, 1, b"x"),  # 409
        requests.get(server.base + "/no/such/route", timeout=5),  # 404 from the router
        requests.put(url, headers=TUS, timeout=5),  # 405
        requests.post(server.url, headers={"Tus-Resumable": "2"}, timeout=5),  # 412
        requests.options(server.url, headers={"Origin": "https://a.example", "Access-Control-Request-Method": "PATCH"}, timeout=5),
    ]
    for response in responses:
        assert response.headers.get("Tus-Resumable") == "1.0.0", (response.request.method, response.status_code)
        assert response.headers.get("X-Content-Type-Options") == "nosniff"


def test_expect_100_continue_on_creation_with_upload(server) -> None:
    import socket

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\n"
        b"Content-Type: application/offset+octet-stream\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = sock.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100"), interim
    sock.sendall(b"hello")
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(4096)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 201"), reply
    assert b"upload-offset: 5" in reply.lower()
