"""The data store contract: bytes on disk, nothing about HTTP or upload records.

The handler guarantees that it holds the upload's lock while it writes, that
writes start at the committed offset, and that it commits an offset only after
`Writer.finish` has returned it. Bytes past the committed offset are scratch
space: the next write at that offset overwrites them, and readers never see them.
"""

from __future__ import annotations

from typing import AsyncIterator, Protocol

from tusd_py.checksum import Hasher


class Writer(Protocol):
    position: int  # where the next byte received will go
    written: int  # everything below this is on disk (and synced, when fsync is on)

    async def write(self, chunk: bytes) -> None:
        """Accept a chunk; it may be buffered and written later."""

    async def checkpoint(self) -> int:
        """Write what is buffered and return `written`: a safe offset to commit mid-body."""

    async def finish(self) -> int:
        """Write what is buffered, sync if configured, and return `written`.

        After an error it returns what did reach the disk and raises nothing,
        so a caller can always commit the bytes that made it.
        """

    @property
    def error(self) -> OSError | None:
        """The first write error, if any (e.g. ENOSPC); writing stops at it."""


class DataStore(Protocol):
    name: str

    async def create(self, upload_id: str) -> None:
        """Make the (empty) data file for a new upload."""

    def writer(self, upload_id: str, offset: int, hasher: Hasher | None = None) -> Writer:
        """A writer that puts bytes at `offset` onwards, feeding `hasher` as it goes."""

    def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the upload."""

    async def finish(self, upload_id: str, length: int) -> None:
        """The upload is complete: drop scratch bytes past `length`."""

    async def delete(self, upload_id: str) -> None:
        """Remove the upload's data; a missing file is not an error."""

    async def concatenate(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """Write the first `length` bytes of each part, in order, as the final upload's data."""

    def writable(self) -> bool:
        """Whether new data can be stored (for readiness checks)."""
