"""The engine's S3 rules as a client sees them: real server processes on the S3 data store
(SeaweedFS on 127.0.0.1), both state backends. The pre-create hook chooses the object key
(within the prefix, or 502), an upload too large for S3 is 413 before anything exists, a
checksum mismatch leaves no part in the bucket, and GET serves finished uploads only (409
before). What the engine does where HTTP cannot see it: `test_s3_engine.py`."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
import requests

from tests.support import TUS, S3Server, create, head, patch
from tusd_py import protocol as p

MiB = 1024 * 1024


@pytest.fixture
def data_backend() -> str:
    return "s3"


def prefix(server: Any) -> str:
    return str(server.flags["s3_prefix"])


def listing(s3: S3Server, under: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(object keys, multipart uploads in progress) under `under`, the store's own probe left out."""
    client = s3.client()
    objects = [o["Key"] for o in client.list_objects_v2(Bucket=s3.bucket, Prefix=under).get("Contents", [])]
    pending = client.list_multipart_uploads(Bucket=s3.bucket, Prefix=under).get("Uploads", [])
    return [key for key in objects if "/.tusd/probe-" not in key], pending


def test_the_pre_create_hook_chooses_the_object_key_within_the_prefix(make_server: Any, s3_server: S3Server) -> None:
    server = make_server(hooks_module="tests.hooks_storage")
    metadata = p.encode_metadata({"filetype": b"image/png", "filename": b"cat.png"})
    url = create(server.url, 8, Upload_Metadata=metadata, X_Object_Key="albums/2026/cat.png")
    assert patch(url, 0, b"\x89PNG1234").status_code == 204
    described = s3_server.client().head_object(Bucket=s3_server.bucket, Key=prefix(server) + "albums/2026/cat.png")
    assert described["ContentType"] == "image/png" and described["Metadata"] == {"owner": "alice"}
    response = requests.get(url, timeout=10)
    assert response.content == b"\x89PNG1234" and response.headers["Content-Disposition"] == 'inline; filename="cat.png"'
    before = listing(s3_server, prefix(server))
    for bad in ("../outside.png", "/absolute.png", "a//b", ".tusd/x.info", "a/../../b"):
        response = requests.post(server.url, headers={**TUS, "Upload-Length": "1", "X-Object-Key": bad}, timeout=10)
        assert (response.status_code, response.text.split(":")[0]) == (502, "ERR_HOOK_FAILED"), bad
    assert listing(s3_server, prefix(server)) == before  # nothing was created for them


def test_an_upload_too_large_for_s3_is_413_at_creation_before_anything_exists(make_server: Any, s3_server: S3Server) -> None:
    server = make_server(max_size=6 * 1024**4)
    before = listing(s3_server, prefix(server))
    six_tib = str(6 * 1024**4)  # over S3's 5 TiB object, within --max-size
    response = requests.post(server.url, headers={**TUS, "Upload-Length": six_tib}, timeout=10)
    assert response.status_code == 413 and response.text.startswith("ERR_MAX_SIZE_EXCEEDED")
    deferred = requests.post(server.url, headers={**TUS, "Upload-Defer-Length": "1"}, timeout=10)
    assert deferred.status_code == 413  # the part size is fixed at creation, from --max-size
    assert listing(s3_server, prefix(server)) == before == ([], [])
    assert create(server.url, 5 * 1024**4)  # the largest object S3 holds is fine


def test_a_checksum_mismatch_leaves_no_part_in_the_bucket(make_server: Any, s3_server: S3Server) -> None:
    server = make_server()
    data = hashlib.sha256(b"x").digest() * (11 * MiB // 32)
    url = create(server.url, len(data))
    wrong = "sha1 " + base64.b64encode(hashlib.sha1(b"not the body").digest()).decode()
    assert patch(url, 0, data, Upload_Checksum=wrong).status_code == 460
    assert head(url).headers["Upload-Offset"] == "0"
    _, pending = listing(s3_server, prefix(server))
    client = s3_server.client()
    assert [client.list_parts(Bucket=s3_server.bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []) for u in pending] == [[]]
    right = "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()
    assert patch(url, 0, data, Upload_Checksum=right).status_code == 204
    assert requests.get(url, timeout=30).content == data


def test_get_serves_finished_uploads_only(make_server: Any) -> None:
    server = make_server()
    url = create(server.url, 10)
    assert patch(url, 0, b"abcd").status_code == 204
    response = requests.get(url, timeout=10)
    assert response.status_code == 409 and response.text.startswith("ERR_UPLOAD_NOT_FINISHED")
    assert patch(url, 4, b"efghij").status_code == 204
    assert requests.get(url, timeout=10).content == b"abcdefghij"
    ranged = requests.get(url, headers={"Range": "bytes=2-4"}, timeout=10)
    assert (ranged.status_code, ranged.content) == (206, b"cde")
