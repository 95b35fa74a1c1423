"""A sweeper pass costs in proportion to the uploads that expired, not to all of them.

Measured on the real stores (SQLite in a file, the shared redis-server), with a count,
not a time: the SQLite virtual machine's instructions (a progress handler called at
each one) and the commands Redis ran (INFO commandstats, the scripts' own calls
included). The same 40 due uploads are swept next to a store holding ten times more
live uploads, finished uploads with their claims, and tombstones: the count must not
grow with them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Awaitable, Callable

import pytest
import redis.asyncio

from tusd_py.locks.base import Locker
from tusd_py.locks.memory import MemoryLocker
from tusd_py.locks.redis import RedisLocker
from tusd_py.state.base import FINISH_ANNOUNCED, FINISHED, FullStateStore, Upload
from tusd_py.state.local import LocalStateStore, schema
from tusd_py.state.redis import RedisStateStore
from tusd_py.storage.files import FileStore
from tusd_py.sweeper import Sweeper

pytestmark = pytest.mark.timeout(300)

DUE = 40
SMALL, LARGE = 300, 3000  # of each kind of upload that stays


async def fill(state: FullStateStore, bulk: int, tag: str) -> list[str]:
    """`bulk` live, `bulk` finished (claimed) and `bulk` expired uploads, and `DUE` due now; returns the due ids."""
    now = time.time()
    for n in range(bulk):
        await state.create(Upload(id=f"{tag}live{n:06d}", length=10, created=now, expires=now + 3600))
        finished = f"{tag}done{n:06d}"
        await state.create(Upload(id=finished, length=10, offset=10, created=now, state=FINISHED))
        assert await state.claim(finished, FINISH_ANNOUNCED)
        gone = f"{tag}gone{n:06d}"
        await state.create(Upload(id=gone, length=10, created=now - 60, expires=now - 30))
        assert await state.mark_expired(gone, now)
    due = [f"{tag}due{n:06d}" for n in range(DUE)]
    for upload_id in due:
        await state.create(Upload(id=upload_id, length=10, created=now - 60, expires=now - 1))
    return due


async def pass_cost(state: FullStateStore, locker: Locker, tmp: Path, bulk: int, tag: str, count: Callable[[], Awaitable[int]]) -> int:
    due = await fill(state, bulk, tag)
    sweeper = Sweeper(state, FileStore(tmp / tag), locker, interval=3600)
    before = await count()
    assert await sweeper.sweep() == DUE
    spent = await count() - before
    for upload_id in due:
        stored = await state.get(upload_id)
        assert stored is None or stored.state == "expired"
    return spent


class Steps:
    """Counts the SQLite virtual machine's instructions on a connection."""

    def __init__(self) -> None:
        self.count = 0

    def step(self) -> int:
        self.count += 1
        return 0  # go on

    async def total(self) -> int:
        return self.count


def test_embedded_sweep_costs_what_expired(tmp_path: Path) -> None:
    async def main() -> list[int]:
        costs = []
        for bulk in (SMALL, LARGE):
            state = LocalStateStore(tmp_path / f"state{bulk}.sqlite3")
            steps = Steps()
            await state.ping()  # opens the database
            state._connect().set_progress_handler(steps.step, 1)  # one call per VM instruction
            costs.append(await pass_cost(state, MemoryLocker(), tmp_path, bulk, f"e{bulk}", steps.total))
            await state.close()
        return costs

    small, large = asyncio.run(main())
    print(f"embedded sweep of {DUE} due uploads: {small} SQLite VM steps next to {SMALL} of each kind, {large} next to {LARGE}")
    assert large <= small * 1.25, (small, large)  # ten times the store, the same pass (6x before the fix)


def test_redis_sweep_costs_what_expired(tmp_path: Path, redis_url: str) -> None:
    async def main() -> list[int]:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        costs = []

        async def count() -> int:
            stats = await client.info("commandstats")
            return sum(int(entry["calls"]) for entry in stats.values())

        try:
            for bulk in (SMALL, LARGE):
                await client.flushdb()
                state = RedisStateStore(client)
                locker = RedisLocker(client, preload=state.key, scripts=state.scripts)
                costs.append(await pass_cost(state, locker, tmp_path, bulk, f"r{bulk}", count))
        finally:
            await client.aclose()
        return costs

    small, large = asyncio.run(main())
    print(f"Redis sweep of {DUE} due uploads: {small} commands next to {SMALL} of each kind, {large} next to {LARGE}")
    assert large <= small * 1.25, (small, large)


def test_an_older_database_loses_the_old_index_and_its_orphaned_claims(tmp_path: Path) -> None:
    """The embedded store of an older release: a claim outliving its record, and the expiry
    index that walked the tombstones. Opening it once brings both up to date."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(schema.SCHEMA)
    db.execute("CREATE INDEX uploads_expires ON uploads (expires) WHERE expires IS NOT NULL")
    db.execute("INSERT INTO claims (id, event, created) VALUES ('gone', ?, 1.0)", (FINISH_ANNOUNCED,))
    db.commit()
    db.close()

    async def main() -> None:
        state = LocalStateStore(path)
        await state.ping()
        await state.create(Upload(id="kept", length=1))
        assert await state.claim("kept", FINISH_ANNOUNCED)
        await state.close()

    asyncio.run(main())
    db = sqlite3.connect(path)
    try:
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "uploads_expires" not in indexes and {"uploads_due", "uploads_tombstones"} <= indexes
        assert [row[0] for row in db.execute("SELECT id FROM claims")] == ["kept"]
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.SWEEP_VERSION
    finally:
        db.close()
