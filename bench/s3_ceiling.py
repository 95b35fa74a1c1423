"""The raw S3 ceiling: plain aiobotocore multipart uploads into a local SeaweedFS.

    .venv/bin/python bench/s3_ceiling.py                 # 512 MiB single object, then 8 parallel 64 MiB
    .venv/bin/python bench/s3_ceiling.py --part-mib 16 --concurrency 8 --verify
    .venv/bin/python bench/s3_ceiling.py --modes raw,store   # the same through tusd-py's S3 store, beside it

What tusd-py's S3 store is measured against (issue 15: >= 0.75x of this): the
same client library, part size and parts in flight, with no tus, no HTTP server
and no incomplete-part bookkeeping in between. Bodies come from one random
part-sized buffer sent again and again, so generating them costs nothing.
SeaweedFS (`weed mini`, tests/support.S3Server) runs on this machine and takes
most of the CPU, so the figures are for this machine only. Both modes run with
the glibc allocator settings tusd-py's server applies to itself (`allocator.tune`). Prints MB/s, the
client's peak RSS and weed's, and the client's CPU seconds per GiB; asserts nothing about speed.

`--modes raw,store` also runs each workload through `tusd_py.storage.s3.S3Store` (its
writer fed 64 KiB chunks, as a request body arrives), in-process, with no HTTP
server: the store's own overhead over the ceiling, before any tus handling.
The modes alternate in the order given. Peak RSS is of this whole process:
run one mode at a time to see one mode's.

`--from-file PAYLOAD --ranges OFFSET:COUNT,... --endpoint URL --bucket NAME` is
bench/compare's `s3-raw` ceiling: the given ranges of a file, one object each
(keyed `raw-<n>`), all at once, into a SeaweedFS that runs already; the part
bytes are read from the file (its pages are cached) as they are sent. It prints
one JSON line: seconds (creation to completion), the process's peak RSS and
CPU seconds, and the keys.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import S3_CREDENTIALS, S3Server  # noqa: E402
from tusd_py import allocator  # noqa: E402
from tusd_py.storage.s3 import S3Store  # noqa: E402
from tusd_py.storage.s3.options import S3Options, create_client  # noqa: E402

MiB = 1024 * 1024


def peak_mib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) // 1024


async def upload(
    client: Any, bucket: str, key: str, size: int, part: int, body: Callable[[int, int], bytes], concurrency: int,
    in_all: asyncio.Semaphore | None = None,
) -> None:
    """One object of `size` bytes as a multipart upload of `part`-byte parts, `concurrency` in flight.

    `body(start, length)` gives a part's bytes; `in_all` bounds the parts in flight of all objects.
    """
    created = await client.create_multipart_upload(Bucket=bucket, Key=key)
    multipart_id = created["UploadId"]
    limit = asyncio.Semaphore(concurrency)
    shared = in_all or asyncio.Semaphore(concurrency)

    async def one(number: int) -> dict[str, Any]:
        async with limit, shared:
            start = (number - 1) * part
            data = body(start, min(part, size - start))
            response = await client.upload_part(Bucket=bucket, Key=key, UploadId=multipart_id, PartNumber=number, Body=data)
            return {"PartNumber": number, "ETag": response["ETag"]}

    parts = await asyncio.gather(*(one(number) for number in range(1, -(-size // part) + 1)))
    await client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=multipart_id, MultipartUpload={"Parts": parts})


async def verify(client: Any, bucket: str, key: str, size: int, block: bytes) -> None:
    expected, got = hashlib.sha256(), hashlib.sha256()
    for start in range(0, size, len(block)):
        expected.update(block[: min(len(block), size - start)])
    response = await client.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        while chunk := await body.read(MiB):
            got.update(chunk)
    assert got.digest() == expected.digest(), f"{key}: read back differs"


async def through_store(store: S3Store, upload_id: str, size: int, block: bytes) -> None:
    """One upload through the S3 store's writer, 64 KiB at a time, then CompleteMultipartUpload."""
    await store.create(upload_id, size)
    writer = store.writer(upload_id, 0, length=size)
    piece = 64 * 1024
    chunks = [block[start:start + piece] for start in range(0, len(block), piece)]
    sent = 0
    while sent < size:
        for chunk in chunks:
            chunk = chunk[: size - sent]
            await writer.write(chunk)
            sent += len(chunk)
            if sent == size:
                break
    assert await writer.finish() == size and writer.error is None
    await store.finish(upload_id, size)


async def workload(options: S3Options, mode: str, name: str, count: int, size: int, block: bytes, check: bool) -> tuple[float, float]:
    """MB/s, and this process's CPU seconds per GiB sent."""
    keys = [f"{mode}-{name}-{i}" for i in range(count)]
    async with create_client(options) as client:
        cpu0, started = _cpu_seconds(), time.perf_counter()
        if mode == "raw":
            part = len(block)

            def repeated(start: int, length: int) -> bytes:
                return block if length == part else block[:length]

            await asyncio.gather(*(upload(client, options.bucket, key, size, part, repeated, options.concurrency) for key in keys))
        else:
            async with S3Store(options) as store:
                await asyncio.gather(*(through_store(store, key, size, block) for key in keys))
        elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu0
        for key in keys:
            head = await client.head_object(Bucket=options.bucket, Key=key)
            assert head["ContentLength"] == size
            if check:
                await verify(client, options.bucket, key, size, block)
    return count * size / elapsed / 1e6, cpu / (count * size / 2**30)


async def from_file(options: S3Options, path: str, ranges: list[tuple[int, int]]) -> dict[str, Any]:
    """bench/compare's ceiling: each range of the file one object, all at once (see the docstring)."""
    fd = os.open(path, os.O_RDONLY)
    keys = [f"raw-{index}" for index in range(len(ranges))]
    in_all = asyncio.Semaphore(options.max_in_flight)
    try:
        async with create_client(options) as client:
            await client.head_bucket(Bucket=options.bucket)  # the connection is up before the clock starts
            cpu0, started = _cpu_seconds(), time.perf_counter()

            async def one(key: str, offset: int, count: int) -> None:
                def body(start: int, length: int) -> bytes:
                    return os.pread(fd, length, offset + start)

                await upload(client, options.bucket, key, count, options.part_size, body, options.concurrency, in_all)

            await asyncio.gather(*(one(key, offset, count) for key, (offset, count) in zip(keys, ranges, strict=True)))
            seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu0
    finally:
        os.close(fd)
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak_mib(), "keys": keys}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4, help="parts in flight per object")
    parser.add_argument("--single-mib", type=int, default=512)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--parallel-mib", type=int, default=64)
    parser.add_argument("--verify", action="store_true", help="read every object back and compare its sha256")
    parser.add_argument("--modes", default="raw", help="raw (plain aiobotocore), store (tusd-py's S3 store), or both: raw,store")
    parser.add_argument("--max-in-flight", type=int, default=8, help="parts in flight in all objects (store mode, --from-file)")
    parser.add_argument("--from-file", default=None, help="bench/compare's ceiling: upload --ranges of this file")
    parser.add_argument("--ranges", default="", help="OFFSET:COUNT,... (with --from-file)")
    parser.add_argument("--endpoint", default=None, help="a running SeaweedFS (with --from-file)")
    parser.add_argument("--bucket", default=None, help="an existing bucket (with --from-file)")
    args = parser.parse_args()
    os.environ.update(S3_CREDENTIALS)
    allocator.tune()  # the glibc settings the server runs with: parts are mmap'ed and given back when freed
    if args.from_file:
        ranges = [(int(offset), int(count)) for offset, count in (item.split(":") for item in args.ranges.split(","))]
        options = S3Options(bucket=args.bucket, endpoint_url=args.endpoint, region="us-east-1", path_style=True,
                            part_size=args.part_mib * MiB, concurrency=args.concurrency, max_in_flight=args.max_in_flight)
        print(json.dumps(asyncio.run(from_file(options, args.from_file, ranges))), flush=True)
        return
    block = os.urandom(args.part_mib * MiB)
    with tempfile.TemporaryDirectory(prefix="s3-ceiling-") as directory:
        server = S3Server(Path(directory)).start()
        try:
            options = S3Options(bucket=server.bucket, endpoint_url=server.endpoint, region="us-east-1", path_style=True,
                                part_size=args.part_mib * MiB, concurrency=args.concurrency, max_in_flight=args.max_in_flight)
            runs = [("single", 1, args.single_mib * MiB), ("parallel", args.parallel, args.parallel_mib * MiB)]
            for name, count, size in runs:
                for mode in args.modes.split(","):
                    rate, cpu = asyncio.run(workload(options, mode, name, count, size, block, args.verify))
                    print(f"{mode:5s} {name:8s} {count} x {size // MiB} MiB: {rate:7.1f} MB/s, CPU {cpu:.2f} s per GiB", flush=True)
            assert server.proc is not None
            print(f"peak RSS: client {peak_mib()} MiB, weed {peak_mib(server.proc.pid)} MiB "
                  f"(part {args.part_mib} MiB, {args.concurrency} in flight per object)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
