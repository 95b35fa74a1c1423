"""post-* events on a Redis stream, read through a consumer group; post-finish exactly once
across 3 instances that share one Redis and one data directory."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Cluster
from tests.e2e.hookutil import metadata, of_type, read_events, wait_until
from tests.support import TUS, TusServer, create, head, patch

STREAM = "tus-events"


def read_group(client: redis.Redis, consumer: str, count: int = 10) -> list[tuple[str, dict[str, str]]]:
    answer = client.xreadgroup("workers", consumer, {STREAM: ">"}, count=count, block=200)
    return [entry for _, entries in answer for entry in entries]


def test_stream_entries_are_consumed_once_through_a_group(make_server, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.xgroup_create(STREAM, "workers", id="$", mkstream=True)
    server = make_server(hooks_redis_stream=STREAM, hooks_redis_url=redis_url)
    urls = [create(server.url, 3, Upload_Metadata=metadata(filename=f"f{i}")) for i in range(4)]
    for url in urls:
        assert patch(url, 0, b"abc").status_code == 204
    assert requests.delete(urls[0], headers=TUS, timeout=10).status_code == 204

    wait_until(lambda: client.xlen(STREAM) >= 9)
    seen: list[tuple[str, dict[str, str]]] = []
    for _ in range(20):  # two workers take turns until the stream is drained
        for consumer in ("worker-a", "worker-b"):
            for entry_id, fields in read_group(client, consumer, count=2):
                seen.append((entry_id, fields))
                client.xack(STREAM, "workers", entry_id)
        if len(seen) >= 9:
            break
    assert len({entry_id for entry_id, _ in seen}) == len(seen) == 9  # 4 created, 4 finished, 1 terminated
    assert read_group(client, "worker-a") == []  # nothing left over, nothing pending
    assert client.xpending(STREAM, "workers")["pending"] == 0
    ids = [url.rsplit("/", 1)[-1] for url in urls]
    finished = [fields for _, fields in seen if fields["type"] == "post-finish"]
    assert sorted(f["upload_id"] for f in finished) == sorted(ids)
    payload = json.loads(finished[0]["payload"])
    assert payload["type"] == "post-finish" and payload["upload"]["offset"] == 3
    assert payload["upload"]["metadata"]["filename"].startswith("f")
    assert [f["upload_id"] for _, f in seen if f["type"] == "post-terminate"] == [ids[0]]
    assert not [f for _, f in seen if f["type"] not in ("post-create", "post-finish", "post-terminate")]
    client.close()


def finished_count(server: TusServer) -> float:
    text = requests.get(server.base + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "tusd_py_uploads_finished":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    return 0.0


def test_post_finish_exactly_once_under_three_instances(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scale-out cluster (tests/cluster.py: Redis, 3 instances, nginx): uploads are created
    through the proxy, and the last bytes of each are sent to all three instances at once."""
    log = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("HOOKS_TEST_LOG", str(log))  # all three instances append to it
    with Cluster(tmp_path / "cluster", instances=3, hooks_module="tests.hooks_recorder", hooks_redis_stream=STREAM, lock_wait=10) as cluster:
        client = redis.Redis.from_url(cluster.redis.url, decode_responses=True)
        uploads = 12
        ids = []
        for _ in range(uploads):
            url = create(cluster.url, 8)
            assert patch(url, 0, b"abcd").status_code == 204
            ids.append(url.rsplit("/", 1)[-1])
        statuses: list[int] = []

        def finish(server: TusServer, upload_id: str, barrier: threading.Barrier) -> None:
            barrier.wait(timeout=10)
            statuses.append(patch(f"{server.url}{upload_id}", 4, b"efgh").status_code)

        for upload_id in ids:
            barrier = threading.Barrier(3)
            threads = [threading.Thread(target=finish, args=(server, upload_id, barrier)) for server in cluster.servers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
        # One PATCH of each race finished the upload; the two others came after the offset
        # had moved (409): never a second finish.
        assert statuses.count(204) == uploads and statuses.count(409) == 2 * uploads, statuses
        for upload_id in ids:
            assert head(cluster.url + upload_id).headers["Upload-Offset"] == "8"

        events = wait_until(lambda: len(of_type(read_events(log), "post-finish")) >= uploads and read_events(log))
        finishes = of_type(events, "post-finish")
        assert sorted(e["upload"]["id"] for e in finishes) == sorted(ids)  # each once, from whichever instance
        assert len(of_type(events, "pre-finish")) == uploads
        entries = wait_until(
            lambda: [f for _, f in client.xrange(STREAM) if f["type"] == "post-finish"] if client.xlen(STREAM) >= 2 * uploads else None
        )
        assert sorted(f["upload_id"] for f in entries) == sorted(ids)
        assert sum(finished_count(server) for server in cluster.servers) == uploads
        client.close()
