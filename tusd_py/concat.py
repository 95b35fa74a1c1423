"""Concatenation: final uploads made of partial uploads, and their assembly.

A final upload lists its parts when it is created. It is assembled as soon as every
part is complete: at once when the parts are already complete (then inside the POST,
as tusd does), else, with `concatenation-unfinished`, when its last part finishes, on
whichever instance that happens. The state store records which final uploads wait
on which part (`finals_waiting_on`) and, in the same atomic step that finishes,
expires or deletes a part, settles those waits; so the instance that finishes a part
asks only for the finals it was the last one of (`finals_ready`), and the periodic
sweep only for finals with nothing left to wait for (`ready_finals`): what a crash, a
busy lock or a failing hook left behind. Finishing a part costs O(finals waiting on
it), not O(parts x finals) (150 parts x 40 finals: bench/concat_waiters.py).

Listing a part counts as reading it: the authorize hook is asked about each part
before a final upload is created (`new_final`), and the pre-finish hook about the
assembled bytes before the final is marked complete (`_pre_finish`).

Assembly runs under the locks of the final upload and of its distinct parts, taken
in one global order (sorted ids), so no part changes while it is copied and two
assemblies never deadlock. `StateStore.finish_final` is the claim: only the caller
that wins it runs the post-finish processing, so that runs once even when two
instances finish the last two parts at the same moment.

A final upload whose part expires or is deleted before it is assembled can never be
completed: it becomes a tombstone (410), rather than waiting forever.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from contextlib import AsyncExitStack
from typing import Awaitable, Callable, Coroutine, Protocol

from tusd_py import protocol as p
from tusd_py.config import Config
from tusd_py.hooks.answers import DataChoice
from tusd_py.hooks.base import Hooks
from tusd_py.locks.base import Locker, LockTimeout
from tusd_py.state.base import CREATED, EXPIRED, FINISHED, ConcatStateStore, StateStore, StateUnavailable, Upload
from tusd_py.storage.base import ConcatenatingDataStore, DataStore
from tusd_py.urls import upload_id_from_url

logger = logging.getLogger("tusd_py.concat")

# Assembly waits this long for the locks: another assembly sharing a part may hold them
# while it copies. On a timeout the final upload stays pending for the next sweep.
ASSEMBLY_LOCK_WAIT = 30.0
RECONCILE_BATCH = 100


class ConcatState(StateStore, ConcatStateStore, Protocol):
    """What concatenation needs of the state store: the core and `ConcatStateStore`."""


class ConcatData(DataStore, ConcatenatingDataStore, Protocol):
    """What concatenation needs of the data store: the core and server-side copy."""


class Outcome(enum.Enum):
    COMPLETE = "complete"  # assembled (now or before)
    WAITING = "waiting"  # some part is not complete yet (or its locks were busy)
    FAILED = "failed"  # can never be assembled: a part is gone, or the final upload is


class Concatenator:
    def __init__(
        self,
        config: Config,
        state: ConcatState,
        data: ConcatData,
        locker: Locker,
        on_complete: Callable[[Upload], Awaitable[None]],
        create_data: Callable[[Upload, DataChoice], Awaitable[None]],
        hooks: Hooks | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.data = data
        self.locker = locker
        self.hooks = hooks or Hooks()
        self.on_complete = on_complete  # the final upload's post-finish processing
        self.create_data = create_data  # the engine's (`UploadEngine.create_data`): the store learns the length, type, key
        self._tasks: set[asyncio.Task[None]] = set()

    # -- creation ------------------------------------------------------------------

    async def new_final(self, concat: p.Concat, metadata: str | None) -> Upload:
        """The final upload `concat` describes, checked but not stored (see `store_final`).

        Listing a partial upload counts as reading it: the authorize hook is asked about
        every distinct part first, with its record, or none when there is none, before any
        other check could tell a stranger something about it, and before anything is
        created, copied or locked. Then: unknown part 404; expired part 410; not a partial
        upload, or one whose length is still deferred, 400; the parts adding up (repeats
        included) to more than max-size, or than the largest length storable, 413.
        """
        if len(concat.urls) > self.config.max_concat_parts:
            raise p.ERR_TOO_MANY_PARTS()
        part_ids = [self._part_id(url) for url in concat.urls]
        records = {part_id: await self.state.get(part_id) for part_id in dict.fromkeys(part_ids)}
        for part_id, record in records.items():
            await self.hooks.authorize(record, part_id)
        parts = {part_id: self._part(part_id, record) for part_id, record in records.items()}
        length = sum(parts[part_id].length or 0 for part_id in part_ids)
        if length > p.MAX_LENGTH:
            raise p.ERR_LENGTH_TOO_LARGE("the partial uploads add up to more than the largest length this server can store")
        if self.config.max_size and length > self.config.max_size:
            raise p.ERR_MAX_SIZE_EXCEEDED()
        return Upload(
            id=p.new_upload_id(),
            length=length,
            metadata=metadata,  # the final upload's own; the parts' metadata is not copied (CC-09)
            created=time.time(),
            expires=None,  # it lives as long as its parts do (see `complete`)
            concat=concat.raw,
            parts=tuple(part_ids),
            state=CREATED,
        )

    async def store_final(self, upload: Upload, choice: DataChoice | None = None) -> Upload:
        """Store a final upload from `new_final`, not yet assembled; the record first, so
        that nothing on disk is left behind by a record that could not be stored. Its data
        is created with its total length, and the key the pre-create hook chose (`choice`)."""
        if not await self.state.create_final(upload):  # an id collision: 128 random bits make it a bug
            raise RuntimeError("upload id collision")
        await self.create_data(upload, choice or DataChoice())
        return upload

    def _part_id(self, url: str) -> str:
        part_id = upload_id_from_url(url, self.config)
        if part_id is None:
            raise p.ERR_NOT_FOUND(f"partial upload not found: {url[:200]}")
        return part_id

    @staticmethod
    def _part(part_id: str, part: Upload | None) -> Upload:
        if part is None:
            raise p.ERR_NOT_FOUND(f"partial upload not found: {part_id}")
        if _gone(part, time.time()):
            raise p.ERR_GONE(f"partial upload expired: {part_id}")
        if not part.partial:
            raise p.ERR_NOT_PARTIAL(f"not a partial upload: {part_id}")
        if part.length is None:
            raise p.ERR_INVALID_CONCAT(f"partial upload {part_id} has a deferred length: declare it first")
        return part

    # -- assembly ------------------------------------------------------------------

    async def complete(self, final_id: str) -> Outcome:
        """Assemble the final upload if all its parts are complete; drop it if one is gone.

        Safe to call any number of times, from any instance: it does the work once.
        Raises the pre-finish hook's error when it refuses the assembled upload (which is
        then dropped) or fails (it stays waiting: the next sweep asks again).
        """
        final = await self.state.get(final_id)
        if final is None or not final.parts or final.state == EXPIRED:
            if final is None:
                await self.state.drop_final(final_id, time.time())  # forget stale waits
            return Outcome.FAILED
        if final.finished:
            return Outcome.COMPLETE
        # A first look without locks: taking a part's lock would interrupt its upload.
        parts = await self._parts(final)
        if any(part is None for part in parts.values()):
            return await self._drop(final_id)
        if not all(part is not None and part.finished for part in parts.values()):
            return Outcome.WAITING
        try:
            completed = await self._assemble(final_id)
        except LockTimeout:
            logger.info("final upload %s: its locks are busy; the next sweep assembles it", final_id)
            return Outcome.WAITING
        except (OSError, StateUnavailable) as exc:  # e.g. a full disk: nothing was marked complete, the next sweep retries
            logger.error("final upload %s: assembly failed (%s); the next sweep retries", final_id, exc)
            return Outcome.WAITING
        if isinstance(completed, Outcome):
            return completed
        await self.on_complete(completed)  # outside the locks: callbacks may be slow
        return Outcome.COMPLETE

    async def _parts(self, final: Upload) -> dict[str, Upload | None]:
        """The final upload's distinct parts; None for a part that is gone for good."""
        now = time.time()
        parts: dict[str, Upload | None] = {}
        for part_id in dict.fromkeys(final.parts):
            part = await self.state.get(part_id)
            parts[part_id] = None if part is None or _gone(part, now) else part
        return parts

    async def _assemble(self, final_id: str) -> Upload | Outcome:
        """Under the locks: check again, copy the parts, claim the completion."""
        async with AsyncExitStack() as stack:
            final = await self.state.get(final_id)
            ids = sorted({final_id, *(final.parts if final else ())})
            locks = [await stack.enter_async_context(self.locker.hold(i, wait=ASSEMBLY_LOCK_WAIT)) for i in ids]
            final = await self.state.get(final_id)
            if final is None or final.state == EXPIRED:
                return Outcome.FAILED
            if final.finished:
                return Outcome.COMPLETE  # another request or instance got there first
            parts = await self._parts(final)
            if any(part is None for part in parts.values()):
                await self._forget(final)
                return Outcome.FAILED
            if not all(part is not None and part.finished for part in parts.values()):
                return Outcome.WAITING
            lengths = {part_id: part.length or 0 for part_id, part in parts.items() if part is not None}
            await self.data.concatenate(final.id, [(part_id, lengths[part_id]) for part_id in final.parts])
            if not all(lock.valid() for lock in locks):
                logger.warning("final upload %s: lost a lock while assembling; the next sweep retries", final_id)
                return Outcome.WAITING
            assembled = final.replace(offset=final.length, state=FINISHED)
            await self._pre_finish(assembled)
            if not await self.state.finish_final(final.id):
                return Outcome.COMPLETE
            logger.info("final upload %s assembled from %d parts (%d bytes)", final.id, len(final.parts), final.length)
            if self.config.remove_parts_after_concat:
                await self._remove_parts({part_id: part for part_id, part in parts.items() if part is not None})
            return assembled

    async def _pre_finish(self, assembled: Upload) -> None:
        """The pre-finish hook sees the assembled bytes before anything marks them complete
        (a content gate cannot be evaded by splitting the content into parts). Refused: the
        final upload is dropped (410, its bytes deleted), never served; the hook failed or
        timed out: it stays waiting, unserved (GET serves committed bytes only: none), and
        the next sweep assembles and asks again."""
        try:
            await self.hooks.pre_finish(assembled)
        except p.TusError as error:
            if error.code not in (p.ERR_HOOK_FAILED.code, p.ERR_HOOK_TIMEOUT.code):
                await self._forget(assembled, "refused by the pre-finish hook")
            raise

    async def _remove_parts(self, parts: dict[str, Upload]) -> None:
        """CC-10: delete the parts (whose locks we hold), unless another final upload still waits on one.

        Removing a part is a termination, so it is one for the hooks too: pre-terminate
        may keep the part (listing it needed only the right to read it, see `new_final`),
        post-terminate hears of its removal.
        """
        for part_id, part in parts.items():
            if await self.state.finals_waiting_on(part_id):
                continue
            try:
                await self.hooks.pre_terminate(part)
            except p.TusError as error:
                logger.info("partial upload %s kept after the concatenation: %s", part_id, error)
                continue
            if await self.state.delete(part_id):
                self.hooks.post_terminate(part)
            await self.data.delete(part_id)

    async def _drop(self, final_id: str) -> Outcome:
        try:
            async with self.locker.hold(final_id, wait=ASSEMBLY_LOCK_WAIT):
                final = await self.state.get(final_id)
                if final is not None and final.finished:
                    return Outcome.COMPLETE
                if final is not None:
                    await self._forget(final)
        except LockTimeout:
            return Outcome.WAITING
        return Outcome.FAILED

    async def _forget(self, final: Upload, why: str = "one of its parts expired or was deleted") -> None:
        """The final upload can never be assembled: make it a tombstone (410)."""
        if await self.state.drop_final(final.id, time.time()):
            await self.data.delete(final.id)
            logger.info("final upload %s dropped: %s", final.id, why)

    # -- events --------------------------------------------------------------------

    async def part_changed(self, part_id: str) -> None:
        """A part finished, expired or was deleted: see to the final uploads waiting on it.

        A part gone for good drops every final waiting on it; a finished one is looked
        at only by the finals it was the last unsettled part of (`StateStore.finals_ready`):
        O(finals waiting on it), never a re-read of every part of every final.
        """
        part = await self.state.get(part_id)
        if part is None or _gone(part, time.time()):
            for final_id in await self.state.finals_waiting_on(part_id):
                await self._guarded(final_id, self._drop)
        elif part.finished:
            for final_id in await self.state.finals_ready(part_id):
                await self._guarded(final_id, self.complete)

    def part_changed_soon(self, part_id: str) -> None:
        """`part_changed` in the background, once the caller has let go of the part's lock."""
        self._spawn(self.part_changed(part_id))

    async def reconcile(self) -> None:
        """Re-check the final uploads with nothing left to wait for that are still not
        assembled (called by each sweep): what a crash, a busy lock or a failing hook left."""
        for final_id in await self.state.ready_finals(RECONCILE_BATCH):
            await self._guarded(final_id, self.complete)

    @staticmethod
    async def _guarded(final_id: str, step: Callable[[str], Awaitable[Outcome]]) -> None:
        """One final upload's trouble must not starve the others."""
        try:
            await step(final_id)
        except p.TusError as error:  # a hook refused or failed (see `complete`)
            logger.info("final upload %s: %s", final_id, error)
        except Exception:
            logger.exception("final upload %s: assembly failed; the next sweep retries", final_id)

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, timeout: float = 10.0) -> None:
        """Let running assemblies end (bounded); what is cut off is redone by a later sweep."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()


def _gone(upload: Upload, now: float) -> bool:
    return upload.state == EXPIRED or (upload.expires is not None and upload.expires <= now)
