"""Both state stores keep one contract. fakeredis stands in for Redis here; the
same behaviour runs against a real redis-server in tests/e2e."""

from __future__ import annotations

from pathlib import Path

import pytest

from tusd_py.state.base import EXPIRED, FINISH_ANNOUNCED, FINISHED, StateStore, Upload
from tusd_py.state.local import LocalStateStore

pytestmark = pytest.mark.anyio


def upload(upload_id: str = "u1", **fields: object) -> Upload:
    values: dict[str, object] = {"length": 10, "created": 1.5, "expires": 1000.0}
    values.update(fields)
    return Upload(id=upload_id, **values)  # type: ignore[arg-type]


async def test_create_get_roundtrip(store: StateStore) -> None:
    record = upload(metadata="filename YQ==,empty", concat="partial", partial=True)
    assert await store.create(record)
    assert not await store.create(record)  # ids are never reused
    assert await store.get("u1") == record
    assert await store.get("missing") is None


async def test_deferred_length_and_parts_roundtrip(store: StateStore) -> None:
    record = upload("u2", length=None, parts=("a", "b", "a"), concat="final;/f/a /f/b /f/a")
    await store.create(record)
    assert await store.get("u2") == record


async def test_commit_is_compare_and_set(store: StateStore) -> None:
    await store.create(upload())
    assert await store.commit_offset("u1", 0, 4, 2000.0) == 4
    assert await store.commit_offset("u1", 0, 8, 2000.0) == 4  # stale writer: refused, told the offset
    assert await store.commit_offset("u1", 4, 2, 2000.0) == 4  # never backwards
    assert await store.commit_offset("u1", 4, 11, 2000.0) == 4  # never past the length
    record = await store.get("u1")
    assert record is not None and record.offset == 4 and record.expires == 2000.0 and record.state == "uploading"
    assert await store.commit_offset("u1", 4, 10, None) == 10
    record = await store.get("u1")
    assert record is not None and record.state == FINISHED and record.expires is None
    assert await store.commit_offset("missing", 0, 1, None) is None


async def test_a_commit_that_finishes_the_upload_takes_the_claim(store: StateStore) -> None:
    await store.create(upload("u1"))
    await store.create(upload("u2"))
    assert await store.commit_offset("u1", 0, 4, 2000.0, claim=FINISH_ANNOUNCED) == 4  # not finished: no claim
    assert await store.commit_offset("u2", 0, 10, None, claim=FINISH_ANNOUNCED) == 10
    assert await store.claim("u1", FINISH_ANNOUNCED)
    assert not await store.claim("u2", FINISH_ANNOUNCED)  # the finishing commit took it
    await store.create(upload("u3"))
    assert await store.commit_offset("u3", 0, 10, None) == 10  # without `claim`, none is taken
    assert await store.claim("u3", FINISH_ANNOUNCED)


async def test_the_first_read_after_creation_sees_every_write(store: StateStore) -> None:
    # Each write right after the creation, then the first read (the local store keeps new records for it).
    await store.create(upload("a", length=None))
    assert await store.declare_length("a", 7)
    assert (record := await store.get("a")) is not None and record.length == 7
    await store.create(upload("b", length=None))
    assert await store.expect_length("b", 9)
    assert (record := await store.get("b")) is not None and record.expected_length == 9
    await store.create(upload("c"))
    assert await store.commit_offset("c", 0, 3, 2000.0) == 3
    assert (record := await store.get("c")) is not None and record.offset == 3
    await store.create(upload("d", expires=100.0))
    assert await store.mark_expired("d", 500.0)
    assert (record := await store.get("d")) is not None and record.state == EXPIRED
    await store.create(upload("e"))
    assert await store.delete("e")
    assert await store.get("e") is None
    await store.create(upload("f"))
    assert await store.get("f") == await store.get("f") == upload("f")  # first read and a database read agree


async def test_declare_length_once_and_not_below_offset(store: StateStore) -> None:
    await store.create(upload(length=None))
    await store.commit_offset("u1", 0, 5, 2000.0)
    assert not await store.declare_length("u1", 4)
    assert await store.declare_length("u1", 7)
    assert not await store.declare_length("u1", 8)
    record = await store.get("u1")
    assert record is not None and record.length == 7
    assert not await store.declare_length("missing", 1)


async def test_delete(store: StateStore) -> None:
    await store.create(upload())
    assert await store.delete("u1")
    assert await store.get("u1") is None
    assert not await store.delete("u1")


async def test_expiry_claims_once_and_leaves_a_tombstone(store: StateStore) -> None:
    await store.create(upload("old", expires=100.0))
    await store.create(upload("new", expires=10_000.0))
    await store.create(upload("done", length=0, expires=None))
    assert await store.due_for_expiry(500.0, 10) == ["old"]
    assert await store.mark_expired("old", 500.0)
    assert not await store.mark_expired("old", 500.0)  # exactly one claim
    assert not await store.mark_expired("new", 500.0)  # not due
    record = await store.get("old")
    assert record is not None and record.state == EXPIRED
    assert await store.commit_offset("old", 0, 1, None) is None  # tombstones take no writes
    assert await store.due_for_expiry(500.0, 10) == []


async def test_commit_slides_expiry(store: StateStore) -> None:
    await store.create(upload(expires=100.0))
    await store.commit_offset("u1", 0, 1, 900.0)
    assert await store.due_for_expiry(500.0, 10) == []
    assert await store.due_for_expiry(901.0, 10) == ["u1"]


async def test_draft_fields_roundtrip(store: StateStore) -> None:
    record = upload("d1", length=None, expected_length=10, repr_digest="sha-256=:AAAA:", want_repr_digest="sha-256")
    await store.create(record)
    assert await store.get("d1") == record


async def test_expect_length_once_not_below_offset_and_completes_nothing(store: StateStore) -> None:
    await store.create(upload(length=None))
    await store.commit_offset("u1", 0, 5, 2000.0)
    assert not await store.expect_length("u1", 4)
    assert await store.expect_length("u1", 5)
    assert not await store.expect_length("u1", 6)  # once
    record = await store.get("u1")
    assert record is not None and record.expected_length == 5 and record.length is None
    assert not record.finished and record.state != FINISHED
    assert await store.due_for_expiry(5000.0, 10) == ["u1"]  # still expires like any open upload
    assert not await store.expect_length("missing", 1)


async def test_declaring_the_length_at_the_offset_finishes_and_stops_expiry(store: StateStore) -> None:
    await store.create(upload(length=None))
    await store.commit_offset("u1", 0, 5, 2000.0)
    assert await store.declare_length("u1", 5)
    record = await store.get("u1")
    assert record is not None and record.finished and record.state == FINISHED and record.expires is None
    assert await store.due_for_expiry(5000.0, 10) == []  # a finished upload is never swept


async def test_sqlite_database_from_before_the_draft_columns_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE uploads (id TEXT PRIMARY KEY, length INTEGER, offset INTEGER NOT NULL, metadata TEXT,"
        " created REAL NOT NULL, expires REAL, concat TEXT, partial INTEGER NOT NULL, parts TEXT NOT NULL,"
        " state TEXT NOT NULL)"
    )
    db.execute("INSERT INTO uploads VALUES ('old', 10, 3, NULL, 1.5, NULL, NULL, 0, '', 'uploading')")
    db.commit()
    db.close()
    store = LocalStateStore(path)
    try:
        old = await store.get("old")
        assert old is not None and old.offset == 3 and old.expected_length is None
        assert await store.create(upload("new", length=None, expected_length=7))
        new = await store.get("new")
        assert new is not None and new.expected_length == 7
    finally:
        await store.close()


async def test_digests_are_kept_only_with_a_complete_record(store: StateStore) -> None:
    await store.create(upload(length=4))
    assert not await store.record_digests("u1", "sha-256=:AAAA:")  # not complete: its bytes may change
    await store.commit_offset("u1", 0, 4, None)
    assert await store.record_digests("u1", "sha-256=:AAAA:")
    record = await store.get("u1")
    assert record is not None and record.digests == "sha-256=:AAAA:"
    assert not await store.record_digests("missing", "sha-256=:AAAA:")
