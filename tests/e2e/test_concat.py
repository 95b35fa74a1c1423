"""tus concatenation and concatenation-unfinished over real HTTP (checklist §1.14, CC-01..CC-17).

Each test runs against the embedded state, a real redis-server and a 3-master Redis Cluster.
"""

from __future__ import annotations

import base64
import os
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import state_backend_or_cluster as state_backend  # noqa: F401  (also on a Redis Cluster)
from tests.support import TUS, create, head, patch

PARTIAL = {"Upload-Concat": "partial"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def create_partial(server_url: str, data: bytes, *, upload: bool = True, **headers: str) -> str:
    url = create(server_url, len(data), **PARTIAL, **headers)
    if upload and data:
        response = patch(url, 0, data)
        assert response.status_code == 204, response.text
    return url


def post_final(server_url: str, urls: list[str] | str, **headers: str) -> requests.Response:
    value = urls if isinstance(urls, str) else "final;" + " ".join(urls)
    hdrs = dict(TUS, **{"Upload-Concat": value})
    hdrs.update({key.replace("_", "-"): v for key, v in headers.items()})
    return requests.post(server_url, headers=hdrs, timeout=30)


def create_final(server_url: str, urls: list[str] | str, **headers: str) -> str:
    response = post_final(server_url, urls, **headers)
    assert response.status_code == 201, (response.status_code, response.text)
    return response.headers["Location"]


def path_of(url: str) -> str:
    return urlsplit(url).path


def wait_for_offset(url: str, timeout: float = 15.0) -> requests.Response:
    """HEAD until the final upload has an offset (it is assembled in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        response = head(url)
        if "Upload-Offset" in response.headers or response.status_code != 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def wait_for_status(url: str, status: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := head(url).status_code) != status and time.monotonic() < deadline:
        time.sleep(0.05)
    return code


# -- CC-01, CC-02, CC-15, CC-16 ------------------------------------------------------


def test_options_advertises_concatenation_and_unfinished(server) -> None:
    extensions = requests.options(server.url, timeout=5).headers["Tus-Extension"].split(",")
    assert "concatenation" in extensions  # CC-01
    assert "concatenation-unfinished" in extensions  # CC-08


def test_partial_upload_head(server) -> None:
    url = create(server.url, 10, **PARTIAL)  # CC-02
    assert patch(url, 0, b"abcd").status_code == 204
    response = head(url)
    assert response.status_code == 200
    assert response.headers["Upload-Concat"] == "partial"  # CC-16
    assert response.headers["Upload-Offset"] == "4"  # CC-15
    assert response.headers["Upload-Length"] == "10"


# -- CC-03, CC-05, CC-06, CC-14, CC-16, CC-17 -----------------------------------------


def test_final_is_the_parts_in_order_complete_at_201(server) -> None:
    data = [b"first part, ", b"second, ", b"and the third."]
    urls = [create_partial(server.url, chunk) for chunk in data]
    final = create_final(server.url, urls)
    # CC-17: the parts were complete, so the final upload is complete when 201 arrives.
    response = head(final)
    assert response.headers["Upload-Offset"] == response.headers["Upload-Length"] == str(len(b"".join(data)))  # CC-05, CC-14
    assert response.headers["Upload-Concat"] == "final;" + " ".join(urls)  # CC-16: as sent (absolute URLs)
    assert requests.get(final, timeout=10).content == b"".join(data)  # CC-06: in the order listed
    reversed_final = create_final(server.url, urls[::-1])
    assert requests.get(reversed_final, timeout=10).content == b"".join(data[::-1])


def test_relative_urls_and_foreign_hosts(server) -> None:
    """CC-03: URLs may be relative, or absolute with another host (a proxy's), as tus-js-client sends."""
    a = create_partial(server.url, b"AAA")
    b = create_partial(server.url, b"BB")
    foreign = "https://uploads.example.com:8443" + path_of(b)
    value = f"final; {path_of(a)}   {foreign}"  # extra spaces are allowed around the URLs
    final = create_final(server.url, value)
    response = head(final)
    assert response.headers["Upload-Concat"] == value.strip()
    assert requests.get(final, timeout=10).content == b"AAABB"


def test_a_part_may_repeat_and_serve_several_finals(server) -> None:
    """CC-06: the same partial may appear several times, and in several final uploads."""
    a = create_partial(server.url, b"ab")
    c = create_partial(server.url, b"c")
    first = create_final(server.url, [a, c, a, a])
    second = create_final(server.url, [c, a])
    assert head(first).headers["Upload-Length"] == "7"
    assert requests.get(first, timeout=10).content == b"abcabab"
    assert requests.get(second, timeout=10).content == b"cab"
    assert head(a).headers["Upload-Offset"] == "2"  # parts stay as they were


def test_upload_length_on_a_final_creation_is_ignored(server) -> None:
    """CC-04 (GAP): as tusd, the server computes the length and ignores a sent one."""
    a = create_partial(server.url, b"12345")
    final = create_final(server.url, [a], Upload_Length="999")
    assert head(final).headers["Upload-Length"] == "5"


def test_zero_length_parts(server) -> None:
    empty = create_partial(server.url, b"")
    x = create_partial(server.url, b"x")
    final = create_final(server.url, [empty, x, empty])
    assert head(final).headers["Upload-Offset"] == "1"
    only_empty = create_final(server.url, [empty])
    response = head(only_empty)
    assert response.headers["Upload-Offset"] == response.headers["Upload-Length"] == "0"


# -- CC-09 -----------------------------------------------------------------------------


def test_partial_metadata_is_not_copied(server) -> None:
    part_metadata = f"filename {b64(b'part.bin')}"
    a = create_partial(server.url, b"data", Upload_Metadata=part_metadata)
    bare = create_final(server.url, [a])
    assert "Upload-Metadata" not in head(bare).headers
    own = f"filename {b64(b'whole.txt')},filetype {b64(b'text/plain')}"
    final = create_final(server.url, [a], Upload_Metadata=own)
    assert head(final).headers["Upload-Metadata"] == own
    got = requests.get(final, timeout=10)
    assert got.headers["Content-Disposition"] == 'inline; filename="whole.txt"'


def test_invalid_metadata_on_a_final_is_400(server) -> None:
    a = create_partial(server.url, b"data")
    response = post_final(server.url, [a], Upload_Metadata="key not-base64!")
    assert response.status_code == 400


# -- CC-11, CU-07 ----------------------------------------------------------------------


def test_patch_on_a_final_is_403_and_changes_nothing(server) -> None:
    a = create_partial(server.url, b"abc")
    b = create_partial(server.url, b"de")
    final = create_final(server.url, [a, b])
    for offset in (0, 5):
        response = patch(final, offset, b"XYZ")
        assert response.status_code == 403, response.text
        assert response.text.startswith("ERR_MODIFY_FINAL")
    assert requests.get(final, timeout=10).content == b"abcde"
    assert head(final).headers["Upload-Offset"] == "5"
    assert requests.get(a, timeout=10).content == b"abc"
    assert head(b).headers["Upload-Offset"] == "2"


def test_patch_on_an_unfinished_final_is_403(server) -> None:
    a = create(server.url, 3, **PARTIAL)
    final = create_final(server.url, [a])
    response = patch(final, 0, b"abc")
    assert response.status_code == 403
    assert "Upload-Offset" not in head(final).headers
    assert head(a).headers["Upload-Offset"] == "0"


def test_final_creation_with_a_body_is_403_and_creates_nothing(server) -> None:
    a = create_partial(server.url, b"abc")
    before = sorted(os.listdir(server.data_dir))
    response = post_final(server.url, [a], Content_Type="application/offset+octet-stream")
    assert response.status_code == 403
    assert response.text.startswith("ERR_MODIFY_FINAL")
    hdrs = dict(TUS, **{"Upload-Concat": "final;" + a, "Content-Type": "application/offset+octet-stream"})
    with_bytes = requests.post(server.url, headers=hdrs, data=b"more bytes", timeout=10)
    assert with_bytes.status_code == 403
    assert sorted(os.listdir(server.data_dir)) == before


# -- CC-12: errors ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["final;", "final; ", "final", "partial;", "Partial", "final,/files/x", "something"])
def test_malformed_upload_concat_is_400(server, value: str) -> None:
    response = requests.post(server.url, headers=dict(TUS, **{"Upload-Concat": value, "Upload-Length": "5"}), timeout=10)
    assert response.status_code == 400, (value, response.status_code)
    assert response.text.startswith("ERR_INVALID_CONCAT")


def test_unknown_part_is_404(server) -> None:
    a = create_partial(server.url, b"abc")
    unknown = server.url + "0" * 32
    for urls in ([a, unknown], [a, "/elsewhere/" + path_of(a).rsplit("/", 1)[1]], [a, server.url + "..%2Fetc"]):
        response = post_final(server.url, urls)
        assert response.status_code == 404, (urls, response.text)


def test_listed_upload_that_is_not_a_partial_is_400(server) -> None:
    a = create_partial(server.url, b"abc")
    plain = create(server.url, 3)
    assert patch(plain, 0, b"xyz").status_code == 204
    response = post_final(server.url, [a, plain])
    assert response.status_code == 400
    assert response.text.startswith("ERR_NOT_PARTIAL_UPLOAD")
    final = create_final(server.url, [a])
    nested = post_final(server.url, [final])  # a final upload is no partial either
    assert nested.status_code == 400


def test_sum_over_max_size_is_413(make_server) -> None:
    server = make_server(max_size=10)
    a = create_partial(server.url, b"123456")
    response = post_final(server.url, [a, a])
    assert response.status_code == 413
    assert response.text.startswith("ERR_MAX_SIZE_EXCEEDED")
    assert post_final(server.url, [a]).status_code == 201


def test_part_with_deferred_length_is_400(server) -> None:
    deferred = create(server.url, None, Upload_Defer_Length="1", **PARTIAL)
    response = post_final(server.url, [deferred])
    assert response.status_code == 400
    assert "deferred" in response.text


def test_failed_final_creation_creates_nothing(server) -> None:
    a = create_partial(server.url, b"abc")
    before = sorted(os.listdir(server.data_dir))
    assert post_final(server.url, [a, server.url + "f" * 32]).status_code == 404
    assert sorted(os.listdir(server.data_dir)) == before


# -- CC-08, CC-13: concatenation-unfinished -----------------------------------------------


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_final_created_before_its_parts_finish(server, order: tuple[int, ...]) -> None:
    data = [os.urandom(100_000), os.urandom(1), os.urandom(70_001)]
    urls = [create(server.url, len(chunk), **PARTIAL) for chunk in data]
    assert patch(urls[1], 0, data[1][:0]).status_code == 204  # an empty PATCH changes nothing
    final = create_final(server.url, [urls[0], urls[1], urls[2], urls[0]])
    expected = data[0] + data[1] + data[2] + data[0]
    response = head(final)
    assert response.status_code == 200
    assert "Upload-Offset" not in response.headers  # CC-13: undefined until assembled
    assert response.headers["Upload-Length"] == str(len(expected))
    for done, index in enumerate(order, 1):
        chunk = data[index]
        half = len(chunk) // 2
        assert patch(urls[index], 0, chunk[:half]).status_code == 204
        assert patch(urls[index], half, chunk[half:]).status_code == 204
        if done < len(order):
            time.sleep(0.2)  # a premature assembly would have had time to show
            assert "Upload-Offset" not in head(final).headers
    response = wait_for_offset(final)
    assert response.headers["Upload-Offset"] == response.headers["Upload-Length"] == str(len(expected))  # CC-14
    assert requests.get(final, timeout=10).content == expected


def test_unfinished_final_completes_with_creation_with_upload_parts(server) -> None:
    """A part can also finish inside its creation POST (creation-with-upload)."""
    a = create_partial(server.url, b"head-")
    b = create(server.url, 4, **PARTIAL)
    final = create_final(server.url, [a, b])
    assert "Upload-Offset" not in head(final).headers
    assert patch(b, 0, b"tail").status_code == 204
    assert wait_for_offset(final).headers.get("Upload-Offset") == "9"
    hdrs = dict(TUS, **{"Upload-Length": "3", "Upload-Concat": "partial", "Content-Type": "application/offset+octet-stream"})
    c = requests.post(server.url, headers=hdrs, data=b"xyz", timeout=10).headers["Location"]
    assert requests.get(create_final(server.url, [c, a]), timeout=10).content == b"xyzhead-"


def test_several_finals_wait_on_one_part(server) -> None:
    a = create(server.url, 2, **PARTIAL)
    b = create_partial(server.url, b"b")
    first = create_final(server.url, [a, b])
    second = create_final(server.url, [b, a, a])
    assert patch(a, 0, b"aa").status_code == 204
    assert wait_for_offset(first).headers.get("Upload-Offset") == "3"
    assert wait_for_offset(second).headers.get("Upload-Offset") == "5"
    assert requests.get(first, timeout=10).content == b"aab"
    assert requests.get(second, timeout=10).content == b"baaaa"


def test_deleting_a_part_drops_the_waiting_final(server) -> None:
    a = create(server.url, 5, **PARTIAL)
    b = create_partial(server.url, b"b")
    final = create_final(server.url, [a, b])
    assert requests.delete(a, headers=TUS, timeout=10).status_code == 204
    assert wait_for_status(final, 410) == 410  # a tombstone, not a final upload waiting forever
    assert patch(final, 0, b"x").status_code == 410
    assert head(b).headers["Upload-Offset"] == "1"  # the other part is untouched


def test_an_expired_part_drops_the_waiting_final(make_server) -> None:
    server = make_server(expire_after=1, sweep_interval=0.3)
    a = create(server.url, 5, **PARTIAL)
    assert patch(a, 0, b"ab").status_code == 204
    b = create_partial(server.url, b"b")
    final = create_final(server.url, [a, b])
    assert "Upload-Expires" not in head(final).headers  # the final lives as long as its parts
    assert wait_for_status(a, 410) == 410
    assert wait_for_status(final, 410) == 410
    assert not (server.data_dir / path_of(final).rsplit("/", 1)[1]).exists()
    assert head(b).status_code == 200  # a finished part does not expire


def test_creating_a_final_from_an_expired_part_is_410(make_server) -> None:
    server = make_server(expire_after=1, sweep_interval=0.3)
    a = create(server.url, 5, **PARTIAL)
    assert wait_for_status(a, 410) == 410
    assert post_final(server.url, [a]).status_code == 410


# -- CC-10: removing parts -----------------------------------------------------------------


def test_remove_parts_after_concat(make_server) -> None:
    server = make_server(remove_parts_after_concat=True)
    a = create_partial(server.url, b"aa")
    b = create_partial(server.url, b"bb")
    final = create_final(server.url, [a, b, a])
    assert requests.get(final, timeout=10).content == b"aabbaa"
    for part in (a, b):
        assert head(part).status_code == 404
        assert not (server.data_dir / path_of(part).rsplit("/", 1)[1]).exists()


def test_remove_parts_keeps_a_part_another_final_waits_on(make_server) -> None:
    server = make_server(remove_parts_after_concat=True)
    a = create_partial(server.url, b"aa")
    b = create(server.url, 2, **PARTIAL)
    c = create_partial(server.url, b"cc")
    waiting = create_final(server.url, [a, b])
    first = create_final(server.url, [a, c])  # complete at once; `waiting` still needs a
    assert requests.get(first, timeout=10).content == b"aacc"
    assert head(c).status_code == 404
    assert head(a).status_code == 200
    assert patch(b, 0, b"bb").status_code == 204
    assert wait_for_offset(waiting).headers.get("Upload-Offset") == "4"
    assert requests.get(waiting, timeout=10).content == b"aabb"
    assert wait_for_status(a, 404) == 404
    assert head(b).status_code == 404


def test_parts_are_kept_by_default(server) -> None:
    a = create_partial(server.url, b"aa")
    create_final(server.url, [a])
    assert head(a).status_code == 200
    assert requests.get(a, timeout=10).content == b"aa"


def test_final_survives_a_restart_while_waiting(make_server, state_backend: str) -> None:
    """The waits are state, not memory: a restarted server still completes the final upload."""
    server = make_server()
    a = create(server.url, 3, **PARTIAL)
    final = create_final(server.url, [a, a])
    server.restart()
    assert patch(a, 0, b"xyz").status_code == 204
    assert wait_for_offset(final).headers.get("Upload-Offset") == "6"
    assert requests.get(final, timeout=10).content == b"xyzxyz"


@pytest.mark.files_only  # looks for the upload's file in --dir
def test_a_failed_assembly_marks_nothing_complete_and_is_retried(make_server) -> None:
    """Bytes missing from a part's file (a broken disk, say): the final upload is not
    completed with wrong bytes; the sweep retries and completes it once the data is back."""
    server = make_server(sweep_interval=0.3)
    a = create_partial(server.url, b"0123456789")
    b = create_partial(server.url, b"tail")
    part_file = server.data_dir / path_of(a).rsplit("/", 1)[1]
    part_file.write_bytes(b"01234")
    final = create_final(server.url, [a, b])
    time.sleep(1.0)  # a few sweeps
    response = head(final)
    assert response.status_code == 200
    assert "Upload-Offset" not in response.headers
    assert "assembly failed" in server.log()
    part_file.write_bytes(b"0123456789")
    assert wait_for_offset(final).headers.get("Upload-Offset") == "14"
    assert requests.get(final, timeout=10).content == b"0123456789tail"
    assert [p.name for p in server.data_dir.iterdir() if ".concat-" in p.name] == []


def test_deleting_a_waiting_final(server) -> None:
    a = create(server.url, 2, **PARTIAL)
    final = create_final(server.url, [a])
    assert requests.delete(final, headers=TUS, timeout=10).status_code == 204
    assert head(final).status_code == 404
    assert patch(a, 0, b"aa").status_code == 204  # finishing the part later is harmless
    assert head(a).headers["Upload-Offset"] == "2"
    assert head(final).status_code == 404
