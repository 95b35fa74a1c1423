"""/metrics, /healthz, /readyz and the structured request log, on real server processes."""

from __future__ import annotations

import contextlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.hookutil import wait_until
from tests.support import TUS, RedisServer, TusServer, create, patch


def scrape(server: TusServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(server.base + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_as_uploads_run(make_server) -> None:
    server = make_server(hooks_module="tests.hooks_recorder")
    before = scrape(server)
    url = create(server.url, 10)
    assert patch(url, 0, b"hello").status_code == 204
    assert patch(url, 0, b"again").status_code == 409
    assert patch(url, 5, b"world").status_code == 204
    done = create(server.url, 3)
    assert patch(done, 0, b"abc").status_code == 204
    assert requests.delete(done, headers=TUS, timeout=10).status_code == 204
    after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tusd_py_requests_total", method="POST", status="201") == 2
    assert moved("tusd_py_requests_total", method="PATCH", status="204") == 3
    assert moved("tusd_py_requests_total", method="PATCH", status="409") == 1
    assert moved("tusd_py_errors_total", status="409", code="ERR_MISMATCHED_OFFSET") == 1
    assert moved("tusd_py_bytes_received_total") == 13
    assert moved("tusd_py_uploads_created_total") == 2
    assert moved("tusd_py_uploads_finished_total") == 2
    assert moved("tusd_py_uploads_terminated_total") == 1
    assert moved("tusd_py_patch_duration_seconds_count") == 4
    assert moved("tusd_py_lock_wait_seconds_count") >= 5  # every PATCH and the DELETE took the lock
    assert value(after, "tusd_py_active_uploads") == 0
    assert moved("tusd_py_hook_invocations_total", event="pre-create", transport="module") == 2
    assert moved("tusd_py_hook_invocations_total", event="authorize", transport="module") == 7
    assert moved("tusd_py_hook_failures_total", event="pre-create", transport="module") == 0
    # The operational endpoints are not counted as requests.
    assert not [key for key in after if key[0] == "tusd_py_requests_total" and ("method", "GET") in key[1]]


def test_small_uploads_at_concurrency_make_no_collector_passes(make_server) -> None:
    """Requests free what they make by reference counting, and the collector's first threshold is
    above what the requests in flight hold (collector.py): the passes these uploads made cost
    60-120 us of each one's CPU before (docs/performance.md, round 5)."""
    server = make_server()
    before = scrape(server)

    def uploads(_: int) -> None:
        for _ in range(25):
            url = create(server.url, 65536)
            assert patch(url, 0, bytes(65536)).status_code == 204

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(uploads, range(16)))
    after = scrape(server)
    passes = {gen: value(after, "python_gc_collections_total", generation=gen) - value(before, "python_gc_collections_total", generation=gen) for gen in "012"}
    assert value(after, "tusd_py_uploads_finished_total") - value(before, "tusd_py_uploads_finished_total") == 400
    assert passes["0"] <= 1 and passes["2"] == 0, passes  # before: 3 (embedded) and 17 (Redis) first-generation passes


def test_hook_failures_are_counted(make_server) -> None:
    server = make_server(hooks_http="http://127.0.0.1:9/hooks", hooks_http_retries=0, hooks_enabled_events="pre-create")
    assert requests.post(server.url, headers={**TUS, "Upload-Length": "1"}, timeout=10).status_code == 502
    samples = scrape(server)
    assert value(samples, "tusd_py_hook_failures_total", event="pre-create", transport="http") == 1
    assert value(samples, "tusd_py_errors_total", status="502", code="ERR_HOOK_FAILED") == 1


def test_metrics_can_be_turned_off(make_server) -> None:
    server = make_server(expose_metrics=False)
    assert requests.get(server.base + "/metrics", timeout=10).status_code == 404


def test_health_and_readiness(make_server) -> None:
    server = make_server()
    assert requests.get(server.base + "/healthz", timeout=10).text == "ok\n"
    ready = requests.get(server.base + "/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"state": "ok", "data": "ok", "server": "ok"}}
    shutil.rmtree(server.data_dir)  # the data directory is gone: no upload could be stored
    not_ready = requests.get(server.base + "/readyz", timeout=10)
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["data"] == "not writable"
    assert requests.get(server.base + "/healthz", timeout=10).status_code == 200  # alive all the same


@contextlib.contextmanager
def ready_then_redis_stopped(tmp_path: Path) -> Iterator[tuple[TusServer, RedisServer]]:
    """A server on its own redis-server, ready; then that Redis is stopped. Both are stopped after."""
    redis_server = RedisServer(tmp_path / "redis").start()
    server = TusServer(tmp_path / "data", redis_url=redis_server.url)
    try:
        server.start()
        assert requests.get(server.base + "/readyz", timeout=10).status_code == 200
        redis_server.stop()
        yield server, redis_server
    finally:
        server.stop()
        redis_server.stop()


def test_readiness_follows_redis(tmp_path: Path) -> None:
    with ready_then_redis_stopped(tmp_path) as (server, _):
        response = requests.get(server.base + "/readyz", timeout=15)
        assert response.status_code == 503
        assert response.json()["checks"]["state"].startswith("unreachable")
        assert requests.get(server.base + "/healthz", timeout=10).status_code == 200


def test_json_log_has_one_line_per_request(make_server) -> None:
    server = make_server(log_format="json")
    url = create(server.url, 5)
    upload_id = url.rsplit("/", 1)[-1]
    assert patch(url, 0, b"abcde").status_code == 204
    assert patch(url, 0, b"abcde").status_code == 409
    assert requests.get(url, timeout=10).content == b"abcde"
    server.stop()  # flushes the log
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "tusd_py.access"]
    assert [(a["method"], a["status"]) for a in access] == [("POST", 201), ("PATCH", 204), ("PATCH", 409), ("GET", 200)]
    assert all(a["upload_id"] == upload_id for a in access)
    post, first, second, get = access
    assert first["bytes_in"] == 5 and get["bytes_out"] == 5
    assert second["error"] == "ERR_MISMATCHED_OFFSET"
    assert all(a["duration_ms"] >= 0 and a["remote_addr"].startswith("127.0.0.1:") and a["level"] == "info" for a in access)
    assert all("time" in line and "message" in line for line in lines)  # every line is JSON, uvicorn's too


def test_text_log_has_one_line_per_request(make_server) -> None:
    server = make_server()
    url = create(server.url, 1)
    server.stop()
    line = next(line for line in server.log().splitlines() if "tusd_py.access" in line)
    assert "POST /files/ 201" in line and f"upload_id={url.rsplit('/', 1)[-1]}" in line and "duration_ms=" in line


def test_expired_uploads_are_counted(make_server) -> None:
    server = make_server(expire_after=0.5, sweep_interval=0.2)
    create(server.url, 10)
    counted = wait_until(lambda: value(scrape(server), "tusd_py_uploads_expired_total") == 1, timeout=15)
    assert counted
