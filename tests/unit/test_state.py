"""Both state stores keep one contract. fakeredis stands in for Redis here; the
same behaviour runs against a real redis-server in tests/e2e."""

from __future__ import annotations


import pytest

from tusd_py.state.base import EXPIRED, FINISHED, StateStore, Upload

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
