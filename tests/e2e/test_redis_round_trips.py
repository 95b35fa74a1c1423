"""Round trips to Redis per request of a small upload, counted with MONITOR on a real redis-server.
Also (target 4, held open): a lease that commits is kept by its commits, with no renewal sent.

Issue 19, target 3: a POST costs one round trip (the creation script), a PATCH that finishes a
small upload two (acquiring the lock reads the record; the finishing commit lets go of the lock).
A round trip is a command a client sent; what a script runs inside Redis is not one. Only the
commands that name the upload count (the sweeper's and the subscription's do not name it).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
import requests

from tests.support import create, head, patch
from tusd_py.locks.base import LockLost
from tusd_py.locks.redis import _RENEW, RedisLocker
from tusd_py.state.base import Upload
from tusd_py.state.redis import RedisStateStore

pytestmark = pytest.mark.timeout(60)


class Monitor:
    """Every command the redis-server is sent, in order, from a thread running MONITOR."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[str] = []
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self._ready = threading.Event()
        self._marks: dict[str, threading.Event] = {}
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            for event in monitor.listen():
                command: str = event["command"]
                if command.startswith("ECHO "):
                    mark = command.split(" ", 1)[1].strip("\"'")
                    if mark in self._marks:
                        self._marks[mark].set()
                    if mark == "stop":
                        return
                elif event.get("client_type") != "lua":
                    self.seen.append(command)

    def __enter__(self) -> Monitor:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def settle(self) -> list[str]:
        """The commands seen so far, once Redis has passed on everything sent before this call."""
        mark = uuid.uuid4().hex
        self._marks[mark] = threading.Event()
        with redis.Redis.from_url(self.url) as client:
            client.echo(mark)
        assert self._marks[mark].wait(5), "MONITOR did not pass the mark on"
        return list(self.seen)

    def __exit__(self, *exc: object) -> None:
        with redis.Redis.from_url(self.url) as client:
            client.echo("stop")
        self._thread.join(5)
        self._client.close()


@pytest.fixture
def monitor(redis_url: str) -> Iterator[Monitor]:
    with Monitor(redis_url) as watching:
        yield watching


def naming(commands: list[str], upload_id: str) -> list[str]:
    return [command for command in commands if upload_id in command]


@pytest.mark.parametrize("state_backend", ["redis"])
def test_a_small_upload_costs_one_round_trip_to_create_and_two_to_write(make_server, monitor: Monitor) -> None:  # type: ignore[no-untyped-def]
    srv = make_server()
    body = b"x" * 65536
    warm = create(srv.url, len(body))  # the scripts get cached, the connections made
    assert patch(warm, 0, body).status_code == 204

    before = len(monitor.settle())
    url = create(srv.url, len(body))
    upload_id = url.rsplit("/", 1)[1]
    after_post = monitor.settle()
    assert len(naming(after_post[before:], upload_id)) == 1, after_post[before:]

    response = patch(url, 0, body)
    assert response.status_code == 204 and response.headers["Upload-Offset"] == str(len(body))
    after_patch = monitor.settle()
    trips = naming(after_patch[len(after_post):], upload_id)
    assert len(trips) == 2, trips  # acquire (and read), commit (and release)

    # The lock is gone with that commit: the upload is free at once, and it is complete.
    with redis.Redis.from_url(srv.redis_url, decode_responses=True) as client:
        assert not [key for key in client.scan_iter(match=f"*lock*{upload_id}")]
    answer = head(url)
    assert answer.status_code == 200 and answer.headers["Upload-Offset"] == str(len(body))
    assert requests.get(url, timeout=10).content == body


@pytest.mark.parametrize("state_backend", ["redis"])
def test_a_patch_that_does_not_finish_still_releases_its_lock(make_server, monitor: Monitor) -> None:  # type: ignore[no-untyped-def]
    srv = make_server()
    url = create(srv.url, 8)
    upload_id = url.rsplit("/", 1)[1]
    before = len(monitor.settle())
    assert patch(url, 0, b"abcd").status_code == 204
    trips = naming(monitor.settle()[before:], upload_id)
    assert len(trips) == 3, trips  # acquire, commit, release: the lock is kept until the release
    assert patch(url, 4, b"efgh").status_code == 204
    assert requests.get(url, timeout=10).content == b"abcdefgh"


def test_a_lease_that_commits_is_kept_by_its_commits_with_no_renewal(redis_url: str, monitor: Monitor) -> None:
    """The fenced commit extends the lock key's TTL (issue 19): a holder committing more often
    than half the TTL sends no renewal, however long it holds; a stale holder's commit neither
    commits nor extends, and a lock key that expired is not brought back by a commit."""
    renew_sha = hashlib.sha1(_RENEW.encode()).hexdigest()
    upload_id, other_id = "c" * 32, "d" * 32

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        state = RedisStateStore(client)
        locker = RedisLocker(client, preload=state.key, scripts=state.scripts, ttl=1.0, margin=0.25)
        await state.create(Upload(id=upload_id, length=100, offset=0))
        await state.create(Upload(id=other_id, length=100, offset=0))
        key = locker.key(upload_id)
        async with locker.hold(upload_id, wait=0) as lock:
            started = time.monotonic()
            for offset in range(1, 13):  # 12 commits 0.2 s apart: 2.4 s, over two TTLs
                await asyncio.sleep(0.2)
                assert lock.valid()
                assert await state.commit_offset(upload_id, offset - 1, offset, None, fence=lock.fence) == offset
                assert await client.pttl(key) > 900  # topped up to the TTL by the commit itself
            assert time.monotonic() - started > 2.0 and lock.valid()
        commands = [command for command in monitor.settle() if key in command]
        assert not [command for command in commands if renew_sha in command], commands
        assert len([command for command in commands if "EVALSHA" in command]) >= 12  # the commits

        # Expired with nobody else holding it: the commit refuses, and the key stays gone.
        async with locker.hold(other_id, wait=0) as stale:
            await client.delete(locker.key(other_id))
            with pytest.raises(LockLost):
                await state.commit_offset(other_id, 0, 5, None, fence=stale.fence)
            assert await client.exists(locker.key(other_id)) == 0
            # Another holder took it: the stale holder's commit neither commits nor extends.
            async with locker.hold(other_id, wait=0) as current:
                await asyncio.sleep(0.3)
                with pytest.raises(LockLost):
                    await state.commit_offset(other_id, 0, 5, None, fence=stale.fence)
                assert await client.pttl(locker.key(other_id)) < 800  # not topped up
                assert current.valid()
        assert (await state.get(other_id)).offset == 0  # type: ignore[union-attr]
        await locker.close()
        await state.close()

    asyncio.run(main())


@pytest.mark.parametrize("state_backend", ["redis"])
def test_a_slow_patch_holds_its_lock_past_the_renewal_time_with_commits_only(make_server, monitor: Monitor) -> None:  # type: ignore[no-untyped-def]
    """Through the server (8 s lease, renewal due at 4 s): a PATCH trickling for ~6 s commits
    about once a second, and those commits keep its lease; no renewal names its lock."""
    srv = make_server()
    body = b"0123456789"
    url = create(srv.url, len(body))
    upload_id = url.rsplit("/", 1)[1]
    before = len(monitor.settle())
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        head_lines = (
            f"PATCH /files/{upload_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head_lines.encode())
        for index in range(len(body)):  # 10 bytes 0.65 s apart: ~6.5 s
            sock.sendall(body[index : index + 1])
            time.sleep(0.65)
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 204"), answer
    trips = naming(monitor.settle()[before:], upload_id)
    renew_sha = hashlib.sha1(_RENEW.encode()).hexdigest()
    assert not [trip for trip in trips if renew_sha in trip], trips
    assert requests.get(url, timeout=10).content == body
