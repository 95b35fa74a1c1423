"""The embedded store runs statements on the event loop and checkpoints its WAL on
its own thread (without fsync), or runs everything on that thread (with fsync)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from tusd_py.state.base import Upload
from tusd_py.state.local import LocalStateStore, database

pytestmark = pytest.mark.anyio


def wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


async def test_statements_run_on_the_loop_and_checkpoints_on_the_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "CHECKPOINT_EVERY", 20)
    path = tmp_path / "state.sqlite3"
    store = LocalStateStore(path)
    threads: list[str] = []
    run_checkpoint = store._run_checkpoint

    def spy() -> None:
        threads.append(threading.current_thread().name)
        run_checkpoint()

    monkeypatch.setattr(store, "_run_checkpoint", spy)
    loop_thread = threading.current_thread().name
    seen: list[str] = []
    try:
        for index in range(30):
            await store.create(Upload(id=f"u{index}", length=10))
            seen.append(threading.current_thread().name)
        assert store._checkpoint is not None or threads  # one was started after 20 calls
        while store._checkpoint is not None:
            await store._checkpoint
        assert threads and all(name.startswith("tusd-sqlite") for name in threads)
        # Another connection (as after a crash of this process) sees every record, WAL or not.
        other = sqlite3.connect(path)
        assert other.execute("SELECT count(*) FROM uploads").fetchone()[0] == 30
        other.close()
    finally:
        await store.close()
    assert set(seen) == {loop_thread}
    assert wal_pages(path) == 0  # closing the last connection checkpointed and removed the WAL


async def test_with_fsync_statements_run_on_the_dedicated_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStateStore(tmp_path / "state.sqlite3", fsync=True)
    threads: list[str] = []
    call = store._call

    def spy(fn):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return call(fn)

    monkeypatch.setattr(store, "_call", spy)
    try:
        assert await store.create(Upload(id="u1", length=10))
        assert (await store.get("u1")) is not None
    finally:
        await store.close()
    assert threads and all(name.startswith("tusd-sqlite") for name in threads)
