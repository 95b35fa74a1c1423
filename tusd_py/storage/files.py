"""The file data store: one file per upload in the data directory.

Bodies arrive as a stream of chunks. `FileWriter` gathers them into batches of
about `batch_size` bytes and writes each batch with one positional `pwritev` on a
worker thread, hashing it there too (hashlib releases the GIL), while the event
loop keeps receiving the next batch. At most two batches are alive per upload,
so memory stays flat however large the file.

With `direct` on, those large batches skip the page cache: the worker thread copies
a batch into an aligned buffer and writes its block-aligned part with O_DIRECT (the
few bytes before the first and after the last block boundary go the ordinary way).
On a VM whose page cache is slow to grow, copying into it cost the kernel 0.3-2.4 s
per GiB, and the disk itself takes 1 GB/s and more (docs/performance.md). Small
writes, made on the event loop, always use the page cache: a direct write waits for
the device. Where O_DIRECT is refused, the store goes back to the page cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import mmap
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping, Sequence, TypeVar

from tusd_py.checksum import Hasher

_IOV_MAX = 1024
INLINE_WRITE_LIMIT = 64 * 1024  # batches this small are written on the loop: cheaper than a thread hop
_READ_SIZE = 1024 * 1024
ALIGN = 4096  # O_DIRECT wants buffer, offset and length aligned to the logical block size; 4 KiB covers the usual ones

logger = logging.getLogger("tusd_py.storage")
T = TypeVar("T")


def _pwritev_all(fd: int, chunks: Sequence[bytes | memoryview], position: int, hasher: Hasher | None) -> int:
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


def _write_direct(fd: int, direct_fd: int, buffer: mmap.mmap, chunks: list[bytes], position: int, hasher: Hasher | None) -> int:
    """Write `chunks` at `position` as `_pwritev_all` does, the block-aligned middle through
    `direct_fd` (O_DIRECT) from `buffer` (page-aligned), the unaligned edges through `fd`."""
    if hasher is not None:
        for chunk in chunks:
            hasher.update(chunk)
    data = [memoryview(chunk) for chunk in chunks]
    size = sum(len(view) for view in data)
    head = min(-position % ALIGN, size)
    total = _pwritev_all(fd, _take(data, head), position, None) if head else 0
    while size - total >= ALIGN:
        count = min(size - total, len(buffer)) // ALIGN * ALIGN
        filled = 0
        for view in _take(data, count):
            buffer[filled : filled + len(view)] = view
            filled += len(view)
        with memoryview(buffer) as block:
            done = 0
            while done < count:
                done += os.pwrite(direct_fd, block[done:count], position + total + done)
        total += count
    if total < size:
        total += _pwritev_all(fd, _take(data, size - total), position + total, None)
    return total


def _take(views: list[memoryview], count: int) -> list[memoryview]:
    """Remove the first `count` bytes from `views` and return them (as views)."""
    taken: list[memoryview] = []
    while count and views:
        view = views[0]
        if len(view) <= count:
            taken.append(views.pop(0))
            count -= len(view)
        else:
            taken.append(view[:count])
            views[0] = view[count:]
            count = 0
    return taken


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


class DirectIO:
    """O_DIRECT for a store's large writes: whether this file system takes it, and the
    aligned buffers (anonymous mmaps) that writers borrow and give back."""

    def __init__(self, buffer_size: int) -> None:
        self.enabled = True
        self.buffer_size = max(ALIGN, -(-buffer_size // ALIGN) * ALIGN)
        self._free: list[mmap.mmap] = []

    def open(self, path: str) -> int | None:
        """`path` opened for direct writes; None where the file system refuses O_DIRECT."""
        if not self.enabled:
            return None
        try:
            return os.open(path, os.O_WRONLY | getattr(os, "O_DIRECT", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self.disable(exc)
            return None

    def disable(self, reason: OSError) -> None:
        if self.enabled:
            self.enabled = False
            logger.warning("direct writes refused here (%s): writing through the page cache", reason)

    def borrow(self) -> mmap.mmap:
        return self._free.pop() if self._free else mmap.mmap(-1, self.buffer_size)

    def give_back(self, buffer: mmap.mmap) -> None:
        if len(self._free) < 16:  # enough for the uploads that run at once; the rest are unmapped
            self._free.append(buffer)
        else:
            buffer.close()


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
        direct: DirectIO | None = None,
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
        self._direct = direct
        self._direct_fd: int | None = None
        self._buffer: mmap.mmap | None = None
        self._direct_write: asyncio.Future[int] | None = None  # the last one

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
            if exc.errno == errno.EINVAL and self._direct is not None and self._direct_fd is not None:
                self._direct.disable(exc)  # an alignment this device does not take: no more direct writes
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
        direct_fd = self._open_direct()
        if direct_fd is not None:
            if self._buffer is None:
                self._buffer = self._direct.borrow()  # type: ignore[union-attr]
            self._pending = self._direct_write = loop.run_in_executor(
                self._executor, _write_direct, fd, direct_fd, self._buffer, batch, self.written, self._hasher
            )
            return
        self._pending = loop.run_in_executor(self._executor, _pwritev_all, fd, batch, self.written, self._hasher)

    def _open_direct(self) -> int | None:
        if self._direct_fd is None and self._direct is not None:
            try:
                self._direct_fd = self._direct.open(self._path)
            except OSError:
                return None  # the ordinary path reports what is wrong with the file
        return self._direct_fd

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

    async def finish(self, *, verified: bool = True) -> int:
        # Unverified bytes past the committed offset are never committed: the next writer
        # starts at that offset, and completion trims the rest (`FileStore.finish`).
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
            self._release_direct()
        return self.written

    def _release_direct(self) -> None:
        """Close the direct descriptor and give the buffer back, once no thread writes with them
        (a cancelled finish may return while the last write still runs)."""
        last = self._direct_write
        if last is not None and not last.done():
            last.add_done_callback(lambda _: self._release_direct())
            return
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None
        if self._buffer is not None:
            self._direct.give_back(self._buffer)  # type: ignore[union-attr]
            self._buffer = None


class FileStore:
    """Upload data as plain files named by upload id (ids cannot contain '.' or '/')."""

    name = "files"
    reads_unfinished = True  # committed bytes are in the file as they are committed

    def __init__(
        self, directory: Path, *, fsync: bool = False, batch_size: int = 1024 * 1024, threads: int = 8, direct: bool = False
    ) -> None:
        self.directory = directory
        self.direct = DirectIO(batch_size) if direct else None
        self._prefix = os.path.join(directory, "")  # file names are joined as strings: pathlib costs more
        self.fsync = fsync
        self.batch_size = batch_size
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tusd-io")
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, upload_id: str) -> Path:
        return Path(self._file(upload_id))

    def _file(self, upload_id: str) -> str:
        return self._prefix + upload_id

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

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
        # A file needs none of what the contract offers at creation: its name is the id.
        # On the loop: making an empty file costs less than the hop to a worker thread
        # and back (small uploads are mostly such hops otherwise; docs/performance.md).
        os.close(os.open(self._file(upload_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))

    def writer(self, upload_id: str, offset: int, hasher: Hasher | None = None, *, length: int | None = None) -> FileWriter:
        return FileWriter(
            self._file(upload_id), offset, hasher, self.executor, fsync=self.fsync, batch_size=self.batch_size, direct=self.direct
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
        """Completion (`CompletingDataStore`): drop bytes a writer put past `length`; idempotent."""
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
