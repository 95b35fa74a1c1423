"""Group commit in the embedded store: the calls that arrive while the loop is busy run as
one transaction, each in its own savepoint, and every caller hears only once it committed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from tests.e2e.test_hardening import fill, small_disk  # noqa: F401 (small_disk: a fixture)
from tusd_py.state.base import StateUnavailable, Upload
from tusd_py.state.local import LocalStateStore, database

pytestmark = pytest.mark.anyio


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalStateStore]:
    """An embedded store, its database made (at `local.path`)."""
    store = LocalStateStore(tmp_path / "state.sqlite3")
    await store.ping()
    yield store
    await store.close()


class Statements:
    """Every statement the store's connection runs, as SQLite traces them."""

    def __init__(self, store: LocalStateStore) -> None:
        self.seen: list[str] = []
        store._connect().set_trace_callback(self.seen.append)

    def count(self, statement: str) -> int:
        return sum(1 for seen in self.seen if seen == statement)


def ids_in_file(path: Path) -> set[str]:
    """What another connection (as after a crash of this process) finds in the database."""
    other = sqlite3.connect(path)
    try:
        return {row[0] for row in other.execute("SELECT id FROM uploads")}
    finally:
        other.close()


def insert_then_fail(upload_id: str, *, nested: bool) -> Any:
    def run(db: sqlite3.Connection) -> None:
        if nested:
            with database.transaction(db):
                db.execute("INSERT INTO uploads (id, offset, created, partial, parts, state) VALUES (?, 0, 0, 0, '', 'created')", (upload_id,))
                raise ValueError(upload_id)
        db.execute("INSERT INTO uploads (id, offset, created, partial, parts, state) VALUES (?, 0, 0, 0, '', 'created')", (upload_id,))
        raise ValueError(upload_id)

    return run


async def test_calls_of_one_loop_iteration_commit_together_and_each_caller_gets_its_own_answer(local: LocalStateStore) -> None:
    statements = Statements(local)
    commits_when_answered: list[int] = []

    async def create(upload_id: str) -> bool:
        created = await local.create(Upload(id=upload_id, length=10))
        commits_when_answered.append(statements.count("COMMIT"))
        return created

    # u1 twice: the second INSERT sees the first (OR IGNORE). The read sees u2 of the same batch.
    answers = await asyncio.gather(create("u1"), create("u2"), create("u1"), local.get("u2"), local.get("nope"))
    assert answers[:3] == [True, True, False]
    assert answers[3] is not None and answers[3].id == "u2" and answers[3].length == 10
    assert answers[4] is None
    assert statements.count("BEGIN") == 1 and statements.count("COMMIT") == 1  # five calls, one transaction
    assert statements.count("SAVEPOINT atomic") == 5
    assert commits_when_answered == [1, 1, 1]  # nobody heard before the COMMIT
    assert ids_in_file(local.path) == {"u1", "u2"}
    # One after the other, each call is its own batch.
    await local.create(Upload(id="u3", length=1))
    await local.create(Upload(id="u4", length=1))
    assert statements.count("COMMIT") == 3


async def test_a_batch_is_bounded(local: LocalStateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "BATCH_MAX", 4)
    statements = Statements(local)
    created = await asyncio.gather(*(local.create(Upload(id=f"u{index}", length=1)) for index in range(10)))
    assert created == [True] * 10
    assert statements.count("COMMIT") == 3  # 4 + 4 + 2
    order = [seen for seen in statements.seen if seen.startswith("INSERT")]
    assert [f"'u{index}'" in seen for index, seen in enumerate(order)] == [True] * 10  # in the order of the calls


@pytest.mark.parametrize("nested", [False, True], ids=["statement", "transaction"])
async def test_a_failing_call_takes_back_only_its_own_writes_and_fails_only_its_caller(local: LocalStateStore, nested: bool) -> None:
    statements = Statements(local)
    answers = await asyncio.gather(
        local.create(Upload(id="before", length=1)),
        local._run(insert_then_fail("failing", nested=nested)),
        local.create(Upload(id="after", length=1)),
        local.get("failing"),
        return_exceptions=True,
    )
    assert answers[0] is True and answers[2] is True and answers[3] is None
    assert isinstance(answers[1], ValueError) and answers[1].args == ("failing",)
    assert statements.count("COMMIT") == 1
    assert ids_in_file(local.path) == {"before", "after"}


async def test_a_failed_commit_fails_every_call_of_its_batch_and_the_next_batch_works(local: LocalStateStore) -> None:
    """COMMIT fails on a deferred foreign key that one call of the batch leaves dangling."""
    db = local._connect()
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("CREATE TABLE dangling (upload TEXT REFERENCES uploads (id) DEFERRABLE INITIALLY DEFERRED)")

    def dangle(db: sqlite3.Connection) -> bool:
        db.execute("INSERT INTO dangling VALUES ('no such upload')")  # checked only at COMMIT
        return True

    answers = await asyncio.gather(
        local.create(Upload(id="u1", length=1)),
        local._run(dangle),
        local.create(Upload(id="u2", length=1)),
        return_exceptions=True,
    )
    assert all(isinstance(answer, StateUnavailable) for answer in answers), answers
    assert len({id(answer) for answer in answers}) == 3  # each caller its own exception
    assert ids_in_file(local.path) == set()
    assert not db.in_transaction
    created, got = await asyncio.gather(local.create(Upload(id="u1", length=1)), local.get("u1"))
    assert created is True and got is not None and got.id == "u1"
    assert ids_in_file(local.path) == {"u1"}


async def test_on_a_read_only_database_writes_fail_as_state_unavailable_and_reads_of_the_batch_still_answer(local: LocalStateStore) -> None:
    assert await local.create(Upload(id="u1", length=1))
    await local.get("u1")  # the record just created is read once from memory
    db = local._connect()
    db.execute("PRAGMA query_only = 1")  # every write now fails with SQLITE_READONLY
    answers = await asyncio.gather(
        local.create(Upload(id="u2", length=1)), local.get("u1"), local.declare_length("u1", 5), return_exceptions=True
    )
    assert isinstance(answers[0], StateUnavailable) and str(answers[0]) == "state database: read-only"
    assert getattr(answers[1], "id", None) == "u1"
    assert isinstance(answers[2], StateUnavailable)
    db.execute("PRAGMA query_only = 0")
    assert await local.create(Upload(id="u2", length=1))
    assert ids_in_file(local.path) == {"u1", "u2"}


async def test_a_full_disk_at_commit_gives_up_the_reserve_then_fails_the_batch_and_recovers(small_disk: Path) -> None:  # noqa: F811
    path = small_disk / "state.sqlite3"
    store = LocalStateStore(path)
    try:
        await store.ping()  # makes the database and its reserve
        assert path.with_name(path.name + ".reserve").exists()
        fill(small_disk / "ballast")
        # The first COMMIT that needs a byte fails; the reserve is given up and the batch runs again.
        many = [Upload(id=f"u{index}", length=1, metadata="m " + "x" * 2000) for index in range(20)]
        assert await asyncio.gather(*(store.create(upload) for upload in many)) == [True] * 20
        assert not path.with_name(path.name + ".reserve").exists()
        assert ids_in_file(path) == {upload.id for upload in many}
        # Full again, and no reserve left: the whole batch fails, and nothing of it is written.
        fill(small_disk / "ballast2")
        more = [Upload(id=f"v{index}", length=1, metadata="m " + "x" * 2000) for index in range(20)]
        answers = await asyncio.gather(*(store.create(upload) for upload in more), return_exceptions=True)
        assert all(isinstance(answer, StateUnavailable) for answer in answers), answers
        assert ids_in_file(path) == {upload.id for upload in many}
        # Space is back: the next batch commits.
        (small_disk / "ballast").unlink()
        (small_disk / "ballast2").unlink()
        assert await asyncio.gather(*(store.create(upload) for upload in more)) == [True] * 20
        assert ids_in_file(path) == {upload.id for upload in many + more}
    finally:
        await store.close()


async def test_with_fsync_calls_that_wait_for_the_thread_commit_together(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = LocalStateStore(path, fsync=True)
    try:
        await store.ping()
        statements = Statements(store)
        first = asyncio.ensure_future(store.create(Upload(id="first", length=1)))
        await asyncio.sleep(0)  # the first batch is on the thread now; these wait for it
        rest = await asyncio.gather(*(store.create(Upload(id=f"u{index}", length=1)) for index in range(10)))
        assert await first and rest == [True] * 10
        assert statements.count("SAVEPOINT atomic") == 11
        assert 1 <= statements.count("COMMIT") <= 3  # one (or two, if the thread was quick) for the ten
        assert ids_in_file(path) == {"first"} | {f"u{index}" for index in range(10)}
    finally:
        await store.close()


async def test_a_cancelled_caller_before_its_batch_ran_makes_no_call(local: LocalStateStore) -> None:
    cancelled = asyncio.ensure_future(local.create(Upload(id="cancelled", length=1)))
    kept = asyncio.ensure_future(local.create(Upload(id="kept", length=1)))
    await asyncio.sleep(0)  # both wait for the flush now
    cancelled.cancel()
    assert await kept
    assert cancelled.cancelled()
    assert ids_in_file(local.path) == {"kept"}
