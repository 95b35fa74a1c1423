"""Hooks through a Python module (`--hooks-module`), against real server processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from tusclient import client
from tusclient.exceptions import TusCommunicationError

from tests.e2e.hookutil import metadata, of_type, read_events, wait_until
from tests.support import TUS, create, head, patch

MODULE = "tests.hooks_recorder"


@pytest.fixture
def hooked(make_server, hook_log):
    return make_server(hooks_module=MODULE, progress_interval=0.2)


def test_each_event_fires_once_with_the_payload(hooked, hook_log: Path) -> None:
    auth = {"Authorization": "Bearer alice"}
    url = create(hooked.url, 10, Upload_Metadata=metadata(filename="report.pdf", owner="alice"), **auth)
    upload_id = url.rsplit("/", 1)[-1]
    assert patch(url, 0, b"hello", **auth).status_code == 204
    assert patch(url, 5, b"world", **auth).status_code == 204
    assert requests.delete(url, headers={**TUS, **auth}, timeout=10).status_code == 204

    events = wait_until(lambda: of_type(read_events(hook_log), "post-terminate") and read_events(hook_log))
    for event_type in ("pre-create", "post-create", "pre-finish", "post-finish", "pre-terminate", "post-terminate"):
        assert len(of_type(events, event_type)) == 1, (event_type, [e["type"] for e in events])
    # Progress: one per PATCH here (each is shorter than the interval), the last at the full offset.
    progress = of_type(events, "post-receive", upload_id)
    assert [e["upload"]["offset"] for e in progress] == [5, 10]
    # authorize: once per request but OPTIONS (POST, PATCH, PATCH, DELETE).
    assert [e["request"]["method"] for e in of_type(events, "authorize")] == ["POST", "PATCH", "PATCH", "DELETE"]
    assert of_type(events, "authorize")[0]["upload"] is None  # nothing exists yet at creation

    created = of_type(events, "post-create")[0]
    upload = created["upload"]
    assert upload["id"] == upload_id
    assert upload["size"] == 10 and upload["offset"] == 0 and upload["size_is_deferred"] is False
    assert upload["metadata"] == {"filename": "report.pdf", "owner": "alice"}
    assert upload["is_partial"] is False and upload["is_final"] is False and upload["partial_uploads"] == []
    assert upload["state"] == "created"
    assert upload["storage"]["type"] == "files"
    assert Path(upload["storage"]["path"]).name == upload_id
    request = created["request"]
    assert request["method"] == "POST" and request["uri"] == "/files/"
    assert request["headers"]["authorization"] == "Bearer alice"
    assert request["remote_addr"].startswith("127.0.0.1:")

    pre_finish = of_type(events, "pre-finish")[0]
    assert pre_finish["upload"]["offset"] == 10 and pre_finish["request"]["method"] == "PATCH"
    finished = of_type(events, "post-finish")[0]
    assert finished["upload"]["offset"] == 10 and finished["upload"]["state"] == "finished"
    assert finished["request"]["uri"] == f"/files/{upload_id}"
    assert of_type(events, "post-terminate")[0]["upload"]["state"] == "terminated"
    # Order: a post-* event never comes before the pre-* one of the same step.
    types = [e["type"] for e in events if e["type"] != "authorize"]
    assert types.index("pre-create") < types.index("post-create") < types.index("pre-finish") < types.index("post-finish")


def test_zero_length_and_creation_with_upload_finish_once(hooked, hook_log: Path) -> None:
    empty = create(hooked.url, 0).rsplit("/", 1)[-1]
    response = requests.post(
        hooked.url,
        headers={**TUS, "Upload-Length": "3", "Content-Type": "application/offset+octet-stream"},
        data=b"abc",
        timeout=10,
    )
    assert response.status_code == 201 and response.headers["Upload-Offset"] == "3"
    with_body = response.headers["Location"].rsplit("/", 1)[-1]
    events = wait_until(lambda: len(of_type(read_events(hook_log), "post-finish")) >= 2 and read_events(hook_log))
    assert sorted(e["upload"]["id"] for e in of_type(events, "post-finish")) == sorted([empty, with_body])
    assert len(of_type(events, "pre-finish")) == 2


def test_pre_create_rejection_reaches_tuspy_as_a_clean_error(hooked, tmp_path: Path, hook_log: Path) -> None:
    source = tmp_path / "file.bin"
    source.write_bytes(b"x" * 1000)
    uploader = client.TusClient(hooked.url).uploader(str(source), metadata={"reject": "files like this are not welcome"})
    with pytest.raises(TusCommunicationError) as caught:
        uploader.upload()
    assert caught.value.status_code == 422
    assert b"ERR_UPLOAD_REJECTED: files like this are not welcome" in caught.value.response_content
    assert not of_type(read_events(hook_log), "post-create")  # nothing was created


def test_pre_create_changes_id_and_metadata(hooked) -> None:
    url = create(hooked.url, 4, Upload_Metadata=metadata(id="my-chosen-id", tag="blue"))
    assert url.endswith("/files/my-chosen-id")
    response = head(url)
    assert response.status_code == 200
    assert "tagged Ymx1ZQ==" in response.headers["Upload-Metadata"]  # base64("blue")
    # The id is taken now: a second creation asking for it is refused, and the first upload is intact.
    assert patch(url, 0, b"abcd").status_code == 204
    again = requests.post(hooked.url, headers={**TUS, "Upload-Length": "4", "Upload-Metadata": metadata(id="my-chosen-id")}, timeout=10)
    assert again.status_code == 409 and again.text.startswith("ERR_UPLOAD_ID_TAKEN")
    assert requests.get(url, timeout=10).content == b"abcd"
    # An id outside protocol.ID_PATTERN is the hook's fault: 502, and nothing is created.
    bad = requests.post(hooked.url, headers={**TUS, "Upload-Length": "4", "Upload-Metadata": metadata(id="../escape")}, timeout=10)
    assert bad.status_code == 502 and bad.text.startswith("ERR_HOOK_FAILED")


def test_authorize_denies_a_foreign_upload_for_every_method(hooked) -> None:
    alice = {"Authorization": "Bearer alice"}
    mallory = {"Authorization": "Bearer mallory"}
    url = create(hooked.url, 10, Upload_Metadata=metadata(owner="alice"), **alice)
    assert patch(url, 0, b"hello", **alice).status_code == 204

    denied = patch(url, 5, b"EVIL!", **mallory)
    assert denied.status_code == 403 and denied.text.startswith("ERR_FORBIDDEN: upload belongs to alice")
    for method in ("HEAD", "GET", "DELETE"):
        assert requests.request(method, url, headers={**TUS, **mallory}, timeout=10).status_code == 403, method
    assert head(url).status_code == 403  # no credentials at all

    assert requests.head(url, headers={**TUS, **alice}, timeout=10).headers["Upload-Offset"] == "5"
    assert patch(url, 5, b"world", **alice).status_code == 204
    assert requests.get(url, headers=alice, timeout=10).content == b"helloworld"
    # Creation can be refused too, with the hook's 401 and its WWW-Authenticate header.
    refused = requests.post(hooked.url, headers={**TUS, "Upload-Length": "1", "Authorization": "Bearer nobody"}, timeout=10)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.text.startswith("ERR_UNAUTHORIZED")


def test_pre_finish_rejection_leaves_the_upload_unfinished(hooked, hook_log: Path) -> None:
    url = create(hooked.url, 6, Upload_Metadata=metadata(**{"refuse_finish": "1"}))
    assert patch(url, 0, b"abc").status_code == 204
    refused = patch(url, 3, b"def")
    assert refused.status_code == 400 and refused.text.startswith("ERR_FINISH_REJECTED: no finishing today")
    assert head(url).headers["Upload-Offset"] == "3"  # the last bytes were not committed
    assert patch(url, 3, b"def").status_code == 400  # and it is not locked: the next try is answered
    assert not of_type(read_events(hook_log), "post-finish")


def test_pre_terminate_refusal_keeps_the_upload(hooked, hook_log: Path) -> None:
    url = create(hooked.url, 6, Upload_Metadata=metadata(keep="1"))
    refused = requests.delete(url, headers=TUS, timeout=10)
    assert refused.status_code == 400 and refused.text.startswith("ERR_UPLOAD_TERMINATION_REJECTED")
    assert head(url).status_code == 200
    assert patch(url, 0, b"abcdef").status_code == 204  # not left locked
    assert not of_type(read_events(hook_log), "post-terminate")


def test_slow_pre_create_times_out_with_504_and_other_requests_go_on(make_server, hook_log: Path) -> None:
    server = make_server(hooks_module=MODULE, hooks_timeout=1.0)
    import threading

    result: dict[str, requests.Response] = {}

    def slow() -> None:
        result["slow"] = requests.post(server.url, headers={**TUS, "Upload-Length": "1", "Upload-Metadata": metadata(slow="5")}, timeout=20)

    thread = threading.Thread(target=slow)
    thread.start()
    url = create(server.url, 3)  # the event loop is not blocked by the waiting hook
    assert patch(url, 0, b"abc").status_code == 204
    thread.join(timeout=20)
    assert result["slow"].status_code == 504 and result["slow"].text.startswith("ERR_HOOK_TIMEOUT")


def test_partial_uploads_are_not_finished_files_but_the_final_one_is(hooked, hook_log: Path) -> None:
    """CC-07: post-finish fires for the final upload, once, and never for its parts."""
    parts = []
    for body in (b"abc", b"def"):
        url = create(hooked.url, 3, Upload_Concat="partial")
        assert patch(url, 0, body).status_code == 204
        parts.append(url)
    paths = " ".join("/files/" + url.rsplit("/", 1)[-1] for url in parts)
    response = requests.post(hooked.url, headers={**TUS, "Upload-Concat": f"final;{paths}"}, timeout=10)
    assert response.status_code == 201
    final = response.headers["Location"]
    assert requests.get(final, timeout=10).content == b"abcdef"
    final_id = final.rsplit("/", 1)[-1]
    events = wait_until(lambda: of_type(read_events(hook_log), "post-finish") and read_events(hook_log))
    finishes = of_type(events, "post-finish")
    assert [e["upload"]["id"] for e in finishes] == [final_id]
    assert finishes[0]["upload"]["is_final"] is True and finishes[0]["upload"]["size"] == 6
    assert len(finishes[0]["upload"]["partial_uploads"]) == 2
    created = of_type(events, "post-create")
    assert [e["upload"]["is_partial"] for e in created] == [True, True, False]
    assert created[2]["upload"]["id"] == final_id
