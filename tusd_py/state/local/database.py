"""One SQLite database, run for the embedded state store: where its statements run,
how they are grouped into transactions, its WAL checkpoints, a full disk, and its errors.

Without fsync, statements run right on the event loop: a statement that only
appends to the WAL takes a few microseconds, far less than a hop to another
thread and back (which, under the GIL, cost about a quarter of the CPU of small
uploads: docs/performance.md). The only slow part, the checkpoint that copies the
WAL into the database and syncs it, is kept off the loop: automatic checkpoints
are off, and a dedicated thread runs a passive one on its own connection every
CHECKPOINT_EVERY calls. With fsync on, every commit syncs, so all calls run on
that dedicated thread instead, which owns the connection.

Group commit. A commit costs its WAL frames, their header and the locks, whatever
it holds: committing each call on its own cost ~13-20 % of a small upload's CPU
(an in-memory database saved ~95 us of ~550-760). So the calls (`_run`) that
arrive while the loop is busy wait for one flush in the loop's next iteration
(`_flush`), which runs them, in the order they came, as ONE transaction (BATCH_MAX
calls at most, so that one flush never holds the loop long). At 64 concurrent
small uploads a batch held 24 calls on average, at most 64 (docs/performance.md).
With fsync, the calls that arrive while the thread runs a batch make the next
one: one sync for all of them, which is where grouping saves the most.

What a caller is promised: its answer (result or exception) comes only after the
COMMIT of its batch succeeded, so nothing is ever answered for a write that is not
committed (with synchronous=NORMAL, a commit survives a crash of this process, as
before). Each call runs in its own savepoint (`transaction()` is a savepoint nested
in it): a call that raises takes back its own writes only, and its exception
reaches its caller only. A call sees the writes of the calls before it in its
batch. If the batch fails as a whole (BEGIN or COMMIT fail, or SQLite itself ends
the transaction on an I/O error), every call of it fails with StateUnavailable and
none of its writes stay; the next batch begins afresh. A caller cancelled before
its batch ran makes no call. The functions stay synchronous functions of the
connection: nothing outside this module knows about batches.

The database shares its disk with the uploads. So that a full disk cannot stop
the bytes already written from being committed, a small reserve file is kept
beside it and given up when SQLite reports the disk full (then the batch runs
once more). Database errors (a full disk, a read-only or failing one) leave as
StateUnavailable, as every state store's do.

This module knows no table: the store passes the function that makes its schema.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from tusd_py.state.base import StateUnavailable

T = TypeVar("T")
Outcome = tuple[bool, Any]  # one call of a batch: (True, its result) or (False, its exception)
logger = logging.getLogger("tusd_py.state")

RESERVE_BYTES = 2 * 1024 * 1024
CHECKPOINT_EVERY = 500  # calls between two passive checkpoints (when statements run on the loop)
BATCH_MAX = 256  # calls in one transaction at most, so that one flush never holds the loop long
RESERVE_RETRY_SECONDS = 60.0


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """Statements as one: a savepoint. Each call of a batch runs in one (`_run_call`); a call's
    `with transaction(db)` nests another in it."""
    db.execute("SAVEPOINT atomic")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # not when SQLite itself ended the transaction (an I/O error)
            db.execute("ROLLBACK TO atomic")
            db.execute("RELEASE atomic")
        raise
    db.execute("RELEASE atomic")


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError a database error stands for (a full, read-only or failing disk), or None."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    primary = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF  # extended code -> primary
    if primary == sqlite3.SQLITE_FULL:
        return OSError(errno.ENOSPC, "disk full")
    if primary == sqlite3.SQLITE_READONLY:
        return OSError(errno.EROFS, "read-only")
    if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return OSError(errno.EIO, "I/O error")
    return None


def _unavailable(exc: OSError) -> StateUnavailable:
    return StateUnavailable(f"state database: {exc.strerror or exc}")


def _failed(exc: BaseException, count: int) -> list[Outcome]:
    """A batch that failed as a whole (BEGIN or COMMIT, or SQLite ended its transaction): each
    of its calls fails with StateUnavailable, each with its own (one shared by all callers
    would collect the tracebacks of all)."""
    if isinstance(exc, StateUnavailable):
        message, cause = str(exc), exc.__cause__
    else:
        logger.error("state database: a batch failed", exc_info=exc)
        message, cause = f"state database: {exc}", exc
    outcomes: list[Outcome] = []
    for _ in range(count):
        error = StateUnavailable(message)
        error.__cause__ = cause
        outcomes.append((False, error))
    return outcomes


class SqliteDatabase:
    """The database at `path`; `prepare(db)` makes (or brings up to date) its schema on first use."""

    def __init__(self, path: Path, *, fsync: bool = False, prepare: Callable[[sqlite3.Connection], None]) -> None:
        self.path = path
        self._prepare = prepare
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tusd-sqlite")
        self._db: sqlite3.Connection | None = None
        self._fsync = fsync
        self._reserve = path.with_name(path.name + ".reserve")
        self._reserve_tried = -RESERVE_RETRY_SECONDS
        self._reserve_ok = False
        self._inline = not fsync  # statements on the event loop (see the module docstring)
        self._writes = 0  # calls since the last checkpoint was started
        self._checkpoint: asyncio.Future[None] | None = None
        self._checkpoint_db: sqlite3.Connection | None = None  # the dedicated thread's own
        self._pending: deque[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = deque()
        self._drained: asyncio.Future[None] | None = None  # while calls wait or run: done when none do

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # timeout: how long a statement waits for another connection's lock. Only the
        # checkpointer is another connection, and a passive one takes no lock that a
        # statement waits for; the timeout is a bound, should that ever change.
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=1.0)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a crash of this process; FULL also survives power loss.
        db.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
        return db

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            db = self._open()
            if self._inline:
                db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on the dedicated thread
            self._prepare(db)
            self._db = db
        return self._db

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the next batch (module docstring); its answer comes once that batch is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, future))
        if self._drained is None:  # the first call of a batch: the flush runs when the loop is next free
            self._drained = loop.create_future()
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Run the calls waiting (BATCH_MAX at most) as one transaction, on the loop or the thread."""
        calls: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        while self._pending and len(calls) < BATCH_MAX:
            call = self._pending.popleft()
            if not call[1].done():  # its caller was cancelled before it ran: it does not happen
                calls.append(call)
        batch = [fn for fn, _ in calls]
        if not calls:
            self._answer(calls, [])
        elif not self._inline:
            running = asyncio.get_running_loop().run_in_executor(self._executor, self._call, lambda db: self._run_batch(db, batch))
            running.add_done_callback(lambda running: self._answer(calls, self._outcomes(running, len(calls))))
        else:
            try:
                outcomes = self._call(lambda db: self._run_batch(db, batch))
            except Exception as exc:
                outcomes = _failed(exc, len(calls))
            self._writes += len(calls)  # reads count too: cheaper than telling them apart
            if self._writes >= CHECKPOINT_EVERY and self._checkpoint is None:
                self._start_checkpoint()
            self._answer(calls, outcomes)

    @staticmethod
    def _outcomes(running: asyncio.Future[list[Outcome]], count: int) -> list[Outcome]:
        """The outcomes of a batch run on the dedicated thread."""
        if running.cancelled():
            return _failed(StateUnavailable("state database: closed"), count)
        error = running.exception()
        return running.result() if error is None else _failed(error, count)

    def _answer(self, calls: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]], outcomes: list[Outcome]) -> None:
        """Answer each caller of a batch that is over, then start the next one (or be idle)."""
        for (_, future), (ok, value) in zip(calls, outcomes):
            if future.done():  # cancelled meanwhile (the thread was running it)
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)  # the loop runs what waits in between
        elif self._drained is not None:
            self._drained.set_result(None)
            self._drained = None

    def _run_batch(self, db: sqlite3.Connection, batch: list[Callable[[sqlite3.Connection], Any]]) -> list[Outcome]:
        """One transaction, one COMMIT, each call in its own savepoint: a call that raises takes
        back its own writes only, and its exception reaches its caller only."""
        db.execute("BEGIN")  # deferred: a batch of reads takes no write lock (one process writes)
        try:
            outcomes = [self._run_call(db, fn) for fn in batch]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # also when COMMIT itself failed, so the next batch can begin
                db.execute("ROLLBACK")
            raise
        return outcomes

    @staticmethod
    def _run_call(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> Outcome:
        try:
            with transaction(db):
                return True, fn(db)
        except Exception as exc:
            error = _os_error(exc)
            if not db.in_transaction or (error is not None and error.errno == errno.ENOSPC):
                raise  # the whole batch: SQLite ended the transaction, or the disk is full (`_call`)
            if error is None:
                return False, exc
            unavailable = _unavailable(error)
            unavailable.__cause__ = exc
            return False, unavailable

    def _start_checkpoint(self) -> None:
        self._writes = 0
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._run_checkpoint)
        self._checkpoint = future
        future.add_done_callback(self._checkpoint_done)

    def _run_checkpoint(self) -> None:
        """On the dedicated thread: copy the WAL into the database without waiting for anyone."""
        if self._checkpoint_db is None:
            self._checkpoint_db = self._open()
        self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not future.cancelled() and future.exception() is not None:
            # Not fatal: the WAL keeps the data, and the next checkpoint tries again.
            logger.warning("state database checkpoint failed: %s", future.exception())

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` (a batch: on the loop or the database thread, see `_flush`); on a full disk,
        give up the reserve and try once more. A failure leaves as StateUnavailable, as from any store."""
        try:
            try:
                result = self._attempt(fn)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or not self._release_reserve():
                    raise
                result = self._attempt(fn)
        except OSError as exc:
            raise _unavailable(exc) from exc
        self._keep_reserve()
        return result

    def _attempt(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._connect())
        except sqlite3.OperationalError as exc:
            error = _os_error(exc)
            if error is None:
                raise
            raise error from exc

    def _release_reserve(self) -> bool:
        try:
            os.unlink(self._reserve)
        except FileNotFoundError:
            return False
        logger.warning("disk full: released the state database's reserve so commits go on")
        self._reserve_ok = False
        self._reserve_tried = time.monotonic()
        return True

    def _keep_reserve(self) -> None:
        """Make the reserve when it is missing: at start, and a while after it was given up."""
        if self._reserve_ok or time.monotonic() - self._reserve_tried < RESERVE_RETRY_SECONDS:
            return
        self._reserve_tried = time.monotonic()
        if os.path.exists(self._reserve):
            self._reserve_ok = True
            return
        try:
            with open(self._reserve, "wb") as reserve:
                reserve.write(bytes(RESERVE_BYTES))
            self._reserve_ok = True
        except OSError:
            try:
                os.unlink(self._reserve)
            except OSError:
                pass

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        def run() -> None:
            if self._checkpoint_db is not None:
                self._checkpoint_db.close()
                self._checkpoint_db = None
            if self._db is not None:
                self._db.close()  # the last connection to close checkpoints the WAL
                self._db = None

        if self._drained is not None:  # the calls made are answered first
            await self._drained
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        await asyncio.get_running_loop().run_in_executor(self._executor, run)
        self._executor.shutdown(wait=True)
