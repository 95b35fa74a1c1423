"""tuspy, the Python tus client, against the real server, unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import requests
from tusclient import client
from tusclient.storage.filestorage import FileStorage


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 12345))
    return path


def fetch(url: str) -> bytes:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    return response.content


def test_whole_file_upload(server, payload: Path) -> None:
    uploader = client.TusClient(server.url).uploader(str(payload), metadata={"filename": payload.name})
    uploader.upload()
    assert fetch(uploader.url) == payload.read_bytes()
    assert requests.head(uploader.url, headers={"Tus-Resumable": "1.0.0"}, timeout=5).headers["Upload-Offset"] == str(
        payload.stat().st_size
    )


def test_chunked_upload_with_checksums(server, payload: Path) -> None:
    uploader = client.TusClient(server.url).uploader(str(payload), chunk_size=256 * 1024, upload_checksum=True)
    uploader.upload()
    assert hashlib.sha256(fetch(uploader.url)).digest() == hashlib.sha256(payload.read_bytes()).digest()


def test_interrupted_upload_resumes_through_url_storage(server, payload: Path, tmp_path: Path) -> None:
    storage_path = str(tmp_path / "tus-urls.json")
    size = payload.stat().st_size
    first = client.TusClient(server.url).uploader(
        str(payload), chunk_size=512 * 1024, store_url=True, url_storage=FileStorage(storage_path)
    )
    first.upload(stop_at=1024 * 1024)  # the first run dies after 1 MiB
    assert first.offset == 1024 * 1024

    second = client.TusClient(server.url).uploader(
        str(payload), chunk_size=512 * 1024, store_url=True, url_storage=FileStorage(storage_path)
    )
    assert second.url == first.url  # found through the fingerprint
    assert second.offset == 1024 * 1024  # read from the server with HEAD
    second.upload()
    assert second.offset == size
    assert fetch(second.url) == payload.read_bytes()
