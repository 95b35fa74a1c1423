"""The data store contract: the bytes of uploads, nothing about HTTP or upload records.

As tusd's `datastore.go`: a small core every data store implements (`DataStore`),
and optional capabilities a store declares by having their methods
(`ReadableDataStore`, `ConcatenatingDataStore`, `RandomAccessDataStore`). The
engine offers a feature only when the configured store has what it needs
(`capabilities.Capabilities`), so the server never advertises what a backend
cannot do.

Who guarantees what. The engine holds the upload's lock while it writes, starts
every writer at the upload's committed offset, and commits an offset only after
the writer returned it from `checkpoint` or `finish`. So the write contract is
append-only: bytes arrive in order at the committed offset, and a store says
which prefix is durable. An object store that appends parts can keep it; nothing
relies on overwriting bytes past the committed offset. A store that can write at
any position (a file) declares `RandomAccessDataStore`, which only trims bytes a
writer wrote past the committed offset that were never committed.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import AsyncIterator, Protocol, runtime_checkable

from tusd_py.checksum import Hasher


class Writer(Protocol):
    """Appends one request body's bytes at the committed offset it was opened at."""

    position: int  # where the next byte received will go
    written: int  # everything below this is durable (and synced, when fsync is on)

    async def write(self, chunk: bytes) -> None:
        """Accept a chunk; it may be buffered and written later."""

    async def checkpoint(self) -> int:
        """Write what is buffered and return `written`: a safe offset to commit mid-body."""

    async def finish(self) -> int:
        """Write what is buffered, sync if configured, and return `written`.

        After an error it returns what did become durable and raises nothing,
        so a caller can always commit the bytes that made it.
        """

    @property
    def error(self) -> OSError | None:
        """The first write error, if any (e.g. ENOSPC); writing stops at it."""


@runtime_checkable
class DataStore(Protocol):
    """The core: create, append, delete. Every data store has it."""

    name: str

    async def create(self, upload_id: str) -> None:
        """Make the (empty) data of a new upload."""

    def writer(self, upload_id: str, offset: int, hasher: Hasher | None = None) -> Writer:
        """A writer that appends at `offset` (the committed offset), feeding `hasher` as it goes."""

    async def delete(self, upload_id: str) -> None:
        """Remove the upload's data; missing data is not an error."""

    def writable(self) -> bool:
        """Whether new data can be stored (for readiness checks)."""


@runtime_checkable
class ReadableDataStore(Protocol):
    """Ranged reads: GET (downloads), and the draft's digests of a complete upload."""

    def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the upload."""


@runtime_checkable
class RandomAccessDataStore(Protocol):
    """A store whose writers may have put bytes past the committed offset (a file written
    in aligned batches); the engine says when an upload is complete so they are dropped."""

    async def finish(self, upload_id: str, length: int) -> None:
        """The upload is complete at `length`: drop any bytes past it."""


@runtime_checkable
class ConcatenatingDataStore(Protocol):
    """Server-side copy of complete parts into a final upload (concatenation)."""

    async def concatenate(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """Write the first `length` bytes of each part, in order, as the final upload's data."""


@dataclass(frozen=True)
class Described:
    """What a store knows of a finished upload's bytes: its validators (RFC 9110 8.8)."""

    size: int
    etag: str  # a strong entity-tag, quoted: a different one whenever the bytes could differ
    last_modified: datetime.datetime  # timezone-aware; when the bytes last changed
    content_type: str | None = None  # the stored object's, where the store keeps one


@runtime_checkable
class DescribingDataStore(Protocol):
    """Validators of finished uploads, so GET sends ETag and Last-Modified and answers
    conditional requests (download.py). Called only once an upload is complete: the
    bytes of an unfinished one change, and it has none."""

    async def describe(self, upload_id: str) -> Described:
        """The finished upload's validators."""
