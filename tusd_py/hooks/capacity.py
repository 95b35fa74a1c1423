"""Hooks run on capacity of their own, never on the event loop's default thread pool.

Why: plain (sync) hook functions used to run on asyncio's default pool, which has
min(32, cores + 4) threads (6 on 2 cores) and is shared with everything else that
needs a thread. Six hung `authorize` calls took every one: every request waited
for a thread and got 504, and `/readyz` hung. A timeout did not help, since the
hung call kept its thread.

- **Slots** (`--hooks-concurrency`, default 16) bound the blocking hook calls
  (`authorize`, `pre-*`) in progress at once. A request that finds every slot
  taken is answered 503 `ERR_HOOKS_BUSY` at once (with `Retry-After`), instead of
  queueing behind hooks that may never answer. A call frees its slot when it
  answers, fails or times out (`--hooks-timeout`).
- **Threads**: plain hook functions run on a pool of their own, of twice as many
  threads as slots. Python cannot stop a thread, so a function still running past
  its timeout keeps its thread (not its slot) until it returns. When hung functions
  hold every thread, blocking calls get 503 as well, and notifications wait for a
  thread to come free. Nothing else (health checks, digests, file I/O) ever waits
  for these threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")


class HooksBusy(Exception):
    """Every slot (or every hook thread) is taken: the request gets 503 at once."""


class HookCapacity:
    def __init__(self, slots: int = 16) -> None:
        if slots < 1:
            raise ValueError("hook slots must be at least 1")
        self.slots = slots
        self.threads = 2 * slots
        self.busy_slots = 0
        self.live_threads = 0  # hook functions running, awaited or abandoned by a timeout
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for a job
        self._idle_lock = threading.Lock()
        self._thread_freed: asyncio.Event | None = None

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One blocking hook call's slot, or HooksBusy when none is free."""
        if self.busy_slots >= self.slots:
            raise HooksBusy(f"all {self.slots} hook slots are busy")
        self.busy_slots += 1
        try:
            yield
        finally:
            self.busy_slots -= 1

    async def run(self, function: Callable[..., T], *args: Any, wait: bool) -> T:
        """`function(*args)` on a hook thread. With no thread free: HooksBusy, or (`wait`) wait for one.

        Cancelling the caller (a timeout) stops the wait for the result, not the thread:
        the thread counts as live until the function returns.
        """
        while self.live_threads >= self.threads:
            if not wait:
                raise HooksBusy(f"all {self.threads} hook threads are held by hook functions that have not returned")
            if self._thread_freed is None:
                self._thread_freed = asyncio.Event()
            self._thread_freed.clear()
            await self._thread_freed.wait()
        loop = asyncio.get_running_loop()
        result: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                outcome: tuple[Any, BaseException | None] = (function(*args), None)
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (None, exc)
            with self._idle_lock:  # idle before the loop hears of it: the next job never needs a new thread
                self._idle += 1
            try:
                loop.call_soon_threadsafe(self._done, result, outcome)
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more

        self.live_threads += 1
        self._start(job)
        return await result

    def _start(self, job: Callable[[], None]) -> None:
        with self._idle_lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put(job)
        if spawn:  # never more threads than live functions: at most `threads`
            # Daemon threads: a hook function that never returns does not keep the process from exiting.
            threading.Thread(target=self._work, name="tusd-hook", daemon=True).start()

    def _work(self) -> None:
        while True:
            self._jobs.get()()

    def _done(self, result: asyncio.Future[Any], outcome: tuple[Any, BaseException | None]) -> None:
        self.live_threads -= 1
        if self._thread_freed is not None:
            self._thread_freed.set()
        if result.done():  # the caller gave up (timeout)
            return
        value, error = outcome
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(value)
