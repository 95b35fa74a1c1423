"""Several instances behind a round-robin proxy, sharing one Redis and one data directory.

Every test runs the real topology of compose.yaml on 127.0.0.1 (tests/cluster.py):
redis-server with AOF, three tusd-py processes, and nginx with deploy/nginx/tus-proxy.conf.
The tests marked `on_cluster_too` also run with a 3-master Redis Cluster in the place of
the redis-server (the others stop, hang or write to that one Redis by hand).
"""

from __future__ import annotations

import http.client
import io
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest
import redis
import requests

from tests.cluster import PROXY_SETTINGS, Cluster, Nginx
from tests.support import TUS, create, head, patch

pytestmark = pytest.mark.timeout(120)
on_cluster_too = pytest.mark.parametrize("redis_topology", ["single", "cluster"])


@pytest.fixture
def redis_topology() -> str:
    return "single"


@pytest.fixture
def make_cluster(tmp_path: Path, redis_topology: str) -> Iterator:
    started: list[Cluster] = []

    def make(**flags: object) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(started)}", redis=redis_topology, **flags)
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture
def cluster(make_cluster) -> Cluster:
    return make_cluster()


def path_of(url: str) -> str:
    return urlsplit(url).path


class RawPatch:
    """A PATCH written by hand on a socket, so the test decides when each byte leaves."""

    def __init__(self, port: int, path: str, offset: int, content_length: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        lines = [
            f"PATCH {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Tus-Resumable: 1.0.0",
            "Content-Type: application/offset+octet-stream",
            f"Upload-Offset: {offset}",
            f"Content-Length: {content_length}",
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.sent = 0
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def trickle(self, data: bytes, chunk: int, pause: float) -> None:
        """Keep sending `data` in small pieces from a thread until it is sent, refused or stopped."""

        def run() -> None:
            for start in range(0, len(data), chunk):
                if self.stop.is_set():
                    return
                try:
                    self.send(data[start : start + chunk])
                except OSError:
                    return
                time.sleep(pause)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def response(self) -> tuple[int, str]:
        answer = http.client.HTTPResponse(self.sock)
        answer.begin()
        return answer.status, answer.read().decode(errors="replace")

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.sock.close()


def resume(url: str, data: bytes, *, within: float = 40.0) -> tuple[list[int], list[int]]:
    """What a tus client does after a failure: HEAD, then PATCH the rest, retrying "try again" answers.

    Returns the statuses seen and the offsets HEAD reported."""
    statuses: list[int] = []
    offsets: list[int] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            response = head(url)
        except requests.ConnectionError:
            time.sleep(0.3)
            continue
        statuses.append(response.status_code)
        if response.status_code in (423, 502, 503):
            time.sleep(0.3)
            continue
        assert response.status_code == 200, (response.status_code, response.text)
        offset = int(response.headers["Upload-Offset"])
        offsets.append(offset)
        if offset == len(data):
            return statuses, offsets
        try:
            answer = patch(url, offset, data[offset:])
        except requests.ConnectionError:
            continue
        statuses.append(answer.status_code)
        assert answer.status_code in (204, 409, 423, 502, 503), (answer.status_code, answer.text)
    raise AssertionError(f"upload not completed within {within}s: {statuses}")


def content(url: str) -> bytes:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    return response.content


# -- the deployment files -------------------------------------------------------------


@pytest.mark.parametrize("name", ["nginx.conf", "nginx-ha.conf", "nginx-s3.conf"])  # compose's "sentinel" and "s3" profiles
def test_compose_nginx_config_is_valid(tmp_path: Path, name: str) -> None:
    """deploy/nginx/nginx.conf as compose mounts it, checked by `nginx -t` (names become 127.0.0.1)."""
    source = (PROXY_SETTINGS.parent / name).read_text()
    assert "include /etc/nginx/tus-proxy.conf;" in source
    config = re.sub(r"tusd(-ha|-s3-)?[123]:1080", "127.0.0.1:1080", source)
    config = config.replace("/etc/nginx/tus-proxy.conf", str(PROXY_SETTINGS)).replace("/tmp/nginx.pid", str(tmp_path / "pid"))
    (tmp_path / "nginx.conf").write_text(config)
    binary = Nginx(tmp_path, []).binary()
    checked = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    compose = (PROXY_SETTINGS.parent.parent.parent / "compose.yaml").read_text()
    for needed in ("--appendonly", "yes", "uploads:/data", "TUSD_PY_BEHIND_PROXY", "deploy/nginx/tus-proxy.conf", f"deploy/nginx/{name}"):
        assert needed in compose


# -- through the proxy -------------------------------------------------------------


@on_cluster_too
def test_tuspy_chunked_upload_goes_through_every_instance_with_one_url(cluster: Cluster) -> None:
    from tusclient import client as tus_client

    data = os.urandom(640 * 1024)
    uploader = tus_client.TusClient(cluster.url).uploader(
        file_stream=io.BytesIO(data), chunk_size=64 * 1024, metadata={"filename": "spread.bin"}
    )
    uploader.upload()
    url = uploader.url
    # --behind-proxy: the instance answering POST handed out the proxy's URL, not its own.
    assert url.startswith(cluster.url), url
    assert content(url) == data
    served = {address for method, path, status, address in cluster.proxy.upstream_log() if path == path_of(url)}
    assert len(served) == 3, served  # round-robin: the ten PATCHes landed on all three instances


def test_location_follows_forwarded_host_and_proto(cluster: Cluster) -> None:
    response = requests.post(
        cluster.url, headers={**TUS, "Upload-Length": "1", "Host": "uploads.example.org"}, timeout=10
    )
    assert response.status_code == 201
    assert response.headers["Location"].startswith("http://uploads.example.org/files/")


@on_cluster_too
def test_fifty_racing_patches_leave_exactly_one_body(cluster: Cluster) -> None:
    size = 4096
    url = create(cluster.url, size)
    bodies = [bytes([i]) * size for i in range(50)]
    start = threading.Barrier(50, timeout=30)

    def race(i: int) -> int:
        start.wait()
        return patch(url, 0, bodies[i]).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(race, range(50)))
    winners = [i for i, status in enumerate(statuses) if status == 204]
    assert len(winners) == 1, statuses
    assert set(statuses) <= {204, 409, 423}, statuses
    response = head(url)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == str(size)
    assert content(url) == bodies[winners[0]]
    served = {address for method, path, status, address in cluster.proxy.upstream_log() if method == "PATCH"}
    assert len(served) == 3


def test_held_upload_answers_423_never_404(cluster: Cluster) -> None:
    url = create(cluster.url, 10)
    upload_id = path_of(url).rsplit("/", 1)[1]
    client = redis.Redis.from_url(cluster.redis.url)
    # A holder that never answers (as a crashed instance's lease until it runs out).
    client.set(f"tusd-py:lock:{upload_id}", "someone-else", px=30_000)
    client.close()
    started = time.monotonic()
    assert head(url).status_code == 423
    assert patch(url, 0, b"0123456789").status_code == 423
    assert requests.delete(url, headers=TUS, timeout=10).status_code == 423
    assert time.monotonic() - started < 3 * 3.0 + 6  # each waits --lock-wait (3 s), no more


# -- lock exchange -----------------------------------------------------------------


@on_cluster_too
@pytest.mark.parametrize("holder", ["stalled", "live"])
def test_lock_exchange_lets_a_resumed_client_in_within_two_seconds(cluster: Cluster, holder: str) -> None:
    data = os.urandom(1024 * 1024)
    url = create(cluster.url, len(data))
    first, second = cluster.servers[0], cluster.servers[1]
    old = RawPatch(first.port, path_of(url), 0, len(data))
    try:
        old.send(data[:300_000])
        if holder == "stalled":
            time.sleep(1.0)  # the connection is open but silent, as after a network break
        else:
            old.trickle(data[300_000:600_000], 1024, 0.02)  # still sending, slowly
            time.sleep(0.5)
        started = time.monotonic()
        response = requests.head(f"{second.url}{path_of(url).rsplit('/', 1)[1]}", headers=TUS, timeout=10)
        waited = time.monotonic() - started
        assert response.status_code == 200
        assert waited < 2.0, waited  # the resumed request may start at once (not after the 8 s lease)
        offset = int(response.headers["Upload-Offset"])
        if holder == "stalled":
            assert offset == 300_000  # every byte that arrived was committed when the holder let go
        else:
            assert waited > 0.5  # a live holder got its grace before being cut
            assert 300_000 < offset <= 300_000 + old.sent
        status, text = old.response()
        assert status == 400 and "ERR_UPLOAD_INTERRUPTED" in text, (status, text)
    finally:
        old.close()
    answer = patch(url, offset, data[offset:])
    assert answer.status_code == 204, answer.text
    assert content(url) == data


# -- faults ------------------------------------------------------------------------


@on_cluster_too
def test_killed_instance_mid_patch_resumes_elsewhere_from_the_last_commit(cluster: Cluster) -> None:
    data = os.urandom(2 * 1024 * 1024)
    url = create(cluster.url, len(data))
    victim = cluster.servers[0]
    old = RawPatch(victim.port, path_of(url), 0, len(data))
    old.trickle(data, 16 * 1024, 0.02)
    time.sleep(2.5)  # long enough for the handler's once-a-second commits
    victim.stop(signal.SIGKILL)
    sent = old.sent
    old.close()
    statuses, offsets = resume(url, data)
    assert 423 in statuses  # the dead instance's lease held the upload until it ran out
    # it resumed from what the killed instance had committed on the way, not from zero
    assert 0 < offsets[0] <= sent
    assert content(url) == data


def test_graceful_sigterm_commits_in_flight_patch_and_answers_503(cluster: Cluster) -> None:
    data = os.urandom(2 * 1024 * 1024)
    url = create(cluster.url, len(data))
    leaving = cluster.servers[0]
    old = RawPatch(leaving.port, path_of(url), 0, len(data))
    try:
        old.trickle(data, 16 * 1024, 0.02)
        time.sleep(0.7)
        os.kill(leaving.proc.pid, signal.SIGTERM)
        status, text = old.response()
        assert status == 503 and "ERR_SERVER_SHUTDOWN" in text, (status, text)
        sent = old.sent
    finally:
        old.close()
    # It exits by itself, cleanly (uvicorn re-raises the SIGTERM it handled, hence -15).
    assert leaving.proc.wait(timeout=15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in leaving.log()
    leaving.proc = None
    started = time.monotonic()
    response = head(url)
    assert response.status_code == 200
    assert time.monotonic() - started < 2.0  # the lock was released on the way out, not left to expire
    offset = int(response.headers["Upload-Offset"])
    assert 0 < offset <= sent
    resume(url, data)
    assert content(url) == data


def test_redis_restart_mid_upload_loses_nothing(cluster: Cluster) -> None:
    done = os.urandom(100_000)
    finished_url = create(cluster.url, len(done), Upload_Metadata="filename ZG9uZS5iaW4=")
    assert patch(finished_url, 0, done).status_code == 204
    data = os.urandom(2 * 1024 * 1024)
    url = create(cluster.url, len(data))
    old = RawPatch(cluster.servers[0].port, path_of(url), 0, len(data))
    old.trickle(data, 16 * 1024, 0.02)
    time.sleep(1.5)
    cluster.redis.stop()  # SIGTERM: Redis writes its AOF out and exits
    time.sleep(1.5)  # the in-flight PATCH's next commit fails: it answers 503
    cluster.redis.start()
    old.close()
    resume(url, data)
    assert content(url) == data
    response = head(finished_url)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == str(len(done))
    assert response.headers["Upload-Metadata"] == "filename ZG9uZS5iaW4="
    assert content(finished_url) == done


def test_redis_down_answers_503_with_retry_after_then_service_resumes(cluster: Cluster) -> None:
    url = create(cluster.url, 10)
    assert patch(url, 0, b"01234").status_code == 204
    cluster.redis.stop()
    try:
        for attempt in (
            lambda: requests.post(cluster.url, headers={**TUS, "Upload-Length": "5"}, timeout=30),
            lambda: head(url),
            lambda: patch(url, 5, b"56789"),
        ):
            started = time.monotonic()
            response = attempt()
            assert time.monotonic() - started < 10
            assert response.status_code == 503, response.status_code  # never 404: the upload exists
            assert response.headers["Retry-After"] == "1"
    finally:
        cluster.redis.start()
    deadline = time.monotonic() + 20
    while (status := head(url).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert status == 200
    assert patch(url, 5, b"56789").status_code == 204
    assert content(url) == b"0123456789"
    assert create(cluster.url, 1)


def test_hung_redis_answers_503_within_a_bounded_time(make_cluster) -> None:
    cluster = make_cluster(redis_timeout=1)
    url = create(cluster.url, 10)
    os.kill(cluster.redis.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = head(url)
        waited = time.monotonic() - started
    finally:
        os.kill(cluster.redis.proc.pid, signal.SIGCONT)
    assert response.status_code == 503
    assert waited < 6, waited  # two tries of a 1 s timeout, and a margin for a busy machine
    assert patch(url, 0, b"0123456789").status_code == 204


# -- expiration ----------------------------------------------------------------------


@on_cluster_too
def test_sweepers_on_three_instances_remove_each_expired_upload_once(make_cluster) -> None:
    cluster = make_cluster(expire_after=1, sweep_interval=0.2)
    urls = [create(cluster.url, 100) for _ in range(30)]
    for url in urls[:10]:
        assert patch(url, 0, b"x" * 40).status_code == 204
    ids = [path_of(url).rsplit("/", 1)[1] for url in urls]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(not (cluster.data_dir / upload_id).exists() for upload_id in ids):
            break
        time.sleep(0.2)
    time.sleep(1.0)  # let every sweeper run a few more times
    removed = re.findall(r"expired upload ([0-9a-f]+) removed", cluster.logs())
    assert sorted(removed) == sorted(ids)  # each upload once, whichever instance claimed it
    for url in urls[:3]:
        assert head(url).status_code == 410


def test_a_holder_whose_lease_was_taken_commits_nothing(cluster: Cluster) -> None:
    """Fencing: the holder's own clock still says its lease runs, but the key says otherwise."""
    data = os.urandom(1024 * 1024)
    url = create(cluster.url, len(data))
    upload_id = path_of(url).rsplit("/", 1)[1]
    old = RawPatch(cluster.servers[0].port, path_of(url), 0, len(data))
    client = redis.Redis.from_url(cluster.redis.url, decode_responses=True)
    try:
        old.trickle(data, 8 * 1024, 0.02)
        time.sleep(0.3)
        key = f"tusd-py:lock:{upload_id}"
        assert client.get(key) is not None  # held by the PATCH
        client.set(key, "a-new-holder", px=30_000)  # as if the lease had lapsed and been taken
        status, text = old.response()
        assert status == 423 and "ERR_LOCK_LOST" in text, (status, text)
        assert client.hget(f"tusd-py:upload:{upload_id}", "offset") == "0"
        assert client.get(key) == "a-new-holder"  # its release did not delete someone else's lock
    finally:
        old.close()
        client.close()


@on_cluster_too
def test_tus_js_client_parallel_uploads_through_three_instances(cluster: Cluster, tmp_path: Path) -> None:
    """tus-js-client's parallelUploads: 4 across the three instances (issue 3): parts written
    through different instances, the final upload assembled on whichever finished last."""
    from tests.e2e.test_tus_js_parallel import check_parallel_upload

    check_parallel_upload(cluster.url, tmp_path)
    patches = [row for row in cluster.proxy.upstream_log() if row[0] == "PATCH"]
    assert len({instance for _, _, _, instance in patches}) >= 2, patches  # the parts went through several instances
