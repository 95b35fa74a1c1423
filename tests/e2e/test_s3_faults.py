"""The server on an S3 that fails (issue 15, item 9): stopped and restarted mid-upload,
part uploads answered with errors, answers slower than the server's S3 timeout.

What must hold each time: requests answer 503 with Retry-After within a bounded time
(never a 500, never a hang), the committed offset never counts a byte that is not
durable in S3, and once S3 is back the upload resumes and verifies in the bucket.
The restart test runs a SeaweedFS of its own (it is stopped); the others put
`tests/s3faults.py` between the server and the session's SeaweedFS.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.e2e.test_scale_out import RawPatch, path_of, resume
from tests.s3bucket import PART, BucketView, assert_stored, bucket, data_backend, s3_flags  # noqa: F401
from tests.s3faults import FaultProxy
from tests.support import TUS, S3Server, create, head, patch

MiB = 1024 * 1024
BOUND = 15.0  # seconds: 2 attempts of a 1 s read timeout, botocore's backoff, a busy machine

pytestmark = pytest.mark.timeout(180)


def timed(call) -> tuple[requests.Response, float]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_unavailable(response: requests.Response, waited: float) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers.get("Retry-After"), response.headers
    assert waited < BOUND, waited


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "seaweedfs").start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)  # after a kill -9, a graceful stop now and then waits for seconds


def test_s3_stopped_and_restarted_mid_upload(make_server, own_s3: S3Server) -> None:
    view = BucketView(own_s3.endpoint, own_s3.bucket, "restart/")
    server = make_server(**s3_flags(own_s3, view, s3_timeout=1, s3_attempts=2))
    done = os.urandom(100_000)
    finished = create(server.url, len(done))
    assert patch(finished, 0, done).status_code == 204
    data = os.urandom(3 * PART)
    url = create(server.url, len(data))
    durable = PART + MiB  # part 1 and a 1 MiB incomplete part
    assert patch(url, 0, data[:durable]).status_code == 204

    body = RawPatch(server.port, path_of(url), durable, len(data) - durable)
    try:
        body.send(data[durable:durable + MiB])
        time.sleep(0.5)  # the writer has read the incomplete part back
        own_s3.stop(signal.SIGKILL)  # S3 dies with part 2 half received
        started = time.monotonic()
        body.send(data[durable + MiB:2 * PART + MiB])  # part 2 fills: its upload fails
        status, text = body.response()
        assert status == 503 and "ERR_STORAGE_UNAVAILABLE" in text, (status, text)
        assert time.monotonic() - started < BOUND
    finally:
        body.close()

    # S3 is down: every request that needs it answers 503 at once; HEAD reads only the state.
    assert head(url).headers["Upload-Offset"] == str(durable)  # nothing that is not durable was committed
    assert_unavailable(*timed(lambda: requests.post(server.url, headers={**TUS, "Upload-Length": "5"}, timeout=30)))
    assert_unavailable(*timed(lambda: patch(url, durable, data[durable:durable + MiB])))
    assert_unavailable(*timed(lambda: requests.get(finished, timeout=30)))
    assert head(url).headers["Upload-Offset"] == str(durable)

    own_s3.start()  # the same port and data: the bucket's objects are back
    statuses, offsets = resume(url, data)
    assert offsets[0] == durable and 500 not in statuses, (statuses, offsets)
    assert_stored(view, url, data)
    assert requests.get(finished, timeout=30).content == done
    view.close()


@pytest.fixture
def faults(s3_server: S3Server) -> Iterator[FaultProxy]:
    proxy = FaultProxy(s3_server.port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_a_failed_part_is_retried_and_the_patch_succeeds(make_server, s3_server: S3Server, faults: FaultProxy, bucket: BucketView) -> None:
    server = make_server(**s3_flags(s3_server, bucket, s3_endpoint=faults.endpoint, s3_timeout=5, s3_attempts=3))
    data = os.urandom(2 * PART + 3)
    url = create(server.url, len(data))
    faults.fail(2, match="partNumber=2")  # two SlowDowns, the third attempt goes through
    answer = patch(url, 0, data)
    assert answer.status_code == 204, answer.text
    assert faults.failed == 2
    assert_stored(bucket, url, data)


def test_a_part_that_keeps_failing_commits_what_is_durable(make_server, s3_server: S3Server, faults: FaultProxy, bucket: BucketView) -> None:
    server = make_server(**s3_flags(s3_server, bucket, s3_endpoint=faults.endpoint, s3_timeout=5, s3_attempts=2))
    data = os.urandom(2 * PART + MiB)
    url = create(server.url, len(data))
    faults.fail(2, match="partNumber=2")  # both attempts of part 2
    answer, waited = timed(lambda: patch(url, 0, data))
    assert_unavailable(answer, waited)
    assert head(url).headers["Upload-Offset"] == str(PART)  # part 1 made it; part 3 (if sent) does not count past the gap
    statuses, offsets = resume(url, data)
    assert offsets[0] == PART and 500 not in statuses, (statuses, offsets)
    assert_stored(bucket, url, data)


def test_slow_s3_answers_503_within_a_bounded_time(make_server, s3_server: S3Server, faults: FaultProxy, bucket: BucketView) -> None:
    server = make_server(**s3_flags(s3_server, bucket, s3_endpoint=faults.endpoint, s3_timeout=1, s3_attempts=2))
    data = os.urandom(PART + 10)
    url = create(server.url, len(data))
    faults.delay = 3.0  # every answer takes longer than the server waits
    assert_unavailable(*timed(lambda: patch(url, 0, data)))
    assert_unavailable(*timed(lambda: requests.post(server.url, headers={**TUS, "Upload-Length": "5"}, timeout=30)))
    assert head(url).headers["Upload-Offset"] == "0"
    faults.delay = 0.0
    statuses, offsets = resume(url, data)
    assert 500 not in statuses, statuses
    assert_stored(bucket, url, data)
