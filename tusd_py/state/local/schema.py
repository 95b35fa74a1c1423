"""The embedded store's tables, their migrations, and an upload record as a row.

`uploads` holds the records (`Upload`'s fields as columns), `claims` the once-only
claims, `concat_waiters` what final uploads wait on (finals.py). Columns added after
the first release are added to older databases by `prepare`.

A sweep costs in proportion to what expired: the uploads still due and the tombstones
(expired records, kept a week) have an index each, so finding the due ones never walks
the tombstones, and a claim goes with its record (`records.py`) instead of being
found by a scan of all claims.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tusd_py.state.base import EXPIRED, FINISHED, Upload

COLUMNS = (
    "id", "length", "offset", "metadata", "created", "expires", "concat", "partial", "parts", "state",
    "expected_length", "repr_digest", "want_repr_digest", "digests",
)  # fmt: skip
INSERT = f"INSERT OR IGNORE INTO uploads ({','.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})"
# Columns added after the first release, with their types: ALTER TABLE adds them to older databases.
ADDED_COLUMNS = {"expected_length": "INTEGER", "repr_digest": "TEXT", "want_repr_digest": "TEXT", "digests": "TEXT"}
SCHEMA = """
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
CREATE INDEX IF NOT EXISTS uploads_due ON uploads (expires) WHERE expires IS NOT NULL AND state != 'expired';
CREATE INDEX IF NOT EXISTS uploads_tombstones ON uploads (expires) WHERE state = 'expired';
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
SETTLE_SCHEMA = f"""
CREATE INDEX IF NOT EXISTS concat_waiters_unsettled ON concat_waiters (final) WHERE settled = 0;
CREATE TRIGGER IF NOT EXISTS concat_settle_on_state AFTER UPDATE OF state ON uploads
WHEN NEW.partial = 1 AND NEW.state IN ('{FINISHED}', '{EXPIRED}') AND OLD.state != NEW.state
BEGIN UPDATE concat_waiters SET settled = 1 WHERE part = NEW.id AND settled = 0; END;
CREATE TRIGGER IF NOT EXISTS concat_settle_on_delete AFTER DELETE ON uploads WHEN OLD.partial = 1
BEGIN UPDATE concat_waiters SET settled = 1 WHERE part = OLD.id AND settled = 0; END;
"""
SWEEP_VERSION = 1  # PRAGMA user_version from which claims leave with their records
ALL_SETTLED = "NOT EXISTS (SELECT 1 FROM concat_waiters u WHERE u.final = {final} AND u.settled = 0)"
UNSETTLED = f"EXISTS (SELECT 1 FROM uploads p WHERE p.id = concat_waiters.part AND p.state NOT IN ('{FINISHED}', '{EXPIRED}'))"


def prepare(db: sqlite3.Connection) -> None:
    """Make the tables, or bring a database of an older release up to date."""
    db.executescript(SCHEMA)
    present = {row[1] for row in db.execute("PRAGMA table_info(uploads)")}
    for column, kind in ADDED_COLUMNS.items():
        if column not in present:
            db.execute(f"ALTER TABLE uploads ADD COLUMN {column} {kind}")
    if "settled" not in {row[1] for row in db.execute("PRAGMA table_info(concat_waiters)")}:
        db.execute("ALTER TABLE concat_waiters ADD COLUMN settled INTEGER NOT NULL DEFAULT 0")
        db.execute(f"UPDATE concat_waiters SET settled = 1 WHERE NOT {UNSETTLED}")  # waits of older releases
    db.executescript(SETTLE_SCHEMA)
    if db.execute("PRAGMA user_version").fetchone()[0] < SWEEP_VERSION:  # once, for a database of an older release
        db.execute("DROP INDEX IF EXISTS uploads_expires")  # walked the tombstones; the two partial indexes replace it
        db.execute("DELETE FROM claims WHERE NOT EXISTS (SELECT 1 FROM uploads WHERE uploads.id = claims.id)")
        db.execute(f"PRAGMA user_version = {SWEEP_VERSION}")


def to_row(upload: Upload) -> tuple[Any, ...]:
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


def from_row(row: tuple[Any, ...]) -> Upload:
    values = dict(zip(COLUMNS, row))
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
