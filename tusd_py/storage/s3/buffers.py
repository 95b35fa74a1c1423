"""Part-sized buffers, reused from one part to the next instead of allocated for each.

A fresh 8 MiB part is a fresh mmap (the allocator settings tusd-py runs with put
blocks over 4 MiB there, so that freed parts go back to the system at once), and
the kernel faults in every one of its 2,048 pages as the part is filled: that cost
as much CPU as the SigV4 hash of the bytes (measured: 0.67 s per GiB to join a
part's chunks into new bytes, 0.06 s to copy them into a buffer used before;
sha256 0.64 s). Filling a buffer kept from an earlier part costs the copy alone.

At most `keep` bytes of buffers wait here unused (by default the store's
`max_in_flight` parts: what its parts in flight hold anyway at full speed), so
an idle server keeps at most that; a buffer given back past it is dropped.
A buffer is given back only once nothing can read it any more: the writer's own,
or a part S3 acknowledged at the first attempt (see `writer.S3Writer._upload`).
"""

from __future__ import annotations


class PartBuffers:
    def __init__(self, keep: int) -> None:
        self.keep = keep  # bytes of free buffers kept at most
        self._free: dict[int, list[bytearray]] = {}  # size -> buffers of that size
        self._kept = 0

    def take(self, size: int) -> bytearray:
        """A buffer of `size` bytes (contents undefined): a kept one if there is one."""
        free = self._free.get(size)
        if free:
            self._kept -= size
            return free.pop()
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        """Keep `buffer` for a later part, if there is room; the caller must not touch it again."""
        size = len(buffer)
        if self._kept + size <= self.keep:
            self._free.setdefault(size, []).append(buffer)
            self._kept += size

    @property
    def kept(self) -> int:
        """Bytes of free buffers kept now."""
        return self._kept
