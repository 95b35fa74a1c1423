"""The upload engine on the S3 data store: the contract's creation, writer length, checksum
verdict, completion and reads, in-process against a real S3-compatible server (SeaweedFS
`weed mini` on 127.0.0.1) and a real state store (embedded SQLite, or redis-server).

What a request sees of the same rules over HTTP is in `test_s3_serving.py` and the
protocol modules run with the S3 data backend; here the engine's calls are observed
where HTTP cannot see them: which parts and objects are in the bucket, and when.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import S3Server
from tusd_py import protocol as p
from tusd_py.checksum import new_hasher
from tusd_py.concat import Outcome
from tusd_py.config import Config
from tusd_py.engine import UploadEngine
from tusd_py.errors import to_tus_error
from tusd_py.hooks.base import HookEvent, HookResponse, Hooks
from tusd_py.locks.memory import MemoryLocker
from tusd_py.state.base import FINISHED, StateStore, Upload
from tusd_py.state.local import LocalStateStore
from tusd_py.state.redis import RedisStateStore
from tusd_py.storage.s3 import S3Options, S3Store
from tusd_py.writes import Stop

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


class Answer:
    """A hook transport that answers pre-create with a fixed response (as a webhook would)."""

    name = "answer"

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer

    def handles(self, event_type: str) -> bool:
        return event_type == "pre-create"

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        return HookResponse.parse(self.answer)

    async def close(self) -> None: ...


class Rig:
    """An engine on a fresh key prefix of the bucket, with the state store of the test's backend."""

    def __init__(self, engine: UploadEngine, store: S3Store) -> None:
        self.engine = engine
        self.store = store

    async def objects(self) -> list[str]:
        client = self.store.bucket.client
        listed = await client.list_objects_v2(Bucket=self.store.bucket.name, Prefix=self.store.prefix)
        return sorted(o["Key"][len(self.store.prefix):] for o in listed.get("Contents", []))

    async def multipart_uploads(self) -> list[str]:
        client = self.store.bucket.client
        listed = await client.list_multipart_uploads(Bucket=self.store.bucket.name, Prefix=self.store.prefix)
        return [u["Key"][len(self.store.prefix):] for u in listed.get("Uploads", [])]

    async def parts(self, upload_id: str) -> list[tuple[int, int]]:
        handle = await self.store.handle(upload_id)
        return [(part.number, part.size) for part in await self.store.bucket.list_parts(handle)]

    async def read(self, upload: Upload) -> bytes:
        await self.engine.readable(upload)
        return b"".join([chunk async for chunk in self.store.read(upload.id, 0, upload.offset)])

    async def new(self, length: int | None, metadata: str | None = None, partial: bool = False) -> Upload:
        upload = Upload(id=p.new_upload_id(), length=length, metadata=metadata, partial=partial,
                        concat="partial" if partial else None, state=FINISHED if length == 0 else "created")
        upload = await self.engine.create(upload)
        if upload.finished:
            await self.engine.finish(upload)
        return upload

    async def write(self, upload: Upload, data: bytes, checksum: Any = None, piece: int = 256 * 1024) -> Any:
        chunks = [data[i:i + piece] for i in range(0, len(data), piece)]
        return await self.engine.write_new(upload, self.engine.reader(body(*chunks)), checksum)


def body(*chunks: bytes) -> Any:
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


@pytest.fixture(params=["embedded", "redis"])
def rig(request: pytest.FixtureRequest, s3: S3Server, tmp_path: Path) -> Iterator[Any]:
    """`async with rig(**config) as r:` an engine on S3 and the test's state backend."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def make(answer: dict[str, Any] | None = None, **settings: Any) -> Any:
        async def opened() -> AsyncIterator[Rig]:
            config = Config(data_dir=tmp_path / "data", **settings)
            options = S3Options(bucket=s3.bucket, endpoint_url=s3.endpoint, region="us-east-1", path_style=True,
                                prefix=f"e-{secrets.token_hex(4)}/", part_size=PART, temp_dir=str(tmp_path))
            store = await S3Store(options).start()
            state: StateStore
            if redis_url is not None:
                state = RedisStateStore.from_url(redis_url, prefix=f"t{secrets.token_hex(3)}:")
            else:
                state = LocalStateStore(tmp_path / f"s{secrets.token_hex(3)}.sqlite3")
            hooks = Hooks([Answer(answer)]) if answer is not None else Hooks()
            engine = UploadEngine(config, state, store, MemoryLocker(), hooks=hooks)
            try:
                yield Rig(engine, store)
            finally:
                await state.close()
                await store.close()

        import contextlib

        return contextlib.asynccontextmanager(opened)()

    return make


def payload(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048
    return (block * (size // len(block) + 1))[:size]


def test_creation_tells_the_store_the_safe_content_type_and_the_hooks_key_and_metadata(rig: Any) -> None:
    answer = {"storage": {"key": "reports/2026/q1.png", "metadata": {"owner": "alice"}}}

    async def main() -> None:
        async with rig(answer) as r:
            metadata = p.encode_metadata({"filetype": b"image/png", "filename": b"q1.png"})
            upload = await r.new(11, metadata)
            assert (await r.write(upload, b"hello world")).stop is Stop.COMPLETE
            client = r.store.bucket.client
            head = await client.head_object(Bucket=r.store.bucket.name, Key=r.store.prefix + "reports/2026/q1.png")
            assert head["ContentType"] == "image/png" and head["Metadata"] == {"owner": "alice"}
            assert await r.read(upload.replace(offset=11)) == b"hello world"
            # a type download.py would not serve inline is stored as an attachment's would be
            unsafe = await r.new(0, p.encode_metadata({"filetype": b"text/html"}))
            head = await client.head_object(Bucket=r.store.bucket.name, Key=r.store.prefix + unsafe.id)
            assert head["ContentType"] == "application/octet-stream" and head["ContentLength"] == 0

    asyncio.run(main())


def test_an_upload_too_large_for_10000_parts_is_413_before_anything_exists(rig: Any) -> None:
    async def main() -> None:
        async with rig() as r:
            too_large = 5 * 1024**4 + 1  # past S3's 5 TiB object
            with pytest.raises(OSError) as raised:
                await r.new(too_large)
            error = to_tus_error(raised.value)
            assert error is not None and error.status == 413
            assert await r.objects() == [] and await r.multipart_uploads() == []
        async with rig(max_size=6 * 1024**4) as r:  # a deferred length is bounded by --max-size
            with pytest.raises(OSError) as raised:
                await r.new(None)
            assert to_tus_error(raised.value).status == 413  # type: ignore[union-attr]
            assert await r.objects() == [] and await r.multipart_uploads() == []

    asyncio.run(main())


def test_the_last_part_of_a_known_length_is_sent_as_the_last_part(rig: Any) -> None:
    """With the length, the writer seals the short last part itself: no incomplete-part object is
    written and copied back by the completion (UploadPartCopy)."""
    data = payload(PART + 3 * MiB)

    async def main() -> None:
        async with rig() as r:
            copies = 0
            copy_part = r.store.bucket.copy_part

            async def counting(*args: Any) -> str:
                nonlocal copies
                copies += 1
                return await copy_part(*args)

            r.store.bucket.copy_part = counting  # type: ignore[method-assign]
            upload = await r.new(len(data))
            result = await r.write(upload, data)
            assert result.stop is Stop.COMPLETE and result.upload.finished
            assert copies == 0
            assert await r.read(result.upload) == data

    asyncio.run(main())


def test_a_checksum_mismatch_commits_nothing_and_leaves_no_part_in_s3(rig: Any) -> None:
    data = payload(2 * PART + MiB)

    async def main() -> None:
        async with rig() as r:
            upload = await r.new(len(data) + 10)
            wrong = (new_hasher("sha1"), hashlib.sha1(b"something else").digest())
            result = await r.write(upload, data, wrong)
            assert result.stop is Stop.CHECKSUM_MISMATCH and result.upload.offset == 0
            assert await r.parts(upload.id) == []
            assert [key for key in await r.objects() if key.endswith(".part")] == []
            assert (await r.engine.state.get(upload.id)).offset == 0  # type: ignore[union-attr]
            right = (new_hasher("sha1"), hashlib.sha1(data).digest())
            result = await r.write(upload, data, right)
            assert result.stop is Stop.COMPLETE and result.upload.offset == len(data)
            assert await r.parts(upload.id) == [(1, PART), (2, PART)]

    asyncio.run(main())


def test_completion_of_deferred_lengths_and_the_drafts_explicit_completion(rig: Any) -> None:
    data = payload(PART + 100)

    async def main() -> None:
        async with rig(max_size=100 * MiB) as r:
            upload = await r.new(None)
            result = await r.write(upload, data)
            assert result.upload.offset == len(data) and not result.upload.finished
            async with r.engine.locked(upload.id) as (_, current):
                finished = await r.engine.declare_length(current, len(data))
            await r.engine.finish(finished)
            assert await r.read(finished) == data
            # the draft's completion: the length becomes the offset
            other = await r.new(None)
            assert (await r.write(other, data[:1000])).upload.offset == 1000
            async with r.engine.locked(other.id) as (_, current):
                completed = await r.engine.complete(current)
            assert completed.length == 1000 and await r.read(completed) == data[:1000]

    asyncio.run(main())


def test_a_finished_upload_whose_completion_was_lost_is_completed_by_the_next_read(rig: Any) -> None:
    """An instance that dies between the commit that finished an upload and
    CompleteMultipartUpload leaves a finished record and no object: a read completes it."""
    data = payload(PART + 1000)

    async def main() -> None:
        async with rig() as r:
            upload = await r.new(len(data))
            complete = r.store.finish

            async def dies(upload_id: str, length: int) -> None:
                raise asyncio.CancelledError  # the process went away here

            r.store.finish = dies  # type: ignore[method-assign]
            with pytest.raises(asyncio.CancelledError):
                await r.write(upload, data)
            r.store.finish = complete  # type: ignore[method-assign]
            record = await r.engine.state.get(upload.id)
            assert record is not None and record.finished
            assert upload.id not in await r.objects() and upload.id in await r.multipart_uploads()
            assert await r.read(record) == data  # completed on the way
            assert await r.multipart_uploads() == []
            assert await r.read(record) == data  # and again: idempotent

    asyncio.run(main())


def test_unfinished_uploads_are_not_read_on_s3(rig: Any) -> None:
    async def main() -> None:
        async with rig() as r:
            assert not r.engine.capabilities.reads_unfinished and r.engine.capabilities.download
            upload = await r.new(10)
            written = (await r.write(upload, b"12345")).upload
            with pytest.raises(p.TusError) as raised:
                await r.engine.readable(written)
            assert raised.value.status == 409 and raised.value.code == "ERR_UPLOAD_NOT_FINISHED"

    asyncio.run(main())


@pytest.mark.parametrize("sizes", [(PART, PART + 7), (1000, 2000)], ids=["copied", "streamed"])
def test_concatenation_on_s3_copies_or_streams_and_completes_the_final(rig: Any, sizes: tuple[int, int]) -> None:
    async def main() -> None:
        async with rig() as r:
            assert r.engine.concat is not None
            pieces = [payload(size, seed) for seed, size in enumerate(sizes)]
            ids = []
            for piece in pieces:
                part = await r.new(len(piece), partial=True)
                assert (await r.write(part, piece)).upload.finished
                ids.append(part.id)
            final = await r.engine.concat.new_final(p.Concat(raw="final;", partial=False, urls=tuple(f"/files/{i}" for i in ids)), None)
            final = await r.engine.concat.store_final(final)
            assert await r.engine.concat.complete(final.id) is Outcome.COMPLETE
            record = await r.engine.state.get(final.id)
            assert record is not None and record.finished
            assert await r.read(record) == b"".join(pieces)

    asyncio.run(main())
