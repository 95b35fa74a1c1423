"""The Redis lock's and state store's scripts, on fakeredis (fast; the e2e tests use redis-server)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import fakeredis
import pytest

from tusd_py.locks.base import Fence, LockLost, LockTimeout
from tusd_py.locks.redis import RedisLocker
from tusd_py.state.base import Upload
from tusd_py.state.redis import RedisStateStore


def stores() -> tuple[RedisStateStore, RedisLocker]:
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    state = RedisStateStore(client)
    return state, RedisLocker(client, preload=state.key, scripts=state.scripts)  # as app.py builds them


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_acquire_reads_the_record_in_the_same_script() -> None:
    async def main() -> None:
        state, locker = stores()
        await state.create(Upload(id="a" * 32, length=10, offset=0))
        async with locker.hold("a" * 32, wait=0) as lock:
            assert lock.record is not None and lock.record["length"] == "10"
            upload = await state.get("a" * 32, lock=lock)
            assert upload is not None and upload.length == 10
            assert lock.record is None  # a snapshot is used once
        async with locker.hold("b" * 32, wait=0) as lock:
            assert lock.record == {}
            assert await state.get("b" * 32, lock=lock) is None
        await locker.close()

    run(main())


def test_commit_is_fenced_by_the_lock_token() -> None:
    async def main() -> None:
        state, locker = stores()
        await state.create(Upload(id="a" * 32, length=10, offset=0))
        async with locker.hold("a" * 32, wait=0) as lock:
            assert await state.commit_offset("a" * 32, 0, 4, None, fence=lock.fence) == 4
            await state.client.set(lock.fence.key, "someone-else")
            with pytest.raises(LockLost):
                await state.commit_offset("a" * 32, 4, 8, None, fence=lock.fence)
            with pytest.raises(LockLost):
                await state.commit_offset("a" * 32, 4, 8, None, fence=Fence(lock.fence.key, "stale"))
        assert (await state.get("a" * 32)).offset == 4  # type: ignore[union-attr]
        assert await state.client.get(locker.key("a" * 32)) == "someone-else"  # not ours to release
        await locker.close()

    run(main())


def test_waiter_asks_the_holder_and_gets_the_lock_when_it_lets_go() -> None:
    async def main() -> None:
        _, locker = stores()
        asked = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with locker.hold("a" * 32, wait=0, on_release_request=asked.set):
                await release.wait()

        task = asyncio.create_task(holder())
        await asyncio.sleep(0.05)
        with pytest.raises(LockTimeout):
            async with locker.hold("a" * 32, wait=0):
                pass
        assert not asked.is_set()  # wait=0 (the sweeper) leaves the holder alone

        async def let_go() -> None:
            await asked.wait()
            release.set()

        helper = asyncio.create_task(let_go())
        async with locker.hold("a" * 32, wait=2):
            assert asked.is_set()
        await task
        await helper
        await locker.close()

    run(main())


def test_a_lease_held_past_its_ttl_is_renewed() -> None:
    async def main() -> None:
        client = fakeredis.FakeAsyncRedis(decode_responses=True)
        locker = RedisLocker(client, ttl=0.4, margin=0.1)
        other = RedisLocker(client, ttl=0.4, margin=0.1)  # another instance
        async with locker.hold("r" * 32, wait=0) as lock:
            for _ in range(6):  # 1.2 s: three TTLs
                await asyncio.sleep(0.2)
                assert lock.valid()
                with pytest.raises(LockTimeout):
                    async with other.hold("r" * 32, wait=0):
                        pass
        async with other.hold("r" * 32, wait=0):  # released at the end
            pass
        await locker.close()
        await other.close()

    run(main())


def test_a_lease_lost_to_redis_tells_its_holder() -> None:
    async def main() -> None:
        client = fakeredis.FakeAsyncRedis(decode_responses=True)
        locker = RedisLocker(client, ttl=0.4, margin=0.1)
        told = asyncio.Event()
        async with locker.hold("s" * 32, wait=0, on_release_request=told.set) as lock:
            await client.delete(locker.key("s" * 32))  # e.g. Redis lost it in a failover
            await asyncio.wait_for(told.wait(), 2)  # at the next renewal
            assert not lock.valid()
        await locker.close()

    run(main())


def test_an_acquire_tried_again_after_a_lost_answer_gets_its_own_lock() -> None:
    """The first try took the lock but its answer was lost (a failover); the retry, with the same
    token, must get the lock, not wait for itself until the lease runs out."""

    async def main() -> None:
        state, locker = stores()
        await state.create(Upload(id="b" * 32, length=10, offset=0))
        key = locker.key("b" * 32)
        await state.client.set(key, "my-token", px=8000)
        record = await locker._acquire(keys=[key, state.key("b" * 32)], args=["my-token", 8000])
        assert record is not None and dict(zip(record[::2], record[1::2]))["id"] == "b" * 32
        assert await locker._acquire(keys=[key], args=["another-token", 8000]) is None  # anyone else: held
        await state.close()

    run(main())


def test_the_commit_that_finishes_an_upload_lets_go_of_its_lock() -> None:
    async def main() -> None:
        state, locker = stores()
        upload_id = "c" * 32
        await state.create(Upload(id=upload_id, length=8, offset=0))
        async with locker.hold(upload_id, wait=0) as lock:
            assert await state.commit_offset(upload_id, 0, 4, None, fence=lock.fence, claim="finish-announced") == 4
            assert await state.client.get(locker.key(upload_id)) == lock.fence.token  # not finished: still held
            assert await state.commit_offset(upload_id, 4, 8, None, fence=lock.fence, claim="finish-announced") == 8
            assert await state.client.get(locker.key(upload_id)) is None  # gone with the finishing commit
            assert lock.released and lock.valid()
            # Tried again after a lost reply: the claim holds our token, so that try was ours.
            assert await state.commit_offset(upload_id, 4, 8, None, fence=lock.fence, claim="finish-announced") == 8
            async with locker.hold(upload_id, wait=0):  # free at once
                pass
        async with locker.hold(upload_id, wait=0) as other:
            assert not other.released
            with pytest.raises(LockLost):  # a stale holder's retry is refused once the claim is not its own
                await state.commit_offset(upload_id, 4, 8, None, fence=Fence(other.fence.key, "stale"), claim="finish-announced")
        assert await state.client.get(locker.key(upload_id)) is None
        await locker.close()

    run(main())


def test_a_release_asked_after_the_finishing_commit_is_announced() -> None:
    async def main() -> None:
        state, locker = stores()
        upload_id = "d" * 32
        await state.create(Upload(id=upload_id, length=4, offset=0))
        pubsub = state.client.pubsub()
        await pubsub.subscribe(locker.channel(upload_id))
        async with locker.hold(upload_id, wait=0) as lock:
            await state.commit_offset(upload_id, 0, 4, None, fence=lock.fence, claim="finish-announced")
            lock.ask_release()  # a waiter's request, arriving after the commit let go of the lock
        messages = []
        for _ in range(20):  # bounded: the subscription's confirmation, then the announcement
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                messages.append(message["data"])
                break
        assert messages == [f"released {upload_id}"]
        await pubsub.aclose()
        await locker.close()

    run(main())


def test_a_hold_is_freed_when_it_ends_without_the_cyclic_collector() -> None:
    """A lease kept its fence and the fence its lease: that cycle held the release callback and
    all it refers to (the body reader, the request) until the cyclic collector ran, whose
    passes cost small uploads ~60 us each (docs/performance.md)."""

    class Reader:  # stands in for what a release callback refers to
        def request_release(self) -> None:
            pass

    async def main() -> None:
        state, locker = stores()
        await state.create(Upload(id="a" * 32, length=10, offset=0))
        reader = Reader()
        gone = weakref.ref(reader)
        async with locker.hold("a" * 32, wait=0, on_release_request=reader.request_release) as lock:
            assert await state.commit_offset("a" * 32, 0, 4, None, fence=lock.fence) == 4
            lease = weakref.ref(lock)
        del lock, reader
        assert lease() is None and gone() is None
        await locker.close()

    gc.collect()
    gc.disable()
    try:
        run(main())
    finally:
        gc.enable()
