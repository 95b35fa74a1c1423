"""Real clients of the IETF draft: tus-js-client's `protocol: 'ietf-draft-05'` under node,
and a draft client next to tus 1.0.0 clients on the same instances and the same uploads."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from tests import draft_client as d
from tests.cluster import Cluster
from tests.draft_client import INTEROP, PARTIAL
from tests.support import ROOT, TUS, TusServer

JS_DIR = ROOT / "tests" / "js"


def run_upload_js(endpoint: str, file: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "tus-js-client").is_dir():
        pytest.fail("node or tus-js-client is missing: run the README's test command (scripts/test.sh)")
    return subprocess.run([node, "upload.js", endpoint, str(file), *args], cwd=JS_DIR, capture_output=True, text=True, timeout=timeout)


def traced(result: subprocess.CompletedProcess[str]) -> list[dict[str, str | None]]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def draft_state(url: str) -> dict[str, str]:
    response = requests.head(url, headers=INTEROP, timeout=10)
    assert response.status_code == 204
    return {name.lower(): value for name, value in response.headers.items()}


def assert_stored(url: str, data: bytes) -> None:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200 and hashlib.sha256(response.content).digest() == hashlib.sha256(data).digest()


def test_tus_js_client_ietf_draft_05_speaks_interop_6_and_completes(server: TusServer, tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 7)
    file = tmp_path / "draft.bin"
    file.write_bytes(data)
    result = run_upload_js(server.url, file, "1", str(1024 * 1024), "--protocol=ietf-draft-05", "--trace")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip().splitlines()[-1]
    requests_sent = traced(result)
    assert {r.get("Upload-Draft-Interop-Version") for r in requests_sent} == {"6"}
    assert all(r.get("Tus-Resumable") is None for r in requests_sent)  # no tus on the wire
    patches = [r for r in requests_sent if r["method"] == "PATCH"]
    assert len(patches) == 6 and all(r.get("Content-Type") == PARTIAL for r in patches)
    # tus-js-client 4.3 marks only a chunk covering the whole file as the last: no ?1 here,
    # and draft -05 uploads complete when the offset reaches Upload-Length, as tusd does.
    assert [r.get("Upload-Complete") for r in patches] == ["?0"] * 6
    state = draft_state(url)
    assert state["upload-complete"] == "?1" and state["upload-offset"] == state["upload-length"] == str(len(data))
    assert_stored(url, data)


def test_tus_js_client_ietf_draft_05_with_data_during_creation(server: TusServer, tmp_path: Path) -> None:
    data = os.urandom(300 * 1024)
    file = tmp_path / "draft.bin"
    file.write_bytes(data)
    result = run_upload_js(server.url, file, "1", str(128 * 1024), "--protocol=ietf-draft-05", "--data-during-creation", "--trace")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip().splitlines()[-1]
    post = traced(result)[0]
    assert post["method"] == "POST" and post.get("Upload-Complete") == "?0" and post.get("Content-Type") == PARTIAL
    assert draft_state(url)["upload-complete"] == "?1"
    assert_stored(url, data)


def test_tus_js_client_ietf_draft_05_needs_the_draft_switched_on(tmp_path: Path) -> None:
    server = TusServer(tmp_path / "data", ietf_draft=False).start()
    try:
        file = tmp_path / "f.bin"
        file.write_bytes(b"x" * 100)
        result = run_upload_js(server.url, file, "--protocol=ietf-draft-05")
        assert result.returncode != 0 and "412" in result.stderr  # the control: this test can fail
    finally:
        server.stop()


# -- tus 1.0.0 and draft clients on the same three instances ------------------------------


@pytest.fixture
def cluster(tmp_path: Path):
    with Cluster(tmp_path / "cluster") as running:
        yield running


def test_tus_and_draft_clients_upload_at_the_same_time_through_three_instances(cluster: Cluster, tmp_path: Path) -> None:
    from tusclient import client as tus_client

    tus_data = os.urandom(3 * 1024 * 1024)
    draft_data = os.urandom(3 * 1024 * 1024 + 11)
    v8_data = os.urandom(1024 * 1024)
    file = tmp_path / "draft.bin"
    file.write_bytes(draft_data)
    node = subprocess.Popen(
        [shutil.which("node") or "node", "upload.js", cluster.url, str(file), "1", str(256 * 1024), "--protocol=ietf-draft-05"],
        cwd=JS_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    results: dict[str, object] = {}

    def tuspy() -> None:
        uploader = tus_client.TusClient(cluster.url).uploader(file_stream=io.BytesIO(tus_data), chunk_size=256 * 1024)
        uploader.upload()
        results["tus"] = uploader.url

    def draft_v8() -> None:  # a raw interop-8 client appending in 128 KiB steps
        created = d.request(cluster.proxy.port, "POST", "/files/", {**INTEROP, "Upload-Complete": "?0", "Upload-Length": str(len(v8_data))})
        location = created.headers["location"]
        path = "/files/" + location.rsplit("/", 1)[1]
        step = 128 * 1024
        for offset in range(0, len(v8_data), step):
            last = offset + step >= len(v8_data)
            headers = {**INTEROP, "Upload-Offset": str(offset), "Upload-Complete": "?1" if last else "?0", "Content-Type": PARTIAL}
            answer = d.request(cluster.proxy.port, "PATCH", path, headers, v8_data[offset:offset + step])
            assert answer.status == (200 if last else 204), (answer.status, answer.body)
        results["v8"] = location

    threads = [threading.Thread(target=tuspy), threading.Thread(target=draft_v8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stdout, stderr = node.communicate(timeout=120)
    assert node.returncode == 0, stderr
    assert set(results) == {"tus", "v8"}, results
    draft_url = stdout.strip().splitlines()[-1]
    for url, data in ((results["tus"], tus_data), (draft_url, draft_data), (results["v8"], v8_data)):
        assert isinstance(url, str) and url.startswith(cluster.url)
        assert_stored(url, data)
        tus_view = requests.head(url, headers=TUS, timeout=10)
        assert tus_view.headers["Upload-Offset"] == tus_view.headers["Upload-Length"] == str(len(data))
        assert draft_state(url)["upload-complete"] == "?1"
    served = {address for method, path, status, address in cluster.proxy.upstream_log() if method == "PATCH"}
    assert len(served) == 3, served  # the appends of all three clients spread over the instances


def test_one_upload_started_by_a_draft_client_and_finished_by_a_tus_client(cluster: Cluster) -> None:
    created = d.request(cluster.proxy.port, "POST", "/files/", {**INTEROP, "Upload-Complete": "?0", "Upload-Length": "10"}, b"01234")
    url = created.headers["location"]
    assert url.startswith(cluster.url)
    tus_view = requests.head(url, headers=TUS, timeout=10)
    assert tus_view.headers["Upload-Offset"] == "5" and tus_view.headers["Upload-Defer-Length"] == "1"
    wrong = requests.patch(url, data=b"56789", headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "5", "Upload-Length": "11"}, timeout=10)
    assert wrong.status_code == 400  # the tus client must declare the length the draft client announced
    done = requests.patch(url, data=b"56789", headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "5", "Upload-Length": "10"}, timeout=10)
    assert done.status_code == 204 and done.headers["Upload-Offset"] == "10"
    assert draft_state(url)["upload-complete"] == "?1"
    assert requests.get(url, timeout=10).content == b"0123456789"


def test_nginx_turns_an_upstream_104_into_its_final_response(tmp_path: Path) -> None:
    """Why the deployment (compose.yaml, tests/cluster.py) runs with --no-ietf-interim."""
    with Cluster(tmp_path / "interim", instances=1, ietf_interim=True) as interim:
        with d.Connection(interim.proxy.port) as connection:
            connection.send_head("POST", "/files/", {**INTEROP, "Upload-Complete": "?1", "Content-Length": "3"})
            connection.send(b"abc")
            first = connection.read_message()
        assert first.status == 104 and first.headers.get("server", "").startswith("nginx")  # made final by nginx
    with Cluster(tmp_path / "plain", instances=1) as plain:
        exchange = d.request(plain.proxy.port, "POST", "/files/", {**INTEROP, "Upload-Complete": "?1"}, b"abc")
        assert exchange.interim == [] and exchange.status == 201 and exchange.headers["upload-complete"] == "?1"


# -- hooks see draft requests as they see tus requests -----------------------------------


def test_hooks_fire_for_draft_uploads_and_finish_only_at_explicit_completion(make_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.e2e.hookutil import of_type, read_events, wait_until

    log = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("HOOKS_TEST_LOG", str(log))
    server = make_server(hooks_module="tests.hooks_recorder")
    created = d.request(server.port, "POST", "/files/", {**INTEROP, "Upload-Complete": "?0", "Upload-Length": "10", "Content-Type": "text/plain"}, b"01234")
    path = "/files/" + created.headers["location"].rsplit("/", 1)[1]
    upload_id = path.rsplit("/", 1)[1]
    patch = {**INTEROP, "Content-Type": PARTIAL}
    assert d.request(server.port, "PATCH", path, {**patch, "Upload-Offset": "5", "Upload-Complete": "?0"}, b"56789").status == 204
    assert of_type(read_events(log), "pre-finish") == []  # offset == length completes nothing (I-03)
    assert d.request(server.port, "PATCH", path, {**patch, "Upload-Offset": "10", "Upload-Complete": "?1"}).status == 200
    refused = d.request(server.port, "POST", "/files/", {**INTEROP, "Upload-Complete": "?1", "Upload-Metadata": "refuse-finish"}, b"x")
    assert refused.status == 400 and b"ERR_FINISH_REJECTED" in refused.body  # pre-finish may refuse a completion
    events = wait_until(lambda: of_type(read_events(log), "post-finish") and read_events(log))
    assert len(of_type(events, "pre-finish", upload_id)) == 1 and len(of_type(events, "post-finish", upload_id)) == 1
    assert of_type(events, "post-create", upload_id)[0]["upload"]["metadata"] == {"filetype": "text/plain"}
    assert [e["request"]["method"] for e in of_type(events, "authorize", upload_id)] == ["PATCH", "PATCH"]
