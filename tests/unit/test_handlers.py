"""The two protocols per method, in-process (as tusd's `patch_test.go`): requests through
`TestClient(create_app(Config(...)))` on both state stores, next to the e2e suite,
which runs the same rules against real uvicorn processes."""

from __future__ import annotations

import base64
import hashlib
import warnings
from pathlib import Path
from typing import Iterator

import pytest

with warnings.catch_warnings():  # Starlette's note about a future httpx successor
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tusd_py.app import create_app
from tusd_py.config import Config
from tusd_py.state.base import StateUnavailable

TUS = {"Tus-Resumable": "1.0.0"}
BODY = {**TUS, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture(params=["embedded", "redis"])
def make_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    clients: list[TestClient] = []

    def make(**settings: object) -> TestClient:
        config = Config(data_dir=tmp_path / f"data{len(clients)}", redis_url=redis_url, **settings)  # type: ignore[arg-type]
        client = TestClient(create_app(config), base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:  # type: ignore[no-untyped-def]
    return make_client()


def create(client: TestClient, length: int = 10, **headers: str) -> str:
    response = client.post("/files/", headers={**TUS, "Upload-Length": str(length), **headers})
    assert response.status_code == 201, response.text
    return response.headers["Location"]


# -- OPTIONS ---------------------------------------------------------------------


def test_options_tells_what_the_stores_can_do(make_client) -> None:  # type: ignore[no-untyped-def]
    response = make_client(max_size=1000).options("/files/")
    assert response.status_code == 200
    assert response.headers["Tus-Version"] == "1.0.0" and response.headers["Tus-Max-Size"] == "1000"
    extensions = response.headers["Tus-Extension"].split(",")
    assert {"creation", "creation-with-upload", "creation-defer-length", "termination", "checksum"} <= set(extensions)
    assert {"concatenation", "concatenation-unfinished", "expiration"} <= set(extensions)
    no_expiry = make_client(expire_after=0).options("/files/")
    assert "expiration" not in no_expiry.headers["Tus-Extension"]


# -- the router's prelude -------------------------------------------------------------


def test_allow_comes_from_each_method_table(client: TestClient) -> None:
    url = create(client)
    assert client.put(url, headers=TUS).headers["Allow"] == "GET, HEAD, PATCH, DELETE, OPTIONS"
    assert client.put("/files/", headers=TUS).headers["Allow"] == "POST, OPTIONS"
    draft = {"Upload-Draft-Interop-Version": "9"}
    assert client.put(url, headers=draft).headers["Allow"] == "GET, HEAD, PATCH, DELETE, OPTIONS"


def test_version_check_and_method_override(client: TestClient) -> None:
    response = client.post("/files/", headers={"Upload-Length": "1"})
    assert response.status_code == 412 and response.headers["Tus-Version"] == "1.0.0"
    url = create(client, 3)
    response = client.post(url, headers={**BODY, "X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0"}, content=b"abc")
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "3"


def test_a_state_store_failure_is_503_state_unavailable(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    url = create(client)
    engine = client.app.state.engine  # type: ignore[attr-defined]

    async def unavailable(*args: object, **kwargs: object) -> None:
        raise StateUnavailable("down")

    monkeypatch.setattr(engine.state, "get", unavailable)
    response = client.head(url, headers=TUS)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    draft = {"Upload-Draft-Interop-Version": "9", "Upload-Offset": "0", "Upload-Complete": "?0"}
    response = client.patch(url, headers={**draft, "Content-Type": "application/partial-upload"}, content=b"")
    assert response.status_code == 503 and "ERR_STATE_UNAVAILABLE" in response.text
    assert response.headers["Upload-Draft-Interop-Version"] == "9"  # answered in the request's protocol


# -- POST ------------------------------------------------------------------------------


def test_post_creates_and_with_a_body_keeps_what_arrived(client: TestClient) -> None:
    response = client.post("/files/", headers={**BODY, "Upload-Length": "5"}, content=b"hel")
    assert response.status_code == 201 and response.headers["Upload-Offset"] == "3"
    assert client.head(response.headers["Location"], headers=TUS).headers["Upload-Offset"] == "3"


def test_post_with_a_body_that_fails_its_checksum_is_460_not_201(client: TestClient) -> None:
    wrong = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    headers = {**BODY, "Upload-Length": "5", "Upload-Checksum": f"sha1 {wrong}"}
    response = client.post("/files/", headers=headers, content=b"hello")
    assert response.status_code == 460 and "Location" in response.headers


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Upload-Length": "x"}, 400, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": "1", "Upload-Defer-Length": "1"}, 400, "ERR_AMBIGUOUS_UPLOAD_LENGTH"),
        ({"Upload-Defer-Length": "2"}, 400, "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
        ({}, 400, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": "1", "Upload-Metadata": "a b c"}, 400, "ERR_INVALID_METADATA"),
    ],
)
def test_post_refuses_bad_headers(client: TestClient, headers: dict[str, str], status: int, code: str) -> None:
    response = client.post("/files/", headers={**TUS, **headers})
    assert response.status_code == status and response.text.startswith(code)


# -- HEAD ------------------------------------------------------------------------------


def test_head_reports_offset_length_and_metadata(client: TestClient) -> None:
    url = create(client, 10, **{"Upload-Metadata": "name YQ=="})
    response = client.head(url, headers=TUS)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert (response.headers["Upload-Offset"], response.headers["Upload-Length"]) == ("0", "10")
    assert response.headers["Upload-Metadata"] == "name YQ=="
    assert client.head("/files/" + "0" * 32, headers=TUS).status_code == 404


# -- PATCH -----------------------------------------------------------------------------


def test_patch_appends_at_the_offset(client: TestClient) -> None:
    url = create(client, 6)
    assert client.patch(url, headers={**BODY, "Upload-Offset": "0"}, content=b"abc").headers["Upload-Offset"] == "3"
    response = client.patch(url, headers={**BODY, "Upload-Offset": "0"}, content=b"abc")
    assert response.status_code == 409 and response.headers["Upload-Offset"] == "3"
    response = client.patch(url, headers={**TUS, "Upload-Offset": "3", "Content-Type": "text/plain"}, content=b"d")
    assert response.status_code == 415
    response = client.patch(url, headers={**BODY, "Upload-Offset": "3"}, content=b"defg")
    assert response.status_code == 413
    assert client.patch(url, headers={**BODY, "Upload-Offset": "3"}, content=b"def").status_code == 204
    assert client.get(url).content == b"abcdef"


def test_patch_declares_a_deferred_length(client: TestClient) -> None:
    response = client.post("/files/", headers={**TUS, "Upload-Defer-Length": "1"})
    url = response.headers["Location"]
    assert client.head(url, headers=TUS).headers["Upload-Defer-Length"] == "1"
    response = client.patch(url, headers={**BODY, "Upload-Offset": "0", "Upload-Length": "2"}, content=b"ab")
    assert response.status_code == 204 and client.head(url, headers=TUS).headers["Upload-Length"] == "2"


# -- DELETE and GET ---------------------------------------------------------------------


def test_delete_terminates(client: TestClient) -> None:
    url = create(client)
    assert client.delete(url, headers=TUS).status_code == 204
    assert client.head(url, headers=TUS).status_code == 404


def test_get_downloads_the_committed_bytes(client: TestClient) -> None:
    url = create(client, 4)
    client.patch(url, headers={**BODY, "Upload-Offset": "0"}, content=b"ab")
    response = client.get(url)
    assert response.status_code == 200 and response.content == b"ab"


# -- the IETF draft, on the same engine ----------------------------------------------------


def test_draft_creation_append_and_completion(client: TestClient) -> None:
    draft = {"Upload-Draft-Interop-Version": "9"}
    response = client.post("/files/", headers={**draft, "Upload-Complete": "?0"}, content=b"ab")
    assert response.status_code == 201 and response.headers["Upload-Complete"] == "?0"
    url = response.headers["Location"]
    headers = {**draft, "Upload-Offset": "2", "Upload-Complete": "?1", "Content-Type": "application/partial-upload"}
    response = client.patch(url, headers=headers, content=b"cd")
    assert response.status_code == 200 and response.headers["Upload-Complete"] == "?1"
    assert client.head(url, headers=TUS).headers["Upload-Length"] == "4"  # a tus client sees it complete
    response = client.patch(url, headers={**headers, "Upload-Offset": "0"}, content=b"x")
    assert response.status_code == 409 and response.headers["Content-Type"] == "application/problem+json"
