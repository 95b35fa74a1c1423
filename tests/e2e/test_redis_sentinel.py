"""tusd-py on Redis Sentinel: one master, one replica, three sentinels (tests/redis_topologies.py),
three tusd-py instances. The master is killed (SIGKILL) or switched over (SENTINEL FAILOVER)
in the middle of an upload sent in 1 MiB PATCHes round-robin over the instances.

What must hold: every answer during the switch is a success or a 503 with Retry-After (never
a 500, a 423 or a hang), service resumes without restarting anything, the upload completes
byte-identical, and with --redis-min-replicas 1 no offset a client was told ever goes back.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.redis_topologies import SentinelGroup
from tests.support import OCTET, TUS, TusServer, create

pytestmark = pytest.mark.timeout(150)

MIB = 1024 * 1024
TIMEOUT = 1.0  # --redis-timeout
LONGEST = 4 * TIMEOUT + 3.0 + 2.0  # a request's Redis calls (tried twice each), the lock wait, slack


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path / "sentinel").start()
    yield group
    group.stop()


def start_instances(tmp_path: Path, url: str, **flags: object) -> list[TusServer]:
    servers = [TusServer(tmp_path / "data", redis_url=url, redis_timeout=TIMEOUT, **flags) for _ in range(3)]
    for server in servers:
        server.start()
    return servers


def slow_body(data: bytes) -> Iterator[bytes]:
    """1 MiB in 64 KiB pieces over ~0.15 s: a switch can land in the middle of a PATCH."""
    for start in range(0, len(data), 64 * 1024):
        time.sleep(0.01)
        yield data[start : start + 64 * 1024]


class Uploader:
    """Sends an upload in 1 MiB PATCHes round-robin over the instances, resuming after any
    failure from the offset HEAD reports (asking again until HEAD answers); records what every
    answer said."""

    def __init__(self, servers: list[TusServer], data: bytes) -> None:
        self.servers = servers
        self.data = data
        self.upload_id = create(servers[0].url, len(data)).rsplit("/", 1)[1]
        self.statuses: list[int] = []
        self.reported: list[int] = []  # every offset an answer told, in order
        self.slowest = 0.0
        self.patches = 0

    def _send(self, method: str, server: TusServer, **kwargs: object) -> requests.Response:
        started = time.monotonic()
        response = requests.request(method, server.url + self.upload_id, timeout=30, **kwargs)  # type: ignore[arg-type]
        self.slowest = max(self.slowest, time.monotonic() - started)
        self.statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.headers.get("Retry-After"), response.headers
        elif response.status_code in (200, 204):
            self.reported.append(int(response.headers["Upload-Offset"]))
        return response

    def run(self, *, within: float = 90.0) -> None:
        offset, turn = 0, 0
        deadline = time.monotonic() + within
        while offset < len(self.data):
            assert time.monotonic() < deadline, (self.statuses, self.reported)
            server = self.servers[turn % len(self.servers)]
            turn += 1
            chunk = self.data[offset : offset + MIB]
            self.patches += 1
            answer = self._send("PATCH", server, data=slow_body(chunk), headers={**OCTET, "Upload-Offset": str(offset)})
            if answer.status_code == 204:
                offset = int(answer.headers["Upload-Offset"])
                continue
            while time.monotonic() < deadline:  # as tus clients do: HEAD until it answers, then resume there
                time.sleep(0.2)
                probe = self._send("HEAD", server, headers=TUS)
                if probe.status_code == 200:
                    offset = int(probe.headers["Upload-Offset"])
                    break

    def content(self) -> bytes:
        answer = requests.get(self.servers[0].url + self.upload_id, timeout=30)
        assert answer.status_code == 200
        return answer.content


def check_answers(uploader: Uploader) -> None:
    assert set(uploader.statuses) <= {200, 204, 409, 503}, Counter(uploader.statuses)  # 409: a lost commit (no WAIT)
    assert uploader.slowest < LONGEST, uploader.slowest
    assert 503 in uploader.statuses  # the switch was seen (else the test proved nothing)


def switch_during(uploader: Uploader, switch) -> threading.Thread:  # type: ignore[no-untyped-def]
    """Run `switch()` while the uploader's fourth PATCH is on the wire."""

    def wait_then_switch() -> None:
        deadline = time.monotonic() + 60
        while uploader.patches < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        switch()

    thread = threading.Thread(target=wait_then_switch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("min_replicas", [0, 1])
def test_master_killed_mid_upload(tmp_path: Path, sentinel_group: SentinelGroup, min_replicas: int) -> None:
    servers = start_instances(tmp_path, sentinel_group.url, redis_min_replicas=min_replicas)
    try:
        data = os.urandom(12 * MIB)
        uploader = Uploader(servers, data)

        def kill_and_bring_back() -> None:
            old = sentinel_group.kill_master()
            sentinel_group.wait_new_master(old.port)
            old.start()  # it comes back empty; the sentinels make it a replica of the new master

        thread = switch_during(uploader, kill_and_bring_back)
        uploader.run()
        thread.join(60)
        check_answers(uploader)
        if min_replicas:
            assert uploader.reported == sorted(uploader.reported), uploader.reported  # never backwards
        assert hashlib.sha256(uploader.content()).digest() == hashlib.sha256(data).digest()
        assert all(server.proc is not None and server.proc.poll() is None for server in servers)
    finally:
        for server in servers:
            server.stop()


def test_graceful_failover_answers_nothing_worse_than_503(tmp_path: Path, sentinel_group: SentinelGroup) -> None:
    servers = start_instances(tmp_path, sentinel_group.url, redis_min_replicas=1)
    try:
        data = os.urandom(12 * MIB)
        uploader = Uploader(servers, data)
        old_port = sentinel_group.master_port()

        def failover() -> None:
            sentinel_group.failover()
            sentinel_group.wait_new_master(old_port)

        thread = switch_during(uploader, failover)
        uploader.run()
        thread.join(60)
        assert sentinel_group.master_port() != old_port
        assert set(uploader.statuses) <= {200, 204, 503}, Counter(uploader.statuses)
        assert uploader.slowest < LONGEST, uploader.slowest
        assert uploader.reported == sorted(uploader.reported), uploader.reported
        assert hashlib.sha256(uploader.content()).digest() == hashlib.sha256(data).digest()
        for server in servers:  # every instance writes to the new master by itself
            assert requests.post(server.url, headers={**TUS, "Upload-Length": "1"}, timeout=10).status_code == 201
    finally:
        for server in servers:
            server.stop()
