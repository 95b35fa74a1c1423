"""What a part changing costs with concatenation-unfinished (issue 13, item 7), on both
state stores (SQLite; Redis through fakeredis with Lua): reads of upload records are
counted, so quadratic re-checks show up without timing anything.

Before the settled waits (`StateStore.finals_ready`), each finished part re-read every
part of every final waiting on it: PARTS x FINALS reads per part.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Awaitable, Callable

import fakeredis
import pytest
import redis.exceptions

from tusd_py.concat import Concatenator
from tusd_py.config import Config
from tusd_py.hooks.answers import DataChoice
from tusd_py.locks.memory import MemoryLocker
from tusd_py.state.base import StateStore, Upload
from tusd_py.state.redis import RedisStateStore
from tusd_py.storage.files import FileStore

pytestmark = pytest.mark.anyio

PARTS = 30
FINALS = 8


class Reads:
    """Counts `get` on a store (the only way a record is read)."""

    def __init__(self, store: StateStore) -> None:
        self.count = 0
        original = store.get

        async def get(upload_id: str, **kwargs: object) -> Upload | None:
            self.count += 1
            return await original(upload_id, **kwargs)  # type: ignore[arg-type]

        store.get = get  # type: ignore[method-assign]

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


async def setup(store: StateStore, tmp_path: Path) -> tuple[Concatenator, FileStore, list[str], list[Upload]]:
    data = FileStore(tmp_path / "data")
    assembled: list[Upload] = []

    async def on_complete(upload: Upload) -> None:
        assembled.append(upload)

    concat = Concatenator(Config(data_dir=tmp_path / "data"), store, data, MemoryLocker(), on_complete=on_complete, create_data=_create_data(data))
    part_ids = [f"part{i:03d}" for i in range(PARTS)]
    for part_id in part_ids:
        assert await store.create(Upload(id=part_id, length=1, created=time.time(), concat="partial", partial=True))
        await data.create(part_id)
    for j in range(FINALS):
        final = Upload(id=f"final{j}", length=PARTS, created=time.time() + j, concat="final;...", parts=tuple(part_ids))
        await concat.store_final(final)
    return concat, data, part_ids, assembled


async def finish(store: StateStore, data: FileStore, part_id: str) -> None:
    data.path(part_id).write_bytes(part_id[-1].encode())
    assert await store.commit_offset(part_id, 0, 1, None) == 1


async def test_a_finished_part_costs_a_read_not_a_read_of_every_part_of_every_final(store: StateStore, tmp_path: Path) -> None:
    concat, data, part_ids, assembled = await setup(store, tmp_path)
    reads = Reads(store)
    for part_id in part_ids[:-1]:
        await finish(store, data, part_id)
        await concat.part_changed(part_id)
        assert reads.take() <= 1, part_id  # the part's own record; no final is looked at yet
    await concat.reconcile()  # the sweep's re-check: nothing is ready, nothing is read
    assert reads.take() == 0
    assert assembled == []

    await finish(store, data, part_ids[-1])
    await concat.part_changed(part_ids[-1])
    # Now each final is checked and assembled: its parts read once to look, once under the locks.
    assert reads.take() <= 1 + FINALS * (2 * PARTS + 3)
    assert sorted(upload.id for upload in assembled) == [f"final{j}" for j in range(FINALS)]
    expected = "".join(part_id[-1] for part_id in part_ids).encode()
    assert data.path("final0").read_bytes() == expected
    assert await store.ready_finals(100) == []


async def test_the_sweep_assembles_what_a_crash_left_ready(store: StateStore, tmp_path: Path) -> None:
    """The waits are settled by the commit itself: a crash before `part_changed` loses nothing."""
    concat, data, part_ids, assembled = await setup(store, tmp_path)
    for part_id in part_ids:
        await finish(store, data, part_id)  # and the process "crashes": nobody is told
    assert await store.finals_ready(part_ids[0]) == [f"final{j}" for j in range(FINALS)]
    assert sorted(await store.ready_finals(100)) == [f"final{j}" for j in range(FINALS)]
    await concat.reconcile()
    assert len(assembled) == FINALS
    assert await store.ready_finals(100) == []


async def test_a_part_gone_settles_its_waits_and_drops_the_finals(store: StateStore, tmp_path: Path) -> None:
    concat, data, part_ids, assembled = await setup(store, tmp_path)
    await finish(store, data, part_ids[0])
    assert await store.delete(part_ids[1])
    assert await store.finals_ready(part_ids[0]) == []  # the others are still unsettled
    await concat.part_changed(part_ids[1])
    for j in range(FINALS):
        dropped = await store.get(f"final{j}")
        assert dropped is not None and dropped.state == "expired"
    assert await store.ready_finals(100) == [] and assembled == []


async def test_waits_on_parts_finished_before_the_final_are_settled_at_creation(store: StateStore, tmp_path: Path) -> None:
    data = FileStore(tmp_path / "data")
    concat = Concatenator(Config(data_dir=tmp_path / "data"), store, data, MemoryLocker(), on_complete=_ignore, create_data=_create_data(data))
    assert await store.create(Upload(id="done", length=1, offset=1, state="finished", created=time.time(), partial=True))
    assert await store.create(Upload(id="open", length=1, created=time.time(), partial=True))
    assert await store.create(Upload(id="late", length=None, created=time.time(), partial=True))  # deferred
    assert await store.commit_offset("late", 0, 1, None) == 1
    final = Upload(id="f", length=3, created=time.time(), concat="final;...", parts=("done", "open", "done", "late"))
    await concat.store_final(final)
    assert await store.ready_finals(10) == [] and await store.finals_ready("done") == []
    assert await store.commit_offset("open", 0, 1, None) == 1  # the commit that finishes a part settles it
    assert await store.finals_ready("open") == []
    assert await store.declare_length("late", 1)  # so does declaring the length that finishes it
    assert await store.finals_ready("open") == ["f"] and await store.ready_finals(10) == ["f"]
    assert await store.finish_final("f")
    assert await store.ready_finals(10) == [] and await store.finals_ready("open") == []


async def test_redis_adopts_finals_stored_before_waits_were_settled() -> None:
    """A final stored by an older release (waits only, no `unsettled:` set) is adopted by the first sweep."""
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    store = RedisStateStore(client, prefix="t:")
    try:
        for part_id, offset in (("a", 1), ("b", 0)):
            assert await store.create(Upload(id=part_id, length=1, offset=offset, state="finished" if offset else "created", partial=True))
        for final_id in ("ready", "waiting"):
            parts = "a" if final_id == "ready" else "a b"
            fields = Upload(id=final_id, length=1, concat="final;...", parts=tuple(parts.split())).to_fields()
            await client.hset(f"t:upload:{final_id}", mapping=fields)  # as _CREATE_FINAL used to store it
            await client.zadd("t:finals", {final_id: 1.0})
            for part_id in parts.split():
                await client.sadd(f"t:waiting:{part_id}", final_id)
        assert await store.ready_finals(10) == ["ready"]
        assert await store.commit_offset("b", 0, 1, None) == 1
        assert await store.finals_ready("b") == ["waiting"]
    finally:
        await store.close()


async def test_a_cluster_settle_left_owed_by_a_crash_is_paid_by_the_sweep(store: StateStore, tmp_path: Path) -> None:
    """On a Redis Cluster the finals' waits are settled in their own slots after the part's (or the
    final's) script, which records them as owed in the same atomic step: a crash in between loses nothing."""
    if not isinstance(store, RedisStateStore) or not store.layout.clustered:
        pytest.skip("the one-slot steps of a Redis Cluster")

    async def crash(*args: object) -> None:
        raise redis.exceptions.ConnectionError("the process died here")

    paying = store._settle_waits_on, store._settle_parts
    store._settle_waits_on, store._settle_parts = crash, crash  # type: ignore[method-assign]
    concat, data, part_ids, assembled = await setup(store, tmp_path)  # the finals' own settles: owed
    for part_id in part_ids:
        await finish(store, data, part_id)  # the parts' settles: owed
    store._settle_waits_on, store._settle_parts = paying  # type: ignore[method-assign]
    await concat.reconcile()
    assert sorted(upload.id for upload in assembled) == [f"final{j}" for j in range(FINALS)]
    assert await store.ready_finals(100) == []
    for shard in range(store.layout.shards):
        assert await store.client.scard(store.layout.settle(shard)) == 0


async def _ignore(upload: Upload) -> None:
    return None


def _create_data(data: FileStore) -> Callable[[Upload, DataChoice], Awaitable[None]]:
    """What the engine gives the Concatenator (`UploadEngine.create_data`), for a Concatenator built alone."""

    async def create(upload: Upload, choice: DataChoice) -> None:
        await data.create(upload.id, upload.length, key=choice.key, metadata=choice.metadata)

    return create
