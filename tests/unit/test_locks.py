from __future__ import annotations

import asyncio

import pytest

from tusd_py.locks.base import LockTimeout
from tusd_py.locks.memory import MemoryLocker

pytestmark = pytest.mark.anyio



async def test_memory_lock_excludes_and_asks_holder_to_release() -> None:
    locker = MemoryLocker()
    asked: list[str] = []
    async with locker.hold("u", wait=0, on_release_request=lambda: asked.append("u")):
        with pytest.raises(LockTimeout):
            async with locker.hold("u", wait=0.05):
                pass
        assert asked  # the waiter asked the holder to let go
    async with locker.hold("u", wait=0):
        pass


async def test_memory_lock_waiter_gets_it_when_released() -> None:
    locker = MemoryLocker()
    order: list[str] = []

    async def first() -> None:
        async with locker.hold("u", wait=0):
            order.append("first")
            await asyncio.sleep(0.05)

    async def second() -> None:
        await asyncio.sleep(0.01)
        async with locker.hold("u", wait=1):
            order.append("second")

    await asyncio.gather(first(), second())
    assert order == ["first", "second"]
