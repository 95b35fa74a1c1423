"""FileWriter with direct writes: every byte lands where it belongs whatever the
alignment of the offset, the chunks and the batches; the page cache path takes over
where O_DIRECT is refused; buffers are reused and never shared."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
from pathlib import Path

import pytest

from tusd_py.storage import files
from tusd_py.storage.files import ALIGN, FileStore


def write(store: FileStore, upload_id: str, offset: int, chunks: list[bytes], *, hashed: bool = False) -> tuple[int, bytes]:
    async def main() -> tuple[int, bytes]:
        hasher = hashlib.sha256() if hashed else None
        writer = store.writer(upload_id, offset, hasher)  # type: ignore[arg-type]
        for chunk in chunks:
            await writer.write(chunk)
        written = await writer.finish()
        assert writer.error is None, writer.error
        return written, hasher.digest() if hasher else b""

    return asyncio.run(main())


def pieces(data: bytes, rng: random.Random) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        size = rng.choice([1, 7, ALIGN - 1, ALIGN, ALIGN + 1, 65536, 100_003, 300_000])
        out.append(data[at : at + size])
        at += size
    return out


@pytest.mark.parametrize("offset", [0, 1, ALIGN - 1, ALIGN, 3 * ALIGN + 5, 1_000_000])
@pytest.mark.parametrize("batch_size", [ALIGN, 64 * 1024 + 1, 1024 * 1024])
def test_bytes_land_at_their_offsets(tmp_path: Path, offset: int, batch_size: int) -> None:
    rng = random.Random(offset * 7 + batch_size)
    store = FileStore(tmp_path, batch_size=batch_size, direct=True)
    before = os.urandom(offset + 20_000)  # what was there: the writer must keep the bytes before `offset`
    store.path("u").parent.mkdir()
    store.path("u").write_bytes(before)
    data = os.urandom(rng.randrange(2 * 1024 * 1024, 3 * 1024 * 1024))
    written, digest = write(store, "u", offset, pieces(data, rng), hashed=True)
    assert written == offset + len(data)
    assert store.path("u").read_bytes() == before[:offset] + data
    assert digest == hashlib.sha256(data).digest()
    assert store.direct is not None and store.direct.enabled


def test_large_batches_go_past_the_page_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = files._write_direct

    def spy(fd, direct_fd, buffer, chunks, position, hasher):  # type: ignore[no-untyped-def]
        flags = __import__("fcntl").fcntl(direct_fd, __import__("fcntl").F_GETFL)
        assert flags & os.O_DIRECT
        calls.append((position, sum(len(chunk) for chunk in chunks)))
        return real(fd, direct_fd, buffer, chunks, position, hasher)

    monkeypatch.setattr(files, "_write_direct", spy)
    store = FileStore(tmp_path, batch_size=1024 * 1024, direct=True)
    data = os.urandom(5 * 1024 * 1024)
    write(store, "u", 0, [data[i : i + 65536] for i in range(0, len(data), 65536)])
    assert store.path("u").read_bytes() == data
    assert len(calls) >= 4 and calls[0] == (0, 1024 * 1024)


def test_small_writes_use_the_page_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "_write_direct", lambda *args: pytest.fail("a small write went direct"))
    store = FileStore(tmp_path, direct=True)
    write(store, "u", 0, [b"x" * 65536])
    assert store.path("u").read_bytes() == b"x" * 65536


def test_where_o_direct_is_refused_the_page_cache_takes_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_direct(path, flags, *args):  # type: ignore[no-untyped-def]
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")  # as tmpfs on older kernels
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    store = FileStore(tmp_path, batch_size=ALIGN, direct=True)
    data = os.urandom(1024 * 1024 + 3)
    assert write(store, "u", 0, pieces(data, random.Random(1)))[0] == len(data)
    assert store.path("u").read_bytes() == data
    assert store.direct is not None and not store.direct.enabled


def test_buffers_are_reused_and_never_shared(tmp_path: Path) -> None:
    store = FileStore(tmp_path, batch_size=256 * 1024, direct=True)
    assert store.direct is not None
    datas = {f"u{i}": os.urandom(3 * 1024 * 1024 + i) for i in range(6)}

    async def one(name: str, data: bytes) -> None:
        writer = store.writer(name, 0)
        for at in range(0, len(data), 100_000):
            await writer.write(data[at : at + 100_000])
            await asyncio.sleep(0)  # interleave the uploads
        await writer.finish()

    async def main() -> None:
        await asyncio.gather(*(one(name, data) for name, data in datas.items()))

    asyncio.run(main())
    for name, data in datas.items():
        assert store.path(name).read_bytes() == data
    kept = len(store.direct._free)
    assert 1 <= kept <= 6  # given back, at most one per upload that ran at once
    write(store, "again", 0, [os.urandom(1024 * 1024)])
    assert len(store.direct._free) == kept  # borrowed and given back, not a new one
