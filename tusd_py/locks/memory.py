"""An in-process locker, for the embedded single-instance set-up."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

from tusd_py.locks.base import Fence, LockTimeout, ReleaseRequest


class _Held:
    fence: Fence | None = None  # nothing outside this process can take the lock

    def __init__(self, on_release_request: ReleaseRequest | None) -> None:
        self.on_release_request = on_release_request
        self.released: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def valid(self) -> bool:
        return True


class MemoryLocker:
    name = "in-process"

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    @asynccontextmanager
    async def hold(
        self, upload_id: str, *, wait: float, on_release_request: ReleaseRequest | None = None
    ) -> AsyncIterator[_Held]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (holder := self._held.get(upload_id)) is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LockTimeout(upload_id)  # wait=0 (the sweeper) leaves the holder alone
            if holder.on_release_request is not None:
                holder.on_release_request()
            try:
                await asyncio.wait_for(asyncio.shield(holder.released), remaining)
            except TimeoutError:
                raise LockTimeout(upload_id) from None
        held = self._held[upload_id] = _Held(on_release_request)
        try:
            yield held
        finally:
            del self._held[upload_id]
            held.released.set_result(None)

    async def close(self) -> None:
        pass
