"""Final uploads on disk: a final upload's file assembled from its parts' files.

Split from `files.py` (the file store's writes and reads), which calls `assemble`
on a worker thread. The bytes move in the kernel where it can (`copy_file_range`,
which may even share extents, else `sendfile`), else through one bounded buffer:
never a whole part in memory. The assembly goes into a temporary file that
replaces the final upload's file only when complete, so an error or a crash
half-way leaves the final upload's file as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from tusd_py.storage.file_layout import ASSEMBLY_SUFFIX

_BUFFER_SIZE = 1024 * 1024  # the fallback copy's one buffer


def assemble(final: str, parts: list[tuple[str, int]], fsync: bool) -> None:
    """The file `final` := the first `length` bytes of each part's file, in order.

    The caller holds the final upload's lock, so temporary files of earlier
    attempts are left-overs of a crash and removed first.
    """
    directory = Path(final).parent
    name = Path(final).name
    for stale in directory.glob(f"{name}{ASSEMBLY_SUFFIX}*"):  # left by a crash mid-assembly
        with contextlib.suppress(OSError):
            stale.unlink()
    temporary = directory / f"{name}{ASSEMBLY_SUFFIX}{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            position = 0
            for part, length in parts:
                source = os.open(part, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                try:
                    copy_range(source, fd, length, position)
                finally:
                    os.close(source)
                position += length
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if fsync:
        _fsync_directory(directory)


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
        chunk = os.pread(source, min(count - done, _BUFFER_SIZE), done)
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
