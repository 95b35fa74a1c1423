"""The expiration sweeper: removes unfinished uploads whose expiry has passed.

It runs on every instance. The state store's `mark_expired` is the claim, true
for exactly one caller, so each upload is removed once; the lock is taken first
(without waiting), so an upload being written right now is never removed under
its writer's feet.

Each pass also re-checks the final uploads with nothing left to wait for that are
still not assembled (see `concat.Concatenator.reconcile`): what a crash, a busy
lock or a failing hook left undone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from tusd_py.concat import Concatenator
from tusd_py.locks.base import Locker, LockTimeout
from tusd_py.state.base import StateStore
from tusd_py.storage.base import DataStore

logger = logging.getLogger("tusd_py.sweeper")

BATCH = 100
MAX_BATCHES = 100  # per sweep; the rest waits for the next one
TOMBSTONE_SECONDS = 7 * 24 * 3600


class Sweeper:
    def __init__(
        self, state: StateStore, data: DataStore, locker: Locker, *, interval: float, concat: Concatenator | None = None
    ) -> None:
        self.state = state
        self.data = data
        self.locker = locker
        self.interval = interval
        self.concat = concat
        self.removed = 0
        self.on_expired: list[Callable[[str], None]] = []  # told each upload this instance expired

    async def sweep(self) -> int:
        """One pass; returns how many uploads this instance removed."""
        removed = 0
        now = time.time()
        for _ in range(MAX_BATCHES):
            due = await self.state.due_for_expiry(now, BATCH)
            progress = False
            for upload_id in due:
                if await self._expire(upload_id, now):
                    removed += 1
                    progress = True
            if len(due) < BATCH or not progress:
                break
        await self.state.forget_tombstones(now - TOMBSTONE_SECONDS)
        if self.concat is not None:
            await self.concat.reconcile()  # final uploads a crash or a busy lock left waiting
        self.removed += removed
        return removed

    async def _expire(self, upload_id: str, now: float) -> bool:
        try:
            async with self.locker.hold(upload_id, wait=0):
                if not await self.state.mark_expired(upload_id, now):
                    return False
                await self.data.delete(upload_id)
        except LockTimeout:
            return False  # being written right now; its expiry moves on with the write
        logger.info("expired upload %s removed", upload_id)
        for callback in self.on_expired:
            callback(upload_id)
        if self.concat is not None:
            await self.concat.part_changed(upload_id)  # final uploads waiting on it can never complete
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception:  # the sweeper must outlive a Redis blip
                logger.exception("expiration sweep failed")
