"""Real tus clients through the S3 data store (issue 15): tuspy, tus-js-client with
parallelUploads, and the Uppy upload page in headless Chromium.

Each test uploads through a tusd-py process on SeaweedFS (5 MiB parts, the S3
minimum) and then reads the object back from the bucket with a client of its own
(`tests/s3bucket.py`): byte for byte (MD5), with no multipart upload and no
incomplete part left behind. Sizes are just above the part minimum, so that full
parts, a last short part, and bodies that end inside a part all occur.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
import requests
from tusclient import client
from tusclient.storage.filestorage import FileStorage

from tests.browser import until
from tests.e2e.test_tus_js_parallel import tus_js_upload
from tests.e2e.test_upload_page import browser, make_file, offset, open_page, upload_until_paused  # noqa: F401
from tests.s3bucket import PART, BucketView, assert_stored, bucket, data_backend, s3_make_server  # noqa: F401
from tests.support import head

MiB = 1024 * 1024




def test_tuspy_whole_file_in_one_patch(s3_make_server, bucket: BucketView) -> None:
    server = s3_make_server()
    data = os.urandom(2 * PART + 12345)
    uploader = client.TusClient(server.url).uploader(file_stream=io.BytesIO(data), metadata={"filename": "whole.bin"})
    uploader.upload()
    assert_stored(bucket, uploader.url, data)
    assert requests.get(uploader.url, timeout=30).content == data


def test_tuspy_small_chunks_with_checksums(s3_make_server, bucket: BucketView) -> None:
    """1 MiB PATCHes, each under the part minimum, each with its Upload-Checksum."""
    server = s3_make_server()
    data = os.urandom(PART + 3 * MiB + 7)
    uploader = client.TusClient(server.url).uploader(file_stream=io.BytesIO(data), chunk_size=MiB, upload_checksum=True)
    uploader.upload()
    assert_stored(bucket, uploader.url, data)


def test_tuspy_interrupted_upload_resumes_from_what_is_in_s3(s3_make_server, bucket: BucketView, tmp_path: Path) -> None:
    server = s3_make_server()
    path = tmp_path / "resume.bin"
    data = os.urandom(PART + 2 * MiB + 99)
    path.write_bytes(data)
    storage = str(tmp_path / "urls.json")
    first = client.TusClient(server.url).uploader(str(path), chunk_size=3 * MiB, store_url=True, url_storage=FileStorage(storage))
    first.upload(stop_at=3 * MiB)  # the first run stops inside part 1: all of it is the incomplete part
    assert first.offset == 3 * MiB
    second = client.TusClient(server.url).uploader(str(path), chunk_size=3 * MiB, store_url=True, url_storage=FileStorage(storage))
    assert second.url == first.url and second.offset == 3 * MiB
    second.upload()
    assert_stored(bucket, second.url, data)


@pytest.mark.parametrize("size", [4 * (PART + MiB), 4 * 2 * MiB + 3], ids=["copied-parts", "reuploaded-parts"])
def test_tus_js_client_parallel_uploads(s3_make_server, bucket: BucketView, tmp_path: Path, size: int) -> None:
    """parallelUploads: 4: four partial uploads and their concatenation. Partial uploads of
    6 MiB are joined by UploadPartCopy inside S3; ones of 2 MiB (under the minimum) are streamed again."""
    server = s3_make_server()
    data = os.urandom(size)
    (tmp_path / "parallel.bin").write_bytes(data)
    url = tus_js_upload(server.url, tmp_path / "parallel.bin", parallel=4)
    response = head(url)
    assert response.headers["Upload-Offset"] == str(size)
    parts = response.headers["Upload-Concat"].removeprefix("final;").split()
    assert len(parts) == 4
    assert_stored(bucket, url, data)
    assert sum(bucket.md5(part.rsplit("/", 1)[1])[0] for part in parts) == size  # the partial uploads are objects too


def test_upload_page_pauses_resumes_and_finishes_on_s3(s3_make_server, bucket: BucketView, browser, proxies, tmp_path: Path) -> None:  # noqa: F811
    """Uppy in Chromium; Pause aborts its PATCH mid-part, so the offset it resumes from is
    what the server made durable in S3 (whole parts plus the incomplete part)."""
    server = s3_make_server()
    proxy = proxies(server.port, rate=4 * MiB)  # 12 MiB take some 3 s
    data = make_file(tmp_path / "clip.mp4", 2 * PART + 2 * MiB, seed=5)
    page = open_page(browser, proxy.base + "/")
    url = upload_until_paused(page, tmp_path / "clip.mp4", PART + MiB)
    time.sleep(1.0)  # the aborted PATCH is committed by now
    paused = offset(url)
    assert 0 < paused < len(data)  # what the aborted PATCH delivered: full parts, the rest in the incomplete part
    page.click("button[title=Resume]")
    until(page, "window.seen.success.length === 1", timeout=60)
    assert page.evaluate("window.seen.errors") == []
    assert_stored(bucket, url, data)
    stored = bucket.client.head_object(Bucket=bucket.bucket, Key=bucket.prefix + url.rsplit("/", 1)[1])
    assert stored["ContentType"] == "video/mp4"  # from the safe `filetype` metadata Uppy sent
    assert requests.get(url, timeout=30).content == data
