"""Local files: what to upload, their metadata, digests, and byte-range views for partial uploads."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

BLOCK = 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    path: Path
    relative: str  # the name shown and sent as `filename` (relative to the directory given, if any)
    size: int

    def metadata(self, extra: dict[str, str]) -> dict[str, str]:
        """`filename` and `filetype` as tusd and Uppy name them, then the user's --meta pairs."""
        filetype = mimetypes.guess_type(self.path.name)[0] or "application/octet-stream"
        meta = {"filename": self.path.name, "filetype": filetype}
        if "/" in self.relative:
            meta["relativePath"] = self.relative  # Uppy's name for a file's place inside a dropped folder
        meta.update(extra)
        return meta


def collect(paths: Iterable[Path], recursive: bool) -> list[LocalFile]:
    """Files named, and files found under directories named (sorted; only with `recursive`)."""
    found: list[LocalFile] = []
    for path in paths:
        if path.is_dir():
            if not recursive:
                raise IsADirectoryError(f"{path} is a directory (use --recursive)")
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = child.relative_to(path.parent).as_posix()
                found.append(LocalFile(child, relative, child.stat().st_size))
        else:
            found.append(LocalFile(path, path.name, path.stat().st_size))
    return found


def digest_of(stream: BinaryIO, algorithm: str, start: int = 0, length: int | None = None) -> bytes:
    """The digest of `length` bytes of `stream` from `start` (to the end if None), read in blocks."""
    hasher = hashlib.new(algorithm)
    stream.seek(start)
    remaining = length
    while remaining is None or remaining > 0:
        block = stream.read(BLOCK if remaining is None else min(BLOCK, remaining))
        if not block:
            break
        hasher.update(block)
        if remaining is not None:
            remaining -= len(block)
    return hasher.digest()


def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, algorithm).hexdigest()


class FileRange(io.RawIOBase):
    """`length` bytes of an open file from `start`, seen as a whole file.

    tuspy's uploaders take a stream and measure it with seek/tell, so a partial
    upload is an ordinary tuspy upload of one of these.
    """

    def __init__(self, path: Path, start: int, length: int) -> None:
        super().__init__()
        self._file = open(path, "rb")
        self.start = start
        self.length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.length}[whence]
        self._pos = min(max(base + offset, 0), self.length)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        left = self.length - self._pos
        if size is None or size < 0 or size > left:
            size = left
        if size == 0:
            return b""
        self._file.seek(self.start + self._pos)
        data = self._file.read(size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __enter__(self) -> FileRange:
        return self

    def __exit__(self, *exc: object) -> None:
        """tuspy closes the streams it fingerprints; the owner closes this one (`release`)."""

    def release(self) -> None:
        self._file.close()
        super().close()


def split(size: int, parts: int) -> list[tuple[int, int]]:
    """(start, length) of up to `parts` near-equal, non-empty ranges covering `size` bytes."""
    if size == 0 or parts <= 1:
        return [(0, size)]
    parts = min(parts, size)
    step = -(-size // parts)
    return [(start, min(step, size - start)) for start in range(0, size, step)]
