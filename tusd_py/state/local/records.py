"""The embedded store's records, offsets, claims, deferred lengths, the draft's
fields and expiry: every statement one call of `SqliteDatabase._run`.

The record of an upload just created is kept in memory for the first read that
follows (the PATCH after a POST: one statement less per small upload). Every
write of that upload drops it first, and this store is the database's only
writer (one process), so that read sees what a SELECT would.
"""

from __future__ import annotations

import sqlite3
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from tusd_py.locks.base import Fence, Lock
from tusd_py.state.base import EXPIRED, FINISHED, UPLOADING, Upload
from tusd_py.state.local.database import SqliteDatabase, transaction
from tusd_py.state.local.schema import COLUMNS, INSERT, from_row, prepare, to_row

FRESH_MAX = 1024  # records of uploads just created kept for their first read (module docstring)


class LocalRecords(SqliteDatabase):
    """The core `StateStore`, `LengthDeferringStateStore`, `DraftStateStore` and `ExpiringStateStore`."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        super().__init__(path, fsync=fsync, prepare=prepare)
        self._fresh: dict[str, tuple[Any, ...]] = {}  # rows of uploads just created, until first read

    async def create(self, upload: Upload) -> bool:
        row = to_row(upload)

        def run(db: sqlite3.Connection) -> bool:
            return db.execute(INSERT, row).rowcount == 1

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
            return from_row(fresh)

        def run(db: sqlite3.Connection) -> Upload | None:
            row = db.execute(f"SELECT {','.join(COLUMNS)} FROM uploads WHERE id = ?", (upload_id,)).fetchone()
            return None if row is None else from_row(row)

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
            with transaction(db) if claim is not None else nullcontext():
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
            with transaction(db):
                db.execute("DELETE FROM concat_waiters WHERE final = ?", (upload_id,))
                db.execute("DELETE FROM claims WHERE id = ?", (upload_id,))  # none can be made without the record
                return db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)).rowcount == 1

        return await self._run(run)

    async def due_for_expiry(self, now: float, limit: int) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                # The terms of the uploads_due index, literally: SQLite uses a partial index only then.
                f"SELECT id FROM uploads WHERE expires IS NOT NULL AND state != '{EXPIRED}' AND expires <= ? LIMIT ?",
                (now, limit),
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
            with transaction(db):  # through the uploads_tombstones index: only the tombstones that are dropped
                dropping = f"SELECT id FROM uploads WHERE state = '{EXPIRED}' AND expires < ?"
                db.execute(f"DELETE FROM claims WHERE id IN ({dropping})", (before,))
                return db.execute(f"DELETE FROM uploads WHERE state = '{EXPIRED}' AND expires < ?", (before,)).rowcount

        return await self._run(run)
