"""The embedded store's concatenation: final uploads and the parts they wait on.

A final upload's wait on a part (a row of `concat_waiters`) is settled once the part
is finished, expired or gone; schema.py's triggers settle waits in the very
statement that finishes, expires or deletes the part, so the count never lags
behind the records. Only finals with nothing left to wait for are looked at.
"""

from __future__ import annotations

import sqlite3

from tusd_py.state.base import CREATED, EXPIRED, FINISHED, Upload
from tusd_py.state.local.database import SqliteDatabase, transaction
from tusd_py.state.local.schema import ALL_SETTLED, INSERT, UNSETTLED, to_row


class LocalFinals(SqliteDatabase):
    """`ConcatStateStore`: final uploads, kept in the same database as the records."""

    def _written(self, upload_id: str) -> None:
        """Called before every write of an upload's record (records.py forgets its cached copy)."""

    async def create_final(self, upload: Upload) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            with transaction(db):  # one transaction: the record and its waits exist together or not at all
                cursor = db.execute(INSERT, to_row(upload))
                if cursor.rowcount != 1:
                    return False
                db.executemany(
                    "INSERT OR IGNORE INTO concat_waiters (part, final) VALUES (?, ?)",
                    [(part, upload.id) for part in set(upload.parts)],
                )
                # Parts finished (or gone) already are settled from the start, in the same transaction.
                db.execute(f"UPDATE concat_waiters SET settled = 1 WHERE final = ? AND NOT {UNSETTLED}", (upload.id,))
            return True

        return await self._run(run)

    async def finals_waiting_on(self, part_id: str) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            return [row[0] for row in db.execute("SELECT final FROM concat_waiters WHERE part = ?", (part_id,))]

        return await self._run(run)

    async def finals_ready(self, part_id: str) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                f"SELECT final FROM concat_waiters w WHERE part = ? AND {ALL_SETTLED.format(final='w.final')} ORDER BY final",
                (part_id,),
            )
            return [row[0] for row in rows]

        return await self._run(run)

    async def ready_finals(self, limit: int) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                f"SELECT id FROM uploads WHERE parts != '' AND state = ? AND {ALL_SETTLED.format(final='uploads.id')}"
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
            with transaction(db):
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
            with transaction(db):
                db.execute("DELETE FROM concat_waiters WHERE final = ?", (final_id,))
                cursor = db.execute(
                    "UPDATE uploads SET state = ?, expires = ? WHERE id = ? AND parts != '' AND state NOT IN (?, ?)",
                    (EXPIRED, now, final_id, FINISHED, EXPIRED),
                )
                return cursor.rowcount == 1

        return await self._run(run)
