"""The embedded state store: SQLite in the data directory.

Needs no server, survives restarts and crashes (WAL journal), and serves one
instance. Without fsync, statements run right on the event loop: a statement
that only appends to the WAL takes a few microseconds, far less than a hop to
another thread and back (which, under the GIL, cost about a quarter of the CPU
of small uploads: docs/performance.md). The only slow part, the checkpoint that
copies the WAL into the database and syncs it, is kept off the loop: automatic
checkpoints are off, and a dedicated thread runs a passive one on its own
connection every CHECKPOINT_EVERY writes. With fsync on, every commit syncs, so
all calls run on that dedicated thread instead, which owns the connection.

The database shares its disk with the uploads. So that a full disk cannot stop
the bytes already written from being committed, a small reserve file is kept
beside it and given up when SQLite reports the disk full. Database errors leave
as OSError (ENOSPC, EROFS, EIO), like the data store's.

The record of an upload just created is kept in memory for the first read that
follows (the PATCH after a POST: one statement less per small upload). Every
write of that upload drops it first, and this store is the database's only
writer (one process), so that read sees what a SELECT would.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from tusd_py.locks.base import Fence, Lock
from tusd_py.state.base import CREATED, EXPIRED, FINISHED, UPLOADING, Upload

T = TypeVar("T")
logger = logging.getLogger("tusd_py.state")

RESERVE_BYTES = 2 * 1024 * 1024
CHECKPOINT_EVERY = 500  # writes between two passive checkpoints (when statements run on the loop)
RESERVE_RETRY_SECONDS = 60.0

_COLUMNS = (
    "id", "length", "offset", "metadata", "created", "expires", "concat", "partial", "parts", "state",
    "expected_length", "repr_digest", "want_repr_digest", "digests",
)  # fmt: skip
_INSERT = f"INSERT OR IGNORE INTO uploads ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})"
FRESH_MAX = 1024  # records of uploads just created kept for their first read (module docstring)
# Columns added after the first release, with their types: ALTER TABLE adds them to older databases.
_ADDED_COLUMNS = {"expected_length": "INTEGER", "repr_digest": "TEXT", "want_repr_digest": "TEXT", "digests": "TEXT"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    length INTEGER,
    offset INTEGER NOT NULL,
    metadata TEXT,
    created REAL NOT NULL,
    expires REAL,
    concat TEXT,
    partial INTEGER NOT NULL,
    parts TEXT NOT NULL,
    state TEXT NOT NULL,
    expected_length INTEGER,
    repr_digest TEXT,
    want_repr_digest TEXT,
    digests TEXT
);
CREATE INDEX IF NOT EXISTS uploads_expires ON uploads (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS claims (
    id TEXT NOT NULL,
    event TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (id, event)
);
CREATE INDEX IF NOT EXISTS uploads_pending_finals ON uploads (created) WHERE parts != '' AND state = 'created';
CREATE TABLE IF NOT EXISTS concat_waiters (
    part TEXT NOT NULL,
    final TEXT NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (part, final)
);
CREATE INDEX IF NOT EXISTS concat_waiters_final ON concat_waiters (final);
"""
# A wait is settled once its part is finished, expired or gone: a final upload all of whose
# waits are settled needs a look (`finals_ready`, `ready_finals`), the others do not. The
# triggers settle waits in the very statement that finishes, expires or deletes the part,
# so the count can never lag behind the records (a crash in between is impossible).
_SETTLE_SCHEMA = f"""
CREATE INDEX IF NOT EXISTS concat_waiters_unsettled ON concat_waiters (final) WHERE settled = 0;
CREATE TRIGGER IF NOT EXISTS concat_settle_on_state AFTER UPDATE OF state ON uploads
WHEN NEW.partial = 1 AND NEW.state IN ('{FINISHED}', '{EXPIRED}') AND OLD.state != NEW.state
BEGIN UPDATE concat_waiters SET settled = 1 WHERE part = NEW.id AND settled = 0; END;
CREATE TRIGGER IF NOT EXISTS concat_settle_on_delete AFTER DELETE ON uploads WHEN OLD.partial = 1
BEGIN UPDATE concat_waiters SET settled = 1 WHERE part = OLD.id AND settled = 0; END;
"""
_ALL_SETTLED = "NOT EXISTS (SELECT 1 FROM concat_waiters u WHERE u.final = {final} AND u.settled = 0)"
_UNSETTLED = f"EXISTS (SELECT 1 FROM uploads p WHERE p.id = concat_waiters.part AND p.state NOT IN ('{FINISHED}', '{EXPIRED}'))"


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """Several statements as one (the connection is in autocommit mode, so `with db` would not do)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # also when COMMIT itself failed (a full disk), so the next call can begin
            db.execute("ROLLBACK")
        raise


class LocalStateStore:
    name = "embedded (SQLite)"

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
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
        self._fresh: dict[str, tuple[Any, ...]] = {}  # rows of uploads just created, until first read

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
            db.executescript(_SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(uploads)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE uploads ADD COLUMN {column} {kind}")
            if "settled" not in {row[1] for row in db.execute("PRAGMA table_info(concat_waiters)")}:
                db.execute("ALTER TABLE concat_waiters ADD COLUMN settled INTEGER NOT NULL DEFAULT 0")
                db.execute(f"UPDATE concat_waiters SET settled = 1 WHERE NOT {_UNSETTLED}")  # waits of older releases
            db.executescript(_SETTLE_SCHEMA)
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
        """Run `fn` (on the loop or the database thread, see `_run`); on a full disk, give up the reserve and try once more."""
        try:
            result = self._attempt(fn)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not self._release_reserve():
                raise
            result = self._attempt(fn)
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

    @staticmethod
    def _row(upload: Upload) -> tuple[Any, ...]:
        return (
            upload.id,
            upload.length,
            upload.offset,
            upload.metadata,
            upload.created,
            upload.expires,
            upload.concat,
            int(upload.partial),
            " ".join(upload.parts),
            upload.state,
            upload.expected_length,
            upload.repr_digest,
            upload.want_repr_digest,
            upload.digests,
        )

    @staticmethod
    def _upload(row: tuple[Any, ...]) -> Upload:
        values = dict(zip(_COLUMNS, row))
        return Upload(
            id=values["id"],
            length=values["length"],
            offset=values["offset"],
            metadata=values["metadata"],
            created=values["created"],
            expires=values["expires"],
            concat=values["concat"],
            partial=bool(values["partial"]),
            parts=tuple(values["parts"].split()),
            state=values["state"],
            expected_length=values["expected_length"],
            repr_digest=values["repr_digest"],
            want_repr_digest=values["want_repr_digest"],
            digests=values["digests"],
        )

    async def create(self, upload: Upload) -> bool:
        row = self._row(upload)

        def run(db: sqlite3.Connection) -> bool:
            return db.execute(_INSERT, row).rowcount == 1

        created = await self._run(run)
        if created:
            if len(self._fresh) >= FRESH_MAX:  # created and never read: forget them all
                self._fresh.clear()
            self._fresh[upload.id] = row
        return created

    def _written(self, upload_id: str) -> None:
        """Called before every write of an upload's record: its fresh copy is stale now."""
        self._fresh.pop(upload_id, None)

    async def get(self, upload_id: str, *, lock: Lock | None = None) -> Upload | None:
        fresh = self._fresh.pop(upload_id, None)
        if fresh is not None:
            return self._upload(fresh)

        def run(db: sqlite3.Connection) -> Upload | None:
            row = db.execute(f"SELECT {','.join(_COLUMNS)} FROM uploads WHERE id = ?", (upload_id,)).fetchone()
            return None if row is None else self._upload(row)

        return await self._run(run)

    async def commit_offset(
        self,
        upload_id: str,
        expected: int,
        new: int,
        expires: float | None,
        *,
        fence: Fence | None = None,
        claim: str | None = None,
    ) -> int | None:
        self._written(upload_id)
        # One process: the in-process locker has no fence, and nothing else can take its locks.
        def run(db: sqlite3.Connection) -> int | None:
            with _transaction(db) if claim is not None else nullcontext():
                rows = db.execute(
                    "UPDATE uploads SET offset = ?, expires = ?,"
                    " state = CASE WHEN length = ? THEN ? ELSE ? END"
                    " WHERE id = ? AND offset = ? AND state != ? AND ? >= offset AND (length IS NULL OR ? <= length)"
                    " RETURNING state",
                    (new, expires, new, FINISHED, UPLOADING, upload_id, expected, EXPIRED, new, new),
                ).fetchall()  # all: the statement (and its write) only ends when stepped to the end
                if rows and claim is not None and rows[0][0] == FINISHED:
                    self._claim(db, upload_id, claim)  # in the same transaction: both or neither
            if rows:
                return new
            row = db.execute("SELECT offset, state FROM uploads WHERE id = ?", (upload_id,)).fetchone()
            return None if row is None or row[1] == EXPIRED else int(row[0])

        return await self._run(run)

    async def declare_length(self, upload_id: str, length: int) -> bool:
        self._written(upload_id)
        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE uploads SET length = ?, state = CASE WHEN offset = ? THEN ? ELSE state END,"
                " expires = CASE WHEN offset = ? THEN NULL ELSE expires END"
                " WHERE id = ? AND length IS NULL AND offset <= ? AND state != ?",
                (length, length, FINISHED, length, upload_id, length, EXPIRED),
            )
            return cursor.rowcount == 1

        return await self._run(run)

    async def expect_length(self, upload_id: str, length: int) -> bool:
        self._written(upload_id)
        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE uploads SET expected_length = ?"
                " WHERE id = ? AND expected_length IS NULL AND offset <= ? AND state != ?",
                (length, upload_id, length, EXPIRED),
            )
            return cursor.rowcount == 1

        return await self._run(run)

    async def record_digests(self, upload_id: str, digests: str) -> bool:
        self._written(upload_id)
        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute("UPDATE uploads SET digests = ? WHERE id = ? AND state = ?", (digests, upload_id, FINISHED))
            return cursor.rowcount == 1

        return await self._run(run)

    async def claim(self, upload_id: str, event: str) -> bool:
        return await self._run(lambda db: self._claim(db, upload_id, event))

    @staticmethod
    def _claim(db: sqlite3.Connection, upload_id: str, event: str) -> bool:
        # One statement, so atomic. A claim names the record's creation time: one left
        # by an earlier upload with the same id (terminated, then re-created) is replaced.
        cursor = db.execute(
            "INSERT INTO claims (id, event, created) SELECT id, ?, created FROM uploads WHERE id = ?"
            " ON CONFLICT (id, event) DO UPDATE SET created = excluded.created WHERE created != excluded.created",
            (event, upload_id),
        )
        return cursor.rowcount == 1

    async def delete(self, upload_id: str) -> bool:
        self._written(upload_id)
        def run(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                db.execute("DELETE FROM concat_waiters WHERE final = ?", (upload_id,))
                return db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)).rowcount == 1

        return await self._run(run)

    async def due_for_expiry(self, now: float, limit: int) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT id FROM uploads WHERE expires IS NOT NULL AND expires <= ? AND state != ? LIMIT ?",
                (now, EXPIRED, limit),
            )
            return [row[0] for row in rows]

        return await self._run(run)

    async def mark_expired(self, upload_id: str, now: float) -> bool:
        self._written(upload_id)
        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE uploads SET state = ? WHERE id = ? AND expires IS NOT NULL AND expires <= ? AND state != ?",
                (EXPIRED, upload_id, now, EXPIRED),
            )
            return cursor.rowcount == 1

        return await self._run(run)

    async def forget_tombstones(self, before: float) -> int:
        """Drop expired tombstones older than `before`, so the table does not grow forever."""
        self._fresh.clear()
        def run(db: sqlite3.Connection) -> int:
            dropped = db.execute("DELETE FROM uploads WHERE state = ? AND expires < ?", (EXPIRED, before)).rowcount
            db.execute("DELETE FROM claims WHERE NOT EXISTS (SELECT 1 FROM uploads WHERE uploads.id = claims.id)")
            return dropped

        return await self._run(run)

    async def create_final(self, upload: Upload) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            with _transaction(db):  # one transaction: the record and its waits exist together or not at all
                cursor = db.execute(_INSERT, self._row(upload))
                if cursor.rowcount != 1:
                    return False
                db.executemany(
                    "INSERT OR IGNORE INTO concat_waiters (part, final) VALUES (?, ?)",
                    [(part, upload.id) for part in set(upload.parts)],
                )
                # Parts finished (or gone) already are settled from the start, in the same transaction.
                db.execute(f"UPDATE concat_waiters SET settled = 1 WHERE final = ? AND NOT {_UNSETTLED}", (upload.id,))
            return True

        return await self._run(run)

    async def finals_waiting_on(self, part_id: str) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            return [row[0] for row in db.execute("SELECT final FROM concat_waiters WHERE part = ?", (part_id,))]

        return await self._run(run)

    async def finals_ready(self, part_id: str) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                f"SELECT final FROM concat_waiters w WHERE part = ? AND {_ALL_SETTLED.format(final='w.final')} ORDER BY final",
                (part_id,),
            )
            return [row[0] for row in rows]

        return await self._run(run)

    async def ready_finals(self, limit: int) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                f"SELECT id FROM uploads WHERE parts != '' AND state = ? AND {_ALL_SETTLED.format(final='uploads.id')}"
                " ORDER BY created LIMIT ?",
                (CREATED, limit),
            )
            return [row[0] for row in rows]

        return await self._run(run)

    async def pending_finals(self, limit: int) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT id FROM uploads WHERE parts != '' AND state = ? ORDER BY created LIMIT ?", (CREATED, limit)
            )
            return [row[0] for row in rows]

        return await self._run(run)

    async def finish_final(self, final_id: str) -> bool:
        self._written(final_id)
        def run(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                cursor = db.execute(
                    "UPDATE uploads SET offset = length, state = ?, expires = NULL"
                    " WHERE id = ? AND parts != '' AND length IS NOT NULL AND state NOT IN (?, ?)",
                    (FINISHED, final_id, FINISHED, EXPIRED),
                )
                if cursor.rowcount != 1:
                    return False
                db.execute("DELETE FROM concat_waiters WHERE final = ?", (final_id,))
            return True

        return await self._run(run)

    async def drop_final(self, final_id: str, now: float) -> bool:
        self._written(final_id)
        def run(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                db.execute("DELETE FROM concat_waiters WHERE final = ?", (final_id,))
                cursor = db.execute(
                    "UPDATE uploads SET state = ?, expires = ? WHERE id = ? AND parts != '' AND state NOT IN (?, ?)",
                    (EXPIRED, now, final_id, FINISHED, EXPIRED),
                )
                return cursor.rowcount == 1

        return await self._run(run)

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
