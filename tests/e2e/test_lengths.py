"""Lengths the server cannot store, and bytes it has no room for (issue 13, items 12 and 17),
against real server processes on both state backends: a clear 413, never a 5xx, and
nothing left on disk.
"""

from __future__ import annotations

import http.client

import pytest
import requests

from tests.support import OCTET, TUS, create, head, patch

MAX_LENGTH = 2**63 - 1
TOO_LONG = ["9999999999999999999", str(MAX_LENGTH + 1), str(10**19), "1" + "0" * 40, "9" * 5000]


def upload_files(server) -> set[str]:
    return {path.name for path in server.data_dir.iterdir() if not path.name.startswith("tusd-py.sqlite3")}


@pytest.mark.files_only  # the file store's largest (2^63-1); S3's (5 TiB): test_s3_engine_http.py
@pytest.mark.parametrize("length", TOO_LONG, ids=lambda value: f"{len(value)}-digits-{value[:3]}")
def test_a_length_above_the_largest_storable_is_413_at_creation(server, length: str) -> None:
    before = upload_files(server)
    response = requests.post(server.url, headers={**TUS, "Upload-Length": length}, timeout=10)
    assert response.status_code == 413, (response.status_code, response.text)
    assert response.text.startswith("ERR_MAX_SIZE_EXCEEDED")
    assert upload_files(server) == before
    # The largest storable length is still a length (nothing is written until bytes come).
    assert create(server.url, MAX_LENGTH)


def test_a_length_above_the_largest_storable_declared_in_a_patch_is_413(server) -> None:
    url = create(server.url, None, Upload_Defer_Length="1")
    assert patch(url, 0, b"abc").status_code == 204
    for length in TOO_LONG:
        response = patch(url, 3, b"", Upload_Length=length)
        assert response.status_code == 413, (length[:30], response.status_code, response.text)
    response = head(url)
    assert response.headers["Upload-Defer-Length"] == "1" and response.headers["Upload-Offset"] == "3"
    assert patch(url, 3, b"de", Upload_Length="5").status_code == 204


@pytest.mark.files_only  # parts of 2^62 bytes are 413 on S3 already; looks at --dir
def test_a_final_whose_parts_sum_past_the_largest_storable_is_413_and_leaves_no_file(server) -> None:
    half = str(2**62)
    parts = [create(server.url, None, Upload_Length=half, Upload_Concat="partial") for _ in range(2)]
    before = upload_files(server)
    for listed in (parts, [parts[0], parts[0]], [parts[0]] * 3):
        response = requests.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(listed)}, timeout=10)
        assert response.status_code == 413, (response.status_code, response.text)
        assert response.text.startswith("ERR_MAX_SIZE_EXCEEDED")
    assert upload_files(server) == before  # no orphan data file


def test_tus_max_size_is_advertised_only_when_configured(server) -> None:
    """A choice (README): with --max-size 0, OPTIONS says nothing about 2^63-1 bytes."""
    assert "Tus-Max-Size" not in requests.options(server.url, timeout=5).headers


# -- item 17 ---------------------------------------------------------------------


def test_a_patch_with_bytes_to_a_complete_upload_is_413_and_changes_nothing(server) -> None:
    url = create(server.url, 3)
    assert patch(url, 0, b"abc").status_code == 204
    response = patch(url, 3, b"more")
    assert response.status_code == 413 and response.text.startswith("ERR_UPLOAD_SIZE_EXCEEDED")
    empty = patch(url, 3, b"")  # the empty PATCH at the end stays a 204 (C-33)
    assert empty.status_code == 204 and empty.headers["Upload-Offset"] == "3"
    assert requests.get(url, timeout=10).content == b"abc"


def test_a_chunked_patch_with_bytes_to_a_complete_upload_is_413(server) -> None:
    url = create(server.url, 3)
    assert patch(url, 0, b"abc").status_code == 204
    response = requests.patch(url, data=iter([b"more", b"bytes"]), headers={**OCTET, "Upload-Offset": "3"}, timeout=10)
    assert response.status_code == 413
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:  # an empty chunked body passes
        connection.putrequest("PATCH", url.split(str(server.port), 1)[1])
        for name, value in {**OCTET, "Upload-Offset": "3", "Transfer-Encoding": "chunked"}.items():
            connection.putheader(name, value)
        connection.endheaders(b"0\r\n\r\n")
        answer = connection.getresponse()
        assert answer.status == 204 and answer.getheader("Upload-Offset") == "3"
    finally:
        connection.close()
    assert requests.get(url, timeout=10).content == b"abc"


def test_a_body_sent_with_the_length_that_completes_the_upload_is_413(server) -> None:
    """Declaring a length equal to the offset completes the upload: a body has no room, and
    nothing is declared for it."""
    url = create(server.url, None, Upload_Defer_Length="1")
    assert patch(url, 0, b"abc").status_code == 204
    response = patch(url, 3, b"xyz", Upload_Length="3")
    assert response.status_code == 413
    assert head(url).headers.get("Upload-Defer-Length") == "1"
    assert patch(url, 3, b"", Upload_Length="3").status_code == 204
    assert head(url).headers["Upload-Length"] == "3"
