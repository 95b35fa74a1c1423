"""Writing one request body: `stream` it to the data store, then `settle` what arrived.

The engine's `write` (`engine.py`) is these two steps, kept here so the engine
stays the upload's life and this module the body's: `stream` feeds the data
store's writer and commits every COMMIT_INTERVAL (no checksum pending), and
takes the checksum's verdict BEFORE the writer finishes (so a store that held
the body back sends nothing of a mismatch); `settle` decides what counts
(checksum, pre-finish), commits it and finishes a complete upload. Both speak in
one `Stop` reason and the `WriteResult`, and so do the protocols: a
creation-with-upload keeps its upload when the Stop is `resumable`, the draft
maps the Stop to its own answers.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, MutableMapping, Protocol

from tusd_py import protocol as p
from tusd_py.body import BodyReader
from tusd_py.checksum import Hasher
from tusd_py.config import Config
from tusd_py.errors import storage_error
from tusd_py.hooks.base import Hooks
from tusd_py.hooks.events import POST_RECEIVE
from tusd_py.locks.base import Lock
from tusd_py.metrics import Metrics
from tusd_py.state.base import FINISHED, Upload
from tusd_py.storage.base import DataStore, Writer

COMMIT_INTERVAL = 1.0  # seconds between offset commits while a long body streams in

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]  # an ASGI receive
Checksum = tuple[Hasher, bytes]  # the hasher fed with the body, and the digest it must give


class Stop(enum.Enum):
    """Why a body stopped being written: exactly one reason per body."""

    COMPLETE = "the whole body arrived and was committed"
    DISCONNECTED = "the client went away mid-body"
    INTERRUPTED = "another request asked for the upload's lock"
    TIMED_OUT = "no byte came within the network timeout"
    SHUTDOWN = "the server is shutting down"
    LOCK_BUSY = "the upload's lock stayed busy"
    LOCK_LOST = "the lock was lost while writing"
    OVERFLOW = "more bytes than the upload may take"
    STORAGE_FAILED = "the data store failed"
    CHECKSUM_MISMATCH = "the body does not match its checksum: nothing was committed"
    FINISH_REFUSED = "the pre-finish hook refused the upload's completion"

    @property
    def resumable(self) -> bool:
        """The upload stays as good as its committed offset: a creation-with-upload
        still answers 201 (CU-03), the client resumes. The others are errors."""
        return self in _RESUMABLE


_RESUMABLE = frozenset({Stop.COMPLETE, Stop.DISCONNECTED, Stop.INTERRUPTED, Stop.TIMED_OUT, Stop.LOCK_BUSY, Stop.LOCK_LOST})
_READER_STOPS = {p.ERR_SERVER_SHUTDOWN.code: Stop.SHUTDOWN, p.ERR_READ_TIMEOUT.code: Stop.TIMED_OUT}


@dataclass
class WriteResult:
    """What writing one request body came to."""

    upload: Upload  # as committed afterwards (offset, expiry)
    stop: Stop
    error: p.TusError | None = None  # the answer, when not plain success
    close: bool = False  # the body was not read to its end: close the connection

    @property
    def keeps_upload(self) -> bool:
        """Whether a creation-with-upload that wrote this body answers 201 rather than `error`."""
        return self.stop.resumable


@dataclass
class Streamed:
    """What the engine's `_stream` leaves for its `_settle`."""

    stop: Stop
    written: int  # durable bytes, from the writer's finish
    current: Upload  # the upload as committed on the way
    storage_error: OSError | None  # the data store's, when it failed
    matched: bool | None = None  # the checksum's verdict, taken before the writer finished; None without one


def why_stopped(reader: BodyReader, writer: Writer, lock: Lock) -> Stop:
    """The one reason a body that was not cut by us stopped."""
    if not lock.valid():
        return Stop.LOCK_LOST
    if writer.error is not None:
        return Stop.STORAGE_FAILED
    if reader.error is not None:
        return _READER_STOPS.get(reader.error.code, Stop.INTERRUPTED)
    if reader.disconnected or not reader.complete:
        return Stop.DISCONNECTED
    return Stop.COMPLETE


def stop_error(stop: Stop, reader: BodyReader, streamed: Streamed) -> p.TusError:
    """The answer for a body that ended early: the store's failure, or the reader's reason."""
    if stop is Stop.STORAGE_FAILED and streamed.storage_error is not None:
        return storage_error(streamed.storage_error)
    return reader.error or p.ERR_UNEXPECTED_EOF()


class Engine(Protocol):
    """What the write path needs of the engine (`engine.UploadEngine`)."""

    config: Config
    data: DataStore
    hooks: Hooks
    metrics: Metrics
    readers: set[BodyReader]
    shutting_down: bool

    def room(self, offset: int, length: int | None) -> int | None: ...

    async def commit(self, upload: Upload, written: int, lock: Lock) -> Upload: ...

    async def finish(self, upload: Upload, *, claimed: bool = False) -> None: ...


async def stream(
    engine: Engine,
    upload: Upload,
    reader: BodyReader,
    lock: Lock,
    checksum: Checksum | None,
    on_commit: Callable[[Upload], Awaitable[None]] | None,
) -> Streamed:
    """Step 1: the body's chunks to the data store, committing on the way; why it stopped."""
    loop = asyncio.get_running_loop()
    room = engine.room(upload.offset, upload.bound)
    writer = engine.data.writer(upload.id, upload.offset, checksum[0] if checksum else None, length=upload.length)
    current = upload
    next_commit = loop.time() + COMMIT_INTERVAL
    next_progress = loop.time() + engine.config.progress_interval if engine.hooks.wants(POST_RECEIVE) else None
    stop: Stop | None = None
    engine.readers.add(reader)
    engine.metrics.active_uploads.inc()
    if engine.shutting_down:
        reader.interrupt(p.ERR_SERVER_SHUTDOWN())
    try:
        async for chunk in reader:
            if room is not None and writer.position - upload.offset + len(chunk) > room:
                stop = Stop.OVERFLOW
                break
            if not lock.valid():
                stop = Stop.LOCK_LOST
                break
            await writer.write(chunk)
            if writer.error is not None:
                break
            if checksum is None and loop.time() >= next_commit:
                current = await engine.commit(current, await writer.checkpoint(), lock)
                next_commit = loop.time() + COMMIT_INTERVAL
                if on_commit is not None:
                    await on_commit(current)
            if next_progress is not None and loop.time() >= next_progress:
                engine.hooks.post_receive(current.replace(offset=writer.position))
                next_progress = loop.time() + engine.config.progress_interval
    finally:
        engine.readers.discard(reader)
        engine.metrics.active_uploads.dec()
        matched = None if checksum is None else stop is None and await _matches(writer, checksum, reader, lock)
        written = await writer.finish(verified=matched is not False)  # a mismatch sends nothing on
        engine.metrics.bytes_received.inc(max(writer.position - upload.offset, 0))
    if stop is None:
        stop = why_stopped(reader, writer, lock)
    return Streamed(stop, written, current, writer.error, matched)


async def settle(
    engine: Engine, upload: Upload, reader: BodyReader, lock: Lock, checksum: Checksum | None, streamed: Streamed
) -> WriteResult:
    """Step 2: decide what of the streamed bytes counts, commit it, finish the upload if it is complete."""
    stop, written, current = streamed.stop, streamed.written, streamed.current
    if stop is Stop.OVERFLOW:
        error = p.ERR_UPLOAD_SIZE_EXCEEDED() if upload.bound is not None else p.ERR_MAX_SIZE_EXCEEDED()
        return WriteResult(current, stop, error, close=True)
    if stop is Stop.LOCK_LOST:
        return WriteResult(current, stop, p.ERR_LOCK_LOST(), close=True)
    if checksum is not None:
        if stop is not Stop.COMPLETE:  # nothing partial can match
            return WriteResult(current, stop, stop_error(stop, reader, streamed), close=True)
        if not streamed.matched:  # compared before the writer finished: nothing was kept
            return WriteResult(current, Stop.CHECKSUM_MISMATCH, p.ERR_CHECKSUM_MISMATCH())
    if upload.length is not None and written == upload.length:
        try:  # before the commit: a rejected upload does not become finished
            await engine.hooks.pre_finish(current.replace(offset=written, state=FINISHED))
        except p.TusError as error:
            return WriteResult(current, Stop.FINISH_REFUSED, error)
    current = await engine.commit(current, written, lock)
    if written > upload.offset:
        engine.hooks.post_receive(current)
    if current.finished:
        # A commit of this call finished it, and took the claim with it (`commit`).
        await engine.finish(current, claimed=not upload.finished)
    if stop is Stop.COMPLETE:
        return WriteResult(current, stop)
    close = not reader.complete if stop is Stop.STORAGE_FAILED else True
    return WriteResult(current, stop, stop_error(stop, reader, streamed), close=close)


async def _matches(writer: Writer, checksum: Checksum, reader: BodyReader, lock: Lock) -> bool:
    """The checksum's verdict on a body, before the writer finishes: nothing partial matches.
    After `checkpoint` the hasher has seen every byte written (`storage.base.Writer`)."""
    if why_stopped(reader, writer, lock) is not Stop.COMPLETE:
        return False
    await writer.checkpoint()
    hasher, expected = checksum
    return writer.error is None and hasher.digest() == expected
