"""The file data store: one file per upload in the data directory.

Bodies arrive as a stream of chunks. `FileWriter` gathers them into batches of
about `batch_size` bytes and writes each batch with one positional `pwritev` on a
worker thread, hashing it there too (hashlib releases the GIL), while the event
loop keeps receiving the next batch. At most two batches are alive per upload,
so memory stays flat however large the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
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


# copy_file_range cannot do these (old kernel, other file systems, some overlay set-ups);
# sendfile, then a plain copy, can.
_NO_KERNEL_COPY = {errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM, errno.EBADF}
_COPY_STEP = 1 << 30  # bytes asked of the kernel per call (a 32-bit size_t limit and a bound on each syscall)


def copy_range(source: int, target: int, count: int, position: int) -> None:
    """Copy the first `count` bytes of `source` to `target` at `position`.

    In the kernel when it can (`copy_file_range`, which may even share extents,
    else `sendfile`), else through one bounded buffer: never a whole part in memory.
    Raises OSError if `source` has fewer than `count` bytes.
    """
    for method in (_copy_file_range, _sendfile, _buffered_copy):
        try:
            done = method(source, target, count, position)  # a method that fails starts over the next
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY or method is _buffered_copy:
                raise
            continue
        if done < count:
            raise OSError(errno.EIO, f"part data ends after {done} of {count} bytes")
        return


def _copy_file_range(source: int, target: int, count: int, position: int) -> int:
    done = 0
    if not hasattr(os, "copy_file_range"):
        raise OSError(errno.ENOSYS, "no copy_file_range")
    while done < count:
        copied = os.copy_file_range(source, target, min(count - done, _COPY_STEP), done, position + done)
        if copied == 0:
            break
        done += copied
    return done


def _sendfile(source: int, target: int, count: int, position: int) -> int:
    done = 0
    os.lseek(target, position, os.SEEK_SET)  # sendfile writes at the target's file position
    while done < count:
        copied = os.sendfile(target, source, done, min(count - done, _COPY_STEP))
        if copied == 0:
            break
        done += copied
    return done


def _buffered_copy(source: int, target: int, count: int, position: int) -> int:
    done = 0
    while done < count:
        chunk = os.pread(source, min(count - done, _READ_SIZE), done)
        if not chunk:
            break
        written = 0
        while written < len(chunk):
            written += os.pwrite(target, chunk[written:], position + done + written)
        done += len(chunk)
    return done


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: sync the directory entry too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileWriter:
    def __init__(
        self,
        path: str,
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
        self._prefix = os.path.join(directory, "")  # file names are joined as strings: pathlib costs more
        self.fsync = fsync
        self.batch_size = batch_size
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tusd-io")
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, upload_id: str) -> Path:
        return Path(self._file(upload_id))

    def _file(self, upload_id: str) -> str:
        return self._prefix + upload_id

    async def _io(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def create(self, upload_id: str) -> None:
        # On the loop: making an empty file costs less than the hop to a worker thread
        # and back (small uploads are mostly such hops otherwise; docs/performance.md).
        os.close(os.open(self._file(upload_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))

    def writer(self, upload_id: str, offset: int, hasher: Hasher | None = None) -> FileWriter:
        return FileWriter(
            self._file(upload_id), offset, hasher, self.executor, fsync=self.fsync, batch_size=self.batch_size
        )

    async def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        fd = await self._io(os.open, self._file(upload_id), os.O_RDONLY)
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
        path = self._file(upload_id)
        if os.stat(path).st_size > length:  # a stat on the loop; freeing blocks on a worker thread
            await self._io(os.truncate, path, length)

    async def delete(self, upload_id: str) -> None:
        def run() -> None:
            try:
                os.unlink(self._file(upload_id))
            except FileNotFoundError:
                pass

        await self._io(run)

    async def concatenate(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """Assemble the final upload's file from its parts, by the kernel, on a worker thread.

        The bytes go into a temporary file that replaces the final upload's file only
        when every part has been copied (and synced, when fsync is on): a crash or an
        error half-way leaves the final upload's file as it was. The caller holds the
        final upload's lock, so temporary files of earlier attempts are left-overs.
        """

        def run() -> None:
            target = self._file(final_id)
            for stale in self.directory.glob(f"{final_id}.concat-*"):  # left by a crash mid-assembly
                with contextlib.suppress(OSError):
                    stale.unlink()
            temporary = self.directory / f"{final_id}.concat-{secrets.token_hex(4)}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                try:
                    position = 0
                    for part_id, length in parts:
                        source = os.open(self._file(part_id), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                        try:
                            copy_range(source, fd, length, position)
                        finally:
                            os.close(source)
                        position += length
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(temporary, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            if self.fsync:
                _fsync_directory(self.directory)

        await self._io(run)

    def writable(self) -> bool:
        return os.access(self.directory, os.W_OK)
