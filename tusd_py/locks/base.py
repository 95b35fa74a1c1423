"""The per-upload lock contract.

A locker gives one request at a time the right to change an upload. A request
that finds the upload held asks the holder to let go (`on_release_request`, as
tusd does), waits a bounded time, and otherwise fails with `LockTimeout` (423).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncContextManager, Callable, Protocol

ReleaseRequest = Callable[[], None]


class LockTimeout(Exception):
    """The lock was not free within the wait."""


class LockLost(Exception):
    """A commit was refused because the committer's lease had run out (see `Fence`)."""


@dataclass(frozen=True)
class Fence:
    """Proof of holding a lease in a shared store: the lock is ours while `key` holds `token`.

    A state store living in the same store checks it atomically with a commit, so a
    holder whose lease lapsed (a long pause, a lost renewal) cannot commit anything,
    whatever its own clock believes. In-process locks have no fence.
    """

    key: str
    token: str


class Lock(Protocol):
    @property
    def fence(self) -> Fence | None:
        """For the state store's commit; None when mutual exclusion is in-process."""

    def valid(self) -> bool:
        """True while the lock is certainly still ours. A holder checks it before each
        write and before committing; a lease that ran out must not commit anything."""


class Locker(Protocol):
    name: str

    def hold(
        self, upload_id: str, *, wait: float, on_release_request: ReleaseRequest | None = None
    ) -> AsyncContextManager[Lock]:
        """Hold the upload's lock for the `async with` body.

        `wait` bounds how long to wait (0: fail at once if held, and leave the holder
        alone). While we hold the lock, another request's wish for it calls
        `on_release_request`, also when the lock is lost, so the holder stops reading
        and answers.
        """

    async def close(self) -> None: ...
