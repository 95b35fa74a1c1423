"""What writing one request body comes to: one `Stop` reason, and the `WriteResult`.

The engine (`engine.py`) streams a body, then settles it; both steps speak these
terms, and so do the protocols: a creation-with-upload keeps its upload when the
Stop is `resumable`, the draft maps the Stop to its own answers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, MutableMapping

from tusd_py import protocol as p
from tusd_py.body import BodyReader
from tusd_py.checksum import Hasher
from tusd_py.errors import storage_error
from tusd_py.locks.base import Lock
from tusd_py.state.base import Upload
from tusd_py.storage.base import Writer

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
