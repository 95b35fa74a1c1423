"""Throughput and memory of tusd-py: prints figures, asserts nothing about speed.

    python bench/bench.py                 # 1 GiB uploads and 2000 small ones, embedded and Redis state
    python bench/bench.py --size-mib 256 --small-count 500

Each workload runs against a freshly started server, so the peak RSS printed
(VmHWM of the server process) belongs to that workload alone. Every upload is
checked: the offset reaches the length, and the stored bytes hash like the sent ones.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rawhttp import OCTET, TUS, Connection, many_uploads, send_file_request  # noqa: E402
from tests.support import RedisServer, TusServer, upload_file  # noqa: E402


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_payload(path: Path, size: int) -> str:
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def create(conn: Connection, length: int) -> str:
    status, headers = await conn.request("POST", "/files/", {**TUS, "Upload-Length": str(length)})
    assert status == 201, status
    return "/files/" + headers["location"].rsplit("/", 1)[1]


def big_upload(server: TusServer, payload: Path, digest: str, size: int, chunk: int) -> float:
    async def make() -> str:
        conn = Connection("127.0.0.1", server.port)
        path = await create(conn, size)
        await conn.close()
        return path

    path = asyncio.run(make())
    started = time.perf_counter()
    offset = 0
    while offset < size:
        count = min(chunk, size - offset)
        status, headers = send_file_request(
            "127.0.0.1", server.port, "PATCH", path, {**OCTET, "Upload-Offset": str(offset)}, str(payload), offset, count
        )
        assert status == 204, (status, headers)
        offset = int(headers["upload-offset"])
    elapsed = time.perf_counter() - started
    stored = upload_file(server.data_dir, path.rsplit("/", 1)[1])
    assert file_sha256(stored) == digest, "stored bytes differ"
    return size / elapsed / 1e6


def small_uploads(server: TusServer, count: int, size: int, concurrency: int) -> float:
    body = os.urandom(size)
    expected = hashlib.sha256(body).hexdigest()
    elapsed, paths = many_uploads(server.port, count, body, concurrency)
    for path in paths[:: max(1, len(paths) // 50)]:  # spot-check the stored bytes
        assert hashlib.sha256(upload_file(server.data_dir, path.rsplit("/", 1)[1]).read_bytes()).hexdigest() == expected
    assert len(paths) == count
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--patch-mib", type=int, default=8)
    parser.add_argument("--small-count", type=int, default=2000)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--backends", default="embedded,redis")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024

    with tempfile.TemporaryDirectory(prefix="tusd-bench-") as tmp:
        root = Path(tmp)
        payload = root / "payload.bin"
        digest = make_payload(payload, size)
        redis = RedisServer(root / "redis").start() if "redis" in args.backends else None
        rows = []
        try:
            for backend in args.backends.split(","):
                redis_url = redis.url if backend == "redis" and redis else None
                workloads = [
                    (f"{args.size_mib} MiB, one PATCH", "MB/s", lambda s: big_upload(s, payload, digest, size, size)),
                    (f"{args.size_mib} MiB, {args.patch_mib} MiB PATCHes", "MB/s",
                     lambda s: big_upload(s, payload, digest, size, args.patch_mib * 1024 * 1024)),
                    (f"{args.small_count} x {args.small_kib} KiB, concurrency {args.concurrency}", "uploads/s",
                     lambda s: small_uploads(s, args.small_count, args.small_kib * 1024, args.concurrency)),
                ]
                for index, (name, unit, run) in enumerate(workloads):
                    server = TusServer(root / f"data-{backend}-{index}", redis_url=redis_url, log_level="warning").start()
                    try:
                        figure = run(server)
                        rss = peak_rss_mib(server.proc.pid)  # type: ignore[union-attr]
                    finally:
                        server.stop()
                    rows.append((backend, name, f"{figure:,.1f} {unit}", f"{rss:.0f} MiB"))
                    print(f"{backend:9} {name:40} {figure:>10,.1f} {unit:10} peak RSS {rss:.0f} MiB", flush=True)
        finally:
            if redis:
                redis.stop()
    print()
    print("| state | workload | result | server peak RSS |")
    print("|---|---|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
