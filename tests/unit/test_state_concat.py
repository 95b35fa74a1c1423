"""The state stores' concatenation records, on both implementations (SQLite, and Redis
through fakeredis with Lua): waits, the pending list, and the claims."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

import fakeredis
import pytest

from tusd_py.state.base import EXPIRED, FINISHED, StateStore, Upload
from tusd_py.state.local import LocalStateStore
from tusd_py.state.redis import RedisStateStore

T = TypeVar("T")


@pytest.fixture(params=["sqlite", "redis"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Callable[[StateStore], Awaitable[T]]], T]:
    """Run a coroutine function against a fresh store of the parametrized kind."""

    def runner(body: Callable[[StateStore], Awaitable[T]]) -> T:
        async def main() -> T:
            store: StateStore
            if request.param == "sqlite":
                store = LocalStateStore(tmp_path / "state.sqlite3")
            else:
                store = RedisStateStore(fakeredis.FakeAsyncRedis(decode_responses=True), prefix="t:")
            try:
                return await body(store)
            finally:
                await store.close()

        return asyncio.run(main())

    return runner


def part(upload_id: str, length: int = 10, offset: int = 0) -> Upload:
    return Upload(id=upload_id, length=length, offset=offset, created=time.time(), concat="partial", partial=True)


def final(upload_id: str, parts: tuple[str, ...], length: int = 20) -> Upload:
    return Upload(id=upload_id, length=length, created=time.time(), concat="final;x", parts=parts)


def test_create_final_records_waits_and_pending(run) -> None:
    async def body(store: StateStore) -> None:
        for upload in (part("a"), part("b")):
            assert await store.create(upload)
        assert await store.create_final(final("f", ("a", "b", "a"), 30))
        assert not await store.create_final(final("f", ("a",)))  # the id is taken
        assert await store.finals_waiting_on("a") == ["f"]
        assert await store.finals_waiting_on("b") == ["f"]
        assert await store.finals_waiting_on("c") == []
        assert await store.pending_finals(10) == ["f"]
        stored = await store.get("f")
        assert stored is not None
        assert stored.parts == ("a", "b", "a")  # order and repeats kept
        assert stored.length == 30 and stored.offset == 0
        assert not stored.finished  # a final upload is complete only once assembled

    run(body)


def test_zero_length_final_is_not_finished_before_it_is_assembled(run) -> None:
    async def body(store: StateStore) -> None:
        assert await store.create_final(final("f", ("a",), 0))
        stored = await store.get("f")
        assert stored is not None and not stored.finished
        assert await store.finish_final("f")
        stored = await store.get("f")
        assert stored is not None and stored.finished

    run(body)


def test_finish_final_is_claimed_once_and_forgets_waits(run) -> None:
    async def body(store: StateStore) -> None:
        assert await store.create_final(final("f", ("a", "b"), 20))
        assert await store.create_final(final("g", ("b",), 10))
        results = await asyncio.gather(*(store.finish_final("f") for _ in range(5)))
        assert sorted(results) == [False, False, False, False, True]
        stored = await store.get("f")
        assert stored is not None
        assert (stored.offset, stored.state, stored.expires) == (20, FINISHED, None)
        assert await store.finals_waiting_on("a") == []
        assert await store.finals_waiting_on("b") == ["g"]  # another final still waits on b
        assert await store.pending_finals(10) == ["g"]
        assert not await store.drop_final("f", time.time())  # a complete final is never dropped
        assert not await store.finish_final("missing")

    run(body)


def test_finish_final_refuses_plain_uploads(run) -> None:
    async def body(store: StateStore) -> None:
        assert await store.create(part("a"))
        assert not await store.finish_final("a")
        stored = await store.get("a")
        assert stored is not None and stored.offset == 0

    run(body)


def test_drop_final_makes_a_tombstone_once(run) -> None:
    async def body(store: StateStore) -> None:
        assert await store.create_final(final("f", ("a", "b")))
        now = time.time()
        assert await store.drop_final("f", now)
        assert not await store.drop_final("f", now)
        assert not await store.finish_final("f")  # a dropped final can no longer complete
        stored = await store.get("f")
        assert stored is not None and stored.state == EXPIRED
        assert await store.finals_waiting_on("a") == []
        assert await store.pending_finals(10) == []
        assert not await store.drop_final("never-created", now)

    run(body)


def test_delete_forgets_a_final_uploads_waits(run) -> None:
    async def body(store: StateStore) -> None:
        assert await store.create_final(final("f", ("a",)))
        assert await store.delete("f")
        assert await store.get("f") is None
        assert await store.finals_waiting_on("a") == []
        assert await store.pending_finals(10) == []
        assert not await store.delete("f")

    run(body)


def test_pending_finals_oldest_first_and_limited(run) -> None:
    async def body(store: StateStore) -> None:
        for index in range(5):
            upload = final(f"f{index}", ("a",))
            upload.created = 1000.0 + index
            assert await store.create_final(upload)
        assert await store.pending_finals(3) == ["f0", "f1", "f2"]

    run(body)
