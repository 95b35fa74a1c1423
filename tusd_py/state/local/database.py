"""One SQLite database, run for the embedded state store: where its statements run,
its WAL checkpoints, a full disk, and its errors.

Without fsync, statements run right on the event loop: a statement that only
appends to the WAL takes a few microseconds, far less than a hop to another
thread and back (which, under the GIL, cost about a quarter of the CPU of small
uploads: docs/performance.md). The only slow part, the checkpoint that copies the
WAL into the database and syncs it, is kept off the loop: automatic checkpoints
are off, and a dedicated thread runs a passive one on its own connection every
CHECKPOINT_EVERY writes. With fsync on, every commit syncs, so all calls run on
that dedicated thread instead, which owns the connection.

The database shares its disk with the uploads. So that a full disk cannot stop
the bytes already written from being committed, a small reserve file is kept
beside it and given up when SQLite reports the disk full. Database errors (a full
disk, a read-only or failing one) leave as StateUnavailable, as every state store's do.

This module knows no table: the store passes the function that makes its schema.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from tusd_py.state.base import StateUnavailable

T = TypeVar("T")
logger = logging.getLogger("tusd_py.state")

RESERVE_BYTES = 2 * 1024 * 1024
CHECKPOINT_EVERY = 500  # writes between two passive checkpoints (when statements run on the loop)
RESERVE_RETRY_SECONDS = 60.0


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """Several statements as one (the connection is in autocommit mode, so `with db` would not do)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # also when COMMIT itself failed (a full disk), so the next call can begin
            db.execute("ROLLBACK")
        raise


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
        self._writes = 0  # since the last checkpoint was started
        self._checkpoint: asyncio.Future[None] | None = None
        self._checkpoint_db: sqlite3.Connection | None = None  # the dedicated thread's own

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
        if self._inline:
            result = self._call(fn)
            self._writes += 1  # reads count too: cheaper than telling them apart
            if self._writes >= CHECKPOINT_EVERY and self._checkpoint is None:
                self._start_checkpoint()
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

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
        """Run `fn` (on the loop or the database thread, see `_run`); on a full disk, give up
        the reserve and try once more. A failure leaves as StateUnavailable, as from any store."""
        try:
            try:
                result = self._attempt(fn)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or not self._release_reserve():
                    raise
                result = self._attempt(fn)
        except OSError as exc:
            raise StateUnavailable(f"state database: {exc.strerror or exc}") from exc
        self._keep_reserve()
        return result

    def _attempt(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._connect())
        except sqlite3.OperationalError as exc:
            primary = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF  # extended code -> primary
            if primary == sqlite3.SQLITE_FULL:
                raise OSError(errno.ENOSPC, "state database: disk full") from exc
            if primary == sqlite3.SQLITE_READONLY:
                raise OSError(errno.EROFS, "state database: read-only") from exc
            if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
                raise OSError(errno.EIO, "state database: I/O error") from exc
            raise

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

        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        await asyncio.get_running_loop().run_in_executor(self._executor, run)
        self._executor.shutdown(wait=True)
