"""The S3 store's parts in memory: buffers reused from part to part (never while a connection may
still read one), sent as views, without copies and without a thread per piece.

moto (ThreadedMotoServer on 127.0.0.1) behind the fault proxy of test_s3_faults,
whose fixtures and helpers these tests share.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import pytest

from tests.s3faults import FaultProxy
from tests.unit.test_s3_faults import PART, moto_port, proxy, run, write  # noqa: F401 (fixtures)
from tusd_py.storage.s3 import S3Store
from tusd_py.storage.s3.bucket import PartBody
from tusd_py.storage.s3.buffers import PartBuffers

pytestmark = pytest.mark.usefixtures("s3_credentials")


def test_part_buffers_are_reused_and_kept_within_their_bound() -> None:
    buffers = PartBuffers(keep=2 * 10)
    first = buffers.take(10)
    buffers.give(first)
    assert buffers.take(10) is first and buffers.kept == 0
    a, b, c = buffers.take(10), buffers.take(10), buffers.take(10)
    for buffer in (a, b, c):
        buffers.give(buffer)
    assert buffers.kept == 20  # the third was dropped
    assert buffers.take(7) not in (a, b, c) and len(buffers.take(7)) == 7  # sizes are not mixed


def test_part_body_reads_are_views_of_the_part_and_rewind_for_a_retry() -> None:
    data = bytearray(b"0123456789")
    body = PartBody(memoryview(data)[:8])
    piece = body.read(3)
    assert isinstance(piece, memoryview) and piece.obj is data and bytes(piece) == b"012"
    assert bytes(body.read()) == b"34567" and bytes(body.read(4)) == b"" and body.tell() == 8
    assert body.seek(0) == 0 and bytes(body.read(-1)) == b"01234567" and len(body) == 8
    buffer = bytearray(4)
    body.seek(6)
    assert body.readinto(buffer) == 2 and buffer[:2] == b"67"
    assert body.seek(-3, io.SEEK_END) == 5


def _spy(store: S3Store) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids of the buffers given back, (part number, id of the buffer it was sent from) of each part sent)."""
    given: list[int] = []
    sent_from: list[tuple[int, int]] = []
    give, put_part = store._buffers.give, store.bucket.put_part

    def spy_give(buffer: bytearray) -> None:
        given.append(id(buffer))
        give(buffer)

    async def spy_put_part(handle: Any, number: int, data: memoryview) -> tuple[str, int]:
        sent_from.append((number, id(data.obj)))
        return await put_part(handle, number, data)

    store._buffers.give = spy_give  # type: ignore[method-assign]
    store.bucket.put_part = spy_put_part  # type: ignore[method-assign]
    return given, sent_from


def test_buffers_are_reused_across_parts_and_uploads_with_every_byte_right(proxy: FaultProxy) -> None:
    first = bytes(range(256)) * (3 * PART // 256) + b"tail of the first"
    second = bytes(reversed(range(256))) * (2 * PART // 256) + b"x" * 1000  # a short last part in a reused buffer

    async def body(store: S3Store) -> None:
        given, sent_from = _spy(store)
        for upload_id, payload in (("reuse1", first), ("reuse2", second)):
            await store.create(upload_id, len(payload))
            assert await write(store, upload_id, payload, len(payload)) == (len(payload), None)
            await store.finish(upload_id, len(payload))
            assert b"".join([c async for c in store.read(upload_id, 0, len(payload))]) == payload
        assert len(sent_from) == 4 + 3 and len({buffer for _, buffer in sent_from}) < 7  # parts went out of buffers used before
        assert 0 < store._buffers.kept <= store._buffers.keep

    run(proxy.endpoint, body)


def test_a_part_s3_acknowledged_only_after_a_retry_never_gives_its_buffer_back(proxy: FaultProxy) -> None:
    payload = b"r" * (3 * PART)

    async def body(store: S3Store) -> None:
        given, sent = _spy(store)
        await store.create("retried", len(payload))
        proxy.fail(1, match="partNumber=2")  # one 503: a connection of the first attempt may still hold the part
        assert await write(store, "retried", payload, len(payload)) == (len(payload), None)
        await store.finish("retried", len(payload))
        assert b"".join([c async for c in store.read("retried", 0, len(payload))]) == payload
        sent_from = dict(sent)
        assert sent_from[2] not in given
        assert sent_from[1] in given and sent_from[3] in given

    run(proxy.endpoint, body)
    assert proxy.failed == 1


def test_parts_are_sent_from_the_event_loop_without_a_thread_per_piece(proxy: FaultProxy) -> None:
    """aiohttp's own stream payload would read each 256 KiB of a part in an executor thread."""
    payload = bytes(range(256)) * (2 * PART // 256) + b"end"
    handed: list[str] = []

    async def body(store: S3Store) -> None:
        loop = asyncio.get_running_loop()
        run_in_executor = loop.run_in_executor

        def counting(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
            handed.append(getattr(func, "__qualname__", repr(func)))
            return run_in_executor(executor, func, *args)

        loop.run_in_executor = counting  # type: ignore[method-assign]
        await store.create("loop1", len(payload))
        assert await write(store, "loop1", payload, len(payload)) == (len(payload), None)
        await store.finish("loop1", len(payload))
        assert b"".join([c async for c in store.read("loop1", 0, len(payload))]) == payload

    run(proxy.endpoint, body)
    assert [name for name in handed if "Payload" in name] == []


def test_a_small_upload_holds_a_buffer_of_its_size_not_a_whole_part(proxy: FaultProxy) -> None:
    """64 concurrent 64 KiB uploads must not hold 64 parts' worth of memory (8 MiB each by default)."""
    small = b"s" * (64 * 1024)
    last = b"t" * (PART + 1000)  # a whole part, then a last part of 1000 bytes

    async def body(store: S3Store) -> None:
        sizes: list[int] = []
        take = store._buffers.take

        def spy_take(size: int) -> bytearray:
            sizes.append(size)
            return take(size)

        store._buffers.take = spy_take  # type: ignore[method-assign]
        for upload_id, payload in (("small1", small), ("last1", last)):
            await store.create(upload_id, len(payload))
            assert await write(store, upload_id, payload, len(payload)) == (len(payload), None)
            await store.finish(upload_id, len(payload))
            assert b"".join([c async for c in store.read(upload_id, 0, len(payload))]) == payload
        assert sizes == [len(small), PART, 1000]
        assert not store._buffers._free.get(len(small)) and not store._buffers._free.get(1000)  # only part-sized ones kept

    run(proxy.endpoint, body)
