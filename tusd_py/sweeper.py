"""The expiration sweeper: removes unfinished uploads whose expiry has passed.

It runs on every instance. The state store's `mark_expired` is the claim, true
for exactly one caller, so each upload is removed once; the lock is taken first
(without waiting), so an upload being written right now is never removed under
its writer's feet.

A data store that keeps multipart uploads (S3) also lists those older than
the expiry (`orphans`): one the state no longer knows, or knows as expired or
terminated, was left by a crash between the two stores and is aborted with its
objects (`abort_orphan`). One of a finished upload is left alone: its completion
is still due (the store retries it), and aborting it would lose the bytes.

Each pass also re-checks the final uploads with nothing left to wait for that are
still not assembled (see `concat.Concatenator.reconcile`): what a crash, a busy
lock or a failing hook left undone.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Sequence
from typing import Callable, Protocol, runtime_checkable

from tusd_py.concat import Concatenator
from tusd_py.locks.base import Locker, LockTimeout
from tusd_py.state.base import EXPIRED, TERMINATED, FullStateStore
from tusd_py.storage.base import DataStore

logger = logging.getLogger("tusd_py.sweeper")

BATCH = 100
MAX_BATCHES = 100  # per sweep; the rest waits for the next one
TOMBSTONE_SECONDS = 7 * 24 * 3600


class Orphan(Protocol):
    """A multipart upload found in the bucket; `upload_id` is whose it is, where the store can tell."""

    @property
    def upload_id(self) -> str | None: ...


@runtime_checkable
class OrphanListingDataStore(Protocol):
    """A data store with storage that outlives a crash between creating it and recording it (S3's multipart uploads)."""

    async def orphans(self, older_than: datetime.timedelta) -> Sequence[Orphan]: ...

    async def abort_orphan(self, pending: Orphan) -> None: ...


class Sweeper:
    def __init__(
        self,
        state: FullStateStore,
        data: DataStore,
        locker: Locker,
        *,
        interval: float,
        concat: Concatenator | None = None,
        orphan_age: float = 0.0,
    ) -> None:
        self.state = state
        self.data = data
        self.locker = locker
        self.interval = interval
        self.concat = concat
        self.orphan_age = orphan_age  # seconds (--expire-after); 0: orphans are left to the bucket's lifecycle rule
        self.removed = 0
        self.aborted = 0  # orphaned multipart uploads this instance aborted
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
        if self.orphan_age > 0 and isinstance(self.data, OrphanListingDataStore):
            await self._abort_orphans(self.data)
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

    async def _abort_orphans(self, data: OrphanListingDataStore) -> None:
        for orphan in (await data.orphans(datetime.timedelta(seconds=self.orphan_age)))[:BATCH * MAX_BATCHES]:
            if orphan.upload_id is not None:
                upload = await self.state.get(orphan.upload_id)
                if upload is not None and upload.state not in (EXPIRED, TERMINATED):
                    continue  # a live upload (a long one outlives its creation time), or a completion still due
            await data.abort_orphan(orphan)
            self.aborted += 1
            logger.info("orphaned multipart upload of %s aborted", orphan.upload_id or "an unknown upload")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception:  # the sweeper must outlive a Redis blip
                logger.exception("expiration sweep failed")
