"""The file data store: one file per upload in the data directory.

Bodies arrive as a stream of chunks. `FileWriter` gathers them into batches of
about `batch_size` bytes and writes each batch with one positional `pwritev` on a
worker thread, hashing it there too (hashlib releases the GIL), while the event
loop keeps receiving the next batch. At most two batches are alive per upload,
so memory stays flat however large the file.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import AsyncIterator

from tusd_py.checksum import Hasher

_IOV_MAX = 1024
INLINE_WRITE_LIMIT = 64 * 1024  # batches this small are written on the loop: cheaper than a thread hop
_READ_SIZE = 1024 * 1024


def _pwritev_all(fd: int, chunks: list[bytes], position: int, hasher: Hasher | None) -> int:
    """Write every byte of `chunks` at `position`; returns the count. Feeds `hasher` first."""
    if hasher is not None:
        for chunk in chunks:
            hasher.update(chunk)
    total = 0
    views = [memoryview(chunk) for chunk in chunks]
    while views:
        done = os.pwritev(fd, views[:_IOV_MAX], position + total)
        total += done
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if views and done:
            views[0] = views[0][done:]
    return total


class FileWriter:
    def __init__(
        self,
        path: Path,
        offset: int,
        hasher: Hasher | None,
        executor: ThreadPoolExecutor,
        *,
        fsync: bool,
        batch_size: int,
    ) -> None:
        self.position = offset
        self.written = offset
        self._start = offset
        self._path = path
        self._hasher = hasher
        self._executor = executor
        self._fsync = fsync
        self._batch_size = batch_size
        self._fd: int | None = None
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._pending: asyncio.Future[int] | None = None
        self._pending_bytes = 0
        self._error: OSError | None = None

    @property
    def error(self) -> OSError | None:
        return self._error

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        return self._fd

    async def write(self, chunk: bytes) -> None:
        if self._error is not None or not chunk:
            return
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        self.position += len(chunk)
        if self._batch_bytes >= self._batch_size:
            await self._submit()

    async def _wait_pending(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        try:
            self.written += await asyncio.shield(pending)
        except OSError as exc:
            self._error = exc
        except asyncio.CancelledError:
            # The task was cancelled but the thread still writes: account for it
            # first, so that `written` never claims more or less than is on disk.
            try:
                self.written += await pending
            except OSError as exc:
                self._error = exc
            raise

    async def _submit(self) -> None:
        await self._wait_pending()
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if self._error is not None or not batch:
            return
        loop = asyncio.get_running_loop()
        try:
            fd = self._open()
        except OSError as exc:
            self._error = exc
            return
        size = sum(len(chunk) for chunk in batch)
        if size <= INLINE_WRITE_LIMIT:
            try:
                self.written += _pwritev_all(fd, batch, self.written, self._hasher)
            except OSError as exc:
                self._error = exc
            return
        self._pending = loop.run_in_executor(self._executor, _pwritev_all, fd, batch, self.written, self._hasher)

    async def checkpoint(self) -> int:
        """Write what is buffered and return `written` (synced, when fsync is on)."""
        await self._submit()
        await self._wait_pending()
        if self._fsync and self._fd is not None and self._error is None:
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, os.fdatasync, self._fd)
            except OSError as exc:
                self._error = exc
        return self.written

    async def finish(self) -> int:
        try:
            await self._submit()
            await self._wait_pending()
            if self._fd is not None:
                fd, self._fd = self._fd, None
                loop = asyncio.get_running_loop()
                if self._fsync and self._error is None:
                    try:
                        await loop.run_in_executor(self._executor, os.fdatasync, fd)
                    except OSError as exc:
                        self._error = exc
                        self.written = self._start  # nothing from this request is known to be durable
                os.close(fd)
        finally:
            self._batch, self._batch_bytes = [], 0
        return self.written


class FileStore:
    """Upload data as plain files named by upload id (ids cannot contain '.' or '/')."""

    name = "files"

    def __init__(self, directory: Path, *, fsync: bool = False, batch_size: int = 1024 * 1024, threads: int = 8) -> None:
        self.directory = directory
        self.fsync = fsync
        self.batch_size = batch_size
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tusd-io")
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, upload_id: str) -> Path:
        return self.directory / upload_id

    async def _io(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def create(self, upload_id: str) -> None:
        def run() -> None:
            fd = os.open(self.path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.close(fd)

        await self._io(run)

    def writer(self, upload_id: str, offset: int, hasher: Hasher | None = None) -> FileWriter:
        return FileWriter(
            self.path(upload_id), offset, hasher, self.executor, fsync=self.fsync, batch_size=self.batch_size
        )

    async def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        fd = await self._io(os.open, self.path(upload_id), os.O_RDONLY)
        try:
            position = start
            while position < end:
                chunk = await self._io(os.pread, fd, min(_READ_SIZE, end - position), position)
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def finish(self, upload_id: str, length: int) -> None:
        def run() -> None:
            path = self.path(upload_id)
            if path.stat().st_size > length:
                os.truncate(path, length)

        await self._io(run)

    async def delete(self, upload_id: str) -> None:
        def run() -> None:
            try:
                os.unlink(self.path(upload_id))
            except FileNotFoundError:
                pass

        await self._io(run)

    async def concatenate(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        raise NotImplementedError("concatenation arrives with the concatenation extension")

    def writable(self) -> bool:
        return os.access(self.directory, os.W_OK)
