"""One body's bytes into an upload's multipart upload, part by part, as they arrive.

The bytes of part `n` are [(n-1)*P, n*P) for the upload's part size P. A writer
starts at the committed offset X: the parts below X's part are in S3 already;
the bytes of X's part below X are the incomplete part object (read back, at
most one part, and prepended). Each part that fills is handed to an upload task
and the next one is read meanwhile: at most `concurrency` of this writer's and
`max_in_flight` of the whole store's parts are in flight, each one part in
memory, so memory per upload is bounded by (1 + concurrency) parts whatever the
body's size (`bucket.PartBody` keeps the HTTP client from copying a part). A
part is filled by copying the body's chunks into a buffer of `buffers.PartBuffers`
(one copy per byte, into pages used before). A failed part is retried by botocore's backoff; if it still fails,
writing stops and `finish` reports what is durable.

`written` (the durable offset) moves only over parts S3 has acknowledged, in
order, and over an incomplete part once S3 has it. Bytes in S3 below the
committed offset never change: the incomplete part is replaced whole (PUT is
atomic) and a part is uploaded only once, unless a crash lost its commit; the
upload again replaces it by number (see `store.S3Store.finish` for services that
keep both).

The incomplete part is replaced only if it is still the one that was there when
the writer opened: a writer whose lease lapsed (its commits are refused by the
fence) must not put back a shorter incomplete part over the one its successor
committed, or every later writer would find bytes below the committed offset
missing (tests/e2e/test_s3_instances.py). HEAD then PUT leaves a window of one
round trip; S3's conditional writes would close it, but not every service has them.

With a checksum (`hold=True`) nothing is sent to S3 before the caller has
checked it: full parts wait in temporary files, and `finish(verified=...)`
uploads them or throws them away, so a mismatch leaves no part behind.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import IO

from tusd_py.checksum import Hasher
from tusd_py.storage.s3.bucket import Bucket, Handle
from tusd_py.storage.s3.buffers import PartBuffers
from tusd_py.storage.s3.errors import S3StoreError, StorageUnavailable, UploadTooLarge
from tusd_py.storage.s3.partsize import MAX_PARTS


class S3Writer:
    """Puts bytes at `offset` onwards (`storage.base.Writer`, plus `finish(verified=)`)."""

    def __init__(
        self,
        bucket: Bucket,
        handle: Handle,
        offset: int,
        *,
        length: int | None,
        hasher: Hasher | None,
        hold: bool,
        concurrency: int,
        in_flight: asyncio.Semaphore,
        temp_dir: str | None = None,
        etags: dict[int, str] | None = None,
        buffers: PartBuffers | None = None,
    ) -> None:
        self.bucket = bucket
        self.handle = handle
        self.position = offset  # where the next byte received will go
        self.written = offset  # everything below this is durable in S3
        self.length = length
        self.hasher = hasher
        self.hold = hold
        self._start = offset
        size = handle.part_size
        self._number = offset // size + 1  # the part being filled
        self._part_start = (self._number - 1) * size
        self._buffers = buffers or PartBuffers(0)
        self._buffer: bytearray | None = None  # the part being filled (taken at its first byte)
        self._filled = 0  # bytes of the part being filled, from _part_start
        self._opened = False
        self._baseline: str | None = None  # the incomplete part's ETag when this writer opened
        self._local = asyncio.Semaphore(concurrency)
        self._in_flight = in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._ends: dict[int, int] = {}  # part number -> end offset, for parts S3 acknowledged
        self._next_durable = self._number
        self._held: list[tuple[int, IO[bytes], int]] = []  # (number, file, end) of parts awaiting the checksum
        self._temp_dir = temp_dir
        self._error: S3StoreError | None = None
        self.etags = {} if etags is None else etags  # part number -> ETag of each part sent (shared with the store)

    @property
    def error(self) -> OSError | None:
        """The first S3 error, if any; writing stops at it."""
        return self._error

    async def _open(self) -> None:
        """Read back the incomplete part that this writer's first part starts with."""
        self._opened = True
        self._baseline = await self.bucket.incomplete_tag(self.handle)
        have = self._start - self._part_start
        if have == 0:
            return
        data = await self.bucket.get_incomplete(self.handle, self._part_start, have)
        if data is None:
            raise StorageUnavailable(
                f"upload {self.handle.upload_id}: the incomplete part holding bytes {self._part_start}-{self._start} is missing"
            )
        self._buffer = self._buffers.take(self._part_room())
        self._buffer[:have] = data
        self._filled = have

    def _part_room(self) -> int:
        """The size of the buffer the part being filled needs: a part, or less for the last part
        of a known length (a 64 KiB upload holds 64 KiB, not a whole part, while it is written)."""
        if self.length is None:
            return self.handle.part_size
        return max(min(self.handle.part_size, self.length - self._part_start), 1)

    def _give(self, buffer: bytearray) -> None:
        """A buffer nothing reads any more, back to the store's pool if it is part-sized (a last
        part's smaller one seldom fits again, and would take the room of part-sized ones)."""
        if len(buffer) == self.handle.part_size:
            self._buffers.give(buffer)

    async def write(self, chunk: bytes) -> None:
        """Accept a chunk; full parts go to S3 (or to a temporary file, when held)."""
        if self._error is not None or not chunk:
            return
        try:
            if not self._opened:
                await self._open()
            if self.length is not None and self.position + len(chunk) > self.length:
                raise ValueError(f"write past the upload's length {self.length}")
            if self.hasher is not None:
                self.hasher.update(chunk)
            self.position += len(chunk)
            view = memoryview(chunk)
            size = self.handle.part_size
            while view:
                room = size - self._filled
                if self.length is not None:
                    room = min(room, self.length - self._part_start - self._filled)
                take = view[:room]
                if self._buffer is None:
                    self._buffer = self._buffers.take(self._part_room())
                self._buffer[self._filled:self._filled + len(take)] = take
                self._filled += len(take)
                view = view[len(take):]
                if self._filled == size or (self.length is not None and self._part_start + self._filled == self.length):
                    await self._seal()
        except S3StoreError as error:
            self._error = self._error or error

    async def _seal(self) -> None:
        """The part being filled is complete: send it (or hold it) and start the next."""
        if self._number > MAX_PARTS:
            raise UploadTooLarge(f"upload {self.handle.upload_id}: more than {MAX_PARTS} parts")
        number, end, length = self._number, self._part_start + self._filled, self._filled
        buffer = self._buffer
        assert buffer is not None
        self._buffer, self._filled = None, 0
        self._number += 1
        self._part_start = end
        if self.hold:
            self._held.append((number, await asyncio.to_thread(self._spool, memoryview(buffer)[:length]), end))
            self._give(buffer)  # written out: nothing reads it any more
        else:
            await self._send(number, buffer, length, end)

    def _spool(self, data: memoryview) -> IO[bytes]:
        file = tempfile.TemporaryFile(dir=self._temp_dir, prefix="tusd-s3-")
        file.write(data)
        return file

    async def _send(self, number: int, buffer: bytearray, length: int, end: int) -> None:
        """Start uploading one part (`buffer[:length]`) once this writer and the store have room for it."""
        await self._local.acquire()
        try:
            await self._in_flight.acquire()
        except BaseException:
            self._local.release()
            raise
        task = asyncio.create_task(self._upload(number, buffer, length, end))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _upload(self, number: int, buffer: bytearray, length: int, end: int) -> None:
        try:
            self.etags[number], retries = await self.bucket.put_part(self.handle, number, memoryview(buffer)[:length])
            # Acknowledged at the first attempt, the request's bytes were all sent and read: no
            # connection holds a view of the buffer any more. After a retry an aborted attempt's
            # connection might, so that buffer is left to the garbage collector, never reused.
            if retries == 0:
                self._give(buffer)
            self._ends[number] = end
            while self._next_durable in self._ends:
                self.written = max(self.written, self._ends[self._next_durable])
                self._next_durable += 1
        except S3StoreError as error:
            self._error = self._error or error
        finally:
            self._in_flight.release()
            self._local.release()

    async def checkpoint(self) -> int:
        """The durable offset so far (parts S3 acknowledged; nothing is flushed early)."""
        return self.written

    async def finish(self, *, verified: bool = True) -> int:
        """Wait for the parts in flight, keep the tail as the incomplete part, return `written`.

        Held bytes (a checksum) go to S3 only when `verified`; otherwise nothing is
        sent and the committed offset stays. After an error it returns what is
        durable and raises nothing, so a caller can always commit the bytes that made it.
        """
        try:
            if self.hold and not verified:
                return self.written
            for number, file, end in self._held:
                if self._error is not None:
                    break
                buffer = self._buffers.take(end - (number - 1) * self.handle.part_size)  # the part's own size
                length = await asyncio.to_thread(_read_into, file, buffer)
                await self._send(number, buffer, length, end)
            await asyncio.gather(*self._tasks)
            if self._error is None and self._buffer is not None and self._part_start + self._filled > self.written:
                if await self.bucket.incomplete_tag(self.handle) != self._baseline:
                    raise StorageUnavailable(
                        f"upload {self.handle.upload_id}: another writer replaced the incomplete part meanwhile; this one's tail is not kept"
                    )
                tail = bytes(memoryview(self._buffer)[:self._filled])
                await self.bucket.put_incomplete(self.handle, self._part_start, tail)
                self.written = self._part_start + len(tail)
        except S3StoreError as error:
            self._error = self._error or error
            await asyncio.gather(*self._tasks)
        finally:
            for _, file, _ in self._held:
                file.close()
            self._held.clear()
            if self._buffer is not None:  # the tail's bytes went out as a copy
                self._give(self._buffer)
                self._buffer, self._filled = None, 0
        return self.written


def _read_into(file: IO[bytes], buffer: bytearray) -> int:
    """A held part's bytes back from its temporary file into `buffer`; how many."""
    file.seek(0, os.SEEK_SET)
    view, length = memoryview(buffer), 0
    while length < len(buffer):
        got = file.readinto(view[length:])  # type: ignore[attr-defined]
        if not got:
            break
        length += got
    return length
