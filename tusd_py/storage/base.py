"""The data store contract: the bytes of uploads, nothing about HTTP or upload records.

As tusd's `datastore.go`: a small core every data store implements (`DataStore`),
and optional capabilities a store declares by having their methods
(`ReadableDataStore`, `ConcatenatingDataStore`, `CompletingDataStore`). The
engine offers a feature only when the configured store has what it needs
(`capabilities.Capabilities`), so the server never advertises what a backend
cannot do.

What a store learns at creation (as tusd's `NewUpload(FileInfo)`): the length, or
the largest it may become (`max_size`, for a deferred length), the Content-Type
from safe `filetype` metadata, and the object key and extra object metadata the
pre-create hook chose. An object store needs them (its part size is fixed then,
and an upload too large for it is refused before anything exists); a file store
ignores them. A writer learns the upload's length, so a last part is sent as the
last part.

Who guarantees what. The engine holds the upload's lock while it writes, starts
every writer at the upload's committed offset, and commits an offset only after
the writer returned it from `checkpoint` or `finish`. So the write contract is
append-only: bytes arrive in order at the committed offset, and a store says
which prefix is durable. An object store that appends parts can keep it; nothing
relies on overwriting bytes past the committed offset.

Checksums before durability: the hasher has seen every byte written once
`checkpoint` returned, so the engine compares the digest BEFORE `finish` and
passes the verdict (`finish(verified=False)`: nothing of this body will be
committed; a store that held the body back drops it, so a mismatch leaves
nothing behind).

Completion is its own step (`CompletingDataStore.finish`): the engine calls it
once the committed offset reached the length (empty uploads, deferred lengths,
the draft's explicit completion, assembled finals alike), and again whenever it
finds a finished upload whose data may not be complete (an instance died in
between): it must be idempotent.
"""

from __future__ import annotations

from typing import AsyncIterator, Mapping, Protocol, runtime_checkable

from tusd_py.checksum import Hasher


class Writer(Protocol):
    """Appends one request body's bytes at the committed offset it was opened at."""

    position: int  # where the next byte received will go
    written: int  # everything below this is durable (and synced, when fsync is on)

    async def write(self, chunk: bytes) -> None:
        """Accept a chunk; it may be buffered and written later."""

    async def checkpoint(self) -> int:
        """Write what is buffered and return `written`: a safe offset to commit mid-body."""

    async def finish(self, *, verified: bool = True) -> int:
        """Write what is buffered, sync if configured, and return `written`.

        `verified=False`: the body failed its checksum (or ended before it could be
        checked), so nothing of it will be committed; what the writer held back is
        dropped, and it returns the offset it was opened at or what it had made
        durable before. After an error it returns what did become durable and
        raises nothing, so a caller can always commit the bytes that made it.
        """

    @property
    def error(self) -> OSError | None:
        """The first write error, if any (e.g. ENOSPC); writing stops at it."""


@runtime_checkable
class DataStore(Protocol):
    """The core: create, append, delete. Every data store has it."""

    name: str

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
        """Make the (empty) data of a new upload.

        `length` (None: deferred, at most `max_size` when that is set), the finished
        data's `content_type`, and the `key` (a relative object key, checked by
        `protocol.object_key_problem`) and `metadata` the pre-create hook chose. A store
        uses what it needs and raises `DataTooLarge` for an upload it cannot hold,
        before anything exists.
        """

    def writer(self, upload_id: str, offset: int, hasher: Hasher | None = None, *, length: int | None = None) -> Writer:
        """A writer that appends at `offset` (the committed offset), feeding `hasher` as it goes;
        `length`, when known, is the upload's (its last byte ends the last part)."""

    async def delete(self, upload_id: str) -> None:
        """Remove the upload's data; missing data is not an error."""

    def writable(self) -> bool:
        """Whether new data can be stored (for readiness checks)."""


@runtime_checkable
class ReadableDataStore(Protocol):
    """Ranged reads: GET (downloads), and the draft's digests of a complete upload."""

    # True: the committed bytes of an unfinished upload can be read (a file). False:
    # finished uploads only (an object store's object exists once it is completed).
    reads_unfinished: bool

    def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the upload."""


@runtime_checkable
class CompletingDataStore(Protocol):
    """A store that does something when an upload's bytes are all there: a file drops bytes a
    writer put past the committed offset (written in aligned batches), an object store
    completes its multipart upload (CompleteMultipartUpload) so the object exists."""

    async def finish(self, upload_id: str, length: int) -> None:
        """The upload is complete at `length`: make its data exactly those bytes.

        Idempotent: called again for an upload completed before (a retry after a
        crash between the commit that finished the upload and this call) it changes
        nothing and raises nothing."""


@runtime_checkable
class ConcatenatingDataStore(Protocol):
    """Server-side copy of complete parts into a final upload (concatenation)."""

    async def concatenate(self, final_id: str, parts: list[tuple[str, int]]) -> None:
        """Write the first `length` bytes of each part, in order, as the final upload's data
        (created before with its total length); the store completes it, if it completes."""


class DataTooLarge(OSError):
    """A data store cannot hold an upload of this length (e.g. 10,000 parts of S3's largest): 413."""


class DataNotFound(OSError):
    """The upload's data is not (or no longer) in the store: 404."""
