"""The per-upload lock contract.

A locker gives one request at a time the right to change an upload. A request
that finds the upload held asks the holder to let go (`on_release_request`, as
tusd does), waits a bounded time, and otherwise fails with `LockTimeout` (423).
"""

from __future__ import annotations

from typing import AsyncContextManager, Callable, Protocol

ReleaseRequest = Callable[[], None]


class LockTimeout(Exception):
    """The lock was not free within the wait."""


class Lock(Protocol):
    def valid(self) -> bool:
        """True while the lock is certainly still ours. A holder checks it before each
        write and before committing; a lease that ran out must not commit anything."""


class Locker(Protocol):
    name: str

    def hold(
        self, upload_id: str, *, wait: float, on_release_request: ReleaseRequest | None = None
    ) -> AsyncContextManager[Lock]:
        """Hold the upload's lock for the `async with` body.

        `wait` bounds how long to wait (0: fail at once if held). While we hold the
        lock, another request's wish for it calls `on_release_request`, also when the
        lock is lost, so the holder stops reading and answers.
        """

    async def close(self) -> None: ...
