"""The file store's layout on disk through the real server: 10,000 uploads in one data
directory, no directory grows with them, and a data directory written by an older
release (every file at the top) is moved into the layout when the server starts."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import OCTET, TUS, create, patch, upload_file, upload_files
from tusd_py.storage import file_layout

pytestmark = pytest.mark.timeout(600)

UPLOADS = 10_000


def body_of(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest() * 4  # 128 bytes, a different body each


def test_ten_thousand_uploads_in_one_data_directory(make_server) -> None:
    server = make_server()

    def one(n: int, session: requests.Session) -> str:
        body = body_of(n)
        response = session.post(server.url, headers={**TUS, **OCTET, "Upload-Length": str(len(body))}, data=body, timeout=30)
        assert response.status_code == 201 and response.headers["Upload-Offset"] == str(len(body)), response.text
        return response.headers["Location"]

    def batch(start: int) -> list[tuple[int, str]]:
        with requests.Session() as session:
            urls = [(n, one(n, session)) for n in range(start, min(start + 500, UPLOADS))]
            for n, url in urls:  # every upload reads back as sent
                assert session.get(url, timeout=30).content == body_of(n)
            return urls

    with ThreadPoolExecutor(8) as pool:
        urls = [pair for part in pool.map(batch, range(0, UPLOADS, 500)) for pair in part]
    assert len({url for _, url in urls}) == UPLOADS
    files = upload_files(server.data_dir)
    assert len(files) == UPLOADS
    assert not [path for path in server.data_dir.iterdir() if path.is_file() and "." not in path.name]  # none at the top
    top = len(os.listdir(server.data_dir))
    largest = max(Counter(path.parent for path in files).values())
    print(f"{UPLOADS} uploads: {top} entries at the top, at most {largest} in a shard")
    assert top <= 4096 + 10  # the shards, the state's database, the marker
    assert largest <= 30  # about 2.4 on average


def test_an_older_releases_data_directory_is_moved_at_start(make_server) -> None:
    """Stopped, its files put back where an older release kept them (and no marker): the
    restarted server finds every upload, serves the finished one and resumes the other."""
    server = make_server()
    done = create(server.url, 5)
    assert patch(done, 0, b"hello").status_code == 204
    half = create(server.url, 6)
    assert patch(half, 0, b"abc").status_code == 204
    server.stop()
    for path in upload_files(server.data_dir):
        path.rename(server.data_dir / path.name)
    for path in server.data_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
    (server.data_dir / file_layout.MARKER).unlink()
    ids = [url.rsplit("/", 1)[1] for url in (done, half)]
    assert all((server.data_dir / upload_id).is_file() for upload_id in ids)

    server.start()
    assert "moved 2 upload files" in server.log()
    assert all(upload_file(server.data_dir, upload_id).is_file() for upload_id in ids)
    assert requests.get(done, timeout=10).content == b"hello"
    assert requests.head(half, headers=TUS, timeout=10).headers["Upload-Offset"] == "3"
    assert patch(half, 3, b"def").status_code == 204
    assert requests.get(half, timeout=10).content == b"abcdef"
    assert not [path for path in server.data_dir.iterdir() if path.is_file() and "." not in path.name]
