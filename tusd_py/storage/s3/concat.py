"""Concatenation: a final upload's object assembled from finished partial uploads.

Where every part but the last is at least 5 MiB, S3 copies them: one
UploadPartCopy per partial upload (ranges of at most 5 GiB for larger ones), no
byte passes through tusd-py. Otherwise the bytes are streamed through an
`S3Writer` into parts of the final upload's part size, one part in memory at a
time. Either way the final upload's multipart upload is completed here, so the
engine's later `finish` finds it done.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tusd_py.storage.s3.errors import StorageUnavailable
from tusd_py.storage.s3.partsize import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE

if TYPE_CHECKING:
    from tusd_py.storage.s3.bucket import Handle
    from tusd_py.storage.s3.store import S3Store


def copy_ranges(lengths: list[int]) -> list[tuple[int, int, int]] | None:
    """(source index, start, end) of each copied part, or None when S3 cannot copy them.

    Every part but the last must be >= 5 MiB; a source over 5 GiB is split into
    equal ranges (each still >= 2.5 GiB), and there may be at most 10,000 parts.
    """
    ranges: list[tuple[int, int, int]] = []
    for index, length in enumerate(lengths):
        if length == 0:
            continue  # nothing to copy; an empty range cannot be
        pieces = max(1, -(-length // MAX_PART_SIZE))
        step = -(-length // pieces)
        for start in range(0, length, step):
            ranges.append((index, start, min(start + step, length)))
    if not ranges or len(ranges) > MAX_PARTS or any(end - start < MIN_PART_SIZE for _, start, end in ranges[:-1]):
        return None
    return ranges


async def concatenate(store: S3Store, final_id: str, parts: list[tuple[str, int]]) -> None:
    final = await store.handle(final_id)
    sources = [await store.handle(part_id) for part_id, _ in parts]
    lengths = [length for _, length in parts]
    ranges = copy_ranges(lengths)
    if ranges is not None:
        await _copy(store, final, [source.key for source in sources], ranges)
    else:
        await _stream(store, final, parts)
    await store.finish(final_id, sum(lengths))


async def _copy(store: S3Store, final: Handle, keys: list[str], ranges: list[tuple[int, int, int]]) -> None:
    limit = asyncio.Semaphore(store.options.concurrency)

    async def one(number: int, index: int, start: int, end: int) -> tuple[int, str]:
        async with limit:
            return number, await store.bucket.copy_part(final, number, keys[index], start, end)

    etags = await asyncio.gather(*(one(number, *piece) for number, piece in enumerate(ranges, start=1)))
    await store.bucket.complete(final, sorted(etags))


async def _stream(store: S3Store, final: Handle, parts: list[tuple[str, int]]) -> None:
    total = sum(length for _, length in parts)
    writer = store.open_writer(final, 0, length=total, hasher=None, hold=False)
    for part_id, length in parts:
        async for chunk in store.read(part_id, 0, length):
            await writer.write(chunk)
            if writer.error is not None:
                break
    written = await writer.finish()
    if writer.error is not None or written != total:
        raise StorageUnavailable(f"final upload {final.upload_id}: {written} of {total} bytes assembled ({writer.error})")
