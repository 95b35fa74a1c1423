"""Which uploads get post-finish processing (`UploadEngine.on_finish`), and how often:
partial uploads none (CC-07), final uploads exactly once, however they complete.

The app runs in-process here (Starlette's TestClient) because the callbacks are
Python functions; the HTTP behaviour itself is covered in tests/e2e/test_concat.py.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Iterator

import pytest

with warnings.catch_warnings():  # Starlette's note about a future httpx successor
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tusd_py.app import create_app
from tusd_py.config import Config
from tusd_py.state.base import Upload

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, list[Upload]]]:
    app = create_app(Config(data_dir=tmp_path / "data", sweep_interval=0.2))
    finished: list[Upload] = []

    async def record(upload: Upload) -> None:
        finished.append(upload)

    app.state.engine.on_finish.append(record)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client, finished


def create(client: TestClient, length: int, **headers: str) -> str:
    response = client.post("/files/", headers={**TUS, "Upload-Length": str(length), **headers})
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def patch(client: TestClient, url: str, offset: int, body: bytes) -> None:
    headers = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)}
    response = client.patch(url, headers=headers, content=body)
    assert response.status_code == 204, response.text


def final(client: TestClient, urls: list[str]) -> str:
    response = client.post("/files/", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls)})
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def wait_until(client: TestClient, url: str) -> None:
    for _ in range(200):  # the assembly after a part's PATCH runs in the background
        if "Upload-Offset" in client.head(url, headers=TUS).headers:
            return
        time.sleep(0.02)  # the app runs on the client's portal thread meanwhile
    raise AssertionError("the final upload was never assembled")


def ids(uploads: list[Upload]) -> list[str]:
    return [upload.id for upload in uploads]


def test_partial_uploads_get_no_post_finish_processing(client) -> None:
    test_client, finished = client
    a = create(test_client, 3, **{"Upload-Concat": "partial"})
    patch(test_client, a, 0, b"abc")
    empty = create(test_client, 0, **{"Upload-Concat": "partial"})
    plain = create(test_client, 1)
    patch(test_client, plain, 0, b"x")
    assert ids(finished) == [plain.rsplit("/", 1)[1]]  # the plain upload only, not the parts
    url = final(test_client, [a, empty, a])
    assert ids(finished)[1:] == [url.rsplit("/", 1)[1]]
    assert finished[1].finished and finished[1].offset == 6


def test_unfinished_final_is_processed_once_when_its_last_part_finishes(client) -> None:
    test_client, finished = client
    a = create(test_client, 2, **{"Upload-Concat": "partial"})
    b = create(test_client, 2, **{"Upload-Concat": "partial"})
    url = final(test_client, [a, b, a])
    assert finished == []
    patch(test_client, a, 0, b"aa")
    patch(test_client, b, 0, b"b")
    assert finished == []
    patch(test_client, b, 1, b"b")
    wait_until(test_client, url)
    # Further triggers (a sweep, a late duplicate event) must not process it again.
    app = test_client.app
    test_client.portal.call(app.state.engine.concat.reconcile)  # type: ignore[union-attr, attr-defined]
    test_client.portal.call(app.state.engine.concat.part_changed, a.rsplit("/", 1)[1])  # type: ignore[union-attr, attr-defined]
    assert ids(finished) == [url.rsplit("/", 1)[1]]
    assert test_client.get(url).content == b"aabbaa"
