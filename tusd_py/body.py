"""Reading a request body as it arrives, with a way out.

`BodyReader` yields the chunks of an ASGI request body. It stops early, without
losing what it already yielded, when the client disconnects, when no byte has
come for `idle_timeout` seconds, or when someone interrupts it: another request
that wants the upload's lock, or a server shutdown. Interrupting cancels only
the pending `receive()`, never a write or a commit in progress.

When the body stalls for `tick_after` seconds it yields one empty chunk, so the
consumer gets a chance to commit what it has while the client is silent.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from starlette.types import Message, Receive

from tusd_py.protocol import ERR_READ_TIMEOUT, ERR_UPLOAD_INTERRUPTED, TusError

STALLED_AFTER = 0.5  # seconds without a byte after which a holder counts as stalled


class BodyReader:
    def __init__(self, receive: Receive, *, idle_timeout: float, release_grace: float, tick_after: float = 1.0) -> None:
        self._receive = receive
        self._idle_timeout = idle_timeout
        self._tick_after = tick_after
        self._ticked = False  # one tick per stall
        self._release_grace = release_grace
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[object] | None = None
        self._receiving = False
        self._cancelled_by_us = False
        self._timer: asyncio.TimerHandle | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self.last_activity = self._loop.time()
        self.received = 0
        self.complete = False  # the whole body arrived
        self.disconnected = False  # the client went away mid-body
        self.error: TusError | None = None  # why reading was cut short by us

    @property
    def stopped_early(self) -> bool:
        return not self.complete

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._task = asyncio.current_task()
        self._arm_timer()
        try:
            while self.error is None:
                message = await self._next_message()
                if message is None:  # our own cancellation: an interrupt, or a tick
                    if self.error is not None:
                        return
                    yield b""
                    continue
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    return
                body: bytes = message.get("body", b"")
                if body:
                    self.last_activity = self._loop.time()
                    self._ticked = False
                    self.received += len(body)
                    yield body
                if not message.get("more_body", False):
                    self.complete = True
                    return
        finally:
            for timer in (self._timer, self._grace_timer):
                if timer is not None:
                    timer.cancel()

    async def _next_message(self) -> Message | None:
        """The next ASGI message, or None when we cancelled the wait ourselves.

        `_receiving` is true exactly while this awaits `receive()`, so a cancel
        from `interrupt` or a tick can only ever land there.
        """
        self._receiving = True
        try:
            return await self._receive()
        except asyncio.CancelledError:
            if not self._cancelled_by_us:
                raise
            self._cancelled_by_us = False
            if self._task is not None:
                self._task.uncancel()
            return None
        finally:
            self._receiving = False

    def _cancel_receive(self) -> None:
        """Cancel the pending receive(), once: a second cancel would outlive it."""
        if self._receiving and not self._cancelled_by_us and self._task is not None:
            self._cancelled_by_us = True
            self._task.cancel()

    def interrupt(self, error: TusError) -> None:
        """Stop reading now; the bytes already yielded stay valid."""
        if self.complete or self.disconnected or self.error is not None:
            return
        self.error = error
        self._cancel_receive()

    def request_release(self) -> None:
        """Another request wants this upload: cut a stalled body at once, a live one after a grace."""
        if self.complete or self.error is not None or self._grace_timer is not None:
            return
        if self._loop.time() - self.last_activity >= STALLED_AFTER:
            self.interrupt(ERR_UPLOAD_INTERRUPTED())
        else:
            self._grace_timer = self._loop.call_later(self._release_grace, self.interrupt, ERR_UPLOAD_INTERRUPTED())

    def _arm_timer(self) -> None:
        """One timer per body, moved along rather than re-created for every chunk."""
        now = self._loop.time()
        if self._ticked:
            when = now + self._tick_after
        else:
            when = max(self.last_activity + self._tick_after, now + 0.05)
        if self._idle_timeout > 0:
            when = min(when, max(self.last_activity + self._idle_timeout, now))
        self._timer = self._loop.call_at(when, self._check_idle)

    def _check_idle(self) -> None:
        idle = self._loop.time() - self.last_activity
        if self._idle_timeout > 0 and idle >= self._idle_timeout:
            self.interrupt(ERR_READ_TIMEOUT())
            return
        if not self._ticked and idle >= self._tick_after and self._receiving:
            self._ticked = True
            self._cancel_receive()
        self._arm_timer()
