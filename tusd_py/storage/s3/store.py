"""The S3 data store: the core `storage.base.DataStore` and the capabilities an object store has.

Each tus upload is one object, built by one multipart upload; `S3Writer` streams
bodies into it and `concat.concatenate` assembles final uploads. This module
holds the upload's life around that: create (the multipart upload and the
`.info` record), finish (CompleteMultipartUpload), read, delete, the sweeper's
orphan listing and the start-up bucket check. Of the capabilities it has
`ReadableDataStore` (finished uploads only: `reads_unfinished` False),
`ConcatenatingDataStore` and `CompletingDataStore` (`finish`, idempotent and
cheap when done: the engine calls it again before reads of a finished upload,
which repairs one whose instance died before completing it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import logging
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Mapping

from tusd_py.checksum import Hasher
from tusd_py.storage.base import Described
from tusd_py.storage.s3 import concat
from tusd_py.storage.s3.bucket import Bucket, Handle, Part, Pending
from tusd_py.storage.s3.buffers import PartBuffers
from tusd_py.storage.s3.errors import S3StoreError, StorageUnavailable, UploadNotFound
from tusd_py.storage.s3.keys import (
    INTERNAL,
    check_id,
    check_key,
    default_owner,
    incomplete_key,
    info_key,
    owner_key,
    safe_metadata,
)
from tusd_py.storage.s3.options import S3Options, create_client
from tusd_py.storage.s3.partsize import part_count, part_size
from tusd_py.storage.s3.writer import S3Writer

logger = logging.getLogger("tusd_py.storage.s3")
_HANDLES_KEPT = 4096  # records cached per process; each is a few hundred bytes


class S3Store:
    name = "s3"
    reads_unfinished = False  # the object exists once its multipart upload is completed

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self.prefix = options.key_prefix
        self._client_cm: Any = None
        self._bucket: Bucket | None = None
        self._in_flight = asyncio.Semaphore(options.max_in_flight)
        self._buffers = PartBuffers(options.max_in_flight * options.part_size)
        self._handles: collections.OrderedDict[str, Handle] = collections.OrderedDict()
        self._sent: dict[str, dict[int, str]] = {}  # upload id -> ETags of the parts this process sent last
        self._completed: collections.OrderedDict[str, int] = collections.OrderedDict()  # id -> length, completed here
        self._writable = True

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> S3Store:
        self._client_cm = create_client(self.options)
        client = await self._client_cm.__aenter__()
        self._bucket = Bucket(client, self.options.bucket, self.prefix)
        return self

    async def close(self) -> None:
        if self._client_cm is not None:
            await self._client_cm.__aexit__(None, None, None)
            self._client_cm = self._bucket = None

    async def __aenter__(self) -> S3Store:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def bucket(self) -> Bucket:
        if self._bucket is None:
            raise RuntimeError("S3Store.start() was not called")
        return self._bucket

    async def check_bucket(self) -> None:
        """HeadBucket, then write and delete a probe object; StorageUnavailable says why not."""
        where = f"bucket {self.options.bucket!r}" + (f" at {self.options.endpoint_url}" if self.options.endpoint_url else "")
        probe = f"{self.prefix}{INTERNAL}probe-{secrets.token_hex(8)}"
        self._writable = False
        try:
            await self.bucket.head_bucket()
        except S3StoreError as error:
            raise StorageUnavailable(f"cannot reach {where}: {error} (check the endpoint, region and credentials)") from error
        try:
            await self.bucket.put(probe, b"probe")
            await self.bucket.delete(probe)
        except S3StoreError as error:
            raise StorageUnavailable(f"cannot write to {where} under {self.prefix!r}: {error} (check the bucket policy)") from error
        self._writable = True

    def writable(self) -> bool:
        """Whether the last S3 calls went through (for readiness checks)."""
        return self._writable

    # -- records -------------------------------------------------------------

    async def handle(self, upload_id: str) -> Handle:
        """The upload's record: from this process's cache, else its `.info` object."""
        handle = self._handles.get(check_id(upload_id))
        if handle is None:
            handle = await self.bucket.get_info(upload_id)
            self._remember(handle)
        return handle

    def object_key(self, upload_id: str) -> str:
        """The upload's object key as this process knows it (its cached record, else the default key), for hooks."""
        handle = self._handles.get(upload_id)
        return handle.key if handle is not None else self.prefix + upload_id

    def _remember(self, handle: Handle) -> None:
        self._handles[handle.upload_id] = handle
        self._handles.move_to_end(handle.upload_id)
        while len(self._handles) > _HANDLES_KEPT:
            self._sent.pop(self._handles.popitem(last=False)[0], None)

    # -- the DataStore core and its capabilities ----------------------------

    async def create(
        self,
        upload_id: str,
        length: int | None = None,
        *,
        max_size: int | None = None,
        key: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Start the upload's multipart upload and write its record.

        The part size comes from `length`, else `max_size` (a deferred length), else
        the preferred size (at most 10,000 parts of it). `key` (relative to the
        prefix), `content_type` and `metadata` are the finished object's.
        Raises `UploadTooLarge` before anything is created.
        """
        check_id(upload_id)
        bound = length if length is not None else max_size
        size = part_size(bound or 0, self.options.part_size)
        object_key = self.prefix + (check_key(key) if key is not None else upload_id)
        multipart_id = await self._guard(self.bucket.create_multipart(object_key, content_type, safe_metadata(metadata or {})))
        handle = Handle(upload_id, object_key, multipart_id, size)
        try:
            await self._guard(self.bucket.put_info(handle))
            if key is not None:
                await self._guard(self.bucket.put(owner_key(self.prefix, multipart_id), upload_id.encode()))
        except S3StoreError:
            await self.bucket.abort(object_key, multipart_id)
            raise
        self._remember(handle)

    def writer(self, upload_id: str, offset: int, hasher: Hasher | None = None, *, length: int | None = None) -> AdapterWriter:
        """A writer from `offset` on. With `hasher`, bytes are held until `finish(verified=)`."""
        return AdapterWriter(self, upload_id, offset, length=length, hasher=hasher)

    def open_writer(self, handle: Handle, offset: int, *, length: int | None, hasher: Hasher | None, hold: bool) -> S3Writer:
        return S3Writer(
            self.bucket, handle, offset, length=length, hasher=hasher, hold=hold,
            concurrency=self.options.concurrency, in_flight=self._in_flight, temp_dir=self.options.temp_dir,
            etags=self._sent.setdefault(handle.upload_id, {}),  # at completion, what this process sent wins
            buffers=self._buffers,
        )

    async def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of a finished upload, streamed by ranged GETs."""
        handle = await self.handle(upload_id)
        async for chunk in self.bucket.read(handle.key, start, end):
            yield chunk

    async def describe(self, upload_id: str) -> Described:
        """Size, ETag, Last-Modified and Content-Type of a finished upload's object (`DescribingDataStore`)."""
        return await self.bucket.describe((await self.handle(upload_id)).key)

    async def finish(self, upload_id: str, length: int) -> None:
        """CompleteMultipartUpload of parts 1..n (an empty part for an empty upload).

        A last part still in the incomplete part object (a deferred length) is
        copied into place inside S3 first. Idempotent: an upload completed
        before (a retry after a crash) is left as it is when its size matches;
        one completed by this process costs no S3 call.
        """
        if self._completed.get(upload_id) == length:
            return
        await self._complete(upload_id, length)
        self._completed[upload_id] = length
        while len(self._completed) > _HANDLES_KEPT:
            self._completed.popitem(last=False)

    async def _complete(self, upload_id: str, length: int) -> None:
        handle = await self.handle(upload_id)
        size = handle.part_size
        count = part_count(length, size)
        try:
            listed = await self._guard(self.bucket.list_parts(handle))
        except UploadNotFound:
            if await self.bucket.size(handle.key) == length:
                return
            raise
        etags = _choose(listed, length, size, self._sent.get(upload_id, {}))
        last = count
        if last not in etags:
            etags[last] = await self._last_part(handle, last, length)
        missing = [number for number in range(1, count + 1) if number not in etags]
        if missing:
            raise StorageUnavailable(f"upload {upload_id}: parts {missing[:5]} of {count} are not in S3")
        await self._guard(self.bucket.complete(handle, [(number, etags[number]) for number in range(1, count + 1)]))
        with contextlib.suppress(S3StoreError):
            await self.bucket.delete(incomplete_key(self.prefix, upload_id))

    async def _last_part(self, handle: Handle, number: int, length: int) -> str:
        start = (number - 1) * handle.part_size
        if length == start:
            return await self.bucket.upload_part(handle, number, b"")
        found = await self.bucket.incomplete(handle)
        if found is None or found[0] != start or found[1] < length - start:
            raise StorageUnavailable(f"upload {handle.upload_id}: its last part (from byte {start}) is not in S3")
        return await self.bucket.copy_part(handle, number, incomplete_key(self.prefix, handle.upload_id), 0, length - start)

    async def delete(self, upload_id: str) -> None:
        """Abort the multipart upload and delete the object, the incomplete part and the record."""
        try:
            handle = await self.handle(upload_id)
        except UploadNotFound:
            handle = None
        keys = [info_key(self.prefix, upload_id), incomplete_key(self.prefix, upload_id)]
        if handle is not None:
            await self.bucket.abort(handle.key, handle.multipart_id)
            keys += [handle.key, owner_key(self.prefix, handle.multipart_id)]
        await asyncio.gather(*(self._guard(self.bucket.delete(key)) for key in keys))
        self._handles.pop(upload_id, None)
        self._sent.pop(upload_id, None)
        self._completed.pop(upload_id, None)

    async def concatenate(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """The final upload's object := the parts' bytes in order (see `concat`)."""
        await concat.concatenate(self, final_id, parts)

    # -- the sweeper ---------------------------------------------------------

    async def orphans(self, older_than: datetime.timedelta) -> list[Pending]:
        """Multipart uploads under the prefix started more than `older_than` ago, with their upload id.

        Unfinished uploads the state still knows are among them (a long upload
        outlives its creation time): the sweeper aborts only those whose
        `upload_id` is None or no longer in the state.
        """
        cutoff = datetime.datetime.now(datetime.UTC) - older_than
        found = []
        async for pending in self.bucket.pending():
            if pending.initiated < cutoff:
                marker = await self.bucket.get_small(owner_key(self.prefix, pending.multipart_id))
                owner = marker.decode() if marker is not None else default_owner(self.prefix, pending.key)
                found.append(dataclasses.replace(pending, upload_id=owner))
        return found

    async def abort_orphan(self, pending: Pending) -> None:
        """Abort a multipart upload left behind; with its `upload_id` (gone from the state), delete its objects too."""
        if pending.upload_id is not None:
            await self.delete(pending.upload_id)
        await self.bucket.abort(pending.key, pending.multipart_id)
        await self.bucket.delete(owner_key(self.prefix, pending.multipart_id))

    async def _guard(self, call: Any) -> Any:
        """Await an S3 call, keeping `writable()` up to date."""
        try:
            result = await call
        except StorageUnavailable:
            self._writable = False
            raise
        self._writable = True
        return result


def _choose(listed: list[Part], length: int, size: int, sent: dict[int, str]) -> dict[int, str]:
    """The ETag of each part that has the size its number requires.

    Where a part was uploaded twice (a crash or a lost lease lost the first
    upload's commit) and the service lists both (SeaweedFS does, in no useful
    order, with LastModified in whole seconds), the copy this process sent last
    wins, else the newest. Two copies sent by two instances within one second
    stay ambiguous; a resuming client sends the same bytes again, so both hold
    the same data but for a client that changes the file under an upload.
    """
    best: dict[int, Part] = {}
    for part in listed:
        expected = min(size, length - (part.number - 1) * size)
        if part.size != expected:
            continue
        current = best.get(part.number)
        if sent.get(part.number) == part.etag or (
            current is None or (sent.get(part.number) != current.etag and part.modified > current.modified)
        ):
            best[part.number] = part
    return {number: part.etag for number, part in best.items()}


class AdapterWriter:
    """The `storage.base.Writer` protocol over `S3Writer`: the record is looked up on first use."""

    def __init__(self, store: S3Store, upload_id: str, offset: int, *, length: int | None, hasher: Hasher | None) -> None:
        self.store = store
        self.upload_id = upload_id
        self.position = offset
        self.written = offset
        self._length = length
        self._hasher = hasher
        self._inner: S3Writer | None = None
        self._error: OSError | None = None

    @property
    def error(self) -> OSError | None:
        return self._error or (self._inner.error if self._inner is not None else None)

    async def _writer(self) -> S3Writer | None:
        if self._inner is None and self._error is None:
            try:
                handle = await self.store.handle(self.upload_id)
            except S3StoreError as error:
                self._error = error
                return None
            self._inner = self.store.open_writer(
                handle, self.written, length=self._length, hasher=self._hasher, hold=self._hasher is not None
            )
        return self._inner

    async def write(self, chunk: bytes) -> None:
        inner = await self._writer()
        if inner is not None:
            await inner.write(chunk)
            self.position = inner.position

    async def checkpoint(self) -> int:
        if self._inner is not None:
            self.written = await self._inner.checkpoint()
        return self.written

    async def finish(self, *, verified: bool = True) -> int:
        if self._inner is not None:
            self.written = await self._inner.finish(verified=verified)
        return self.written


if TYPE_CHECKING:  # the adapter fits the core and the capabilities it declares (mypy checks these lines)
    from tusd_py.storage.base import CompletingDataStore, ConcatenatingDataStore, DataStore, DescribingDataStore, ReadableDataStore, Writer

    _s3 = S3Store(S3Options(bucket="-"))
    _store: DataStore = _s3
    _writer: Writer = _store.writer("-", 0)
    _readable: ReadableDataStore = _s3
    _concatenating: ConcatenatingDataStore = _s3
    _describing: DescribingDataStore = _s3
    _completing: CompletingDataStore = _s3
