"""Several tusd-py instances on one Redis and one bucket, nothing else shared (issue 15, items 2 and 10).

Small PATCHes (1 MiB, under the 5 MiB part minimum) alternating across two
instances; kill -9 of an instance in the middle of a part; and three instances,
each with a --dir of its own, behind nginx with compose.yaml's proxy settings
(`tests/cluster.py`): docs/scale-out.md's guarantees (any request on any instance,
lock exchange, kill -9, Redis restarts) with the bytes in S3. Every upload is
checked in the bucket byte for byte (`tests/s3bucket.py`).
"""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.cluster import Cluster
from tests.e2e.test_scale_out import RawPatch, path_of, restart_redis_under_a_patch, resume, sigterm_under_a_patch
from tests.e2e.test_tus_js_parallel import tus_js_upload
from tests.s3bucket import PART, BucketView, assert_stored, bucket, data_backend, s3_flags, s3_make_server, upload_id  # noqa: F401
from tests.support import TUS, S3Server, TusServer, create, head, patch

MiB = 1024 * 1024

pytestmark = [pytest.mark.usefixtures("s3_credentials"), pytest.mark.timeout(180)]


# -- two instances on one Redis ------------------------------------------------------


@pytest.mark.parametrize("state_backend", ["redis"])  # instances share their state only through Redis
def test_small_patches_alternate_across_two_instances(s3_make_server, bucket: BucketView) -> None:
    a, b = s3_make_server(), s3_make_server()
    data = os.urandom(2 * PART + MiB // 2 + 3)
    url = create(a.url, len(data))
    key = upload_id(url)
    for turn, start in enumerate(range(0, len(data), MiB)):
        here, there = (a, b) if turn % 2 == 0 else (b, a)
        piece = data[start:start + MiB]
        answer = patch(here.url + key, start, piece)
        assert answer.status_code == 204, answer.text
        assert answer.headers["Upload-Offset"] == str(start + len(piece))
        assert head(there.url + key).headers["Upload-Offset"] == str(start + len(piece))  # the other sees it at once
        if start + len(piece) == 6 * MiB:  # one full part in S3, the sixth MiB in the incomplete part
            assert bucket.parts(key) == [(1, PART)]
            assert f".tusd/{key}.part" in bucket.keys()
    assert_stored(bucket, url, data)
    for server in (a, b):
        assert requests.get(server.url + key, timeout=30).content == data
    assert not [path for server in (a, b) for path in server.data_dir.rglob("*") if key in path.name]  # no bytes on disk


def trickle_until_part_one_is_committed(victim: TusServer, url: str, bucket: BucketView, data: bytes) -> RawPatch:
    """A PATCH to `victim` that sends part 1 and 1 MiB at once, then dribbles; returns once
    part 1 is in S3 and a commit interval (1 s) has passed, with the body in the middle of part 2."""
    body = RawPatch(victim.port, path_of(url), 0, len(data))
    body.send(data[:PART + MiB])
    body.trickle(data[PART + MiB:], 8 * 1024, 0.05)  # 160 KiB/s: part 2 fills only after 25 s
    deadline = time.monotonic() + 30
    while bucket.parts(upload_id(url)) != [(1, PART)]:
        assert time.monotonic() < deadline, "part 1 never reached S3"
        time.sleep(0.1)
    time.sleep(2.0)  # a chunk arrives after the commit interval: the offset moves to the durable PART
    assert PART + MiB <= body.sent < 2 * PART
    return body


def test_kill_9_mid_part_restarted_on_its_directory_resumes_from_s3(s3_make_server, bucket: BucketView, state_backend: str) -> None:
    """The instance dies with part 2 half received: only those bytes (never in S3) are lost.
    (The embedded state lives in the instance's --dir: the same instance comes back on it.
    With Redis, `test_kill_9_mid_part_resumes_on_another_instance` below.)"""
    victim = s3_make_server()
    data = os.urandom(2 * PART + MiB)
    url = create(victim.url, len(data))
    body = trickle_until_part_one_is_committed(victim, url, bucket, data)
    victim.stop(signal.SIGKILL)
    body.close()
    victim.start()
    statuses, offsets = resume(url, data)
    assert offsets[0] == PART, (statuses, offsets)  # exactly what was durable in S3
    assert_stored(bucket, url, data)


# -- three instances, each with its own --dir, behind nginx ----------------------------


@pytest.fixture
def cluster(tmp_path: Path, s3_server: S3Server, bucket: BucketView) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "cluster", separate_dirs=True, **s3_flags(s3_server, bucket))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def no_upload_bytes_on_disk(cluster: Cluster) -> None:
    """Each instance's --dir holds nothing of any upload (the state is in Redis, the bytes in S3)."""
    files = [path for server in cluster.servers for path in server.data_dir.rglob("*") if path.is_file()]
    assert files == [], files


def test_tuspy_small_chunks_spread_over_three_instances(cluster: Cluster, bucket: BucketView) -> None:
    from tusclient import client as tus_client

    data = os.urandom(PART + 3 * MiB + 11)
    uploader = tus_client.TusClient(cluster.url).uploader(file_stream=io.BytesIO(data), chunk_size=MiB)
    uploader.upload()
    assert uploader.url.startswith(cluster.url)
    served = {address for _, path, _, address in cluster.proxy.upstream_log() if path == path_of(uploader.url)}
    assert len(served) == 3, served  # nine PATCHes, round-robin: every instance wrote some of it
    assert_stored(bucket, uploader.url, data)
    no_upload_bytes_on_disk(cluster)


def test_tus_js_client_parallel_uploads_through_three_instances(cluster: Cluster, bucket: BucketView, tmp_path: Path) -> None:
    data = os.urandom(4 * (PART + MiB))
    (tmp_path / "parallel.bin").write_bytes(data)
    url = tus_js_upload(cluster.url, tmp_path / "parallel.bin", parallel=4)
    patches = {address for method, _, _, address in cluster.proxy.upstream_log() if method == "PATCH"}
    assert len(patches) >= 2, patches  # the partial uploads went through several instances
    assert_stored(bucket, url, data)
    assert requests.get(url, timeout=60).content == data  # GET through any instance
    no_upload_bytes_on_disk(cluster)


def test_lock_exchange_commits_the_stalled_body_to_s3(cluster: Cluster, bucket: BucketView) -> None:
    """A silent body on one instance; HEAD on another gets in within 2 s and sees every byte
    that arrived: the interrupted PATCH put them into the incomplete part before letting go."""
    data = os.urandom(PART + MiB)
    url = create(cluster.url, len(data))
    first, second = cluster.servers[0], cluster.servers[1]
    old = RawPatch(first.port, path_of(url), 0, len(data))
    try:
        old.send(data[:300_000])
        time.sleep(1.0)  # open but silent, as after a network break
        started = time.monotonic()
        response = requests.head(second.url + upload_id(url), headers=TUS, timeout=10)
        assert time.monotonic() - started < 2.0
        assert response.status_code == 200 and response.headers["Upload-Offset"] == "300000"
        status, text = old.response()
        assert status == 400 and "ERR_UPLOAD_INTERRUPTED" in text, (status, text)
    finally:
        old.close()
    assert f".tusd/{upload_id(url)}.part" in bucket.keys()
    answer = patch(cluster.servers[2].url + upload_id(url), 300_000, data[300_000:])
    assert answer.status_code == 204, answer.text
    assert_stored(bucket, url, data)


def test_kill_9_mid_part_resumes_on_another_instance(cluster: Cluster, bucket: BucketView) -> None:
    data = os.urandom(2 * PART + MiB)
    url = create(cluster.url, len(data))
    victim = cluster.servers[0]
    body = trickle_until_part_one_is_committed(victim, url, bucket, data)
    victim.stop(signal.SIGKILL)
    body.close()
    statuses, offsets = resume(url, data)  # through nginx: the other two instances
    assert 423 in statuses  # the dead instance's lease held the upload until it ran out
    assert offsets[0] == PART, (statuses, offsets)  # only the bytes that never reached S3 were lost
    assert_stored(bucket, url, data)


def test_graceful_sigterm_mid_part_keeps_every_byte_that_arrived(cluster: Cluster, bucket: BucketView) -> None:
    """SIGTERM: the running PATCH stops, puts what it received past part 1 into the incomplete
    part, commits it, answers 503; the client resumes on another instance from there."""
    data = os.urandom(2 * PART + MiB)
    url = create(cluster.url, len(data))
    sent = sigterm_under_a_patch(cluster, url, data, at_once=PART + MiB, after=1.0)
    offset = int(head(url).headers["Upload-Offset"])
    assert PART + MiB < offset <= sent  # not only the full part: every byte that arrived
    statuses, offsets = resume(url, data)
    assert offsets[0] == offset, (statuses, offsets)
    assert_stored(bucket, url, data)


def test_redis_restart_mid_upload_loses_nothing(cluster: Cluster, bucket: BucketView) -> None:
    data = os.urandom(PART + 2 * MiB)
    url = create(cluster.url, len(data))
    restart_redis_under_a_patch(cluster, url, data)  # the PATCH's tail went to the incomplete part, its commit failed
    assert_stored(bucket, url, data)


@pytest.mark.parametrize("state_backend", ["redis"])
def test_a_writer_whose_lease_was_taken_leaves_the_incomplete_part_alone(s3_make_server, bucket: BucketView, redis_url: str) -> None:
    """Fencing on S3: the old holder can commit nothing, and must not replace the incomplete
    part its successor committed with its own shorter one either (the upload would be stuck:
    every later PATCH would find the bytes below the committed offset missing)."""
    import redis

    a, b = s3_make_server(), s3_make_server()
    data = os.urandom(PART + 2 * MiB)
    url = create(a.url, len(data))
    key = upload_id(url)
    assert patch(a.url + key, 0, data[:3 * MiB]).status_code == 204  # the incomplete part holds [0, 3 MiB)
    old = RawPatch(a.port, path_of(url), 3 * MiB, len(data) - 3 * MiB)
    client = redis.Redis.from_url(redis_url)
    try:
        old.send(data[3 * MiB:3 * MiB + MiB // 2])  # A holds [0, 3.5 MiB) in memory
        time.sleep(0.3)
        client.delete(f"tusd-py:lock:{key}")  # A's lease lapsed (a long pause), unknown to A
        answer = patch(b.url + key, 3 * MiB, data[3 * MiB:4 * MiB])  # B takes over: the incomplete part is [0, 4 MiB)
        assert answer.status_code == 204 and answer.headers["Upload-Offset"] == str(4 * MiB)
        time.sleep(1.0)  # past A's commit interval
        old.send(data[3 * MiB + MiB // 2:3 * MiB + MiB // 2 + 64 * 1024])  # A goes on: its commit is refused
        status, text = old.response()
        assert status == 423 and "ERR_LOCK_LOST" in text, (status, text)
    finally:
        old.close()
        client.close()
    answer = patch(b.url + key, 4 * MiB, data[4 * MiB:])
    assert answer.status_code == 204, answer.text
    assert_stored(bucket, url, data)
