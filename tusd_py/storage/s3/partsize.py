"""How big each part of an upload's S3 multipart upload is: one pure function.

S3 (and every compatible service we know of) takes at most 10,000 parts per
multipart upload, every part but the last at least 5 MiB and at most 5 GiB, and
objects of at most 5 TiB. The part size is fixed once per upload, at creation,
from its length (or, for a deferred length, the largest size the server accepts),
so part `n` always covers bytes [(n-1)*size, n*size): a part's number follows from
an offset, and a part uploaded again after a crash replaces its earlier copy.
"""

from __future__ import annotations

from tusd_py.storage.s3.errors import UploadTooLarge

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024**4
_ROUND = 1024 * 1024  # sizes grown past the preferred one are rounded up to whole MiB


def part_size(total: int, preferred: int) -> int:
    """The part size for an upload of at most `total` bytes, `preferred` where it fits.

    Raises `UploadTooLarge` when `total` cannot be stored as one object.
    """
    if total < 0:
        raise ValueError("total must be >= 0")
    if total > MAX_OBJECT_SIZE:
        raise UploadTooLarge(f"{total} bytes is more than an S3 object can hold ({MAX_OBJECT_SIZE})")
    size = max(preferred, MIN_PART_SIZE)
    if size * MAX_PARTS < total:
        needed = -(-total // MAX_PARTS)
        size = -(-needed // _ROUND) * _ROUND
    if size > MAX_PART_SIZE:
        raise UploadTooLarge(f"{total} bytes need parts over the {MAX_PART_SIZE}-byte limit")
    return size


def part_count(length: int, size: int) -> int:
    """How many parts an upload of `length` bytes has (an empty upload has one, empty)."""
    return max(1, -(-length // size))
