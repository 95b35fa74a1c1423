"""A 1 GiB final upload assembled from four 256 MiB parts, with the server's peak
memory (VmHWM) under 150 MB: the parts are joined by the kernel, never read into
Python. The parts are streamed in from a generator and checked back through GET
block by block, so the test itself holds about one block at a time too.
"""

from __future__ import annotations

import http.client
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_concat import PARTIAL, create_final
from tests.support import TUS, TusServer, create, head, upload_files

BLOCK = 1024 * 1024
PART_BLOCKS = 256  # 256 MiB per part
PARTS = 4
PEAK_RSS_LIMIT = 150 * 1000 * 1000

BASE = os.urandom(BLOCK)
TAIL = BASE[16:]


def header(part: int, block: int) -> bytes:
    """What makes each block different: a misplaced or repeated block cannot pass."""
    return struct.pack(">QQ", part, block)


def stream_part(url: str, part: int) -> int:
    """PATCH a whole part in one request, block by block from the generator."""
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    try:
        connection.putrequest("PATCH", target.path)
        for name, value in {
            **TUS,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": "0",
            "Content-Length": str(PART_BLOCKS * BLOCK),
        }.items():
            connection.putheader(name, value)
        connection.endheaders()
        for block in range(PART_BLOCKS):
            connection.send(header(part, block))
            connection.send(TAIL)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def server(tmp_path: Path, redis_url: str) -> Iterator[TusServer]:
    """One instance on Redis state, the scale-out configuration; parts removed once joined."""
    instance = TusServer(tmp_path / "data", redis_url=redis_url, remove_parts_after_concat=True).start()
    yield instance
    instance.stop()


def test_one_gib_final_from_four_parts_in_bounded_memory(server: TusServer) -> None:
    size = PARTS * PART_BLOCKS * BLOCK
    parts = [create(server.url, PART_BLOCKS * BLOCK, **PARTIAL) for _ in range(PARTS)]
    with ThreadPoolExecutor(max_workers=PARTS) as pool:
        statuses = list(pool.map(stream_part, parts, range(PARTS)))
    assert statuses == [204] * PARTS

    final = create_final(server.url, parts)
    response = head(final)
    assert response.headers["Upload-Offset"] == response.headers["Upload-Length"] == str(size)

    target = urlsplit(final)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    try:
        connection.request("GET", target.path)
        download = connection.getresponse()
        assert download.status == 200
        assert int(download.headers["Content-Length"]) == size
        for part in range(PARTS):
            for block in range(PART_BLOCKS):
                chunk = download.read(BLOCK)
                assert chunk[:16] == header(part, block), (part, block)
                assert chunk[16:] == TAIL, (part, block)
        assert download.read(1) == b""
    finally:
        connection.close()

    assert server.proc is not None
    peak = peak_rss(server.proc.pid)
    print(f"server peak RSS (VmHWM): {peak / 1e6:.1f} MB for a {size >> 20} MiB concatenation")
    assert peak < PEAK_RSS_LIMIT
    for part in parts:  # --remove-parts-after-concat: the parts are gone, the disk holds the final only
        assert head(part).status_code == 404
    assert sorted(p.name for p in upload_files(server.data_dir)) == [target.path.rsplit("/", 1)[1]]
