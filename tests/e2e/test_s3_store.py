"""The S3 data store against a real S3-compatible server (SeaweedFS `weed mini` on 127.0.0.1).

Direct against the store API (no HTTP server yet: the store is not served before
the engine redesign). Parts are the 5 MiB minimum, which SeaweedFS enforces.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, S3_CREDENTIALS, S3Server
from tusd_py.storage.s3 import S3Options, S3Store, StorageUnavailable, UploadNotFound
from tusd_py.storage.s3.keys import incomplete_key

MiB = 1024 * 1024
PART = 5 * MiB

pytestmark = pytest.mark.usefixtures("s3_credentials")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


def options(s3: S3Server, **overrides: Any) -> S3Options:
    settings: dict[str, Any] = dict(bucket=s3.bucket, endpoint_url=s3.endpoint, region="us-east-1",
                                    prefix=f"t-{secrets.token_hex(4)}/", part_size=PART, path_style=True)
    settings.update(overrides)
    return S3Options(**settings)


def run(opts: S3Options, body: Callable[..., Awaitable[Any]], stores: int = 1) -> Any:
    """Run `body(store, ...)` with `stores` separate S3Store instances (as separate servers would be)."""
    async def main() -> Any:
        opened = [await S3Store(opts).start() for _ in range(stores)]
        try:
            return await body(*opened)
        finally:
            for store in opened:
                await store.close()
    return asyncio.run(main())


def data(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def write(store: S3Store, upload_id: str, offset: int, body: bytes, piece: int, length: int | None, **kw: Any) -> int:
    writer = store.writer(upload_id, offset, length=length, **kw)
    for start in range(0, len(body), piece):
        await writer.write(body[start:start + piece])
    return await writer.finish()


async def read_all(store: S3Store, upload_id: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in store.read(upload_id, start, end)])


async def listing(store: S3Store) -> tuple[list[str], list[str]]:
    """(object keys, multipart upload keys) under the store's prefix."""
    client = store.bucket.client
    objects = await client.list_objects_v2(Bucket=store.bucket.name, Prefix=store.prefix)
    uploads = await client.list_multipart_uploads(Bucket=store.bucket.name, Prefix=store.prefix)
    return [o["Key"] for o in objects.get("Contents", [])], [u["Key"] for u in uploads.get("Uploads", [])]


def test_writes_resume_across_instances_through_the_incomplete_part(s3: S3Server) -> None:
    length = 2 * PART + 2 * MiB + 123
    payload = data(length)

    async def body(a: S3Store, b: S3Store, c: S3Store) -> None:
        await a.create("resume1", length)
        # many small pieces: under one part, so all of it becomes the incomplete part
        assert await write(a, "resume1", 0, payload[:3 * MiB], 64 * 1024, length) == 3 * MiB
        assert (await b.bucket.incomplete(await b.handle("resume1")))[1] == 3 * MiB
        # another instance resumes at the durable offset: the incomplete part is prepended
        assert await write(b, "resume1", 3 * MiB, payload[3 * MiB:7 * MiB], MiB, length) == 7 * MiB
        handle = await c.handle("resume1")
        assert [(p.number, p.size) for p in await c.bucket.list_parts(handle)] == [(1, PART)]
        assert await c.bucket.incomplete(handle) == (PART, 2 * MiB)
        # a third one writes the rest in one large piece; the last part may be small
        assert await write(c, "resume1", 7 * MiB, payload[7 * MiB:], 8 * MiB, length) == length
        assert sorted(p.size for p in await c.bucket.list_parts(handle)) == [2 * MiB + 123, PART, PART]
        await a.finish("resume1", length)
        got = await read_all(b, "resume1", 0, length)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
        objects, uploads = await listing(a)
        assert incomplete_key(a.prefix, "resume1") not in objects and uploads == []

    run(options(s3), body, stores=3)


def test_small_bodies_under_the_part_minimum_alternating_instances(s3: S3Server) -> None:
    """1 MiB bodies (as small PATCHes), each by a fresh writer on one of two instances."""
    length = 12 * MiB + 5
    payload = data(length, seed=7)

    async def body(a: S3Store, b: S3Store) -> None:
        await a.create("small2", length)
        offset = 0
        for turn, start in enumerate(range(0, length, MiB)):
            piece = payload[start:start + MiB]
            offset = await write((a, b)[turn % 2], "small2", offset, piece, 256 * 1024, length)
            assert offset == start + len(piece)
        await b.finish("small2", length)
        assert await read_all(a, "small2", 0, length) == payload

    run(options(s3), body, stores=2)


def test_the_server_enforces_the_5_mib_minimum(s3: S3Server) -> None:
    """The fixture is a realistic S3: a small part that is not the last fails the completion."""
    async def body(store: S3Store) -> None:
        await store.create("small1", 2 * MiB)
        handle = await store.handle("small1")
        etags = [(1, await store.bucket.upload_part(handle, 1, b"x" * MiB)), (2, await store.bucket.upload_part(handle, 2, b"y"))]
        with pytest.raises(StorageUnavailable, match="EntityTooSmall"):
            await store.bucket.complete(handle, etags)

    run(options(s3), body)


def test_deferred_length_finishes_from_the_incomplete_part(s3: S3Server) -> None:
    length = PART + MiB + 10
    payload = data(length, seed=2)

    async def body(store: S3Store) -> None:
        await store.create("deferred1", None, max_size=100 * MiB)
        handle = await store.handle("deferred1")
        assert handle.part_size == PART
        assert await write(store, "deferred1", 0, payload, 256 * 1024, None) == length
        await store.finish("deferred1", length)
        await store.finish("deferred1", length)  # again, as after a crash: nothing changes
        assert await read_all(store, "deferred1", 0, length) == payload

    run(options(s3), body)


def test_empty_upload_and_content_type(s3: S3Server) -> None:
    async def body(store: S3Store) -> None:
        await store.create("empty1", 0, content_type="text/plain", key="docs/empty.txt", metadata={"owner": "me"})
        await store.finish("empty1", 0)
        assert await read_all(store, "empty1", 0, 0) == b""
        head = await store.bucket.client.head_object(Bucket=store.bucket.name, Key=store.prefix + "docs/empty.txt")
        assert head["ContentLength"] == 0 and head["ContentType"] == "text/plain" and head["Metadata"] == {"owner": "me"}
        stored = await store.describe("empty1")
        assert (stored.size, stored.etag, stored.content_type) == (0, head["ETag"], "text/plain")
        with pytest.raises(ValueError):
            await store.create("bad1", 1, key="../outside")

    run(options(s3), body)


def test_ranged_reads_stream_parts_of_the_object(s3: S3Server) -> None:
    length = PART + 4321
    payload = data(length, seed=3)

    async def body(store: S3Store) -> None:
        await store.create("range1", length)
        await write(store, "range1", 0, payload, MiB, length)
        await store.finish("range1", length)
        for start, end in [(0, 1), (PART - 10, PART + 10), (length - 1, length), (123, length), (7, 7)]:
            assert await read_all(store, "range1", start, end) == payload[start:end]
        chunks = [len(chunk) async for chunk in store.read("range1", 0, length)]
        assert max(chunks) <= MiB and sum(chunks) == length
        with pytest.raises(UploadNotFound):
            await read_all(store, "nosuchupload", 0, 1)

    run(options(s3), body)


@pytest.mark.parametrize("sizes,copies", [((PART + 7, 1000), 2), ((1000, PART + 3), 0)], ids=["copy", "reupload"])
def test_concatenation(s3: S3Server, sizes: tuple[int, int], copies: int) -> None:
    payloads = [data(size, seed=10 + i) for i, size in enumerate(sizes)]

    async def body(store: S3Store) -> None:
        for i, payload in enumerate(payloads):
            await store.create(f"part{i}", len(payload))
            await write(store, f"part{i}", 0, payload, MiB, len(payload))
            await store.finish(f"part{i}", len(payload))
        await store.create("final1", sum(sizes))
        calls = 0
        copy_part = store.bucket.copy_part

        async def counting(*args: Any) -> str:
            nonlocal calls
            calls += 1
            return await copy_part(*args)

        store.bucket.copy_part = counting  # type: ignore[method-assign]
        await store.concatenate("final1", [(f"part{i}", size) for i, size in enumerate(sizes)])
        await store.finish("final1", sum(sizes))  # the engine's finish finds it done
        assert calls == copies
        assert await read_all(store, "final1", 0, sum(sizes)) == b"".join(payloads)

    run(options(s3), body)


def test_delete_leaves_no_object_and_no_multipart_upload(s3: S3Server) -> None:
    async def body(store: S3Store) -> None:
        await store.create("del1", 3 * PART)
        await write(store, "del1", 0, data(PART + MiB), MiB, 3 * PART)  # one part and an incomplete part
        await store.create("del2", 10)
        await write(store, "del2", 0, b"0123456789", 3, 10)
        await store.finish("del2", 10)
        objects, uploads = await listing(store)
        assert len(objects) == 4 and len(uploads) == 1  # 2 records, 1 incomplete part, 1 object
        await store.delete("del1")
        await store.delete("del2")
        await store.delete("del2")  # gone already: no error
        assert await listing(store) == ([], [])

    run(options(s3), body)


def test_orphaned_multipart_uploads_are_listed_by_age(s3: S3Server) -> None:
    async def body(store: S3Store) -> None:
        await store.create("orphan1", 10)
        await store.create("orphan2", None, max_size=PART, key="named/orphan1")  # a key that looks like another id
        await write(store, "orphan2", 0, b"tail", 4, None)
        await store.bucket.create_multipart(store.prefix + "crashed", None, {})  # a crash before its record
        assert await store.orphans(datetime.timedelta(hours=1)) == []
        found = await store.orphans(datetime.timedelta(0))
        owners = sorted((p.key[len(store.prefix):], p.upload_id) for p in found)
        assert owners == [("crashed", "crashed"), ("named/orphan1", "orphan2"), ("orphan1", "orphan1")]
        for pending in found:
            await store.abort_orphan(pending)
        assert await store.orphans(datetime.timedelta(0)) == []
        assert await listing(store) == ([], [])

    run(options(s3), body)


def test_checksum_mismatch_leaves_nothing_and_a_match_commits(s3: S3Server) -> None:
    payload = data(PART + 2 * MiB, seed=4)

    async def body(store: S3Store) -> None:
        await store.create("sum1", 4 * PART)
        handle = await store.handle("sum1")
        writer = store.writer("sum1", 0, hashlib.sha256(), length=4 * PART)
        for start in range(0, len(payload), MiB):
            await writer.write(payload[start:start + MiB])
        assert await writer.finish(verified=False) == 0
        assert await store.bucket.list_parts(handle) == [] and await store.bucket.incomplete(handle) is None
        hasher = hashlib.sha256()
        writer = store.writer("sum1", 0, hasher, length=4 * PART)
        for start in range(0, len(payload), MiB):
            await writer.write(payload[start:start + MiB])
        assert hasher.digest() == hashlib.sha256(payload).digest()
        assert await writer.finish(verified=True) == len(payload)
        assert [p.size for p in await store.bucket.list_parts(handle)] == [PART]
        assert await store.bucket.incomplete(handle) == (PART, 2 * MiB)

    run(options(s3), body)


def test_a_part_uploaded_again_after_a_lost_commit_replaces_the_first(s3: S3Server) -> None:
    """A crash after a part reached S3 but before its offset was committed: the part is sent again."""
    length = PART + 100
    first, second = data(length, seed=5), data(length, seed=6)

    async def body(a: S3Store, b: S3Store, c: S3Store) -> None:
        # the same instance sends part 1 twice in one second: the copy it sent last wins
        await a.create("again1", length)
        await write(a, "again1", 0, first[:PART], MiB, length)  # committed offset stays 0 (lost)
        await write(a, "again1", 0, second, MiB, length)
        await a.finish("again1", length)
        assert await read_all(a, "again1", 0, length) == second
        # another instance sends it again later: an instance that sent neither finds the newest
        await a.create("again2", length)
        await write(a, "again2", 0, first[:PART], MiB, length)
        await asyncio.sleep(1.1)  # SeaweedFS's LastModified has whole seconds
        await write(b, "again2", 0, second, MiB, length)
        await c.finish("again2", length)
        assert await read_all(c, "again2", 0, length) == second

    run(options(s3), body, stores=3)


KILLED_WRITER = textwrap.dedent("""
    import asyncio, os, signal, sys
    from tusd_py.storage.s3 import S3Options, S3Store
    async def main(endpoint, bucket, prefix, part, length):
        opts = S3Options(bucket=bucket, endpoint_url=endpoint, region="us-east-1", prefix=prefix, part_size=part, path_style=True)
        async with S3Store(opts) as store:
            writer = store.writer("killed1", 0, length=length)
            data = sys.stdin.buffer.read()
            for start in range(0, len(data), 65536):
                await writer.write(data[start:start + 65536])
            while await writer.checkpoint() < part:  # part 1 acknowledged; the rest only in memory
                await asyncio.sleep(0.01)
            print(await writer.checkpoint(), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
""")


def test_an_instance_killed_mid_part_loses_only_what_never_reached_s3(s3: S3Server) -> None:
    length = 2 * PART + 3 * MiB
    payload = data(length, seed=8)
    opts = options(s3)

    async def create(store: S3Store) -> None:
        await store.create("killed1", length)

    run(opts, create)
    env = {**os.environ, **S3_CREDENTIALS, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", KILLED_WRITER, s3.endpoint, s3.bucket, opts.prefix, str(PART), str(length)]
    done = subprocess.run(args, input=payload[:PART + 3 * MiB], capture_output=True, env=env, timeout=60, check=False)
    assert done.returncode == -9, done.stderr
    committed = int(done.stdout)
    assert committed == PART  # what the engine would have committed from checkpoint()

    async def resume(store: S3Store) -> None:
        assert await write(store, "killed1", committed, payload[committed:], MiB, length) == length
        await store.finish("killed1", length)
        assert await read_all(store, "killed1", 0, length) == payload

    run(opts, resume)


def test_s3_stopped_mid_upload_reports_what_is_durable_and_resumes_after_restart(tmp_path: Path) -> None:
    server = S3Server(tmp_path / "restarted").start()
    try:
        length = 3 * PART
        payload = data(length, seed=9)
        opts = options(server, connect_timeout=0.5, read_timeout=2.0, attempts=2)

        async def before(store: S3Store) -> int:
            await store.create("restart1", length)
            writer = store.writer("restart1", 0, length=length)
            for start in range(0, PART + MiB, MiB):
                await writer.write(payload[start:start + MiB])
            while await writer.checkpoint() < PART:
                await asyncio.sleep(0.01)
            server.stop(signal.SIGKILL)  # S3 dies with a part and a tail in the writer's hands
            for start in range(PART + MiB, 2 * PART + MiB, MiB):
                await writer.write(payload[start:start + MiB])
            written = await writer.finish()
            assert isinstance(writer.error, StorageUnavailable)
            return written

        committed = run(opts, before)
        assert committed == PART
        server.start()

        async def after(store: S3Store) -> None:
            assert await write(store, "restart1", committed, payload[committed:], MiB, length) == length
            await store.finish("restart1", length)
            assert await read_all(store, "restart1", 0, length) == payload

        run(opts, after)
    finally:
        server.stop(signal.SIGKILL)  # after a kill -9, a graceful stop now and then waits for seconds


def test_bucket_check(s3: S3Server) -> None:
    async def body(store: S3Store) -> None:
        await store.check_bucket()

    run(options(s3), body)

    async def missing(store: S3Store) -> None:
        with pytest.raises(StorageUnavailable, match="cannot reach bucket 'nosuchbucket'"):
            await store.check_bucket()

    run(options(s3, bucket="nosuchbucket"), missing)


MEMORY_PROBE = textwrap.dedent("""
    import asyncio, sys
    from tusd_py.storage.s3 import S3Options, S3Store
    MiB = 1024 * 1024
    def rss():  # the peak so far, in MiB (VmHWM: ru_maxrss would count the forking parent)
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024
    async def main(endpoint, bucket, total):
        opts = S3Options(bucket=bucket, endpoint_url=endpoint, region="us-east-1", prefix="mem/", part_size=5 * MiB, path_style=True)
        async with S3Store(opts) as store:
            await store.bucket.head_bucket()
            await store.create("big", total)
            chunk = bytes(range(256)) * 256  # 64 KiB
            before = rss()
            writer = store.writer("big", 0, length=total)
            for _ in range(total // len(chunk)):
                await writer.write(chunk)
            assert await writer.finish() == total
            await store.finish("big", total)
            print(before, rss())
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
""")


def test_peak_memory_of_a_256_mib_write_stays_flat(s3: S3Server, tmp_path: Path) -> None:
    env = {**os.environ, **S3_CREDENTIALS, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, s3.endpoint, s3.bucket, str(256 * MiB)],
                          capture_output=True, text=True, env=env, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    before, peak = map(int, done.stdout.split())
    print(f"peak RSS of a 256 MiB write: {peak} MiB (before the write: {before} MiB)")
    # 5 MiB parts, 4 in flight: a few parts plus the client's buffers, never the file
    assert peak - before < 96, (before, peak)
