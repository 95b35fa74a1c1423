"""The upload engine: what an upload is and how it changes, whatever protocol asked.

Both protocols (`handlers.py` for tus 1.0.0, `ietf_handler.py` for the IETF draft)
are thin layers on this public API; neither knows the other, and neither touches
a store's internals. The engine knows no HTTP framework: it sees ids, records,
body readers and the stores (`state/`, `storage/`, `locks/`) through their
contracts, and raises rows of the error table (`protocol.py`).

The contract, in the order a request meets it:
- `authorize` before anything else; `load` a record (404, 410 decided here);
- `locked` (or `lock`) for anything that changes an upload: one request at a time,
  and a request that wants the lock asks the holder to let go (lock exchange);
- `create` a new upload (pre-create, record, data, post-create);
- `write` a body: `writes.stream` it to the data store, then `writes.settle` what
  arrived (checksum, pre-finish, the commit, finish); the `WriteResult` (`writes.py`)
  says in one `Stop` why the body ended and whether a creation keeps its upload;
- `declare_length` / `complete` / `finish` / `terminate`, `expiry`.
"""

from __future__ import annotations

import contextlib
import time
from typing import AsyncIterator, Awaitable, Callable, Iterator, cast

from tusd_py import protocol as p
from tusd_py.body import BodyReader
from tusd_py.capabilities import Capabilities
from tusd_py.concat import ConcatData, Concatenator, ConcatState
from tusd_py.config import Config
from tusd_py.download import content_type
from tusd_py.hooks.answers import DataChoice
from tusd_py.hooks.base import Hooks
from tusd_py.hooks.events import AUTHORIZE
from tusd_py.locks.base import Lock, Locker, LockLost, LockTimeout
from tusd_py.metrics import Metrics
from tusd_py.state.base import (
    EXPIRED,
    FINISH_ANNOUNCED,
    FINISHED,
    DraftStateStore,
    StateStore,
    Upload,
)
from tusd_py.storage.base import CompletingDataStore, DataStore
from tusd_py.writes import Checksum, Receive, Stop, WriteResult, settle, stream


class UploadEngine:
    """Uploads over a state store, a data store and a locker, with hooks and metrics."""

    def __init__(
        self,
        config: Config,
        state: StateStore,
        data: DataStore,
        locker: Locker,
        *,
        hooks: Hooks | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.data = data
        self.locker = locker
        self.hooks = hooks or Hooks()
        self.metrics = metrics or Metrics()
        self.capabilities = Capabilities.of(state, data, config)
        self._completes = isinstance(data, CompletingDataStore)  # once: a Protocol isinstance check costs ~10 us
        self.readers: set[BodyReader] = set()
        self.streaming = 0  # request bodies in progress (see body_slot)
        self.shutting_down = False
        self.on_finish: list[Callable[[Upload], Awaitable[None]]] = []
        self.concat: Concatenator | None = None
        if self.capabilities.concatenation:
            self.concat = Concatenator(
                config, cast(ConcatState, state), cast(ConcatData, data), locker,
                on_complete=self.finish, create_data=self.create_data, hooks=self.hooks,
            )

    # -- reading and locking -------------------------------------------------------

    async def authorize(self, upload_id: str | None) -> None:
        """The authorize hook sees every request (but OPTIONS) before anything happens, also
        before the lock is asked for: a stranger's PATCH must not make the owner's running
        PATCH let go. `upload_id` None: a creation.

        It is asked before 404 or 410 is decided, with the record when there is one (a
        tombstone too) and without one when there is none: the hook, not the answer's
        status, decides what a stranger learns about an id (no existence oracle). An id
        that does not match the pattern can name no upload: 404 before anything is asked.
        """
        if not self.hooks.wants(AUTHORIZE):
            return
        if upload_id is None:
            await self.hooks.authorize(None)  # a creation
            return
        if not p.is_valid_id(upload_id):
            raise p.ERR_NOT_FOUND()
        await self.hooks.authorize(await self.state.get(upload_id), upload_id)

    async def load(self, upload_id: str, lock: Lock | None = None) -> Upload:
        """The upload's record (404 unknown, 410 expired); under `lock`, pass it (the
        locker may have read the record already)."""
        if not p.is_valid_id(upload_id):
            raise p.ERR_NOT_FOUND()  # checked before any store is asked: ids never reach the disk unchecked
        upload = await self.state.get(upload_id, lock=lock)
        if upload is None:
            raise p.ERR_NOT_FOUND()
        if upload.state == EXPIRED or (upload.expires is not None and upload.expires <= time.time()):
            raise p.ERR_GONE()
        return upload

    @contextlib.asynccontextmanager
    async def lock(self, upload_id: str, reader: BodyReader | None = None) -> AsyncIterator[Lock]:
        """The upload's lock, for the `async with` body (LockTimeout if busy too long).

        A request holding the lock is asked to let go (as tusd does). With `reader`,
        this request can in turn be asked to let go while it streams its body.
        """
        release = None
        if reader is not None:

            def release() -> None:
                self.metrics.lock_exchanges.inc()
                reader.request_release()

        started = time.monotonic()
        acquired = False
        try:
            async with self.locker.hold(upload_id, wait=self.config.lock_wait, on_release_request=release) as lock:
                acquired = True
                self.metrics.lock_wait.observe(time.monotonic() - started)
                yield lock
        except LockTimeout:
            if not acquired:
                self.metrics.lock_timeouts.inc()
            raise

    @contextlib.asynccontextmanager
    async def locked(self, upload_id: str, reader: BodyReader | None = None) -> AsyncIterator[tuple[Lock, Upload]]:
        """Hold the upload's lock and read its record under it; 423 if the lock stays busy."""
        if not p.is_valid_id(upload_id):
            raise p.ERR_NOT_FOUND()
        async with contextlib.AsyncExitStack() as stack:
            try:
                lock = await stack.enter_async_context(self.lock(upload_id, reader))
            except LockTimeout:
                raise p.ERR_UPLOAD_LOCKED() from None
            yield lock, await self.load(upload_id, lock)

    def reader(self, receive: Receive) -> BodyReader:
        """A reader of one request body, with the configured idle timeout and release grace."""
        return BodyReader(receive, idle_timeout=self.config.network_timeout, release_grace=self.config.release_grace)

    @contextlib.contextmanager
    def body_slot(self) -> Iterator[None]:
        """Counts request bodies streaming on this instance; past the cap, 429 (clients back off)."""
        limit = self.config.max_concurrent_uploads
        if limit and self.streaming >= limit:
            raise p.ERR_TOO_MANY_UPLOADS(Retry_After="1")
        self.streaming += 1
        try:
            yield
        finally:
            self.streaming -= 1

    # -- creating ------------------------------------------------------------------

    def check_metadata(self, header: str | None) -> None:
        """`Upload-Metadata` within the configured size and key count (400 beyond)."""
        if header is not None and len(header) > self.config.max_metadata_size:
            raise p.ERR_METADATA_TOO_LARGE()
        if len(p.parse_metadata(header)) > self.config.max_metadata_keys:
            raise p.ERR_METADATA_TOO_LARGE()

    def expiry(self, finished: bool) -> float | None:
        """When an upload written to now expires: never when finished or expiry is off."""
        if finished or not self.capabilities.expiry:
            return None
        return time.time() + self.config.expire_after

    async def create(self, upload: Upload) -> Upload:
        """Create an upload's record and data, through the pre-create hook (which may reject
        it, or change its id and metadata); returns the upload as stored. An upload created
        complete (length 0) goes through pre-finish first; the caller then calls `finish`."""
        proposed = upload.id
        upload, choice = await self.hooks.pre_create_data(upload)
        if upload.finished:
            await self.hooks.pre_finish(upload)
        # The record first: creating the data of an id that is taken would truncate it.
        if not await self.state.create(upload):
            if upload.id != proposed:
                raise p.ERR_ID_TAKEN()
            raise RuntimeError("upload id collision")  # 128 random bits: a bug
        await self.create_data(upload, choice)
        self.metrics.uploads_created.inc()
        self.hooks.post_create(upload)
        return upload

    async def create_data(self, upload: Upload, choice: DataChoice) -> None:
        """The data of a stored record, told what the data store may need (`DataStore.create`).

        A data store that refuses (an upload too large for it: 413; the store down: 503)
        leaves nothing: the record goes too."""
        try:
            metadata = p.parse_metadata(upload.metadata)
        except p.TusError:
            metadata = {}
        try:
            await self.data.create(
                upload.id, upload.length, max_size=self.config.max_size or None, key=choice.key,
                content_type=content_type(metadata)[0], metadata=choice.metadata,
            )
        except BaseException:
            await self.state.delete(upload.id)
            raise

    # -- writing a body ------------------------------------------------------------

    def room(self, offset: int, length: int | None) -> int | None:
        """How many more bytes the upload may take: up to its length, or max-size while deferred."""
        if length is not None:
            return length - offset
        if self.config.max_size:
            return max(self.config.max_size - offset, 0)
        return None

    async def write_new(
        self, upload: Upload, reader: BodyReader, checksum: Checksum | None
    ) -> WriteResult:
        """creation-with-upload: `write` under the new upload's lock (Stop.LOCK_BUSY if busy)."""
        try:
            async with self.lock(upload.id, reader) as lock:
                return await self.write(upload, reader, lock, checksum)
        except LockTimeout:
            return WriteResult(upload, Stop.LOCK_BUSY, p.ERR_UPLOAD_LOCKED())

    async def write(
        self,
        upload: Upload,
        reader: BodyReader,
        lock: Lock,
        checksum: Checksum | None,
        on_commit: Callable[[Upload], Awaitable[None]] | None = None,
    ) -> WriteResult:
        """Append a body at the upload's committed offset and commit what may be committed.

        The caller holds `lock` and checked the offset. Without a checksum, every byte
        that became durable is committed, also when the client goes away or the reader
        is interrupted (checklist C-30), and the offset is committed every
        COMMIT_INTERVAL on the way, so a crash loses little. With a checksum nothing is
        committed unless the whole body arrived and matched. `on_commit` hears of each
        commit made while the body still streams. Raises only what a commit raises
        (lock lost, upload gone, offset moved); every other end is in the result.
        """
        streamed = await stream(self, upload, reader, lock, checksum, on_commit)
        return await settle(self, upload, reader, lock, checksum, streamed)

    async def commit(self, upload: Upload, written: int, lock: Lock) -> Upload:
        """The write path's commit (`writes.py`): move the committed offset up to `written` (compare-and-set) and slide the expiry.

        The lock's fence goes along: a lease that lapsed, however briefly, commits nothing."""
        if written <= upload.offset:
            return upload
        finished = upload.length is not None and written == upload.length
        expires = self.expiry(finished)
        claim = FINISH_ANNOUNCED if finished and not upload.partial else None  # `finish` needs no round trip
        try:
            stored = await self.state.commit_offset(upload.id, upload.offset, written, expires, fence=lock.fence, claim=claim)
        except LockLost:
            raise p.ERR_LOCK_LOST(Connection="close") from None
        if stored is None:
            raise p.ERR_NOT_FOUND()
        if stored != written:
            # Someone else moved the offset although we held the lock: our lease must have lapsed.
            raise p.ERR_MISMATCHED_OFFSET(Upload_Offset=str(stored))
        return upload.replace(offset=written, expires=expires, state=FINISHED if finished else "uploading")

    # -- lengths, completion, termination ------------------------------------------

    async def declare_length(self, upload: Upload, length: int) -> Upload:
        """Set a deferred length (creation-defer-length); the caller holds the lock. A length
        equal to the offset completes the upload (DL-08, through pre-finish); the caller
        then calls `finish`."""
        if upload.length is not None or length < upload.offset:
            raise p.ERR_INVALID_LENGTH_CHANGE()
        if upload.expected_length is not None and length != upload.expected_length:
            raise p.ERR_INVALID_LENGTH_CHANGE("Upload-Length differs from the length announced when the upload was created")
        if self.config.max_size and length > self.config.max_size:
            raise p.ERR_MAX_SIZE_EXCEEDED()
        if length == upload.offset:  # declaring it completes the upload (DL-08)
            await self.hooks.pre_finish(upload.replace(length=length, state=FINISHED))
        if not await self.state.declare_length(upload.id, length):  # type: ignore[attr-defined]
            raise p.ERR_INVALID_LENGTH_CHANGE()
        finished = length == upload.offset
        return upload.replace(length=length, state=FINISHED if finished else upload.state, expires=None if finished else upload.expires)

    async def expect_length(self, upload: Upload, length: int) -> bool:
        """Record the length a draft client announced (bounds the offset, completes nothing)."""
        return await cast(DraftStateStore, self.state).expect_length(upload.id, length)

    async def complete(self, upload: Upload) -> Upload:
        """Explicit completion (the draft): the offset becomes the length, through pre-finish,
        then `finish`. The caller holds the lock and checked the representation."""
        await self.hooks.pre_finish(upload.replace(length=upload.offset, state=FINISHED))  # may refuse
        if not await self.state.declare_length(upload.id, upload.offset):  # type: ignore[attr-defined]
            raise p.ERR_NOT_FOUND()
        upload = upload.replace(length=upload.offset, state=FINISHED, expires=None)
        await self.finish(upload)
        return upload

    async def finish(self, upload: Upload, *, claimed: bool = False) -> None:
        """The upload just became complete: complete its data, then tell whoever listens.

        A partial upload is no finished file (CC-07): only final uploads waiting on it
        hear of it, once our caller has let go of its lock. `claimed`: the commit that
        finished the upload recorded the FINISH_ANNOUNCED claim already. If this
        instance dies before the data is completed, `readable` completes it later.
        """
        if upload.length is not None and self._completes:
            await cast(CompletingDataStore, self.data).finish(upload.id, upload.length)
        if upload.partial:
            if self.concat is not None:
                self.concat.part_changed_soon(upload.id)
            return
        if not claimed and not await self.state.claim(upload.id, FINISH_ANNOUNCED):
            return  # announced already: by another request or instance that raced to the end
        self.metrics.uploads_finished.inc()
        await self.hooks.post_finish(upload)  # waits only while the hooks' queue of outcomes is full
        for callback in self.on_finish:
            await callback(upload)

    async def readable(self, upload: Upload, *, completing: bool = False) -> None:
        """Before the bytes of `upload` are read (GET, the draft's digests).

        On a store that reads finished uploads only: 409 for an unfinished one (unless
        `completing`: the draft checks the digests of an upload it is about to complete),
        and the data is completed at the committed offset first, which changes nothing
        when it was (idempotent), and repairs an upload whose instance died between the
        commit that finished it and the completion (`finish`).
        """
        if self.capabilities.reads_unfinished:
            return
        if not (upload.finished or completing):
            raise p.ERR_NOT_FINISHED()
        if self._completes:
            await cast(CompletingDataStore, self.data).finish(upload.id, upload.offset)

    async def terminate(self, upload: Upload) -> None:
        """Forget the upload and its bytes; the caller holds its lock (and asked pre-terminate)."""
        deleted = await self.state.delete(upload.id)
        await self.data.delete(upload.id)
        if deleted:  # true for one request only, whatever the instance
            self.metrics.uploads_terminated.inc()
            await self.hooks.post_terminate(upload)
        if upload.partial and self.concat is not None:
            self.concat.part_changed_soon(upload.id)  # final uploads waiting on it can never complete

    # -- shutdown ------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful stop: running bodies end now, committing what they received (503)."""
        self.shutting_down = True
        for reader in list(self.readers):
            reader.interrupt(p.ERR_SERVER_SHUTDOWN(Retry_After="1"))

