"""Upload records and the contract every state store keeps.

A state store knows upload records and offsets, nothing about HTTP or bytes on
disk. Offsets only move through `commit_offset`, a compare-and-set, so a stale
writer can never move an offset backwards or skip bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tusd_py.locks.base import Fence, Lock

# Lifecycle states. "expired" records are tombstones kept so that later requests get 410.
# created -> uploading (first committed byte) -> finished (offset == length): `commit_offset`;
# -> expired: `mark_expired`; -> terminated: `delete`, which removes the record (later
# requests get 404, as tusd), so "terminated" is never stored, only reported to hooks.
CREATED = "created"
UPLOADING = "uploading"
FINISHED = "finished"
EXPIRED = "expired"
TERMINATED = "terminated"

# Once-only announcements (see `StateStore.claim`).
FINISH_ANNOUNCED = "finish-announced"


@dataclass
class Upload:
    id: str
    length: int | None  # None while the length is deferred
    offset: int = 0
    metadata: str | None = None  # the Upload-Metadata header exactly as the client sent it
    created: float = 0.0
    expires: float | None = None  # unix time; None = never (finished uploads do not expire)
    concat: str | None = None  # the Upload-Concat header as the client sent it
    partial: bool = False
    parts: tuple[str, ...] = field(default_factory=tuple)  # part ids of a final upload
    state: str = CREATED
    # The IETF draft (see ietf.py): completion is explicit there, so `length` is set only
    # when a draft client completes the upload. The length it announced before that
    # bounds the offset but completes nothing.
    expected_length: int | None = None
    repr_digest: str | None = None  # Repr-Digest sent at creation (sf-dictionary), checked at completion
    want_repr_digest: str | None = None  # the algorithm Want-Repr-Digest asked for at creation
    digests: str | None = None  # digests of a complete upload's bytes (sf-dictionary), once known: digests.py

    @property
    def bound(self) -> int | None:
        """The offset may not pass this: the length, else the length a draft client announced."""
        return self.length if self.length is not None else self.expected_length

    @property
    def final(self) -> bool:
        return bool(self.parts)

    @property
    def finished(self) -> bool:
        if self.parts:  # a final upload is complete once assembled, never before (even at length 0)
            return self.state == FINISHED
        return self.length is not None and self.offset == self.length

    def to_fields(self) -> dict[str, str]:
        """A flat str -> str form, for Redis hashes and SQLite rows alike."""
        return {
            "id": self.id,
            "length": "" if self.length is None else str(self.length),
            "offset": str(self.offset),
            "metadata": "" if self.metadata is None else self.metadata,
            "created": repr(self.created),
            "expires": "" if self.expires is None else repr(self.expires),
            "concat": self.concat or "",
            "partial": "1" if self.partial else "",
            "parts": " ".join(self.parts),
            "state": self.state,
            "expected_length": "" if self.expected_length is None else str(self.expected_length),
            "repr_digest": self.repr_digest or "",
            "want_repr_digest": self.want_repr_digest or "",
            "digests": self.digests or "",
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Upload:
        return cls(
            id=fields["id"],
            length=int(fields["length"]) if fields.get("length") else None,
            offset=int(fields.get("offset") or 0),
            metadata=fields.get("metadata") or None,
            created=float(fields.get("created") or 0.0),
            expires=float(fields["expires"]) if fields.get("expires") else None,
            concat=fields.get("concat") or None,
            partial=bool(fields.get("partial")),
            parts=tuple(fields.get("parts", "").split()),
            state=fields.get("state") or CREATED,
            expected_length=int(fields["expected_length"]) if fields.get("expected_length") else None,
            repr_digest=fields.get("repr_digest") or None,
            want_repr_digest=fields.get("want_repr_digest") or None,
            digests=fields.get("digests") or None,
        )

    def replace(self, **changes: object) -> Upload:
        """A copy with `changes` (as `dataclasses.replace`, at a fraction of its cost: a
        small upload makes several copies)."""
        unknown = changes.keys() - _FIELD_NAMES
        if unknown:
            raise TypeError(f"Upload has no field {', '.join(sorted(unknown))}")
        copy = object.__new__(Upload)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Upload))


class StateStore(Protocol):
    """Where upload records live. Implementations: `LocalStateStore`, `RedisStateStore`."""

    name: str

    async def create(self, upload: Upload) -> bool:
        """Store a new record; False if the id is taken."""

    async def get(self, upload_id: str, *, lock: Lock | None = None) -> Upload | None:
        """The record, including expired tombstones, or None.

        Pass the `lock` just acquired for the upload: a store that shares the
        locker's backend may take the record the lock read while acquiring.
        """

    async def commit_offset(
        self,
        upload_id: str,
        expected: int,
        new: int,
        expires: float | None,
        *,
        fence: Fence | None = None,
        claim: str | None = None,
    ) -> int | None:
        """Move the offset from `expected` to `new` atomically, and set the expiry.

        Returns the offset stored afterwards (== new on success), or None when
        the upload is gone. A different value means another writer got there first.
        With a `fence` (the committer's lease), raises `LockLost` instead of
        committing when the lease is no longer the committer's, checked atomically.
        With `claim`, a commit that finishes the upload also records that claim
        (see `claim`) in the same step: only one commit can finish an upload, so
        its caller owns the claim, without another round trip to the store.
        """

    async def declare_length(self, upload_id: str, length: int) -> bool:
        """Set a deferred length once; False if it was already set or is below the offset.
        A length equal to the offset finishes the upload, which then no longer expires."""

    async def expect_length(self, upload_id: str, length: int) -> bool:
        """Record the length a draft client announced (`Upload.expected_length`) once; it
        completes nothing. False if one was already recorded, or it is below the offset."""

    async def record_digests(self, upload_id: str, digests: str) -> bool:
        """Keep the digests of a complete upload's bytes (`Upload.digests`) with its record;
        False if the record is gone or not complete."""

    async def claim(self, upload_id: str, event: str) -> bool:
        """Record that `event` (e.g. FINISH_ANNOUNCED) happened to the upload.

        True for exactly one caller per upload and event, whatever the instance, so
        post-finish hooks, the stream entry and the finished counter happen once even
        when the last bytes race. False when claimed before or the upload is gone.
        A claim lives as long as the record (a new upload reusing the id starts fresh).
        """

    async def delete(self, upload_id: str) -> bool:
        """Forget an upload (termination), and what it waited on if it is a final upload;
        False if it did not exist."""

    async def due_for_expiry(self, now: float, limit: int) -> list[str]:
        """Ids of unfinished uploads whose expiry has passed."""

    async def mark_expired(self, upload_id: str, now: float) -> bool:
        """Turn a due upload into a tombstone. True for exactly one caller, whatever the instance."""

    async def forget_tombstones(self, before: float) -> int:
        """Drop tombstones of uploads that expired before `before`; returns how many."""

    # -- concatenation: final uploads waiting for their parts --------------------

    async def create_final(self, upload: Upload) -> bool:
        """Store a new, not yet assembled final upload (`upload.parts` set) and record
        that it waits on each of its parts; False if the id is taken.

        Until `finish_final` or `drop_final` it is listed by `pending_finals` and by
        `finals_waiting_on` for each of its parts.
        """

    async def finals_waiting_on(self, part_id: str) -> list[str]:
        """Ids of final uploads not yet assembled that list `part_id`."""

    async def pending_finals(self, limit: int) -> list[str]:
        """Ids of final uploads not yet assembled (oldest first)."""

    # A final upload's wait on a part is *settled* once that part is finished, expired or
    # gone. The store settles waits in the same atomic step that finishes, expires or
    # deletes the part (`commit_offset`, `declare_length`, `mark_expired`, `delete`), and
    # `create_final` settles at once the waits on parts that are so already. So a part
    # changing costs O(finals waiting on it), and only finals with nothing left to wait
    # for are ever looked at, whatever the instance and even after a crash.

    async def finals_ready(self, part_id: str) -> list[str]:
        """Ids of final uploads not yet assembled that list `part_id` and whose every wait is settled."""

    async def ready_finals(self, limit: int) -> list[str]:
        """Ids of final uploads not yet assembled whose every wait is settled (for the sweep's re-check)."""

    async def finish_final(self, final_id: str) -> bool:
        """Mark an assembled final upload complete (offset = length) and forget what it
        waited on. The claim: True for exactly one caller, whatever the instance."""

    async def drop_final(self, final_id: str, now: float) -> bool:
        """A final upload that can never be assembled (a part expired or was deleted)
        becomes a tombstone (410), and is forgotten as a waiter. True for one caller."""

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""

    async def close(self) -> None: ...
